package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/certflow/certflow/internal/app"
)

// errHelpShown ends a command whose --help (or `certflow help CMD`) was
// answered: run turns it into success.
var errHelpShown = errors.New("help shown")

// newFlagSet is a command's own flag set: its usage names the command,
// its arguments and only the flags it takes.
func newFlagSet(name, synopsis, about string, out io.Writer) *flag.FlagSet {
	fset := flag.NewFlagSet("certflow "+name, flag.ContinueOnError)
	fset.SetOutput(out)
	fset.Usage = func() {
		fmt.Fprintf(out, "usage: certflow %s %s\n\n%s\n", name, synopsis, about)
		hasFlags := false
		fset.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(out, "\nflags:")
			fset.PrintDefaults()
		}
	}
	return fset
}

// parseArgs parses flags wherever they stand among the positional
// arguments (`approve 12 --comment ok` as well as `approve --comment ok
// 12`; Go's flag package alone stops at the first non-flag) and returns
// the positional ones. Everything after `--` is positional. A bad flag
// is exit 2 (the flag package has said why); --help is errHelpShown.
func parseArgs(fset *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fset.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelpShown
			}
			return nil, exitCode(2)
		}
		rest := fset.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// noArgs refuses positional arguments for a command that takes none.
func noArgs(fset *flag.FlagSet, positional []string) error {
	if len(positional) == 0 {
		return nil
	}
	fmt.Fprintf(fset.Output(), "%s: unexpected argument %q (it takes flags only; see --help)\n", fset.Name(), positional[0])
	return exitCode(2)
}

// settingFlags adds the named app.Settings flags (each also an
// environment variable, applied by Settings.FromEnv) to a command.
func settingFlags(fset *flag.FlagSet, s *app.Settings, names ...string) {
	for _, n := range names {
		switch n {
		case "config":
			fset.StringVar(&s.ConfigPath, n, "", "configuration file (CERTFLOW_CONFIG)")
		case "redis-url":
			fset.StringVar(&s.RedisURL, n, "", "Redis URL, redis://host:port/db (CERTFLOW_REDIS_URL)")
		case "data-dir":
			fset.StringVar(&s.DataDir, n, "", "data directory: CA files, KEK, generated secrets (CERTFLOW_DATA_DIR; default .certflow)")
		case "definitions":
			fset.StringVar(&s.Definitions, n, "", "workflow definitions folder (CERTFLOW_DEFINITIONS; default definitions/, else the shipped set)")
		case "listen":
			fset.StringVar(&s.Listen, n, "", "API plain-HTTP listen address (CERTFLOW_LISTEN; default 127.0.0.1:8080)")
		case "tls-listen":
			fset.StringVar(&s.TLSListen, n, "", "API HTTPS listen address, off for none (CERTFLOW_TLS_LISTEN; default 127.0.0.1:8443)")
		default:
			panic("settingFlags: unknown setting " + n)
		}
	}
}

// versionLine is `certflow version`: the module version, the commit the
// binary was built from (when the build recorded it) and the Go release.
func versionLine() string {
	version, commit := "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		var rev, when, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = ", modified"
				}
			}
		}
		if rev != "" {
			commit = fmt.Sprintf(" (commit %s, %s%s)", rev, when, modified)
		}
	}
	return fmt.Sprintf("certflow %s%s %s %s/%s", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// helpFor is `certflow help CMD`: the command's own usage, on stdout.
func helpFor(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return nil
	}
	name := strings.Join(args, " ")
	if name == "help" || name == "version" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	return dispatch(append(args, "--help"), stdout, stdout)
}

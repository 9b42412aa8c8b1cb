package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// cli runs the command in-process and returns its stdout, stderr and exit
// code (0, or the code main would exit with).
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(args, &out, &errOut)
	var ec exitCode
	switch {
	case err == nil:
		return out.String(), errOut.String(), 0
	case errors.As(err, &ec):
		return out.String(), errOut.String(), int(ec)
	default:
		return out.String(), errOut.String() + err.Error(), 1
	}
}

func TestVersionNamesTheGoRelease(t *testing.T) {
	out, _, code := cli(t, "version")
	if code != 0 || !strings.HasPrefix(out, "certflow ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("version = %q, exit %d", out, code)
	}
	if _, errOut, code := cli(t, "version", "extra"); code != 2 || !strings.Contains(errOut, `"extra"`) {
		t.Fatalf("version extra: exit %d, %q", code, errOut)
	}
}

// Each command's help shows its own flags and none of another's, whether
// asked as `help CMD`, `CMD --help` or `CMD -h`, and exits 0.
func TestEachCommandsHelpShowsItsOwnFlags(t *testing.T) {
	cases := []struct {
		cmd       []string
		want, not []string
	}{
		{[]string{"lint"}, []string{"usage: certflow lint", "-definitions", "-config"}, []string{"-listen", "-redis-url"}},
		{[]string{"test"}, []string{"usage: certflow test", "-definitions", "-config", "test.yaml"}, []string{"-listen", "-redis-url"}},
		{[]string{"serve"}, []string{"usage: certflow serve", "-listen", "-redis-url", "-data-dir"}, []string{"-repair", "-comment"}},
		{[]string{"ca", "init"}, []string{"usage: certflow ca init", "-data-dir"}, []string{"-listen"}},
		{[]string{"inventory", "check"}, []string{"usage: certflow inventory check", "-repair", "-redis-url"}, []string{"-listen"}},
		{[]string{"approve"}, []string{"usage: certflow approve", "-comment", "-url", "CERTFLOW_TOKEN"}, []string{"-listen"}},
		{[]string{"pending"}, []string{"usage: certflow pending", "-url"}, []string{"-comment"}},
		{[]string{"bench"}, []string{"-requests", "-target", "CERTFLOW_TOKEN", "-authority", "-config", "acme_client.http01_listen"}, []string{"-listen"}},
		{[]string{"healthcheck"}, []string{"usage: certflow healthcheck", "-url", "-cacert", "-redis"}, []string{"-repair"}},
	}
	for _, c := range cases {
		for _, args := range [][]string{append([]string{"help"}, c.cmd...), append(slices.Clone(c.cmd), "--help"), append(slices.Clone(c.cmd), "-h")} {
			out, errOut, code := cli(t, args...)
			text := out + errOut
			if code != 0 {
				t.Errorf("%v: exit %d\n%s", args, code, text)
			}
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("%v lacks %q:\n%s", args, w, text)
				}
			}
			for _, n := range c.not {
				if strings.Contains(text, n) {
					t.Errorf("%v shows another command's flag %q:\n%s", args, n, text)
				}
			}
		}
	}
	// `help ca` is ca init's help; plain help is the overview.
	if out, _, _ := cli(t, "help", "ca"); !strings.Contains(out, "usage: certflow ca init") {
		t.Errorf("help ca = %q", out)
	}
	if out, _, code := cli(t, "help"); code != 0 || !strings.Contains(out, "certflow version") || !strings.Contains(out, "certflow healthcheck") {
		t.Errorf("help = %q, exit %d", out, code)
	}
}

// Anything a command does not take is refused with exit 2 and a message
// naming it, before the command does anything.
func TestUnknownArgumentsAreRefused(t *testing.T) {
	t.Setenv("CERTFLOW_TOKEN", "")
	t.Setenv("CERTFLOW_ADMIN_TOKEN", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"serve", "now"}, `unexpected argument "now"`},
		{[]string{"worker", "--listen", "x", "extra"}, `unexpected argument "extra"`},
		{[]string{"ca", "init", "please"}, `unexpected argument "please"`},
		{[]string{"ca", "make"}, "usage: certflow ca init"},
		{[]string{"inventory"}, "usage: certflow inventory check"},
		{[]string{"inventory", "check", "--repair", "all"}, `unexpected argument "all"`},
		{[]string{"pending", "12"}, `unexpected argument "12"`},
		{[]string{"healthcheck", "localhost"}, `unexpected argument "localhost"`},
		{[]string{"lint", "--frob"}, "flag provided but not defined: -frob"},
		{[]string{"serve", "--comment", "x"}, "flag provided but not defined: -comment"},
		{[]string{"bench", "--requests", "10", "fast"}, `unexpected argument "fast"`},
		{[]string{"approve"}, "name at least one request or instance id"},
		{[]string{"deny", "12"}, "a comment is required"},
		{[]string{"deny", "12", "--comment", "  "}, "a comment is required"},
	} {
		out, errOut, code := cli(t, c.args...)
		if code != 2 || !strings.Contains(out+errOut, c.want) {
			t.Errorf("%v: exit %d, want 2 and %q:\n%s%s", c.args, code, c.want, out, errOut)
		}
	}
}

// `bench --authority` reads the CA from --config, or CERTFLOW_CONFIG
// when --config is not given, and refuses a name the file lacks, saying
// which file it read, before it measures anything.
func TestBenchAuthorityIsReadFromTheConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "certflow.yaml")
	os.WriteFile(file, []byte("key_prefix: benchcli\n"), 0o600)
	t.Setenv("CERTFLOW_CONFIG", "")
	if _, errOut, code := cli(t, "bench", "--requests", "1", "--authority", "Pebble"); code != 1 || !strings.Contains(errOut, `--authority "Pebble" needs --config`) {
		t.Errorf("no config: exit %d, %q", code, errOut)
	}
	t.Setenv("CERTFLOW_CONFIG", file)
	if _, errOut, code := cli(t, "bench", "--requests", "1", "--authority", "Pebble"); code != 1 || !strings.Contains(errOut, `no certificate authority of that name in `+file+" (it has CertflowIssuingCA)") {
		t.Errorf("CERTFLOW_CONFIG without the CA: exit %d, %q", code, errOut)
	}
	if _, errOut, code := cli(t, "bench", "--requests", "1", "--authority", "CertflowIssuingCA", "--config", file); code != 1 || !strings.Contains(errOut, "is a CA of type builtin") {
		t.Errorf("--config naming a builtin CA: exit %d, %q", code, errOut)
	}
}

func TestFlagsMayFollowPositionalArguments(t *testing.T) {
	for _, c := range []struct {
		args, positional []string
		comment          string
	}{
		{[]string{"12", "--comment", "ok"}, []string{"12"}, "ok"},
		{[]string{"--comment", "ok", "12"}, []string{"12"}, "ok"},
		{[]string{"12", "--comment=ok", "13"}, []string{"12", "13"}, "ok"},
		{[]string{"12", "--", "--comment", "ok"}, []string{"12", "--comment", "ok"}, ""},
		{[]string{"--", "-5"}, []string{"-5"}, ""},
		{nil, nil, ""},
	} {
		fset := flag.NewFlagSet("t", flag.ContinueOnError)
		comment := fset.String("comment", "", "")
		got, err := parseArgs(fset, c.args)
		if err != nil || !slices.Equal(got, c.positional) || *comment != c.comment {
			t.Errorf("parseArgs(%q) = %q, comment %q, %v; want %q, %q", c.args, got, *comment, err, c.positional, c.comment)
		}
	}
}

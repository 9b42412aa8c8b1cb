package dryrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/certflow/certflow/workflow"
)

// FolderResult is what testing one folder of definitions found.
type FolderResult struct {
	// Dir is the folder as shown.
	Dir string
	// LoadErr is why its definitions (or a test file) did not load.
	LoadErr error
	Files   []FileResult
	// Untested are its definition files with no <name>.test.yaml.
	Untested []string
}

// FileResult is one test file's cases.
type FileResult struct {
	File  string
	Cases []CaseResult
}

// CaseResult is one case's outcome.
type CaseResult struct {
	Case     *TestCase
	Failures []Failure
	Report   *TestReport
}

// Passed reports whether the folder loaded and every case passed.
func (r *FolderResult) Passed() bool {
	if r.LoadErr != nil {
		return false
	}
	for _, f := range r.Files {
		for _, c := range f.Cases {
			if len(c.Failures) > 0 {
				return false
			}
		}
	}
	return true
}

// RunFolder loads the definitions of fsys's root as certflow loads a
// definitions folder, and runs the cases of its test files (only the
// named ones, if only is not empty). dir is how the folder is shown.
func (h *Harness) RunFolder(ctx context.Context, fsys fs.FS, dir string, only ...string) FolderResult {
	res := FolderResult{Dir: dir}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		res.LoadErr = err
		return res
	}
	var tests, defs []string
	for _, e := range entries {
		switch {
		case e.IsDir():
		case workflow.IsTestFile(e.Name()):
			if len(only) == 0 || slices.Contains(only, e.Name()) {
				tests = append(tests, e.Name())
			}
		case workflow.IsDefinitionFile(e.Name()):
			defs = append(defs, e.Name())
		}
	}
	for _, name := range only {
		if !slices.Contains(tests, name) {
			res.LoadErr = fmt.Errorf("%s: no such test file", path.Join(dir, name))
			return res
		}
	}
	for _, d := range defs {
		if !slices.ContainsFunc(testFilesOf(d), func(t string) bool {
			return slices.ContainsFunc(entries, func(e fs.DirEntry) bool { return e.Name() == t })
		}) {
			res.Untested = append(res.Untested, path.Join(dir, d))
		}
	}
	set, err := h.Load(fsys)
	if err != nil {
		res.LoadErr = fmt.Errorf("definitions in %s do not load:\n%w", dir, err)
		return res
	}
	var errs []error
	for _, name := range tests {
		shown := path.Join(dir, name)
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		tf, err := ParseFile(shown, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fset := set
		if len(tf.Templates) > 0 {
			// The file's cases run with its templates: the definitions
			// are built again against that configuration.
			fh, err := h.WithTemplates(shown, tf.Templates)
			if err == nil {
				fset, err = fh.Load(fsys)
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
		}
		fr := FileResult{File: shown}
		for _, c := range tf.Cases {
			rep := h.Run(ctx, fset, c)
			fr.Cases = append(fr.Cases, CaseResult{Case: c, Report: rep, Failures: c.Check(rep)})
		}
		res.Files = append(res.Files, fr)
	}
	if len(errs) > 0 {
		res.LoadErr = errors.Join(errs...)
	}
	return res
}

// testFilesOf are the names of a definition file's test file.
func testFilesOf(def string) []string {
	base := strings.TrimSuffix(strings.TrimSuffix(def, ".yaml"), ".yml")
	return []string{base + ".test.yaml", base + ".test.yml"}
}

// RunPath tests a path: a folder (and each folder under it that holds
// definitions, each as a set of its own, as certflow would load it), a
// definition file (its test file, against its folder's set) or a test
// file (against its folder's set).
func (h *Harness) RunPath(ctx context.Context, p string) []FolderResult {
	st, err := os.Stat(p)
	if err != nil {
		return []FolderResult{{Dir: p, LoadErr: err}}
	}
	if !st.IsDir() {
		dir, name := filepath.Split(p)
		dir = filepath.Clean(dir)
		test := name
		if !workflow.IsTestFile(name) {
			test = ""
			for _, t := range testFilesOf(name) {
				if _, err := os.Stat(filepath.Join(dir, t)); err == nil {
					test = t
				}
			}
			if test == "" {
				return []FolderResult{{Dir: dir, LoadErr: fmt.Errorf("%s: no test file (want %s beside it)", p, testFilesOf(name)[0])}}
			}
		}
		return []FolderResult{h.RunFolder(ctx, os.DirFS(dir), filepath.ToSlash(dir), test)}
	}
	var out []FolderResult
	filepath.WalkDir(p, func(dir string, d fs.DirEntry, err error) error {
		if err != nil {
			out = append(out, FolderResult{Dir: dir, LoadErr: err})
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		if dir != p && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		entries, _ := os.ReadDir(dir)
		if dir != p && !slices.ContainsFunc(entries, func(e os.DirEntry) bool {
			return !e.IsDir() && (workflow.IsDefinitionFile(e.Name()) || workflow.IsTestFile(e.Name()))
		}) {
			return nil
		}
		out = append(out, h.RunFolder(ctx, os.DirFS(dir), filepath.ToSlash(dir)))
		return nil
	})
	return out
}

// Print writes results as `certflow test` shows them: ok or FAIL per
// case, each failure as "file:line: case "name": …", definitions
// without tests, and a summary. It reports whether everything passed.
func Print(w io.Writer, results []FolderResult, verbose bool) bool {
	passed, failed, broken := 0, 0, 0
	var untested []string
	for _, r := range results {
		for _, f := range r.Files {
			for _, c := range f.Cases {
				if len(c.Failures) == 0 {
					passed++
					fmt.Fprintf(w, "ok    %s:%d  %s\n", f.File, c.Case.Line(""), c.Case.Name)
				} else {
					failed++
					fmt.Fprintf(w, "FAIL  %s:%d  %s\n", f.File, c.Case.Line(""), c.Case.Name)
					for _, line := range c.Case.Format(c.Failures) {
						fmt.Fprintf(w, "      %s\n", line)
					}
				}
				if verbose {
					describe(w, c.Report)
				}
			}
		}
		if r.LoadErr != nil {
			broken++
			fmt.Fprintf(w, "ERROR %s\n", indent(r.LoadErr.Error()))
		}
		untested = append(untested, r.Untested...)
	}
	for _, u := range untested {
		fmt.Fprintf(w, "--    %s has no tests\n", u)
	}
	fmt.Fprintf(w, "%d cases: %d passed, %d failed", passed+failed, passed, failed)
	if broken > 0 {
		fmt.Fprintf(w, "; %d folders or files did not load", broken)
	}
	fmt.Fprintln(w)
	return failed == 0 && broken == 0
}

func indent(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n      ")
}

// describe writes what a case's runs did, for certflow test -v.
func describe(w io.Writer, rep *TestReport) {
	if len(rep.Runs) == 0 {
		fmt.Fprintf(w, "      no definition runs for %s\n", rep.Trigger)
	}
	for _, r := range rep.Runs {
		name := r.Definition
		if name == "" {
			name = "(no definition)"
		}
		fmt.Fprintf(w, "      %s: %s", name, r.Disposition)
		if r.Message != "" {
			fmt.Fprintf(w, " (%s)", r.Message)
		}
		fmt.Fprintln(w)
		for _, st := range r.Steps {
			fmt.Fprintf(w, "        %-16s %-10s %s", st.ID, st.Uses, st.Outcome)
			if st.If != "" {
				fmt.Fprintf(w, "  if %s", st.If)
			}
			fmt.Fprintln(w)
		}
		for _, n := range r.Notifications {
			switch n.Channel {
			case "email":
				fmt.Fprintf(w, "        %s: e-mail to %s: %q\n", n.Step, strings.Join(n.To, ", "), n.Subject)
			case "webhook":
				fmt.Fprintf(w, "        %s: webhook %s to %s\n", n.Step, n.Event, n.URL)
			default:
				fmt.Fprintf(w, "        %s: log %q\n", n.Step, n.Message)
			}
		}
		for _, c := range r.HTTP {
			answer := fmt.Sprint(c.Status)
			if c.Error != "" {
				answer = "error: " + c.Error
			}
			fmt.Fprintf(w, "        %s: %s %s -> %s\n", c.Step, c.Method, c.URL, answer)
		}
		for _, a := range r.Actions {
			fmt.Fprintf(w, "        %s: %s certificate %d with %s\n", a.Step, a.Uses, a.Certificate, show(a.With))
		}
	}
}

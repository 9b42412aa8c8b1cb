package dryrun

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// Failure is one unmet expectation, at a line of the case's test file
// (0 for a posted case).
type Failure struct {
	Line int    `json:"line,omitempty"`
	Path string `json:"path,omitempty"` // the expectation's key path
	Msg  string `json:"message"`
}

// format is "file:line: case "name": msg" for a case from a file.
func (f Failure) format(c *TestCase) string {
	if c.file == "" {
		return fmt.Sprintf("case %q: %s", c.Name, f.Msg)
	}
	return fmt.Sprintf("%s:%d: case %q: %s", c.file, f.Line, c.Name, f.Msg)
}

// Format renders failures as lines "file:line: case "name": …".
func (c *TestCase) Format(fs []Failure) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.format(c))
	}
	return out
}

// TestAnswer is the answer of POST /Workflow/Definitions/Test: the
// report and, when the case has an expect, whether it holds.
type TestAnswer struct {
	TestReport
	// Passed is whether every expectation held (absent without expect).
	Passed *bool `json:"passed,omitempty"`
	// Failures are the expectations that did not hold; a line is the
	// body's.
	Failures []Failure `json:"failures,omitempty"`
}

// Check compares a dry run's report with the case's expectations.
func (c *TestCase) Check(rep *TestReport) []Failure {
	var fs []Failure
	fail := func(path, format string, args ...any) {
		fs = append(fs, Failure{Line: c.Line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	for _, p := range rep.Problems {
		fail("", "%s", p)
	}
	e := c.Expect
	if e == nil {
		return fs
	}
	var ran []string
	for _, r := range rep.Runs {
		if r.Definition != "" {
			ran = append(ran, r.Definition)
		}
	}
	if e.Definition != "" {
		got := "none"
		if len(ran) == 1 {
			got = ran[0]
		} else if len(ran) > 1 {
			got = strings.Join(ran, ", ")
		}
		if got != e.Definition {
			fail("expect.definition", "expected definition %s, got %s%s", e.Definition, got, whyNot(rep, e.Definition))
		}
	}
	if e.Definitions != nil {
		want, got := slices.Sorted(slices.Values(e.Definitions)), slices.Sorted(slices.Values(ran))
		if !slices.Equal(want, got) {
			fail("expect.definitions", "expected definitions [%s] to run, got [%s]", strings.Join(want, ", "), strings.Join(got, ", "))
		}
	}
	if e.hasRunKeys() {
		switch {
		case len(rep.Runs) == 1:
			checkRun(&rep.Runs[0], e, "expect", fail)
		case len(rep.Runs) == 0:
			fail("expect", "expected a run, but no definition ran")
		default:
			fail("expect", "%d definitions ran (%s): give each one's expectations under runs: {<definition>: {…}}", len(rep.Runs), strings.Join(ran, ", "))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(e.Runs)) {
		sub := e.Runs[name]
		i := slices.IndexFunc(rep.Runs, func(r TestRun) bool { return r.Definition == name })
		if i < 0 {
			fail("expect.runs."+name, "expected definition %s to run, but it did not%s", name, whyNot(rep, name))
			continue
		}
		if sub != nil {
			checkRun(&rep.Runs[i], sub, "expect.runs."+name, fail)
		}
	}
	return fs
}

// whyNot says why a definition did not run, from the report.
func whyNot(rep *TestReport, name string) string {
	for _, d := range rep.Definitions {
		if d.Name == name && !d.Runs {
			return " (" + name + ": " + d.Reason + ")"
		}
	}
	return ""
}

func (e *Expectation) hasRunKeys() bool {
	return e.Disposition != "" || e.MessageContains != "" || e.Steps != nil || e.Skipped != nil || e.Metadata != nil ||
		e.Vars != nil || e.Notifications != nil || e.Logs != nil || e.Actions != nil || e.Refused != nil
}

func checkRun(r *TestRun, e *Expectation, path string, fail func(string, string, ...any)) {
	if e.Disposition != "" && r.Disposition != e.Disposition {
		msg := ""
		if r.Message != "" {
			msg = fmt.Sprintf(" (%s)", r.Message)
		}
		fail(path+".disposition", "expected disposition %s, got %s%s", e.Disposition, r.Disposition, msg)
	}
	if e.MessageContains != "" && !strings.Contains(r.Message, e.MessageContains) {
		fail(path+".message_contains", "expected the message to contain %q, got %q", e.MessageContains, r.Message)
	}
	var taken, skipped []string
	for _, s := range r.Steps {
		if s.Outcome == "Skipped" {
			skipped = append(skipped, s.ID)
		} else {
			taken = append(taken, s.ID)
		}
	}
	if e.Steps != nil && !slices.Equal(e.Steps, taken) {
		fail(path+".steps", "expected steps [%s], got [%s]", strings.Join(e.Steps, ", "), strings.Join(taken, ", "))
	}
	if e.Skipped != nil && !slices.Equal(e.Skipped, skipped) {
		fail(path+".skipped", "expected skipped [%s], got [%s]", strings.Join(e.Skipped, ", "), strings.Join(skipped, ", "))
	}
	for _, k := range slices.Sorted(maps.Keys(e.Metadata)) {
		// A field not set reads as "", as a certificate's metadata does.
		if want, got := e.Metadata[k], r.Metadata[k]; want != got {
			fail(path+".metadata."+k, "expected metadata %s = %q, got %q", k, want, got)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(e.Vars)) {
		got, ok := r.Vars[k]
		if !ok {
			fail(path+".vars."+k, "expected vars.%s = %s, got none set", k, show(e.Vars[k]))
		} else if !sameJSON(e.Vars[k], got) {
			fail(path+".vars."+k, "expected vars.%s = %s, got %s", k, show(e.Vars[k]), show(got))
		}
	}
	if e.Notifications != nil {
		var sent []TestNotification
		for _, n := range r.Notifications {
			if n.Channel != "log" {
				sent = append(sent, n)
			}
		}
		if len(sent) != len(e.Notifications) {
			fail(path+".notifications", "expected %d notifications, got %d: %s", len(e.Notifications), len(sent), summarize(sent))
		}
		for i := range min(len(sent), len(e.Notifications)) {
			if msg := e.Notifications[i].mismatch(&sent[i]); msg != "" {
				fail(fmt.Sprintf("%s.notifications[%d]", path, i), "notification %d: %s", i+1, msg)
			}
		}
	}
	if e.Logs != nil {
		var lines []string
		for _, n := range r.Notifications {
			if n.Channel == "log" {
				lines = append(lines, n.Message)
			}
		}
		j := 0
		for i, want := range e.Logs {
			for j < len(lines) && !strings.Contains(lines[j], want) {
				j++
			}
			if j == len(lines) {
				fail(fmt.Sprintf("%s.logs[%d]", path, i), "expected a log line containing %q (after the lines before it), got lines %q", want, lines)
				break
			}
			j++
		}
	}
	switch {
	case e.Refused == nil:
		for _, msg := range r.Refused {
			fail(path, "a decision was refused: %s (expect it with refused:)", msg)
		}
	case len(e.Refused) != len(r.Refused):
		fail(path+".refused", "expected %d refused decisions, got %d: %q", len(e.Refused), len(r.Refused), r.Refused)
	default:
		for i, want := range e.Refused {
			if !strings.Contains(r.Refused[i], want) {
				fail(fmt.Sprintf("%s.refused[%d]", path, i), "expected refused decision %d to contain %q, got %q", i+1, want, r.Refused[i])
			}
		}
	}
	if e.Actions != nil {
		if len(r.Actions) != len(e.Actions) {
			fail(path+".actions", "expected %d actions, got %d: %s", len(e.Actions), len(r.Actions), summarizeActions(r.Actions))
		}
		for i := range min(len(r.Actions), len(e.Actions)) {
			if msg := e.Actions[i].mismatch(&r.Actions[i]); msg != "" {
				fail(fmt.Sprintf("%s.actions[%d]", path, i), "action %d: %s", i+1, msg)
			}
		}
	}
}

func (x *ExpectedNotification) mismatch(n *TestNotification) string {
	var diffs []string
	diff := func(field string, want, got any) {
		diffs = append(diffs, fmt.Sprintf("expected %s %v, got %v", field, want, got))
	}
	if x.Channel != n.Channel {
		diff("channel", x.Channel, n.Channel)
	}
	if x.Step != "" && x.Step != n.Step {
		diff("step", x.Step, n.Step)
	}
	if x.Event != "" && x.Event != n.Event {
		diff("event", x.Event, n.Event)
	}
	if x.To != nil && !slices.Equal(slices.Sorted(slices.Values(x.To)), slices.Sorted(slices.Values(n.To))) {
		diff("to", x.To, n.To)
	}
	if x.Subject != "" && x.Subject != n.Subject {
		diff("subject", fmt.Sprintf("%q", x.Subject), fmt.Sprintf("%q", n.Subject))
	}
	if x.SubjectContains != "" && !strings.Contains(n.Subject, x.SubjectContains) {
		diff("a subject containing", fmt.Sprintf("%q", x.SubjectContains), fmt.Sprintf("%q", n.Subject))
	}
	if x.BodyContains != "" && !strings.Contains(n.Body, x.BodyContains) {
		diff("a body containing", fmt.Sprintf("%q", x.BodyContains), fmt.Sprintf("%q", n.Body))
	}
	if x.URL != "" && x.URL != n.URL {
		diff("url", x.URL, n.URL)
	}
	return strings.Join(diffs, "; ")
}

func (x *ExpectedAction) mismatch(a *TestAction) string {
	var diffs []string
	if x.Uses != a.Uses {
		diffs = append(diffs, fmt.Sprintf("expected uses %s, got %s", x.Uses, a.Uses))
	}
	if x.Step != "" && x.Step != a.Step {
		diffs = append(diffs, fmt.Sprintf("expected step %s, got %s", x.Step, a.Step))
	}
	if x.Certificate != 0 && x.Certificate != a.Certificate {
		diffs = append(diffs, fmt.Sprintf("expected certificate %d, got %d", x.Certificate, a.Certificate))
	}
	for _, k := range slices.Sorted(maps.Keys(x.With)) {
		got, ok := a.With[k]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("expected with.%s = %s, got none", k, show(x.With[k])))
		} else if !sameJSON(x.With[k], got) {
			diffs = append(diffs, fmt.Sprintf("expected with.%s = %s, got %s", k, show(x.With[k]), show(got)))
		}
	}
	return strings.Join(diffs, "; ")
}

func summarize(ns []TestNotification) string {
	if len(ns) == 0 {
		return "none"
	}
	var parts []string
	for _, n := range ns {
		switch n.Channel {
		case "email":
			parts = append(parts, fmt.Sprintf("email by %s to %v %q", n.Step, n.To, n.Subject))
		default:
			parts = append(parts, fmt.Sprintf("webhook by %s to %s (%s)", n.Step, n.URL, n.Event))
		}
	}
	return strings.Join(parts, "; ")
}

func summarizeActions(as []TestAction) string {
	if len(as) == 0 {
		return "none"
	}
	var parts []string
	for _, a := range as {
		parts = append(parts, fmt.Sprintf("%s (step %s, certificate %d)", a.Uses, a.Step, a.Certificate))
	}
	return strings.Join(parts, "; ")
}

// sameJSON compares values as their JSON (1 and 1.0 are one number).
func sameJSON(a, b any) bool {
	var x, y any
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return reflect.DeepEqual(a, b)
	}
	json.Unmarshal(ja, &x)
	json.Unmarshal(jb, &y)
	return reflect.DeepEqual(x, y)
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

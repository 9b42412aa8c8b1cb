package workflow_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/certflow/certflow/workflow"
)

func TestStepPolicies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		step        []string
		wantStatus  workflow.Status
		wantHistory string
		wantRan     []string
		wantMessage string
		wantOutput  string
		wantAttempt int
	}{
		{
			name:        "a failing step is tried again per retry and then succeeds",
			step:        []string{`    uses: boom`, `    with: {times: 2}`, `    retry: {attempts: 3, backoff: 1ms}`},
			wantStatus:  workflow.StatusComplete,
			wantHistory: "flaky=Completed after=Completed",
			wantRan:     []string{"flaky", "flaky", "flaky", "after"},
			wantAttempt: 3,
		},
		{
			name:        "attempts spent with on_error fail (the default) fails the request",
			step:        []string{`    uses: boom`, `    retry: {attempts: 2, backoff: 1ms}`},
			wantStatus:  workflow.StatusFailed,
			wantHistory: "flaky=Failed",
			wantRan:     []string{"flaky", "flaky"},
			wantMessage: "step flaky: boom: upstream unavailable",
			wantAttempt: 2,
		},
		{
			name:        "on_error deny denies with the error",
			step:        []string{`    uses: boom`, `    on_error: deny`},
			wantStatus:  workflow.StatusRejected,
			wantHistory: "flaky=Denied",
			wantRan:     []string{"flaky"},
			wantMessage: "step flaky failed: boom: upstream unavailable",
			wantAttempt: 1,
		},
		{
			name:        "on_error continue records the failure and goes on",
			step:        []string{`    uses: boom`, `    on_error: continue`},
			wantStatus:  workflow.StatusComplete,
			wantHistory: "flaky=Failed after=Completed",
			wantRan:     []string{"flaky", "after"},
			wantOutput:  "boom: upstream unavailable",
			wantAttempt: 1,
		},
		{
			name:        "a permanent error is not retried",
			step:        []string{`    uses: perm`, `    retry: {attempts: 5, backoff: 1ms}`},
			wantStatus:  workflow.StatusFailed,
			wantHistory: "flaky=Failed",
			wantRan:     []string{"flaky"},
			wantAttempt: 1,
		},
		{
			name:        "a timeout ends an attempt, and counts as its failure",
			step:        []string{`    uses: slow`, `    timeout: 20ms`, `    retry: {attempts: 2, backoff: 1ms}`, `    on_error: continue`},
			wantStatus:  workflow.StatusComplete,
			wantHistory: "flaky=Failed after=Completed",
			wantRan:     []string{"flaky", "flaky", "after"},
			wantOutput:  "timed out after 20ms",
			wantAttempt: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakes{}
			lines := append([]string{`name: p`, `trigger: event:x`, `steps:`, `  - id: flaky`}, tc.step...)
			lines = append(lines, `  - id: after`, `    uses: record`)
			def := mustParse(t, f, yamlLines(lines...))
			e := newEngine()
			inst := started(t, e, def)
			cp := &checkpoints{}
			if err := e.Run(context.Background(), def, newInput(t, "x"), inst, cp.Save); err != nil {
				t.Fatalf("Run = %v; a step's own failure must be settled by its policy, not returned", err)
			}
			if inst.Status != tc.wantStatus {
				t.Fatalf("status %s, want %s", inst.Status, tc.wantStatus)
			}
			if got := outcomes(inst); got != tc.wantHistory {
				t.Fatalf("history %s, want %s", got, tc.wantHistory)
			}
			if got := f.Ran(); !slices.Equal(got, tc.wantRan) {
				t.Fatalf("ran %v, want %v", got, tc.wantRan)
			}
			if tc.wantMessage != "" && inst.Message != tc.wantMessage {
				t.Fatalf("message %q, want %q", inst.Message, tc.wantMessage)
			}
			if got := inst.History[0].Attempts; got != tc.wantAttempt {
				t.Fatalf("attempts recorded %d, want %d", got, tc.wantAttempt)
			}
			if tc.wantOutput != "" {
				msg, _ := inst.Outputs["flaky"]["error"].(string)
				if !strings.Contains(msg, tc.wantOutput) {
					t.Fatalf("steps.flaky.error = %q, want it to contain %q", msg, tc.wantOutput)
				}
			}
		})
	}
}

func TestCancellationHandsTheStepBackToTheQueue(t *testing.T) {
	t.Parallel()
	f := &fakes{}
	def := mustParse(t, f, yamlLines(`name: p`, `trigger: event:x`, `steps:`,
		`  - id: wait`, `    uses: slow`, `    on_error: continue`))
	e := newEngine()
	inst := started(t, e, def)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the worker is shutting down
	err := e.Run(ctx, def, newInput(t, "x"), inst, (&checkpoints{}).Save)
	if err == nil || inst.Status != workflow.StatusRunning || inst.Next != 0 {
		t.Fatalf("Run = %v, status %s, next %d; want an error and the step left to run again", err, inst.Status, inst.Next)
	}
}

func TestStepPolicyLoadErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		step []string
		want string
	}{
		{"attempts below one", []string{`    retry: {attempts: 0}`}, `bad.yaml:6:12: step "s": retry.attempts: 0 is outside 1–20`},
		{"attempts above the bound", []string{`    retry: {attempts: 99}`}, "retry.attempts: 99"},
		{"backoff not a duration", []string{`    retry: {attempts: 2, backoff: soon}`}, `retry.backoff: "soon"`},
		{"timeout not a duration", []string{`    timeout: forever`}, `bad.yaml:6:14: step "s": timeout: "forever"`},
		{"unknown on_error", []string{`    on_error: ignore`}, `on_error: "ignore" (want fail, deny or continue)`},
		{"unknown key in retry", []string{`    retry: {attempts: 2, jitter: 1s}`}, `unknown key "jitter"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lines := append([]string{`name: p`, `trigger: event:x`, `steps:`, `  - id: s`, `    uses: record`}, tc.step...)
			_, err := workflow.Parse("bad.yaml", yamlLines(lines...), (&fakes{}).Catalog())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestStepOutputReferencesAreCheckedAtLoad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"a later step", []string{`  - id: a`, `    uses: record`, `    if: steps.b.x == 1`, `  - id: b`, `    uses: record`},
			`bad.yaml:6:9: step "a": steps.b: that step runs later`},
		{"a step that does not exist", []string{`  - id: a`, `    uses: record`, `    if: steps["zz"].x == 1`},
			`steps.zz: no step has that id`},
		{"its own outputs", []string{`  - id: a`, `    uses: record`, `    if: steps.a.x == 1`},
			`steps.a: a step cannot read its own outputs`},
		{"in match", []string{`  - id: a`, `    uses: record`},
			`match: runs before any step`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			head := []string{`name: p`, `trigger: event:x`, `steps:`}
			if tc.name == "in match" {
				head = []string{`name: p`, `trigger: event:x`, `match: steps.a.x == 1`, `steps:`}
			}
			_, err := workflow.Parse("bad.yaml", yamlLines(append(head, tc.lines...)...), (&fakes{}).Catalog())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// An earlier step's outputs are fine, with ?. for a skipped one.
	_, err := workflow.Parse("ok.yaml", yamlLines(`name: p`, `trigger: event:x`, `steps:`,
		`  - id: a`, `    uses: record`, `  - id: b`, `    uses: record`, `    if: steps.a?.x == nil`), (&fakes{}).Catalog())
	if err != nil {
		t.Fatal(err)
	}
}

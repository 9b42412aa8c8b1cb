package workflow_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/certflow/certflow/workflow"
)

// ca is a test Catalog step that waits for a certificate authority the
// first `looks` times it runs, then completes.
func authorityCatalog(f *fakes, looks int) workflow.Catalog {
	c := f.Catalog()
	n := 0
	c["ca"] = func(spec *workflow.Spec) (workflow.Step, error) {
		return stepFunc(func(_ context.Context, run *workflow.Run) (workflow.Result, error) {
			f.record(run.StepID)
			n++
			if n <= looks {
				return workflow.Result{Suspend: &workflow.Wait{
					Kind: workflow.WaitAuthority, Authority: "Ext", Status: "processing", Deadline: time.Now().Add(time.Minute),
				}}, nil
			}
			return workflow.Result{Outputs: map[string]any{"looks": n}}, nil
		}), nil
	}
	return c
}

// authorityDef is a definition of the given steps whose step "ca" waits
// for its authority looks times (authorityCatalog).
func authorityDef(t *testing.T, f *fakes, looks int, steps ...string) *workflow.Definition {
	t.Helper()
	def, err := workflow.Parse("ext.yaml", yamlLines(append([]string{`name: ext`, `trigger: event:x`, `steps:`}, steps...)...), authorityCatalog(f, looks))
	if err != nil {
		t.Fatal(err)
	}
	return def
}

// An authority wait runs its step again when its time comes (the timeout
// marks it due), keeps one timeline entry for the whole wait, counts the
// looks in its stage (each look's timer is its own task), and no person
// can decide it.
func TestAnAuthorityWaitRunsItsStepAgainWhenDue(t *testing.T) {
	t.Parallel()
	f := &fakes{}
	def := authorityDef(t, f, 2, `  - id: before`, `    uses: record`, `  - id: issue`, `    uses: ca`, `  - id: after`, `    uses: record`)
	e := newEngine()
	inst := started(t, e, def)
	cp := &checkpoints{}
	in := newInput(t, "www.example.com")
	stages := []int{}
	for look := 1; look <= 2; look++ {
		if err := e.Run(context.Background(), def, in, inst, cp.Save); err != nil {
			t.Fatalf("run %d: %v", look, err)
		}
		w := inst.Wait
		if inst.Status != workflow.StatusSuspended || !w.ForAuthority() || w.Authority != "Ext" || w.Status != "processing" {
			t.Fatalf("look %d: instance %s, wait %+v; want suspended for authority Ext", look, inst.Status, w)
		}
		stages = append(stages, w.Stage)
		// Nobody decides it: not an approver, not admin (who holds every role).
		admin := workflow.Decider{Name: "admin", Has: func(...string) bool { return true }}
		if _, _, err := inst.Decide("issue", "issue.ApprovalStatus", admin, "alice", true, "", time.Now()); !errors.Is(err, workflow.ErrNotApproval) {
			t.Fatalf("Decide on an authority wait = %v, want ErrNotApproval", err)
		}
		// Not due yet: a run does nothing.
		if err := e.Run(context.Background(), def, in, inst, cp.Save); err != nil || inst.Status != workflow.StatusSuspended {
			t.Fatalf("run before due: %v, %s", err, inst.Status)
		}
		if esc, settled := inst.TimeOut("issue", w.Stage+1, time.Now()); esc || settled {
			t.Fatalf("a timer for another look settled the wait")
		}
		if esc, settled := inst.TimeOut("issue", w.Stage, time.Now()); esc || !settled || inst.Wait.Verdict != workflow.VerdictDue {
			t.Fatalf("TimeOut = %v %v, verdict %q; want settled, Due", esc, settled, inst.Wait.Verdict)
		}
		if len(inst.Decisions) != 0 {
			t.Fatalf("a look at the CA was recorded as a decision: %+v", inst.Decisions)
		}
	}
	if err := e.Run(context.Background(), def, in, inst, cp.Save); err != nil {
		t.Fatal(err)
	}
	if inst.Status != workflow.StatusComplete {
		t.Fatalf("status %s, want Complete", inst.Status)
	}
	if got := f.Ran(); !slices.Equal(got, []string{"before", "issue", "issue", "issue", "after"}) {
		t.Errorf("ran %v: want before once, issue three times, after once", got)
	}
	if stages[1] <= stages[0] {
		t.Errorf("stages %v: each look needs a stage of its own (its timer's task id)", stages)
	}
	if got := outcomes(inst); got != "before=Completed issue=Completed after=Completed" {
		t.Errorf("history %s: want one entry per step, the wait's folded into the step's", got)
	}
}

// An administrator's stop ends an authority wait: the request is rejected.
func TestAStoppedAuthorityWaitIsRejected(t *testing.T) {
	t.Parallel()
	f := &fakes{}
	def := authorityDef(t, f, 5, `  - id: issue`, `    uses: ca`)
	e := newEngine()
	inst := started(t, e, def)
	cp := &checkpoints{}
	in := newInput(t, "www.example.com")
	if err := e.Run(context.Background(), def, in, inst, cp.Save); err != nil {
		t.Fatal(err)
	}
	if err := inst.Stop("admin", "CA retired", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background(), def, in, inst, cp.Save); err != nil {
		t.Fatal(err)
	}
	if inst.Status != workflow.StatusRejected || inst.Message != "stopped by admin: CA retired" {
		t.Errorf("after stop: %s %q", inst.Status, inst.Message)
	}
	if got := f.Ran(); len(got) != 1 {
		t.Errorf("the step ran %d times; a stopped wait must not look again", len(got))
	}
}

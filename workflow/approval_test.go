package workflow_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/workflow"
)

// person is a decider holding roles (admin holds every role).
func person(name string, roles ...string) workflow.Decider {
	return workflow.Decider{Name: name, Has: func(want ...string) bool {
		if slices.Contains(roles, "admin") {
			return true
		}
		for _, r := range want {
			if slices.Contains(roles, r) {
				return true
			}
		}
		return false
	}}
}

var gated = yamlLines(
	`name: gated`,
	`trigger: enrollment`,
	`steps:`,
	`  - {id: before, uses: record}`,
	`  - {id: approval, uses: wait, with: {roles: [approver], quorum: 2}}`,
	`  - {id: issue, uses: issue}`,
	`  - {id: after, uses: record}`,
)

// suspended runs the gated definition up to its approval step.
func suspended(t *testing.T) (*fakes, *workflow.Engine, *workflow.Definition, *workflow.Instance, *checkpoints) {
	t.Helper()
	f := &fakes{}
	def := mustParse(t, f, gated)
	e := newEngine()
	inst := started(t, e, def)
	cp := &checkpoints{}
	if err := e.Run(context.Background(), def, newInput(t, "x"), inst, cp.Save); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if inst.Status != workflow.StatusSuspended || inst.Wait == nil || inst.Wait.Step != "approval" || inst.Next != 1 {
		t.Fatalf("after Run: status %s, wait %+v, next %d; want Suspended at approval", inst.Status, inst.Wait, inst.Next)
	}
	return f, e, def, inst, cp
}

func TestASuspendedInstanceWaitsWithoutRunningLaterSteps(t *testing.T) {
	t.Parallel()
	f, e, def, inst, cp := suspended(t)
	if got := f.Ran(); !slices.Equal(got, []string{"before", "approval"}) {
		t.Errorf("ran %v, want before and approval only", got)
	}
	if got := outcomes(inst); got != "before=Completed approval=Waiting" {
		t.Errorf("history %q", got)
	}
	if n := len(cp.Saved()); n != 2 || cp.Saved()[1].Status != workflow.StatusSuspended {
		t.Errorf("checkpoints %v, want two, the last Suspended", cp.Saved())
	}
	w := inst.Wait
	if !slices.Equal(w.Roles, []string{"approver"}) || w.Quorum != 2 || w.Since.IsZero() || w.Verdict != "" {
		t.Errorf("wait %+v: want the step's rules, a start time and no verdict", w)
	}
	// Run again before any decision (a duplicate task): nothing happens.
	if err := e.Run(context.Background(), def, newInput(t, "x"), inst, cp.Save); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	if len(f.Ran()) != 2 || len(cp.Saved()) != 2 {
		t.Errorf("a run without a decision did something: ran %v, saved %d", f.Ran(), len(cp.Saved()))
	}
}

func TestQuorumCountsDistinctApproversAndResumes(t *testing.T) {
	t.Parallel()
	f, e, def, inst, cp := suspended(t)
	now := time.Now()
	bob := person("bob", "approver")
	if rec, settled, err := inst.Decide("approval", "approval.ApprovalStatus", bob, "carol", true, "ok", now); !rec || settled || err != nil {
		t.Fatalf("bob's approval = %v %v %v, want recorded, not settled", rec, settled, err)
	}
	if rec, settled, err := inst.Decide("approval", "approval.ApprovalStatus", bob, "carol", true, "again", now); rec || settled || err != nil {
		t.Fatalf("bob's second approval = %v %v %v, want not recorded: counted once", rec, settled, err)
	}
	if len(inst.Decisions) != 1 || !slices.Equal(inst.Wait.Approvers, []string{"bob"}) {
		t.Fatalf("decisions %+v approvers %v, want bob once", inst.Decisions, inst.Wait.Approvers)
	}
	if rec, settled, err := inst.Decide("approval", "approval.ApprovalStatus", person("dave", "approver"), "carol", true, "", now); !rec || !settled || err != nil {
		t.Fatalf("dave's approval = %v %v %v, want it to settle the wait", rec, settled, err)
	}
	if _, _, err := inst.Decide("approval", "approval.ApprovalStatus", person("erin", "approver"), "carol", true, "", now); !errors.Is(err, workflow.ErrNotWaiting) {
		t.Errorf("a decision after the quorum = %v, want ErrNotWaiting", err)
	}
	if err := e.Run(context.Background(), def, newInput(t, "x"), inst, cp.Save); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if inst.Status != workflow.StatusComplete || inst.Wait != nil {
		t.Fatalf("status %s wait %+v, want Complete with the wait cleared", inst.Status, inst.Wait)
	}
	if got := f.Ran(); !slices.Equal(got, []string{"before", "approval", "resume:approval", "issue", "after"}) {
		t.Errorf("ran %v", got)
	}
	if got := outcomes(inst); got != "before=Completed approval=Waiting approval=Completed issue=Completed after=Completed" {
		t.Errorf("history %q", got)
	}
	if got := inst.Outputs["approval"]["approvers"]; !slices.Equal(got.([]string), []string{"bob", "dave"}) {
		t.Errorf("steps.approval.approvers = %v", got)
	}
	if d := inst.Decisions; len(d) != 2 || d[0].By != "bob" || d[0].Comment != "ok" || d[0].Signal != "approval.ApprovalStatus" || d[1].By != "dave" {
		t.Errorf("decision record %+v", d)
	}
}

func TestOneDenialRejects(t *testing.T) {
	t.Parallel()
	f, e, def, inst, cp := suspended(t)
	if _, _, err := inst.Decide("approval", "s", person("bob", "approver"), "carol", false, " ", time.Now()); !errors.Is(err, workflow.ErrNoComment) {
		t.Fatalf("a denial without a comment = %v, want ErrNoComment", err)
	}
	if len(inst.Decisions) != 0 || inst.Wait.Verdict != "" {
		t.Fatalf("a refused denial changed the instance: %+v", inst.Wait)
	}
	if _, settled, err := inst.Decide("approval", "s", person("bob", "approver"), "carol", false, "wrong team", time.Now()); !settled || err != nil {
		t.Fatalf("denial = %v %v", settled, err)
	}
	if err := e.Run(context.Background(), def, newInput(t, "x"), inst, cp.Save); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if inst.Status != workflow.StatusRejected || inst.Message != "denied by bob: wrong team" {
		t.Errorf("status %s message %q", inst.Status, inst.Message)
	}
	if slices.Contains(f.Ran(), "issue") || slices.Contains(f.Ran(), "after") {
		t.Errorf("steps after a denial ran: %v", f.Ran())
	}
}

func TestWhoMayDecide(t *testing.T) {
	t.Parallel()
	_, _, _, inst, _ := suspended(t)
	tests := []struct {
		name string
		who  workflow.Decider
		step string
		want error
	}{
		{"an approver", person("bob", "approver"), "approval", nil},
		{"an admin", person("root", "admin"), "approval", nil},
		{"a requester outside the roles", person("alice", "requester"), "approval", workflow.ErrNotApprover},
		{"the requester, even holding the role", person("carol", "approver"), "approval", workflow.ErrSelfApproval},
		{"a step the instance does not wait at", person("bob", "approver"), "before", workflow.ErrNotWaiting},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := inst.MayDecide(tt.step, tt.who, "carol"); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("MayDecide = %v, want %v", err, tt.want)
			}
		})
	}
	inst.Wait.AllowSelfApproval = true
	if err := inst.MayDecide("approval", person("carol", "approver"), "carol"); err != nil {
		t.Errorf("with allow_self_approval the requester holding the role may decide: %v", err)
	}
	running := &workflow.Instance{Status: workflow.StatusRunning}
	if err := running.MayDecide("approval", person("bob", "approver"), "carol"); !errors.Is(err, workflow.ErrNotWaiting) {
		t.Errorf("deciding a running instance = %v, want ErrNotWaiting", err)
	}
}

func TestTimeoutDeniesOrEscalatesOnceAndLosesToAnEarlierDecision(t *testing.T) {
	t.Parallel()
	now := time.Now()
	t.Run("deny", func(t *testing.T) {
		_, e, def, inst, cp := suspended(t)
		if esc, settled := inst.TimeOut("approval", 0, now); esc || !settled {
			t.Fatalf("TimeOut = %v %v, want settled", esc, settled)
		}
		if esc, settled := inst.TimeOut("approval", 0, now); esc || settled {
			t.Errorf("a second timeout did something")
		}
		if err := e.Run(context.Background(), def, newInput(t, "x"), inst, cp.Save); err != nil {
			t.Fatal(err)
		}
		if inst.Status != workflow.StatusRejected || !strings.Contains(inst.Message, "no approval decision within the timeout") {
			t.Errorf("status %s message %q", inst.Status, inst.Message)
		}
		if d := inst.Decisions; len(d) != 1 || d[0].Kind != workflow.DecisionTimeout {
			t.Errorf("decisions %+v, want the timeout", d)
		}
	})
	t.Run("escalate", func(t *testing.T) {
		_, _, _, inst, _ := suspended(t)
		inst.Wait.OnTimeout = workflow.OnTimeoutEscalate
		inst.Wait.Escalation = &workflow.Escalation{Roles: []string{"pki-leads"}, Timeout: time.Hour}
		if _, _, err := inst.Decide("approval", "s", person("bob", "approver"), "carol", true, "", now); err != nil {
			t.Fatal(err)
		}
		if esc, settled := inst.TimeOut("approval", 0, now); !esc || settled {
			t.Fatalf("TimeOut = %v %v, want escalated", esc, settled)
		}
		w := inst.Wait
		if w.Stage != 1 || !slices.Equal(w.Roles, []string{"pki-leads"}) || len(w.Approvers) != 0 || !w.Deadline.Equal(now.Add(time.Hour)) || w.OnTimeout != workflow.OnTimeoutDeny {
			t.Fatalf("escalated wait %+v", w)
		}
		if esc, settled := inst.TimeOut("approval", 0, now); esc || settled {
			t.Errorf("the first stage's timeout fired again after the escalation")
		}
		if err := inst.MayDecide("approval", person("bob", "approver"), "carol"); !errors.Is(err, workflow.ErrNotApprover) {
			t.Errorf("the first stage's approver after escalation: %v, want ErrNotApprover", err)
		}
		if _, settled, err := inst.Decide("approval", "s", person("erin", "pki-leads"), "carol", true, "", now); err != nil || settled {
			t.Errorf("erin's approval = %v %v: quorum 2 still needs two in the new stage", settled, err)
		}
		if esc, settled := inst.TimeOut("approval", 1, now); esc || !settled {
			t.Errorf("the escalated stage's timeout = %v %v, want it to deny", esc, settled)
		}
	})
	t.Run("a decision after the deadline, before the timeout task ran", func(t *testing.T) {
		_, _, _, inst, _ := suspended(t)
		inst.Wait.Deadline = now
		if _, _, err := inst.Decide("approval", "s", person("bob", "approver"), "carol", true, "", now); !errors.Is(err, workflow.ErrNotWaiting) || len(inst.Decisions) != 0 {
			t.Errorf("a late decision = %v, decisions %v; want ErrNotWaiting and nothing recorded", err, inst.Decisions)
		}
		if _, settled := inst.TimeOut("approval", 0, now); !settled {
			t.Error("the late timeout did not settle the wait")
		}
	})
	t.Run("a decision first", func(t *testing.T) {
		_, _, _, inst, _ := suspended(t)
		inst.Wait.Quorum = 1
		if _, settled, _ := inst.Decide("approval", "s", person("bob", "approver"), "carol", true, "", now); !settled {
			t.Fatal("not settled")
		}
		if esc, settled := inst.TimeOut("approval", 0, now); esc || settled || inst.Wait.Verdict != workflow.VerdictApproved {
			t.Errorf("the timeout overrode a decision: %v %v, verdict %s", esc, settled, inst.Wait.Verdict)
		}
	})
}

func TestStopAndRestart(t *testing.T) {
	t.Parallel()
	t.Run("stop a suspended instance", func(t *testing.T) {
		f, e, def, inst, cp := suspended(t)
		if err := inst.Stop("root", "not needed", time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := e.Run(context.Background(), def, newInput(t, "x"), inst, cp.Save); err != nil {
			t.Fatal(err)
		}
		if inst.Status != workflow.StatusRejected || inst.Message != "stopped by root: not needed" || slices.Contains(f.Ran(), "issue") {
			t.Errorf("status %s message %q ran %v", inst.Status, inst.Message, f.Ran())
		}
		if err := inst.Stop("root", "", time.Now()); !errors.Is(err, workflow.ErrNotWaiting) {
			t.Errorf("stopping an ended instance = %v, want ErrNotWaiting", err)
		}
	})
	t.Run("a running instance cannot be stopped", func(t *testing.T) {
		inst := &workflow.Instance{Status: workflow.StatusRunning}
		if err := inst.Stop("root", "", time.Now()); !errors.Is(err, workflow.ErrNotWaiting) || len(inst.Decisions) != 0 {
			t.Errorf("Stop of a running instance = %v, decisions %v; want ErrNotWaiting and nothing recorded", err, inst.Decisions)
		}
	})
	t.Run("restart", func(t *testing.T) {
		inst := &workflow.Instance{Status: workflow.StatusComplete}
		if err := inst.Restart(); !errors.Is(err, workflow.ErrTransition) {
			t.Errorf("restart of a complete instance = %v, want ErrTransition", err)
		}
		inst = &workflow.Instance{Status: workflow.StatusFailed, Definition: "d", Next: 2, Message: "boom"}
		if err := inst.Restart(); err != nil || inst.Status != workflow.StatusRunning || inst.Next != 2 || inst.Message != "" {
			t.Errorf("restart = %v: %+v, want Running at the failed step", err, inst)
		}
		inst = &workflow.Instance{Status: workflow.StatusFailed, Message: "no definition matched"}
		if err := inst.Restart(); err != nil || inst.Status != "" || inst.Next != 0 {
			t.Errorf("restart before start = %v: %+v, want a fresh start", err, inst)
		}
	})
}

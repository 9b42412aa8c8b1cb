package workflow

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Wait is what a suspended instance waits for: people's decisions on one
// step. The rules the decisions are judged by are copied from the step
// when it suspends, so the API and the timeout can judge a decision
// without the definition, and a reload cannot change the rules of a
// request already waiting.
type Wait struct {
	// Kind is what the instance waits for: people's decision (WaitApproval,
	// the zero value) or a certificate authority's answer (WaitAuthority).
	Kind string `json:"Kind,omitempty"`
	Step string `json:"Step"`
	// Stage is 0, and 1 once an on_timeout: escalate handed the decision on.
	Stage int `json:"Stage"`
	// Roles may decide (admin always may).
	Roles []string `json:"Roles"`
	// Quorum is how many distinct approvers the request needs.
	Quorum            int       `json:"Quorum"`
	AllowSelfApproval bool      `json:"AllowSelfApproval,omitempty"`
	Since             time.Time `json:"Since"`
	// Deadline is when the timeout fires; zero: never.
	Deadline  time.Time `json:"Deadline,omitzero"`
	OnTimeout string    `json:"OnTimeout,omitempty"`
	// Escalation is the next stage, for on_timeout: escalate.
	Escalation *Escalation `json:"Escalation,omitempty"`
	// Approvers are the distinct approvers of this stage so far.
	Approvers []string `json:"Approvers,omitempty"`
	// Verdict is empty while the wait is open; once set, the next run of
	// the request resumes (approved) or rejects (anything else).
	Verdict Verdict `json:"Verdict,omitempty"`
	Message string  `json:"Message,omitempty"`
	// Authority and Status, for an authority wait: the CA asked and its
	// word for where the order stands (ACME: pending, processing, …).
	// Its Stage counts the looks at the order; Deadline is the next.
	Authority string `json:"Authority,omitempty"`
	Status    string `json:"Status,omitempty"`
}

// Wait kinds.
const (
	WaitApproval  = ""
	WaitAuthority = "authority"
)

// ForAuthority reports whether the wait is for a certificate authority's
// answer, which nobody decides: the step looks again at its Deadline.
func (w *Wait) ForAuthority() bool { return w != nil && w.Kind == WaitAuthority }

// Escalation is who decides after a timeout, and for how long.
type Escalation struct {
	Roles   []string      `json:"Roles"`
	Timeout time.Duration `json:"Timeout"`
}

// Verdict is how a wait ended.
type Verdict string

const (
	VerdictApproved Verdict = "Approved"
	VerdictDenied   Verdict = "Denied"
	VerdictTimedOut Verdict = "TimedOut"
	VerdictStopped  Verdict = "Stopped"
	// VerdictDue: an authority wait's time to look again came; the step
	// runs again.
	VerdictDue Verdict = "Due"
)

// On-timeout policies of an approval.
const (
	OnTimeoutDeny     = "deny"
	OnTimeoutEscalate = "escalate"
)

// Decision is one entry of an instance's decision record: a person's
// signal, a timeout, an escalation or an administrator's stop.
type Decision struct {
	Step     string    `json:"Step"`
	Stage    int       `json:"Stage"`
	Kind     string    `json:"Kind"` // signal, timeout, escalation, stop
	Signal   string    `json:"Signal,omitempty"`
	By       string    `json:"By,omitempty"`
	Approved bool      `json:"Approved"`
	Comment  string    `json:"Comment,omitempty"`
	At       time.Time `json:"At"`
}

// Decision kinds.
const (
	DecisionSignal     = "signal"
	DecisionTimeout    = "timeout"
	DecisionEscalation = "escalation"
	DecisionStop       = "stop"
)

// SignalSuffix ends the key of an approval step's signal:
// "<stepId>.ApprovalStatus", as Keyfactor names it.
const SignalSuffix = ".ApprovalStatus"

// Errors a decision is refused with; callers branch on them.
var (
	// ErrNotWaiting: the instance is not suspended at that step (not yet,
	// no more, or already decided).
	ErrNotWaiting = errors.New("not waiting for a decision at that step")
	// ErrNotApprover: the caller holds none of the step's roles.
	ErrNotApprover = errors.New("not among the step's approvers")
	// ErrSelfApproval: four-eyes: the requester decides their own request.
	ErrSelfApproval = errors.New("the requester may not decide their own request")
	// ErrNoComment: a denial must say why.
	ErrNoComment = errors.New("a denial needs a comment")
	// ErrNotApproval: the instance waits for a certificate authority, which
	// no signal decides (an administrator may stop it).
	ErrNotApproval = errors.New("waiting for its certificate authority, not for a decision")
)

// Decider is who is deciding: their name and a role check that knows
// admin holds every role.
type Decider struct {
	Name string
	Has  func(roles ...string) bool
}

// Open reports whether the instance waits for a decision at step now.
func (in *Instance) Open(step string) bool {
	return in.Status == StatusSuspended && in.Wait != nil && in.Wait.Step == step && in.Wait.Verdict == ""
}

// MayDecide reports why who may not decide the wait at step (nil: they may).
func (in *Instance) MayDecide(step string, who Decider, requester string) error {
	if !in.Open(step) {
		return ErrNotWaiting
	}
	w := in.Wait
	if w.ForAuthority() {
		return ErrNotApproval
	}
	if !who.Has(w.Roles...) {
		return fmt.Errorf("%w (%s)", ErrNotApprover, strings.Join(w.Roles, ", "))
	}
	if who.Name == requester && !w.AllowSelfApproval {
		return ErrSelfApproval
	}
	return nil
}

// Decide records who's decision on the wait at step. A denial settles the
// wait at once; approvals settle it when Quorum distinct approvers agree.
// The same approver approving again counts once and is not recorded again:
// then recorded is false and nothing changed.
func (in *Instance) Decide(step, signal string, who Decider, requester string, approved bool, comment string, now time.Time) (recorded, settled bool, err error) {
	if err := in.MayDecide(step, who, requester); err != nil {
		return false, false, err
	}
	w := in.Wait
	if !w.Deadline.IsZero() && !now.Before(w.Deadline) {
		// The timeout task may be seconds late (asynq moves due tasks
		// every few seconds); the deadline, not the task, is the rule.
		return false, false, fmt.Errorf("%w: its timeout passed at %s", ErrNotWaiting, w.Deadline.UTC().Format(time.RFC3339))
	}
	if !approved && strings.TrimSpace(comment) == "" {
		return false, false, ErrNoComment
	}
	if approved && slices.Contains(w.Approvers, who.Name) {
		return false, false, nil
	}
	in.Decisions = append(in.Decisions, Decision{
		Step: step, Stage: w.Stage, Kind: DecisionSignal, Signal: signal, By: who.Name,
		Approved: approved, Comment: comment, At: now,
	})
	if !approved {
		w.Verdict, w.Message = VerdictDenied, fmt.Sprintf("denied by %s: %s", who.Name, comment)
		return true, true, nil
	}
	w.Approvers = append(w.Approvers, who.Name)
	if len(w.Approvers) >= max(w.Quorum, 1) {
		w.Verdict = VerdictApproved
		return true, true, nil
	}
	return true, false, nil
}

// TimeOut applies the wait's on_timeout at step and stage: escalate to the
// next stage (reported by escalated, with the new deadline on the wait), or
// settle it as timed out. A wait no longer open at that stage (decided
// first, or escalated already) is left alone: then both are false.
func (in *Instance) TimeOut(step string, stage int, now time.Time) (escalated, settled bool) {
	if !in.Open(step) || in.Wait.Stage != stage {
		return false, false
	}
	w := in.Wait
	if w.ForAuthority() {
		// Time to look at the order again: no decision, nothing recorded.
		w.Verdict = VerdictDue
		return false, true
	}
	if w.OnTimeout == OnTimeoutEscalate && w.Escalation != nil {
		in.Decisions = append(in.Decisions, Decision{Step: step, Stage: stage, Kind: DecisionEscalation, At: now,
			Comment: fmt.Sprintf("no decision within the timeout; handed to %s", strings.Join(w.Escalation.Roles, ", "))})
		w.Stage++
		w.Roles, w.Approvers, w.Since = w.Escalation.Roles, nil, now
		w.Deadline = now.Add(w.Escalation.Timeout)
		w.OnTimeout, w.Escalation = OnTimeoutDeny, nil
		return true, false
	}
	in.Decisions = append(in.Decisions, Decision{Step: step, Stage: stage, Kind: DecisionTimeout, At: now})
	w.Verdict = VerdictTimedOut
	w.Message = fmt.Sprintf("no approval decision within the timeout (waited since %s)", w.Since.UTC().Format(time.RFC3339))
	return false, true
}

// Stop rejects a suspended instance (an administrator's stop): its wait
// ends with the Stopped verdict and the next run rejects it. A running
// instance cannot be stopped: a step in flight (the CA's, say) may already
// have acted, so it finishes; it can be stopped when it next waits.
func (in *Instance) Stop(by, comment string, now time.Time) error {
	if in.Status != StatusSuspended || in.Wait == nil || in.Wait.Verdict != "" {
		return ErrNotWaiting
	}
	msg := "stopped by " + by
	if comment != "" {
		msg += ": " + comment
	}
	in.Wait.Verdict, in.Wait.Message = VerdictStopped, msg
	in.Decisions = append(in.Decisions, Decision{Step: in.Wait.Step, Stage: in.Wait.Stage, Kind: DecisionStop, By: by, Comment: comment, At: now})
	return nil
}

// Restart moves a failed instance back to running, to resume at the step
// that failed (or from the start, if it failed before it began).
func (in *Instance) Restart() error {
	if in.Status != StatusFailed {
		return fmt.Errorf("%w: restart an instance that is %q (only a failed one can be)", ErrTransition, in.Status)
	}
	in.Message = ""
	if in.Definition == "" {
		in.Status, in.Next = "", 0
		return nil
	}
	return in.To(StatusRunning)
}

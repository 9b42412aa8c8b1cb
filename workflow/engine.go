package workflow

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"
)

// Status is a workflow instance's state, in Keyfactor's names.
type Status string

const (
	StatusRunning   Status = "Running"
	StatusSuspended Status = "Suspended"
	StatusComplete  Status = "Complete"
	StatusRejected  Status = "Rejected"
	StatusFailed    Status = "Failed"
)

// transitions is the instance state machine: the only moves allowed.
var transitions = map[Status][]Status{
	"":              {StatusRunning},
	StatusRunning:   {StatusRunning, StatusSuspended, StatusComplete, StatusRejected, StatusFailed},
	StatusSuspended: {StatusRunning, StatusRejected, StatusFailed},
	// An administrator's restart of a failed instance (Instance.Restart).
	StatusFailed: {StatusRunning},
}

// Terminal reports whether no step will run for the instance any more.
func (s Status) Terminal() bool {
	return s == StatusComplete || s == StatusRejected || s == StatusFailed
}

// ErrTransition marks an illegal state change: a bug, never overwritten.
var ErrTransition = errors.New("illegal workflow transition")

// ErrSaved, wrapped in a Checkpoint's error, says the instance was written
// all the same: only a write that follows it failed. The engine treats the
// checkpoint as written (Result.AfterSave effects run) and returns the error.
var ErrSaved = errors.New("checkpoint written")

// Instance is one run of a definition for one request: the checkpoint the
// engine persists after every step and resumes from.
type Instance struct {
	ID         string `json:"ID"`
	Definition string `json:"Definition,omitempty"`
	Version    string `json:"Version,omitempty"`
	Status     Status `json:"Status,omitempty"`
	// Next is the index of the step to run next.
	Next        int                       `json:"Next"`
	History     []StepRecord              `json:"History,omitempty"`
	Outputs     map[string]map[string]any `json:"Outputs,omitempty"`
	Vars        map[string]any            `json:"Vars,omitempty"`
	Metadata    map[string]string         `json:"Metadata,omitempty"`
	Certificate *Certificate              `json:"Certificate,omitempty"`
	// Message explains a Rejected or Failed status.
	Message string    `json:"Message,omitempty"`
	Started time.Time `json:"Started,omitzero"`
	// Wait is what a Suspended instance waits for.
	Wait *Wait `json:"Wait,omitempty"`
	// Decisions records every approval decision, timeout, escalation and
	// stop, in order.
	Decisions []Decision `json:"Decisions,omitempty"`
	// waited is the timeline entry of an authority wait that just came
	// due, taken off History: the step's next entry replaces it (fold).
	waited *StepRecord
	// Unsaved holds the steps' Result.Record values that no checkpoint
	// has written yet. A Checkpoint writes them with the instance, in one
	// atomic step, and empties it.
	Unsaved []any `json:"-"`
}

// StepRecord is one entry of an instance's timeline.
type StepRecord struct {
	ID       string    `json:"StepId"`
	Uses     string    `json:"Uses"`
	Outcome  Outcome   `json:"Outcome"`
	Message  string    `json:"Message,omitempty"`
	Attempts int       `json:"Attempts,omitempty"`
	Started  time.Time `json:"Started"`
	Finished time.Time `json:"Finished"`
}

// Outcome is what became of one step.
type Outcome string

const (
	OutcomeDone    Outcome = "Completed"
	OutcomeSkipped Outcome = "Skipped"
	OutcomeDenied  Outcome = "Denied"
	OutcomeFailed  Outcome = "Failed"
	OutcomeError   Outcome = "Error"   // postponed: the queue will run the step again
	OutcomeWaiting Outcome = "Waiting" // suspended for people's decisions
)

// To moves the instance to status next, or reports ErrTransition.
func (in *Instance) To(next Status) error {
	for _, s := range transitions[in.Status] {
		if s == next {
			in.Status = next
			return nil
		}
	}
	return fmt.Errorf("%w: %q → %q", ErrTransition, in.Status, next)
}

// Input is the request a workflow runs for.
type Input struct {
	Trigger   string
	Request   Request
	CSR       *x509.CertificateRequest
	csrEnv    CSR
	SANs      SANs
	Requester Requester
	// IssueClaim, if set, is the caller's claim on issuing for this
	// request, for the issue step (see the IssueClaim type).
	IssueClaim IssueClaim
	// Event is what started an event-triggered run (zero otherwise), and
	// Certificate the certificate it concerns (nil: none), as
	// expressions see them (event, certificate).
	Event       Event
	Certificate *Certificate
	// EventDepth is the request's own store.Request.EventDepth: for a
	// request an event-triggered run made, one more than that run's
	// event's Depth (0 otherwise). Steps that record an effect with an
	// event of its own (the revoke step) pass it on (Run.EventDepth).
	EventDepth int
	// RunID is an event-triggered run's own request id (Run.RequestID);
	// Request is then the request the event concerns.
	RunID int64
}

// NewInput prepares a request for the engine; addCN applies RFC 2818's
// "CN becomes a DNS SAN" to the merged SANs.
func NewInput(trigger string, req Request, csr *x509.CertificateRequest, requester Requester, addCN bool) *Input {
	c := NewCSR(csr)
	return &Input{
		Trigger: trigger, Request: req, CSR: csr, csrEnv: c,
		SANs:      MergeSANs(c, req.SANs, addCN),
		Requester: requester,
	}
}

// Env builds the expression environment for the instance's current state.
func (in *Input) Env(inst *Instance, now time.Time) *Env {
	env := &Env{
		Request: in.Request, CSR: in.csrEnv, SANs: in.SANs, Requester: in.Requester,
		Steps: inst.Outputs, Vars: inst.Vars, Now: now, Event: in.Event,
	}
	if env.Steps == nil {
		env.Steps = map[string]map[string]any{}
	}
	if env.Vars == nil {
		env.Vars = map[string]any{}
	}
	switch {
	case inst.Certificate != nil:
		env.Certificate = *inst.Certificate
	case in.Certificate != nil:
		env.Certificate = *in.Certificate
	}
	return env
}

// run is what step sd gets to work with, in env.
func (in *Input) run(inst *Instance, sd *StepDef, env *Env, log *slog.Logger) *Run {
	return &Run{
		RequestID: cmp.Or(in.RunID, in.Request.ID), InstanceID: inst.ID, StepID: sd.ID,
		Env: env, CSR: in.CSR, Log: log, IssueClaim: in.IssueClaim,
		EventDepth: in.EventDepth,
	}
}

// Checkpoint persists the instance, with the records in inst.Unsaved
// (written atomically with it; then emptied). The engine calls it after
// every step but a pure or skipped one or one whose effect waits in
// Unsaved (see Pure, Result.Record), before the next one starts, and
// before a step with effects starts while Unsaved is not empty; a crash
// after it resumes at inst.Next.
type Checkpoint func(ctx context.Context, inst *Instance) error

// Engine runs definitions' steps.
type Engine struct {
	Log *slog.Logger
	Now func() time.Time
}

// Start pins a new instance to def.
func (e *Engine) Start(inst *Instance, def *Definition) error {
	if inst.Status != "" {
		return fmt.Errorf("%w: start an instance that is already %q", ErrTransition, inst.Status)
	}
	if err := inst.To(StatusRunning); err != nil {
		return err
	}
	inst.Definition, inst.Version, inst.Next = def.Name, def.Version, 0
	inst.Started = e.now()
	return nil
}

// Run executes def's steps from inst.Next on, checkpointing after each
// that is not pure or skipped, and after the last. A
// step that fails is tried again per its retry policy; when its attempts
// are spent its on_error decides (fail, deny, continue). Run returns nil
// when the instance reached a resting status (see inst.Status). An error
// means the request goes back to the queue to resume at the current step:
// a step asked for that (RetryLater), the context ended, or a checkpoint
// could not be written.
func (e *Engine) Run(ctx context.Context, def *Definition, in *Input, inst *Instance, save Checkpoint) error {
	var afterSave []func() // Result.AfterSave of steps no checkpoint has written yet
	save = thenAfterSave(save, &afterSave)
	if inst.Status == StatusSuspended {
		if inst.Wait == nil || inst.Wait.Verdict == "" {
			return nil // still waiting: nothing to do until a decision
		}
		if err := e.resume(ctx, def, in, inst, save); err != nil || inst.Status != StatusRunning {
			return err
		}
	}
	if inst.Status != StatusRunning {
		return fmt.Errorf("%w: run an instance that is %q", ErrTransition, inst.Status)
	}
	for inst.Next < len(def.Steps) {
		sd := def.Steps[inst.Next]
		log := e.log().With("step", sd.ID)
		started := e.now()
		env := in.Env(inst, started)
		rec := StepRecord{ID: sd.ID, Uses: sd.Uses, Started: started}
		run, err := true, error(nil)
		if sd.If != nil {
			if run, err = sd.If.Bool(env); err != nil {
				err = Permanent(fmt.Errorf("if: %w", err))
			}
		}
		if run && err == nil && !IsPure(sd.Step) {
			if len(inst.Unsaved) > 0 || len(afterSave) > 0 {
				// A step with effects acts only on recorded effects, and
				// after those held back for a checkpoint.
				if err := save(ctx, inst); err != nil {
					return fmt.Errorf("checkpoint before step %s: %w", sd.ID, err)
				}
			}
			if in.IssueClaim != nil && sd.Uses != IssueStep {
				// Only the issue step uses the claim; held through this
				// step it would only keep other workers from issuing.
				in.IssueClaim.ReleaseUnused(context.WithoutCancel(ctx))
			}
		}
		var res Result
		if run && err == nil {
			res, rec.Attempts, err = e.attempt(ctx, sd, in.run(inst, sd, env, log))
		}
		var deny *DenyError
		var later *RetryLaterError
		switch {
		case err == nil && !run:
			rec.Outcome = OutcomeSkipped
		case err == nil:
			rec.Outcome = OutcomeDone
		case errors.As(err, &deny):
			return e.reject(ctx, inst, rec, deny.Message, save)
		case errors.As(err, &later), ctx.Err() != nil:
			// Not the step's failure: hand the request back to the queue,
			// to resume at this step.
			rec.Outcome, rec.Message, rec.Finished = OutcomeError, err.Error(), e.now()
			inst.fold(&rec)
			inst.History = append(inst.History, rec)
			log.Warn("step postponed; the queue will retry", "err", err)
			if serr := save(context.WithoutCancel(ctx), inst); serr != nil {
				return errors.Join(err, serr)
			}
			return fmt.Errorf("step %s: %w", sd.ID, err)
		case sd.OnError == OnErrorContinue:
			rec.Outcome, rec.Message = OutcomeFailed, err.Error()
			res = Result{Outputs: map[string]any{"error": err.Error()}}
			log.Warn("step failed; continuing (on_error: continue)", "err", err)
		case sd.OnError == OnErrorDeny:
			return e.reject(ctx, inst, rec, fmt.Sprintf("step %s failed: %v", sd.ID, err), save)
		default:
			return e.fail(ctx, inst, rec, fmt.Errorf("step %s: %w", sd.ID, err), save)
		}
		rec.Finished = e.now()
		if res.Suspend != nil && err == nil && run {
			return e.suspend(ctx, inst, rec, res.Suspend, save)
		}
		inst.apply(sd.ID, res)
		inst.fold(&rec)
		inst.History = append(inst.History, rec)
		if res.AfterSave != nil {
			afterSave = append(afterSave, res.AfterSave)
		}
		// Nothing with effects ran after a pure or skipped step, and a
		// step's own record of its effect waits for the next checkpoint:
		// that checkpoint carries them (see Pure, Result.Record).
		if err := e.advance(ctx, def, inst, save, !run || IsPure(sd.Step) || res.Record != nil); err != nil {
			return err
		}
	}
	return nil
}

// thenAfterSave wraps save: once a checkpoint is written, the effects
// held back for it (Result.AfterSave) run, in step order.
func thenAfterSave(save Checkpoint, pending *[]func()) Checkpoint {
	return func(ctx context.Context, inst *Instance) error {
		err := save(ctx, inst)
		if err == nil || errors.Is(err, ErrSaved) {
			for _, f := range *pending {
				f()
			}
			*pending = nil
		}
		return err
	}
}

// advance moves past the current step, completing the instance after the
// last, and checkpoints — unless deferSave and another step follows.
func (e *Engine) advance(ctx context.Context, def *Definition, inst *Instance, save Checkpoint, deferSave bool) error {
	id := def.Steps[inst.Next].ID
	inst.Next++
	if inst.Next == len(def.Steps) {
		if err := inst.To(StatusComplete); err != nil {
			return err
		}
	}
	if deferSave && inst.Next < len(def.Steps) {
		return nil
	}
	if err := save(ctx, inst); err != nil {
		return fmt.Errorf("checkpoint after step %s: %w", id, err)
	}
	return nil
}

// suspend parks the instance at the current step until its wait is
// decided. No worker is held: the run ends here, and a decision (or the
// timeout) starts the next.
func (e *Engine) suspend(ctx context.Context, inst *Instance, rec StepRecord, w *Wait, save Checkpoint) error {
	w.Step, w.Verdict, w.Message = rec.ID, "", ""
	if w.Since.IsZero() {
		w.Since = rec.Finished
	}
	rec.Outcome = OutcomeWaiting
	if w.ForAuthority() {
		rec.Message = fmt.Sprintf("waiting for certificate authority %s (order %s; next look at %s)", w.Authority, w.Status, w.Deadline.UTC().Format(time.RFC3339))
		inst.fold(&rec)
		// Each look has its own stage, and so its own timer task.
		w.Stage = rec.Attempts
	} else {
		rec.Message = "waiting for approval by " + strings.Join(w.Roles, ", ")
	}
	inst.History = append(inst.History, rec)
	inst.Wait = w
	if err := inst.To(StatusSuspended); err != nil {
		return err
	}
	if w.ForAuthority() {
		e.log().Info("workflow waits for its certificate authority", "step", rec.ID, "authority", w.Authority, "status", w.Status, "next", w.Deadline)
	} else {
		e.log().Info("workflow suspended for approval", "step", rec.ID, "roles", w.Roles, "quorum", w.Quorum, "deadline", w.Deadline)
	}
	return save(ctx, inst)
}

// Resumer is implemented by steps that suspend: Resume is called once the
// wait is decided, before the instance goes on (or is rejected), to tell
// people and to compute the step's outputs. Its errors are the step's, but
// a decision stands whatever it returns: they are logged only.
type Resumer interface {
	Resume(ctx context.Context, run *Run, w *Wait) Result
}

// Escalator is implemented by steps that suspend and want to tell people
// when the wait passes to other roles (an approval's on_timeout: escalate).
type Escalator interface {
	Escalated(ctx context.Context, run *Run, w *Wait)
}

// Escalated lets the step an instance waits at tell its channels that the
// wait escalated. It changes nothing.
func (e *Engine) Escalated(ctx context.Context, def *Definition, in *Input, inst *Instance) {
	if inst.Wait == nil || inst.Next >= len(def.Steps) || def.Steps[inst.Next].ID != inst.Wait.Step {
		return
	}
	sd := def.Steps[inst.Next]
	if s, ok := sd.Step.(Escalator); ok {
		s.Escalated(ctx, in.run(inst, sd, in.Env(inst, e.now()), e.log().With("step", sd.ID)), inst.Wait)
	}
}

// resume applies a decided wait: approved, the step completes and the
// instance runs on; otherwise it is rejected with the wait's message.
func (e *Engine) resume(ctx context.Context, def *Definition, in *Input, inst *Instance, save Checkpoint) error {
	w := inst.Wait
	if inst.Next >= len(def.Steps) || def.Steps[inst.Next].ID != w.Step {
		return fmt.Errorf("%w: the instance waits at step %q, but its next step is #%d", ErrTransition, w.Step, inst.Next)
	}
	sd := def.Steps[inst.Next]
	if w.ForAuthority() && w.Verdict == VerdictDue {
		// The step looks at the CA again: it runs next, from Running. Its
		// next timeline entry replaces the wait's (fold).
		if n := len(inst.History); n > 0 && inst.History[n-1].ID == sd.ID && inst.History[n-1].Outcome == OutcomeWaiting {
			inst.waited = &inst.History[n-1]
			inst.History = inst.History[:n-1]
		}
		inst.Wait = nil
		return inst.To(StatusRunning)
	}
	if w.ForAuthority() && w.Verdict != VerdictStopped {
		return fmt.Errorf("%w: an authority wait with verdict %q", ErrTransition, w.Verdict)
	}
	now := e.now()
	log := e.log().With("step", sd.ID)
	var res Result
	if r, ok := sd.Step.(Resumer); ok {
		res = r.Resume(ctx, in.run(inst, sd, in.Env(inst, now), log), w)
	}
	rec := StepRecord{ID: sd.ID, Uses: sd.Uses, Started: w.Since, Finished: e.now(), Attempts: 1}
	inst.Wait = nil
	if w.Verdict != VerdictApproved {
		inst.apply(sd.ID, res)
		log.Info("approval ended without approval", "verdict", w.Verdict)
		return e.reject(ctx, inst, rec, w.Message, save)
	}
	rec.Outcome, rec.Message = OutcomeDone, "approved by "+strings.Join(w.Approvers, ", ")
	inst.apply(sd.ID, res)
	inst.History = append(inst.History, rec)
	if err := inst.To(StatusRunning); err != nil {
		return err
	}
	log.Info("approved; workflow resumes", "approvers", w.Approvers)
	return e.advance(ctx, def, inst, save, false)
}

// attempt runs a step under its timeout, retrying a failure per its retry
// policy. Denials, permanent errors, retry-later errors and cancellation
// are returned at once.
func (e *Engine) attempt(ctx context.Context, sd *StepDef, run *Run) (Result, int, error) {
	attempts, backoff := max(sd.Retry.Attempts, 1), sd.Retry.Backoff
	for n := 1; ; n++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if sd.Timeout > 0 {
			actx, cancel = context.WithTimeout(ctx, sd.Timeout)
		}
		res, err := sd.Step.Run(actx, run)
		timedOut := actx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return res, n, nil
		}
		if timedOut {
			err = fmt.Errorf("attempt timed out after %s: %w", sd.Timeout, err)
		}
		var deny *DenyError
		var perm *PermanentError
		var later *RetryLaterError
		if errors.As(err, &deny) || errors.As(err, &perm) || errors.As(err, &later) || ctx.Err() != nil || n >= attempts {
			return res, n, err
		}
		run.Log.Warn("step attempt failed; retrying", "attempt", n, "attempts", attempts, "backoff", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, n, ctx.Err()
		case <-t.C:
		}
		backoff *= 2
	}
}

func (e *Engine) reject(ctx context.Context, inst *Instance, rec StepRecord, msg string, save Checkpoint) error {
	rec.Outcome, rec.Message, rec.Finished = OutcomeDenied, msg, e.now()
	inst.fold(&rec)
	inst.History = append(inst.History, rec)
	inst.Message = msg
	if err := inst.To(StatusRejected); err != nil {
		return err
	}
	e.log().Info("request denied", "step", rec.ID, "reason", msg)
	return save(ctx, inst)
}

// Fail records a failure that no retry will mend (retries exhausted, a
// permanent error) and checkpoints the instance.
func (e *Engine) Fail(ctx context.Context, inst *Instance, def *Definition, cause error, save Checkpoint) error {
	rec := StepRecord{Started: e.now()}
	if def != nil && inst.Next < len(def.Steps) {
		rec.ID, rec.Uses = def.Steps[inst.Next].ID, def.Steps[inst.Next].Uses
	}
	return e.fail(ctx, inst, rec, cause, save)
}

func (e *Engine) fail(ctx context.Context, inst *Instance, rec StepRecord, cause error, save Checkpoint) error {
	rec.Outcome, rec.Message, rec.Finished = OutcomeFailed, cause.Error(), e.now()
	inst.fold(&rec)
	inst.History = append(inst.History, rec)
	inst.Message = cause.Error()
	if err := inst.To(StatusFailed); err != nil {
		return err
	}
	e.log().Error("workflow failed", "step", rec.ID, "err", cause)
	return save(ctx, inst)
}

// fold makes rec, the step's entry after an authority wait, stand for the
// whole wait: one timeline entry however many looks at the CA it took,
// started when the wait did, its attempts counting the looks.
func (in *Instance) fold(rec *StepRecord) {
	if w := in.waited; w != nil && w.ID == rec.ID {
		rec.Started, rec.Attempts = w.Started, w.Attempts+max(rec.Attempts, 1)
	}
	in.waited = nil
}

func (in *Instance) apply(stepID string, res Result) {
	if len(res.Vars) > 0 {
		if in.Vars == nil {
			in.Vars = map[string]any{}
		}
		maps.Copy(in.Vars, res.Vars)
	}
	if len(res.Outputs) > 0 {
		if in.Outputs == nil {
			in.Outputs = map[string]map[string]any{}
		}
		in.Outputs[stepID] = res.Outputs
	}
	if len(res.Metadata) > 0 {
		if in.Metadata == nil {
			in.Metadata = map[string]string{}
		}
		maps.Copy(in.Metadata, res.Metadata)
	}
	if res.Certificate != nil {
		in.Certificate = res.Certificate
	}
	if res.Record != nil {
		in.Unsaved = append(in.Unsaved, res.Record)
	}
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.Default()
}

package workflow

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
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
}

// Terminal reports whether no step will run for the instance any more.
func (s Status) Terminal() bool {
	return s == StatusComplete || s == StatusRejected || s == StatusFailed
}

// ErrTransition marks an illegal state change: a bug, never overwritten.
var ErrTransition = errors.New("illegal workflow transition")

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
}

// StepRecord is one entry of an instance's timeline.
type StepRecord struct {
	ID       string    `json:"StepId"`
	Uses     string    `json:"Uses"`
	Outcome  Outcome   `json:"Outcome"`
	Message  string    `json:"Message,omitempty"`
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
	OutcomeError   Outcome = "Error" // failed this attempt; will be retried
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
		Steps: inst.Outputs, Vars: inst.Vars, Now: now,
	}
	if env.Steps == nil {
		env.Steps = map[string]map[string]any{}
	}
	if env.Vars == nil {
		env.Vars = map[string]any{}
	}
	if inst.Certificate != nil {
		env.Certificate = *inst.Certificate
	}
	return env
}

// Checkpoint persists the instance. The engine calls it after every step,
// before the next one starts; a crash after it resumes at inst.Next.
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

// Run executes def's steps from inst.Next on, checkpointing after each. It
// returns nil when the instance reached a resting status (Complete,
// Rejected, Failed, Suspended; see inst.Status). An error means the current
// step failed this time and may be retried; the instance was checkpointed
// with the attempt recorded. A *PermanentError is recorded as Failed.
func (e *Engine) Run(ctx context.Context, def *Definition, in *Input, inst *Instance, save Checkpoint) error {
	if inst.Status != StatusRunning {
		return fmt.Errorf("%w: run an instance that is %q", ErrTransition, inst.Status)
	}
	for inst.Next < len(def.Steps) {
		sd := def.Steps[inst.Next]
		log := e.log().With("step", sd.ID)
		started := e.now()
		env := in.Env(inst, started)
		rec := StepRecord{ID: sd.ID, Uses: sd.Uses, Started: started}
		run := true
		if sd.If != nil {
			ok, err := sd.If.Bool(env)
			if err != nil {
				return e.fail(ctx, inst, rec, fmt.Errorf("step %s: if: %w", sd.ID, err), save)
			}
			run = ok
		}
		var res Result
		if run {
			var err error
			res, err = sd.Step.Run(ctx, &Run{
				RequestID: in.Request.ID, InstanceID: inst.ID, StepID: sd.ID,
				Env: env, CSR: in.CSR, Log: log,
			})
			var deny *DenyError
			var perm *PermanentError
			switch {
			case errors.As(err, &deny):
				rec.Outcome, rec.Message, rec.Finished = OutcomeDenied, deny.Message, e.now()
				inst.History = append(inst.History, rec)
				inst.Message = deny.Message
				if err := inst.To(StatusRejected); err != nil {
					return err
				}
				log.Info("request denied", "reason", deny.Message)
				return save(ctx, inst)
			case errors.As(err, &perm):
				return e.fail(ctx, inst, rec, fmt.Errorf("step %s: %w", sd.ID, err), save)
			case err != nil:
				rec.Outcome, rec.Message, rec.Finished = OutcomeError, err.Error(), e.now()
				inst.History = append(inst.History, rec)
				log.Warn("step failed; will retry", "err", err)
				if serr := save(ctx, inst); serr != nil {
					return errors.Join(err, serr)
				}
				return fmt.Errorf("step %s: %w", sd.ID, err)
			}
			rec.Outcome = OutcomeDone
		} else {
			rec.Outcome = OutcomeSkipped
		}
		rec.Finished = e.now()
		inst.apply(sd.ID, res)
		inst.History = append(inst.History, rec)
		inst.Next++
		if inst.Next == len(def.Steps) {
			if err := inst.To(StatusComplete); err != nil {
				return err
			}
		}
		if err := save(ctx, inst); err != nil {
			return fmt.Errorf("checkpoint after step %s: %w", sd.ID, err)
		}
	}
	return nil
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
	inst.History = append(inst.History, rec)
	inst.Message = cause.Error()
	if err := inst.To(StatusFailed); err != nil {
		return err
	}
	e.log().Error("workflow failed", "step", rec.ID, "err", cause)
	return save(ctx, inst)
}

func (in *Instance) apply(stepID string, res Result) {
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

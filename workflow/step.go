package workflow

import (
	"context"
	"fmt"
	"log/slog"

	"crypto/x509"

	"gopkg.in/yaml.v3"
)

// Step is one step type's behaviour. Implementations live in package steps,
// one file each; they know nothing of HTTP or asynq. Run must honour ctx and
// may be called more than once for the same request (delivery is at least
// once), so side effects must be idempotent or harmless to repeat.
//
// Run's error decides what happens next: nil continues with the next step;
// an error made by Deny ends the request DENIED with its message; an error
// made by Permanent fails the request at once; any other error is retried.
type Step interface {
	Run(ctx context.Context, run *Run) (Result, error)
}

// Builder makes a Step from its definition entry, compiling every
// expression in `with` so that mistakes surface at load.
type Builder func(spec *Spec) (Step, error)

// Catalog maps `uses:` names to builders. The names are a contract with
// definitions in the field: never rename one.
type Catalog map[string]Builder

// The `uses:` names of certflow's step types: the keys of the catalogue
// package steps builds, and the only place these names are spelt in Go.
// Definitions in the field use them, so none may ever be renamed. Besides
// the catalogue, three have a meaning of their own: IssueStep and
// RevokeStep are the CA steps a definition gets appended (CAStep), the
// engine keeps the run's IssueClaim for the issue step, and ApprovalStep
// is how the API knows which steps take people's signals.
const (
	ValidateStep = "validate"
	IssueStep    = "issue"
	RevokeStep   = "revoke"
	MetadataStep = "metadata"
	NotifyStep   = "notify"
	SetStep      = "set"
	HTTPStep     = "http"
	ApprovalStep = "approval"
	// RenewStep and EnrollStep act on certificates from event-triggered
	// (and schedule) definitions: they submit requests that the ordinary
	// workflows run (as do RevokeStep and MetadataStep there).
	RenewStep  = "renew"
	EnrollStep = "enroll"
	// SearchStep reads the inventory or the pending requests, for
	// event-triggered and schedule definitions (a digest, a reminder).
	SearchStep = "search"
)

// Spec is a step's entry in a definition, as its Builder sees it.
type Spec struct {
	ID      string
	Uses    string
	Trigger string
	File    string
	// With is the raw `with:` mapping (nil when absent); decode it with
	// DecodeWith for unknown-key checking and positions.
	With *yaml.Node
	Pos  Pos
	// refs are the steps.<id> the step's expressions read, with where.
	refs []stepRef
}

type stepRef struct {
	id  string
	pos Pos
}

// DecodeWith decodes the step's `with:` into v, rejecting keys v does not
// declare. A missing `with:` leaves v untouched.
func (s *Spec) DecodeWith(v any) error {
	if s.With == nil {
		return nil
	}
	if err := decodeStrict(s.File, s.With, v, true); err != nil {
		return s.wrap(err)
	}
	return nil
}

// Errorf reports a problem with the step at the position of node (or the
// step itself when node is nil).
func (s *Spec) Errorf(node *yaml.Node, format string, args ...any) error {
	pos := s.Pos
	if node != nil {
		pos = PosOf(s.File, node)
	}
	return &LoadError{Pos: pos, Step: s.ID, Msg: fmt.Sprintf(format, args...)}
}

// Bool compiles a bare boolean expression found at node.
func (s *Spec) Bool(src string, node *yaml.Node) (*Program, error) {
	return s.program(CompileBool, src, node)
}

// Value compiles a bare expression of any type found at node.
func (s *Spec) Value(src string, node *yaml.Node) (*Program, error) {
	return s.program(CompileValue, src, node)
}

func (s *Spec) program(compile func(string, Pos) (*Program, error), src string, node *yaml.Node) (*Program, error) {
	p, err := compile(src, s.posOf(node))
	if err != nil {
		return nil, s.wrap(err)
	}
	s.noteRefs(p.StepRefs(), node)
	return p, nil
}

// Template compiles a string that may embed ${{ }} found at node.
func (s *Spec) Template(src string, node *yaml.Node) (*Template, error) {
	t, err := CompileTemplate(src, s.posOf(node))
	if err != nil {
		return nil, s.wrap(err)
	}
	s.noteRefs(t.StepRefs(), node)
	return t, nil
}

func (s *Spec) noteRefs(ids []string, node *yaml.Node) {
	for _, id := range ids {
		s.refs = append(s.refs, stepRef{id: id, pos: s.posOf(node)})
	}
}

func (s *Spec) posOf(node *yaml.Node) Pos {
	if node == nil {
		return s.Pos
	}
	return PosOf(s.File, node)
}

func (s *Spec) wrap(err error) error {
	if err == nil {
		return nil
	}
	return tagStep(err, s.ID)
}

// Run is what a step gets to work with for one request.
type Run struct {
	RequestID  int64
	InstanceID string
	StepID     string
	// Env is the expression environment as of this step. Steps read it;
	// they change state only through the Result they return.
	Env *Env
	// CSR is the parsed (and, at submit, verified) request.
	CSR *x509.CertificateRequest
	Log *slog.Logger
	// IssueClaim is the run's claim on issuing (Input.IssueClaim), or
	// nil: the issue step uses it rather than claim again.
	IssueClaim IssueClaim
	// EventDepth is the request's own event depth (Input.EventDepth): the
	// Depth its changes' events carry.
	EventDepth int
}

// IssueClaim is the right to issue a request's certificate, taken in
// advance by whoever loaded the request: the worker takes the issue lock
// in the round trip that reads the request (store.GetForRun), so that a
// run that issues needs no round trip of its own for it. It reaches the
// issue step as Run.IssueClaim, and the issue step hands it to the store.
// Held while other steps with effects run (a webhook that takes a minute),
// it would only keep other workers from issuing, so the engine gives it
// up before any step with effects that is not the issue step.
type IssueClaim interface {
	// ReleaseUnused gives the claim up unless a certificate was signed
	// under it. It may be called again; then it does nothing.
	ReleaseUnused(ctx context.Context)
}

// Result is what a step hands back on success.
type Result struct {
	// Vars are merged into vars for later steps.
	Vars map[string]any
	// Outputs become steps.<id>.<name> for later steps.
	Outputs map[string]any
	// Metadata is merged into the certificate's metadata.
	Metadata map[string]string
	// Certificate is set by the step that issued one.
	Certificate *Certificate
	// Suspend, when set, parks the instance at this step until people
	// decide (see Wait; the step should implement Resumer), or, for a
	// Wait of kind WaitAuthority, until its Deadline, when the step runs
	// again.
	Suspend *Wait
	// Record, when set, is the record of the step's effect (an issued
	// certificate), for the next checkpoint to write atomically with the
	// instance (see Instance.Unsaved). Until then the step shares the next
	// checkpoint as a pure one does, and the engine writes a checkpoint
	// before any step with effects starts: nothing acts on an effect that
	// is not recorded yet, and a crash before the checkpoint loses the
	// effect and the instance's progress together.
	Record any
	// AfterSave, when set, is the step's effect, held back until the
	// checkpoint that carries the step's outcome is written: a step that
	// only reports (a log line) declares itself pure and returns its report
	// here, so it shares the next checkpoint and still never reports what
	// a crash then loses. A crash or a failed checkpoint drops it with the
	// progress, and the step runs again. Like a Record, it makes the
	// engine checkpoint before the next step with effects starts, so
	// effects keep their order.
	AfterSave func()
}

// DenyError ends a request DENIED; its message is the DispositionMessage.
type DenyError struct{ Message string }

func (e *DenyError) Error() string { return "denied: " + e.Message }

// Deny makes the error a step returns to deny the request.
func Deny(format string, args ...any) error {
	return &DenyError{Message: fmt.Sprintf(format, args...)}
}

// RetryLaterError hands the request back to the queue: the step could not
// run now for a reason outside it (a lock held by another worker, Redis
// unreachable). It does not count against the step's retry attempts; the
// queue's retry budget bounds it.
type RetryLaterError struct{ Err error }

func (e *RetryLaterError) Error() string { return e.Err.Error() }
func (e *RetryLaterError) Unwrap() error { return e.Err }

// RetryLater marks err as "try this step again later".
func RetryLater(err error) error { return &RetryLaterError{Err: err} }

// PermanentError fails the step without further attempts.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error { return &PermanentError{Err: err} }

package steps

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// Actor is the requester of every request the steps that act on
// certificates make (renew, revoke, enroll; metadata edits are logged
// under it): a system caller with an administrator's authority over
// certificates, as the definitions that use it are an administrator's.
// No configured user or token may take the name (config refuses names
// in the "certflow:" namespace).
const Actor = "certflow:automation"

// Actions is what the steps that act on certificates, in event-triggered
// and schedule definitions, ask of certflow: each submits a request to
// the ordinary workflows (a renewal to the renewal workflow, a
// revocation to the revocation workflow, an enrollment to the enrollment
// workflow, with their policies and approvals) as Actor, and does not
// wait for it to settle. It is implemented by internal/enroll's
// Automation (the same checks as the Keyfactor endpoints) and wired by
// internal/app. Every submit carries an Origin; a repeat with the same
// Origin and target (a retried step, a re-delivered task, a worker
// killed mid-step) answers the request the first made, Existing set,
// and makes no other.
//
// Errors: a refusal (the certificate is unknown, the template does not
// allow it, the CSR is invalid, …) is a workflow.Permanent error whose
// text says why and names the field; anything else (Redis did not
// answer) may be retried.
type Actions interface {
	// Renew submits a renewal of certificate o.CertificateID. A
	// certificate revoked, or superseded already (renewed by another
	// request), is not renewed: Skipped says why.
	Renew(ctx context.Context, o RenewOrder) (Outcome, error)
	// Revoke submits a revocation of certificate o.CertificateID. One
	// revoked already, or being revoked by another request, is skipped.
	Revoke(ctx context.Context, o RevokeOrder) (Outcome, error)
	// Enroll submits an enrollment, of o.CSR or (o.Subject set) of a key
	// certflow generates and retains.
	Enroll(ctx context.Context, o EnrollOrder) (Outcome, error)
	// SetMetadata sets (a value) or clears ("") metadata fields of
	// certificate o.CertificateID, as PUT /Certificates/Metadata does
	// (configured fields, their types); Skipped is set when nothing
	// changed.
	SetMetadata(ctx context.Context, o MetadataOrder) (Outcome, error)
	// FindCertificates returns the ids of the certificates a Keyfactor
	// query (`Field -op "value"` clauses joined by AND) matches, at most
	// limit of them: more is an error (a *TooManyError), before anything
	// acts on any.
	FindCertificates(ctx context.Context, query string, limit int) ([]int64, error)
}

// Origin is who acts and where: the event-triggered run (its request id),
// its step, and the Depth of the events the requests it makes emit. It
// derives the Idempotency-Key of the requests the step makes.
type Origin struct {
	RunID int64
	Step  string
	// Depth is the run's event's Depth + 1 (store.Request.EventDepth).
	Depth int
}

// originOf is the Origin of run's current step.
func originOf(run *workflow.Run) Origin {
	return Origin{RunID: run.RequestID, Step: run.StepID, Depth: run.Env.Event.Depth + 1}
}

// Key is the Idempotency-Key of the request the step makes about
// certificate certID (0: none, an enrollment).
func (o Origin) Key(certID int64) string {
	k := KeyPrefix + strconv.FormatInt(o.RunID, 10) + ":" + o.Step
	if certID != 0 {
		k += ":" + strconv.FormatInt(certID, 10)
	}
	return k
}

// KeyPrefix starts every Idempotency-Key an action carries. Clients may
// not send one that starts so (enroll refuses it): a requester who
// guessed a run's key could otherwise make the automation take their own
// request for the one it was about to make.
const KeyPrefix = "certflow-run:"

// RenewOrder asks for a renewal.
type RenewOrder struct {
	Origin
	CertificateID int64
	// NewKey renews with a key certflow generates (of the old key's type
	// and size) and retains, which the template must allow (key
	// retention); else the same key is certified again: the retained
	// private key when certflow holds it, or the public key of the CSR
	// the certificate was issued from.
	NewKey bool
}

// RevokeOrder asks for a revocation.
type RevokeOrder struct {
	Origin
	CertificateID int64
	// Reason is an RFC 5280 reason code (0–6).
	Reason  int
	Comment string
}

// EnrollOrder asks for an enrollment.
type EnrollOrder struct {
	Origin
	Template, CA string
	// CSR is a PEM (or base64 DER) CSR; or, when empty, Subject is the
	// distinguished name of a key certflow generates (of the template's
	// first allowed kind) and retains.
	CSR, Subject string
	SANs         map[string][]string
	Metadata     map[string]string
}

// MetadataOrder asks for a metadata edit.
type MetadataOrder struct {
	Origin
	CertificateID int64
	Values        map[string]string
}

// Outcome is what an action did.
type Outcome struct {
	// RequestID is the request made (or found: Existing); 0 when Skipped.
	RequestID int64
	// CertificateID is the certificate acted on (the target; for an
	// enrollment, 0 until it is issued).
	CertificateID int64
	// Existing: an earlier attempt of the step made the request.
	Existing bool
	// Skipped says why nothing was done ("" when something was).
	Skipped string
}

// outputs are the step outputs of one outcome.
func (o Outcome) outputs() map[string]any {
	out := map[string]any{"certificate": o.CertificateID, "request": o.RequestID}
	if o.Skipped != "" {
		out["skipped"] = o.Skipped
	}
	return out
}

// TooManyError refuses a query that matches more certificates than a
// step may act on.
type TooManyError struct{ Limit int }

func (e *TooManyError) Error() string {
	return fmt.Sprintf("the query matches more than %d certificates, more than one step may act on; narrow it", e.Limit)
}

// actingTrigger refuses, at load, a step that acts on certificates in a
// definition whose trigger is not an event or a schedule.
func actingTrigger(spec *workflow.Spec) error {
	if !workflow.EventTrigger(spec.Trigger) {
		return spec.Errorf(nil, "the %s step acts on certificates from event-triggered and schedule definitions (trigger event:<name> or schedule), not from a %s workflow", spec.Uses, spec.Trigger)
	}
	return nil
}

// needActions refuses, when the step runs, a step built without Actions
// (certflow lint's).
func needActions(a Actions) error {
	if a == nil {
		return workflow.Permanent(fmt.Errorf("no certificate actions are wired into this process"))
	}
	return nil
}

// certificateTarget is a step's `certificate:` — an expression giving a
// certificate id — or, absent, the certificate the run's event concerns.
type certificateTarget struct {
	prog *workflow.Program
}

func compileTarget(spec *workflow.Spec, node *yaml.Node) (certificateTarget, error) {
	if node == nil || node.Kind == 0 {
		if spec.Trigger == workflow.TriggerSchedule {
			return certificateTarget{}, spec.Errorf(spec.With, "certificate: required in a schedule definition, whose event concerns no certificate (an expression giving a certificate id)")
		}
		return certificateTarget{}, nil
	}
	if node.Kind != yaml.ScalarNode || strings.TrimSpace(node.Value) == "" {
		return certificateTarget{}, spec.Errorf(node, "certificate: want an expression giving a certificate id (e.g. steps.find.id)")
	}
	src := strings.TrimSpace(node.Value)
	if s, ok := strings.CutPrefix(src, "${{"); ok {
		if s, ok = strings.CutSuffix(s, "}}"); ok {
			src = strings.TrimSpace(s)
		}
	}
	p, err := spec.Value(src, node)
	if err != nil {
		return certificateTarget{}, err
	}
	return certificateTarget{prog: p}, nil
}

// id is the certificate the step acts on.
func (t certificateTarget) id(run *workflow.Run) (int64, error) {
	if t.prog == nil {
		if id := run.Env.Certificate.ID; id > 0 {
			return id, nil
		}
		return 0, workflow.Permanent(fmt.Errorf("certificate: the event (%s) concerns no certificate; name one with `certificate:`", run.Env.Event.Name))
	}
	v, err := t.prog.Eval(run.Env)
	if err != nil {
		return 0, workflow.Permanent(fmt.Errorf("certificate: %w", err))
	}
	id, ok := certificateID(v)
	if !ok {
		return 0, workflow.Permanent(fmt.Errorf("certificate: want a positive certificate id, got %v (%T)", v, v))
	}
	return id, nil
}

// certificateID reads an expression's value as a certificate id: a
// positive integer, as a number or decimal text.
func certificateID(v any) (int64, bool) {
	var id int64
	switch x := v.(type) {
	case int:
		id = int64(x)
	case int64:
		id = x
	case int32:
		id = int64(x)
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		id = int64(x)
	case float64:
		if x != math.Trunc(x) || x > math.MaxInt64 || x < 1 {
			return 0, false
		}
		id = int64(x)
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return 0, false
		}
		id = n
	default:
		return 0, false
	}
	return id, id > 0
}

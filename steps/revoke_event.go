package steps

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// MaxRevokeTargets bounds the certificates one event-triggered revoke
// step's query may name: a query matching more is refused before any is
// revoked.
const MaxRevokeTargets = 100

// revocationReasons are RFC 5280's reason codes by name (any case).
var revocationReasons = map[string]int{
	"unspecified": 0, "keycompromise": 1, "cacompromise": 2, "affiliationchanged": 3,
	"superseded": 4, "cessationofoperation": 5, "certificatehold": 6,
}

type revokeWith struct {
	Certificate yaml.Node `yaml:"certificate"`
	Query       yaml.Node `yaml:"query"`
	Reason      yaml.Node `yaml:"reason"`
	Comment     yaml.Node `yaml:"comment"`
}

// buildEvent builds the revoke step of an event-triggered or schedule
// definition: it submits a revocation request, run by the revocation
// workflow (its definition and approvals), as Actor, for the event's
// certificate, the one `certificate:` names, or every certificate a
// Keyfactor `query:` matches (at most MaxRevokeTargets: more refuses the
// step before anything is revoked). A certificate revoked already, or
// being revoked, is skipped. Each revocation is made once however often
// the step runs: its Idempotency-Key derives from the run, the step and
// the certificate.
//
//	uses: revoke
//	with:
//	  query: 'SAN -eq "${{ event.Data.host }}"'
//	  reason: cessationOfOperation        # or 0–6
//	  comment: "host ${{ event.Data.host }} decommissioned"
//
// A query's expressions must stand inside its quoted values, and their
// values may not hold a quote or a control character, nor be empty: an
// event's data cannot add clauses to the query or widen it.
func (rv Revoke) buildEvent(spec *workflow.Spec) (workflow.Step, error) {
	var w revokeWith
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	var errs []error
	var target certificateTarget
	var query *workflow.Template
	if w.Query.Kind != 0 {
		if w.Certificate.Kind != 0 {
			errs = append(errs, spec.Errorf(&w.Query, "query: give certificate or query, not both"))
		}
		q, err := compileRevokeQuery(spec, &w.Query)
		if err != nil {
			errs = append(errs, err)
		}
		query = q
	} else {
		t, err := compileTarget(spec, &w.Certificate)
		if err != nil {
			errs = append(errs, err)
		}
		target = t
	}
	reason := 0
	switch n := &w.Reason; {
	case n.Kind == 0:
	case n.Kind != yaml.ScalarNode:
		errs = append(errs, spec.Errorf(n, "reason: want a reason code 0–6 or its name (keyCompromise, superseded, cessationOfOperation, …)"))
	default:
		r, err := parseReason(n.Value)
		if err != nil {
			errs = append(errs, spec.Errorf(n, "reason: %v", err))
		}
		reason = r
	}
	var comment *workflow.Template
	switch n := &w.Comment; {
	case n.Kind == 0:
		errs = append(errs, spec.Errorf(spec.With, "comment: required: say why the certificates are revoked (may embed ${{ }})"))
	case n.Kind != yaml.ScalarNode || strings.TrimSpace(n.Value) == "":
		errs = append(errs, spec.Errorf(n, "comment: want text (may embed ${{ }})"))
	default:
		t, err := spec.Template(n.Value, n)
		if err != nil {
			errs = append(errs, err)
		}
		comment = t
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return stepFunc(func(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
		if err := needActions(rv.Actions); err != nil {
			return workflow.Result{}, err
		}
		why, err := comment.String(run.Env)
		if err != nil {
			return workflow.Result{}, workflow.Permanent(fmt.Errorf("comment: %w", err))
		}
		origin := originOf(run)
		if query == nil {
			id, err := target.id(run)
			if err != nil {
				return workflow.Result{}, err
			}
			o, err := rv.Actions.Revoke(ctx, RevokeOrder{Origin: origin, CertificateID: id, Reason: reason, Comment: why})
			if err != nil {
				return workflow.Result{}, err
			}
			o.CertificateID = id
			logRevocation(run, o)
			return workflow.Result{Outputs: o.outputs()}, nil
		}
		q, err := query.Render(run.Env, queryValue)
		if err != nil {
			return workflow.Result{}, workflow.Permanent(fmt.Errorf("query: %w", err))
		}
		ids, err := rv.Actions.FindCertificates(ctx, q, MaxRevokeTargets)
		if err != nil {
			var tm *TooManyError
			if errors.As(err, &tm) {
				return workflow.Result{}, workflow.Permanent(fmt.Errorf("query %s: %w", q, err))
			}
			return workflow.Result{}, err
		}
		certs, reqs := make([]any, 0, len(ids)), make([]any, 0, len(ids))
		skipped := map[string]any{}
		for _, id := range ids {
			o, err := rv.Actions.Revoke(ctx, RevokeOrder{Origin: origin, CertificateID: id, Reason: reason, Comment: why})
			if err != nil {
				// A retry revokes those done already once: by their keys.
				return workflow.Result{}, fmt.Errorf("certificate %d: %w", id, err)
			}
			o.CertificateID = id
			logRevocation(run, o)
			if o.Skipped != "" {
				skipped[strconv.FormatInt(id, 10)] = o.Skipped
				continue
			}
			certs, reqs = append(certs, id), append(reqs, o.RequestID)
		}
		return workflow.Result{Outputs: map[string]any{
			"query": q, "matched": len(ids), "certificates": certs, "requests": reqs, "skipped": skipped,
		}}, nil
	}), nil
}

func logRevocation(run *workflow.Run, o Outcome) {
	if o.Skipped != "" {
		run.Log.Info("revocation skipped", "certificate", o.CertificateID, "why", o.Skipped)
		return
	}
	run.Log.Info("revocation submitted", "certificate", o.CertificateID, "request", o.RequestID, "repeat", o.Existing)
}

// parseReason reads a reason code, as its number or RFC 5280 name.
func parseReason(s string) (int, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 6 {
			return 0, fmt.Errorf("%d is no RFC 5280 reason code: want 0–6", n)
		}
		return n, nil
	}
	if n, ok := revocationReasons[strings.ToLower(s)]; ok {
		return n, nil
	}
	return 0, fmt.Errorf("%q: want a reason code 0–6 or its name: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold", s)
}

// compileRevokeQuery compiles a revoke step's query template, whose every
// expression must stand inside a quoted value.
func compileRevokeQuery(spec *workflow.Spec, node *yaml.Node) (*workflow.Template, error) {
	if node.Kind != yaml.ScalarNode || strings.TrimSpace(node.Value) == "" {
		return nil, spec.Errorf(node, `query: want a Keyfactor query (Field -op "value" clauses joined by AND; may embed ${{ }} in values)`)
	}
	t, err := spec.Template(node.Value, node)
	if err != nil {
		return nil, err
	}
	lits := t.Literals()
	quotes := 0
	for i, lit := range lits[:len(lits)-1] {
		quotes += strings.Count(lit, `"`)
		if quotes%2 == 0 {
			return nil, spec.Errorf(node, `query: expression %d stands outside a quoted value; write Field -eq "${{ … }}" so that a value cannot add clauses`, i+1)
		}
	}
	return t, nil
}

// queryValue checks an expression's value before it lands inside a
// query's quoted value: not empty (-contains "" would match every
// certificate), no quote (which would end the value) and no control
// character.
func queryValue(v string) (string, error) {
	switch {
	case strings.TrimSpace(v) == "":
		return "", errors.New("empty: a query value from an expression must not be empty")
	case strings.ContainsRune(v, '"'):
		return "", fmt.Errorf("%q holds a quote, which a query value may not", v)
	case strings.ContainsFunc(v, unicode.IsControl):
		return "", fmt.Errorf("%q holds a control character", v)
	}
	return v, nil
}

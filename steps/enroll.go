package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// Enroll is the enroll step type, for event-triggered and schedule
// definitions: it submits an enrollment as Actor, which the enrollment
// workflow runs (its definition, policy and approvals) like POST
// /Enrollment/CSR's or /Enrollment/PFX's, and does not wait for it: its
// output is the request id. Either csr gives the CSR (PEM), or subject
// the distinguished name of a key certflow generates (the template's
// first allowed kind) and retains, which the template must allow
// (key_retention): the key is then recovered by an administrator (POST
// /Certificates/Recover). Every value is text that may embed ${{ }}.
// One enrollment is made however often the step runs (an
// Idempotency-Key derived from the run and the step).
//
//	uses: enroll
//	with:
//	  template: WebServer
//	  ca: ""                              # optional
//	  subject: "CN=${{ event.Data.host }}"  # or csr: "${{ event.Data.csr }}"
//	  sans:
//	    dns: ["${{ event.Data.host }}"]
//	  metadata:
//	    Owner: "${{ event.Data.owner }}"
type Enroll struct {
	// Config, when set, checks a literal template at load: it must exist
	// and, for a subject (a generated key), retain keys.
	Config *config.Config
	// Actions submit the enrollment (nil in certflow lint).
	Actions Actions
}

type enrollWith struct {
	Template yaml.Node              `yaml:"template"`
	CA       yaml.Node              `yaml:"ca"`
	CSR      yaml.Node              `yaml:"csr"`
	Subject  yaml.Node              `yaml:"subject"`
	SANs     map[string][]yaml.Node `yaml:"sans"`
	Metadata map[string]yaml.Node   `yaml:"metadata"`
}

// maxEnrollSANs bounds the SAN entries an enroll step lists.
const maxEnrollSANs = 100

// Build implements workflow.Builder.
func (en Enroll) Build(spec *workflow.Spec) (workflow.Step, error) {
	if err := actingTrigger(spec); err != nil {
		return nil, err
	}
	var w enrollWith
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	var errs []error
	text := func(field string, n *yaml.Node, required bool) *workflow.Template {
		if n.Kind == 0 {
			if required {
				errs = append(errs, spec.Errorf(spec.With, "%s: required", field))
			}
			return nil
		}
		if n.Kind != yaml.ScalarNode {
			errs = append(errs, spec.Errorf(n, "%s: want text (may embed ${{ }})", field))
			return nil
		}
		t, err := spec.Template(n.Value, n)
		if err != nil {
			errs = append(errs, err)
		}
		return t
	}
	tmpl := text("template", &w.Template, true)
	ca := text("ca", &w.CA, false)
	// The step enrolls with an administrator's authority: what an event's
	// sender may ask for is bounded by the template's policy, so the
	// definition, not the event, names the template and the CA.
	for _, f := range []struct {
		name string
		t    *workflow.Template
		n    *yaml.Node
	}{{"template", tmpl, &w.Template}, {"ca", ca, &w.CA}} {
		if f.t != nil && !f.t.IsLiteral() {
			errs = append(errs, spec.Errorf(f.n, "%s: must be written out, not computed: the step enrolls with an administrator's authority, and the template's policy is what bounds the event's data", f.name))
		}
	}
	csr := text("csr", &w.CSR, false)
	subject := text("subject", &w.Subject, false)
	switch {
	case w.CSR.Kind != 0 && w.Subject.Kind != 0:
		errs = append(errs, spec.Errorf(&w.Subject, "subject: give csr (a CSR) or subject (certflow generates the key), not both"))
	case w.CSR.Kind == 0 && w.Subject.Kind == 0:
		errs = append(errs, spec.Errorf(spec.With, "csr or subject: one is required (a CSR, or the subject of a key certflow generates)"))
	}
	sans := map[string][]*workflow.Template{}
	count := 0
	for _, kind := range sortedNames(w.SANs) {
		if !workflow.SANKind(kind) {
			errs = append(errs, spec.Errorf(spec.With, "sans.%s: unknown SAN type (want dns, ip4, ip6, uri or rfc822)", kind))
			continue
		}
		for i := range w.SANs[kind] {
			count++
			if t := text(fmt.Sprintf("sans.%s[%d]", kind, i), &w.SANs[kind][i], true); t != nil {
				sans[kind] = append(sans[kind], t)
			}
		}
	}
	if count > maxEnrollSANs {
		errs = append(errs, spec.Errorf(spec.With, "sans: more than %d entries", maxEnrollSANs))
	}
	md := map[string]*workflow.Template{}
	for _, name := range sortedNames(w.Metadata) {
		n := w.Metadata[name]
		if t := text("metadata."+name, &n, true); t != nil {
			md[name] = t
		}
	}
	if tmpl != nil && tmpl.IsLiteral() && en.Config != nil {
		name, _ := tmpl.String(nil)
		switch t, ok := en.Config.Template(strings.TrimSpace(name)); {
		case !ok:
			errs = append(errs, spec.Errorf(&w.Template, "template: no template %q is configured", name))
		case w.Subject.Kind != 0 && !t.KeyRetention:
			errs = append(errs, spec.Errorf(&w.Subject, "subject: template %s does not retain private keys (key_retention), so a key certflow generated could never be recovered; give a csr", t.Name))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	eval := func(run *workflow.Run, field string, t *workflow.Template) (string, error) {
		if t == nil {
			return "", nil
		}
		v, err := t.String(run.Env)
		if err != nil {
			return "", workflow.Permanent(fmt.Errorf("%s: %w", field, err))
		}
		return strings.TrimSpace(v), nil
	}
	return stepFunc(func(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
		if err := needActions(en.Actions); err != nil {
			return workflow.Result{}, err
		}
		o := EnrollOrder{Origin: originOf(run)}
		var err error
		for _, f := range []struct {
			name string
			t    *workflow.Template
			dst  *string
		}{{"template", tmpl, &o.Template}, {"ca", ca, &o.CA}, {"csr", csr, &o.CSR}, {"subject", subject, &o.Subject}} {
			if *f.dst, err = eval(run, f.name, f.t); err != nil {
				return workflow.Result{}, err
			}
		}
		switch {
		case o.Template == "":
			return workflow.Result{}, workflow.Permanent(errors.New("template: evaluates to nothing"))
		case csr != nil && o.CSR == "":
			return workflow.Result{}, workflow.Permanent(errors.New("csr: evaluates to nothing"))
		case subject != nil && o.Subject == "":
			return workflow.Result{}, workflow.Permanent(errors.New("subject: evaluates to nothing"))
		}
		if len(sans) > 0 {
			o.SANs = make(map[string][]string, len(sans))
			for kind, list := range sans {
				for i, t := range list {
					v, err := eval(run, fmt.Sprintf("sans.%s[%d]", kind, i), t)
					if err != nil {
						return workflow.Result{}, err
					}
					if v != "" {
						o.SANs[kind] = append(o.SANs[kind], v)
					}
				}
			}
		}
		if len(md) > 0 {
			o.Metadata = make(map[string]string, len(md))
			for name, t := range md {
				if o.Metadata[name], err = eval(run, "metadata."+name, t); err != nil {
					return workflow.Result{}, err
				}
			}
		}
		out, err := en.Actions.Enroll(ctx, o)
		if err != nil {
			return workflow.Result{}, err
		}
		run.Log.Info("enrollment submitted", "request", out.RequestID, "template", o.Template, "repeat", out.Existing)
		return workflow.Result{Outputs: map[string]any{"request": out.RequestID}}, nil
	}), nil
}

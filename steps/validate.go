package steps

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/policy"
	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// Validate is the validate step type: it denies a request that breaks a
// rule. It is pure (workflow.Pure): it only reads the request and the
// configuration, so the engine writes no checkpoint of its own after it.
// With `policy: true` (the default) the template's policy is checked
// first: key type and size, curves, wildcards and RFC 2818. Then each
// `rules` entry's `check` must hold, or the request is denied with its
// `message`.
//
//	uses: validate
//	with:
//	  rules:
//	    - check: all(sans.DNS, {# endsWith ".example.com"})
//	      message: only names under example.com
//
// The policy check reads the configuration of the moment (templates, CAs)
// and the CAs' own subjects.
type Validate struct {
	// Config has the templates and the CAs' settings.
	Config *config.Config
	// CASubjects are the CAs' subjects, which policy keeps out of issued
	// certificates (nil: none known).
	CASubjects *ca.Subjects
}

type validateWith struct {
	Policy *bool       `yaml:"policy"`
	Rules  []ruleInput `yaml:"rules"`
}

type ruleInput struct {
	Check   yaml.Node `yaml:"check"`
	Message string    `yaml:"message"`
}

type rule struct {
	check   *workflow.Program
	message string
}

// Build implements workflow.Builder.
func (v Validate) Build(spec *workflow.Spec) (workflow.Step, error) {
	var w validateWith
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	policy := w.Policy == nil || *w.Policy
	rules := make([]rule, 0, len(w.Rules))
	var errs []error
	for i, r := range w.Rules {
		if r.Check.Kind != yaml.ScalarNode {
			errs = append(errs, spec.Errorf(spec.With, "rules[%d].check: required, a boolean expression", i))
			continue
		}
		if strings.TrimSpace(r.Message) == "" {
			errs = append(errs, spec.Errorf(&r.Check, "rules[%d].message: required (it is what the requester is told)", i))
			continue
		}
		p, err := spec.Bool(r.Check.Value, &r.Check)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rules = append(rules, rule{check: p, message: r.Message})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return pureFunc(func(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
		if policy {
			if msg := PolicyViolation(v.Config, v.CASubjects.All(), run, nil); msg != "" {
				return workflow.Result{}, workflow.Deny("%s", msg)
			}
		}
		for _, r := range rules {
			ok, err := r.check.Bool(run.Env)
			if err != nil {
				return workflow.Result{}, workflow.Permanent(err)
			}
			if !ok {
				return workflow.Result{}, workflow.Deny("%s", r.message)
			}
		}
		return workflow.Result{}, nil
	}), nil
}

// PolicyViolation checks a run's request against the policy that binds it
// (internal/policy): its template's, or without one the standalone CA's
// that signs (signer, the issue step's choice, which a definition's
// `authority:` may make), else the one the request names. It returns the
// violation worded for the requester, or "". A revocation is not held to
// today's policy: the certificate it revokes exists whatever the policy
// now says.
func PolicyViolation(cfg *config.Config, cas policy.CASubjects, run *workflow.Run, signer *config.CA) string {
	req := run.Env.Request
	if req.Revocation.CertificateId != 0 {
		return ""
	}
	var rules policy.Rules
	switch {
	case req.Template != "":
		t, ok := cfg.Template(req.Template)
		if !ok {
			return fmt.Sprintf("template %q no longer exists", req.Template)
		}
		rules = policy.ForTemplate(t)
	case signer != nil || req.CertificateAuthority != "":
		c, ok := signer, signer != nil
		if !ok {
			c, ok = cfg.CA(req.CertificateAuthority)
		}
		if !ok || !c.Standalone {
			return fmt.Sprintf("certificate authority %q is not a standalone CA, and the request names no template", cmp.Or(nameOf(c), req.CertificateAuthority))
		}
		if !c.MayEnroll(run.Env.Requester.Roles) {
			return fmt.Sprintf("%s may not enroll with certificate authority %s", run.Env.Requester.Name, c.Name)
		}
		rules = policy.ForCA(c)
	default:
		return "the request names neither a template nor a certificate authority"
	}
	if run.CSR == nil {
		return "the request has no CSR"
	}
	v := rules.Check(&policy.Request{
		Subject: run.CSR.Subject, RawSubject: run.CSR.RawSubject, PublicKey: run.CSR.PublicKey,
		SANs: policy.SANs(run.Env.SANs),
	}, cas)
	if v == nil {
		return ""
	}
	return v.Message
}

func nameOf(c *config.CA) string {
	if c == nil {
		return ""
	}
	return c.Name
}

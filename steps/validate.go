package steps

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// validate denies a request that breaks a rule. It is pure (workflow.Pure):
// it only reads the request and the configuration, so the engine writes no
// checkpoint of its own after it. With `policy: true` (the
// default) the template's policy is checked first: key type and size,
// curves, wildcards and RFC 2818. Then each `rules` entry's `check` must
// hold, or the request is denied with its `message`.
//
//	uses: validate
//	with:
//	  rules:
//	    - check: all(sans.DNS, {# endsWith ".example.com"})
//	      message: only names under example.com
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

func (d *Deps) buildValidate(spec *workflow.Spec) (workflow.Step, error) {
	var w validateWith
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	policy := w.Policy == nil || *w.Policy
	rules := make([]rule, 0, len(w.Rules))
	for i, r := range w.Rules {
		if r.Check.Kind != yaml.ScalarNode {
			return nil, spec.Errorf(spec.With, "rules[%d].check: required, a boolean expression", i)
		}
		if strings.TrimSpace(r.Message) == "" {
			return nil, spec.Errorf(&r.Check, "rules[%d].message: required (it is what the requester is told)", i)
		}
		p, err := spec.Bool(r.Check.Value, &r.Check)
		if err != nil {
			return nil, err
		}
		rules = append(rules, rule{check: p, message: r.Message})
	}
	return pureFunc(func(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
		if policy {
			if msg := d.templatePolicy(run.Env); msg != "" {
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

// templatePolicy returns why the request breaks its template's policy, or "".
func (d *Deps) templatePolicy(env *workflow.Env) string {
	if env.Request.Template == "" {
		return "" // a standalone CA's request: no template policy
	}
	t, ok := d.Config.Template(env.Request.Template)
	if !ok {
		return fmt.Sprintf("template %q no longer exists", env.Request.Template)
	}
	return TemplatePolicy(t, env.CSR, env.SANs)
}

// TemplatePolicy checks a CSR and its merged SANs against a template and
// returns the first violation, worded for the requester, or "".
func TemplatePolicy(t *config.Template, csr workflow.CSR, sans workflow.SANs) string {
	switch csr.KeyType {
	case "RSA":
		if !slices.Contains(t.RSAKeySizes, csr.KeyBits) {
			return fmt.Sprintf("template %s does not allow RSA %d-bit keys (allowed: %s)", t.Name, csr.KeyBits, joinInts(t.RSAKeySizes))
		}
	case "ECC":
		if !slices.Contains(t.ECCCurves, csr.Curve) {
			return fmt.Sprintf("template %s does not allow ECC curve %s (allowed: %s)", t.Name, csr.Curve, strings.Join(t.ECCCurves, ", "))
		}
	case "Ed25519":
		if !t.AllowEd25519 {
			return fmt.Sprintf("template %s does not allow Ed25519 keys", t.Name)
		}
	}
	for _, name := range slices.Concat(sans.DNS, []string{csr.CommonName}) {
		if strings.HasPrefix(name, "*.") && !t.AllowWildcards {
			return fmt.Sprintf("template %s does not allow wildcard names (%s)", t.Name, name)
		}
	}
	for _, name := range sans.DNS {
		if !workflow.IsDNSName(name) {
			return fmt.Sprintf("%q is not a valid DNS name", name)
		}
	}
	if t.RFCEnforcement && len(sans.DNS) == 0 && len(sans.IP) == 0 {
		return fmt.Sprintf("template %s enforces RFC 2818: the request needs a DNS or IP subject alternative name, or a common name that is one", t.Name)
	}
	return ""
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

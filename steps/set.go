package steps

import (
	"context"
	"errors"
	"fmt"

	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// Set is the set step type: it computes variables for later steps,
// readable as vars.<name>. It is pure (workflow.Pure): the engine writes
// no checkpoint of its own after it. Each value is a string that may
// embed ${{ }}; a value that is one expression keeps the expression's
// type. Variables (and the step's outputs, the same values) are shown to
// approvers and administrators; a requester sees one only when the
// definition's top-level `visible:` names it (workflow.Visibility), so a
// set step may hold a token.
//
//	uses: set
//	with:
//	  tier: "${{ csr.KeyBits >= 3072 ? 'high' : 'standard' }}"
//	  owner_email: "${{ steps.owner.body.email }}"
//
// It uses no service.
type Set struct{}

// Build implements workflow.Builder.
func (Set) Build(spec *workflow.Spec) (workflow.Step, error) {
	var w map[string]yaml.Node
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	if len(w) == 0 {
		return nil, spec.Errorf(spec.With, "set needs at least one variable under with:")
	}
	vars := make(map[string]*workflow.Template, len(w))
	var errs []error
	for _, name := range sortedNames(w) {
		node := w[name]
		if !stepVarRE.MatchString(name) {
			errs = append(errs, spec.Errorf(&node, "variable name %q: want letters, digits and _, starting with a letter", name))
			continue
		}
		if node.Kind != yaml.ScalarNode {
			errs = append(errs, spec.Errorf(&node, "%s: want a value (may embed ${{ }})", name))
			continue
		}
		t, err := spec.Template(node.Value, &node)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		vars[name] = t
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return pureFunc(func(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
		out := make(map[string]any, len(vars))
		for name, t := range vars {
			v, err := t.Value(run.Env)
			if err != nil {
				return workflow.Result{}, workflow.Permanent(fmt.Errorf("%s: %w", name, err))
			}
			out[name] = v
		}
		return workflow.Result{Vars: out, Outputs: out}, nil
	}), nil
}

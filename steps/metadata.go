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

// metadata sets certificate metadata fields from expressions.
//
//	uses: metadata
//	with:
//	  set:
//	    RequestedBy: "${{ requester.Name }}"
type metadataWith struct {
	Set map[string]yaml.Node `yaml:"set"`
}

func (d *Deps) buildMetadata(spec *workflow.Spec) (workflow.Step, error) {
	var w metadataWith
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	if len(w.Set) == 0 {
		return nil, spec.Errorf(spec.With, "set: at least one field is required")
	}
	fields := make(map[string]*workflow.Template, len(w.Set))
	for _, name := range sortedNames(w.Set) {
		node := w.Set[name]
		if len(d.Config.Metadata) > 0 {
			i := slices.IndexFunc(d.Config.Metadata, func(f config.MetaField) bool { return strings.EqualFold(f.Name, name) })
			if i < 0 {
				return nil, spec.Errorf(&node, "set: %q is not a configured metadata field", name)
			}
			name = d.Config.Metadata[i].Name // the configured spelling, so it overrides the request's value
		}
		if node.Kind != yaml.ScalarNode {
			return nil, spec.Errorf(&node, "set.%s: want a string (may embed ${{ }})", name)
		}
		t, err := spec.Template(node.Value, &node)
		if err != nil {
			return nil, err
		}
		fields[name] = t
	}
	return stepFunc(func(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
		md := make(map[string]string, len(fields))
		for name, t := range fields {
			v, err := t.String(run.Env)
			if err != nil {
				return workflow.Result{}, workflow.Permanent(fmt.Errorf("set.%s: %w", name, err))
			}
			md[name] = v
		}
		out := make(map[string]any, len(md))
		for k, v := range md {
			out[k] = v
		}
		return workflow.Result{Metadata: md, Outputs: out}, nil
	}), nil
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

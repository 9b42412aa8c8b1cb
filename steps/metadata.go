package steps

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/metadata"
	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// Metadata is the metadata step type: it sets certificate metadata fields
// from expressions. It is pure (workflow.Pure): the fields travel in the
// instance, so the engine writes no checkpoint of its own after it. When
// metadata fields are configured, each name must be one of them and each
// value must pass its field's type: a literal when the definition loads, an
// evaluated template when the step runs (a failure is permanent). Values are
// stored normalized (Boolean "TRUE" as "true", …). Hidden fields may be set
// here. The names it sets are reserved: a requester may not supply them at
// enrollment (workflow.MetadataSetter).
//
//	uses: metadata
//	with:
//	  set:
//	    RequestedBy: "${{ requester.Name }}"
//
// In an event-triggered or schedule definition it edits an issued
// certificate instead — the one the event concerns, or the one
// `certificate:` names — as PUT /Certificates/Metadata does (Actions),
// with the same checks; it is not pure there, reserves no names, and
// setting a field to the value it has changes nothing, so a repeat is
// harmless.
//
//	uses: metadata
//	with:
//	  certificate: steps.renew.certificate   # default: the event's
//	  set:
//	    RenewalRequest: "${{ steps.renew.request }}"
type Metadata struct {
	// Fields are the configured metadata fields (metadata:); none means
	// any name and any text is taken.
	Fields []config.MetaField
	// Actions edit certificates for event-triggered definitions (nil in
	// certflow lint).
	Actions Actions
}

type metadataWith struct {
	Set         map[string]yaml.Node `yaml:"set"`
	Certificate yaml.Node            `yaml:"certificate"`
}

// Build implements workflow.Builder.
func (m Metadata) Build(spec *workflow.Spec) (workflow.Step, error) {
	var w metadataWith
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	event := workflow.EventTrigger(spec.Trigger)
	var target certificateTarget
	switch {
	case w.Certificate.Kind != 0 && !event:
		return nil, spec.Errorf(&w.Certificate, "certificate: only an event-triggered or schedule definition's metadata step names a certificate; here the step sets the request's own")
	case event:
		t, err := compileTarget(spec, &w.Certificate)
		if err != nil {
			return nil, err
		}
		target = t
	}
	if len(w.Set) == 0 {
		return nil, spec.Errorf(spec.With, "set: at least one field is required")
	}
	// A value's rule is nil when no metadata fields are configured: then
	// any name and any text is taken.
	type setting struct {
		tmpl *workflow.Template
		rule *metadata.Field
	}
	fields := make(map[string]setting, len(w.Set))
	var errs []error
	for _, name := range sortedNames(w.Set) {
		node := w.Set[name]
		var rule *metadata.Field
		if len(m.Fields) > 0 {
			i := slices.IndexFunc(m.Fields, func(f config.MetaField) bool { return strings.EqualFold(f.Name, name) })
			if i < 0 {
				errs = append(errs, spec.Errorf(&node, "set: %q is not a configured metadata field", name))
				continue
			}
			f := &m.Fields[i]
			name = f.Name // the configured spelling, so it overrides the request's value
			rule = &metadata.Field{Type: f.Type, Validation: f.Validation, Message: f.Message, Options: f.Options}
		}
		if _, twice := fields[name]; twice {
			errs = append(errs, spec.Errorf(&node, "set.%s: given twice (field names ignore case)", name))
			continue
		}
		if node.Kind != yaml.ScalarNode {
			errs = append(errs, spec.Errorf(&node, "set.%s: want a string (may embed ${{ }})", name))
			continue
		}
		t, err := spec.Template(node.Value, &node)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if rule != nil && t.IsLiteral() {
			v, _ := t.String(nil) // no expressions: nothing to evaluate
			if _, err := metadata.Check(*rule, v); err != nil {
				errs = append(errs, spec.Errorf(&node, "set.%s: %v", name, err))
				continue
			}
		}
		fields[name] = setting{tmpl: t, rule: rule}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// values evaluates the fields; clear lets a value be empty (an edit
	// clears the field), unchecked.
	values := func(run *workflow.Run, clear bool) (map[string]string, error) {
		md := make(map[string]string, len(fields))
		for name, f := range fields {
			v, err := f.tmpl.String(run.Env)
			if err == nil && f.rule != nil && !(clear && v == "") {
				v, err = metadata.Check(*f.rule, v)
			}
			if err != nil {
				return nil, workflow.Permanent(fmt.Errorf("set.%s: %w", name, err))
			}
			md[name] = v
		}
		return md, nil
	}
	if event {
		return stepFunc(func(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
			if err := needActions(m.Actions); err != nil {
				return workflow.Result{}, err
			}
			id, err := target.id(run)
			if err != nil {
				return workflow.Result{}, err
			}
			md, err := values(run, true)
			if err != nil {
				return workflow.Result{}, err
			}
			o, err := m.Actions.SetMetadata(ctx, MetadataOrder{Origin: originOf(run), CertificateID: id, Values: md})
			if err != nil {
				return workflow.Result{}, err
			}
			out := make(map[string]any, len(md)+2)
			for k, v := range md {
				out[k] = v
			}
			out["certificate"] = id
			out["changed"] = o.Skipped == ""
			return workflow.Result{Outputs: out}, nil
		}), nil
	}
	return metadataStep{names: sortedNames(fields), pureFunc: func(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
		md, err := values(run, false)
		if err != nil {
			return workflow.Result{}, err
		}
		out := make(map[string]any, len(md))
		for k, v := range md {
			out[k] = v
		}
		return workflow.Result{Metadata: md, Outputs: out}, nil
	}}, nil
}

// metadataStep is a compiled metadata step: pure, and naming the fields
// it sets (workflow.MetadataSetter), which requesters may then not supply.
type metadataStep struct {
	pureFunc
	names []string
}

var _ workflow.MetadataSetter = metadataStep{}

// MetadataNames implements workflow.MetadataSetter.
func (s metadataStep) MetadataNames() []string { return s.names }

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

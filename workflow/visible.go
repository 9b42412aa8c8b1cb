package workflow

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Visibility is what of an instance's state a definition shows the
// request's requester: the variables and step outputs its top-level
// `visible:` list names. Everything else in vars and steps.<id> (a CMDB
// token a set step keeps, an http step's answer, an error's text) is
// shown only to approvers and administrators. The zero Visibility shows
// nothing.
//
//	visible:
//	  - vars.tier              # one variable
//	  - steps.owner.email      # one output of one step
//	  - steps.lookup           # every output of step lookup but its error
type Visibility struct {
	// Entries are the list as written, for listings.
	Entries []string
	vars    map[string]bool
	steps   map[string]*shownOutputs
}

// shownOutputs are the outputs of one step a Visibility shows: every
// one but ErrorOutput when all is set, and those named.
type shownOutputs struct {
	all   bool
	names map[string]bool
}

func (o *shownOutputs) shows(name string) bool {
	return o.names[name] || o.all && name != ErrorOutput
}

// ErrorOutput is the output a step with on_error: continue leaves when
// it fails. Its text is an internal failure detail: showing a whole
// step does not show it; naming steps.<id>.error does.
const ErrorOutput = "error"

var (
	visibleVarRE = regexp.MustCompile(`^vars\.([A-Za-z][A-Za-z0-9_]{0,63})$`)
	// An output is named by everything after the step id: metadata
	// field names (a metadata step's outputs) may hold dots and dashes.
	visibleStepRE = regexp.MustCompile(`^steps\.([a-z][a-z0-9_-]{0,62})(?:\.(\S{1,128}))?$`)
)

// parseVisible reads the top-level `visible:` list; step reports whether
// a step id is the definition's (the appended CA step's included).
func parseVisible(file string, node *yaml.Node, step func(id string) bool) (Visibility, []error) {
	var v Visibility
	if node == nil || node.Kind == 0 {
		return v, nil
	}
	if node.Kind != yaml.SequenceNode {
		return v, []error{&LoadError{Pos: PosOf(file, node), Msg: "visible: want a list of vars.<name>, steps.<id> or steps.<id>.<output>"}}
	}
	var errs []error
	for _, n := range node.Content {
		bad := func(format string, args ...any) {
			errs = append(errs, &LoadError{Pos: PosOf(file, n), Msg: "visible: " + fmt.Sprintf(format, args...)})
		}
		if n.Kind != yaml.ScalarNode {
			bad("want vars.<name>, steps.<id> or steps.<id>.<output>")
			continue
		}
		entry := strings.TrimSpace(n.Value)
		if m := visibleVarRE.FindStringSubmatch(entry); m != nil {
			if v.vars == nil {
				v.vars = map[string]bool{}
			}
			v.vars[m[1]] = true
			v.Entries = append(v.Entries, entry)
			continue
		}
		m := visibleStepRE.FindStringSubmatch(entry)
		if m == nil {
			bad("%q: want vars.<name>, steps.<id> or steps.<id>.<output>", entry)
			continue
		}
		if !step(m[1]) {
			bad("%q: no step has id %q", entry, m[1])
			continue
		}
		if v.steps == nil {
			v.steps = map[string]*shownOutputs{}
		}
		o := v.steps[m[1]]
		if o == nil {
			o = &shownOutputs{names: map[string]bool{}}
			v.steps[m[1]] = o
		}
		if m[2] == "" {
			o.all = true
		} else {
			o.names[m[2]] = true
		}
		v.Entries = append(v.Entries, entry)
	}
	return v, errs
}

// Vars returns the variables of vars that v shows, as a new map.
func (v Visibility) Vars(vars map[string]any) map[string]any {
	out := map[string]any{}
	for name, val := range vars {
		if v.vars[name] {
			out[name] = val
		}
	}
	return out
}

// Outputs returns the step outputs of outputs (steps.<id>.<name>) that v
// shows, as new maps; a step none of whose outputs are shown is left out.
func (v Visibility) Outputs(outputs map[string]map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, all := range outputs {
		shown := v.steps[id]
		if shown == nil {
			continue
		}
		kept := maps.Clone(all)
		maps.DeleteFunc(kept, func(name string, _ any) bool { return !shown.shows(name) })
		if len(kept) > 0 {
			out[id] = kept
		}
	}
	return out
}

// MetadataSetter is implemented by a step type that sets certificate
// metadata. The names it sets are reserved: a requester may not supply
// them at enrollment (Set.MetadataNames), so that what a workflow records
// (RequestedBy, ApprovedBy, …) is never a requester's word.
type MetadataSetter interface {
	Step
	// MetadataNames are the metadata fields the step (as configured)
	// sets.
	MetadataNames() []string
}

// ReservedMetadata are metadata names only workflows set, whether or
// not a loaded definition sets them: a requester supplying one would
// be taken for the workflow's record.
var ReservedMetadata = []string{"ApprovedBy", "RequestedBy", "Workflow"}

// MetadataNames returns the metadata names a requester may not supply
// (compared without regard to case): ReservedMetadata and every name a
// step of a definition of the set sets, sorted, each once. The slice is
// the set's own: do not change it.
func (s *Set) MetadataNames() []string {
	if s == nil || s.reserved == nil {
		return ReservedMetadata
	}
	return s.reserved
}

// reservedMetadata computes Set.MetadataNames for defs.
func reservedMetadata(defs []*Definition) []string {
	names := slices.Clone(ReservedMetadata)
	for _, d := range defs {
		for _, n := range d.SetsMetadata {
			if !slices.ContainsFunc(names, func(m string) bool { return strings.EqualFold(m, n) }) {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return names
}

// metadataNames collects the metadata names the steps set.
func metadataNames(steps []*StepDef) []string {
	var names []string
	for _, s := range steps {
		if ms, ok := s.Step.(MetadataSetter); ok {
			for _, n := range ms.MetadataNames() {
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
		}
	}
	return names
}

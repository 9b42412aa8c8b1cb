package api

import (
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// What a caller may see of a request, in one place:
//
//   - the request at all: its requester, approvers and administrators
//     (who read every request), and whoever may decide its current wait
//     (visible). To anyone else every path that takes its id (request,
//     instance or certificate id) answers exactly as for an id that does
//     not exist: 404, the same body.
//   - its instance's state (CurrentStateData): approvers, administrators
//     and its current deciders see all of vars and steps.<id>; its
//     requester sees step ids, states and decisions, and of vars and
//     step outputs only what the definition's `visible:` names
//     (workflow.Visibility). A definition no longer loaded shows nothing.
//   - failure details (the text of errors): approvers and administrators
//     (keyfactor.SeesDetails).

// seesState reports whether viewer sees all of r's instance state: an
// approver or administrator, or one who may decide r's wait now.
func seesState(r *store.Request, viewer *Identity) bool {
	if keyfactor.SeesDetails(roles(viewer)) {
		return true
	}
	w := r.Instance.Wait
	return w != nil && r.Instance.MayDecide(w.Step, decider(viewer), r.Requester.Name) == nil
}

// currentState is an instance's CurrentStateData for viewer: Vars and
// Steps (step outputs), filtered by def's visibility for a viewer who does
// not see everything (def nil: nothing shown), and Metadata (the
// certificate's, which its requester reads on the certificate anyway).
func currentState(r *store.Request, def *workflow.Definition, viewer *Identity) map[string]any {
	inst := &r.Instance
	if viewer != nil && seesState(r, viewer) {
		return map[string]any{"Vars": inst.Vars, "Steps": inst.Outputs, "Metadata": inst.Metadata}
	}
	var v workflow.Visibility
	if def != nil {
		v = def.Visible
	}
	return map[string]any{"Vars": v.Vars(inst.Vars), "Steps": v.Outputs(inst.Outputs), "Metadata": inst.Metadata}
}

// checkReservedMetadata refuses, with 400 naming Metadata.<name>, a
// submitted metadata field that workflows set (workflow.Set.MetadataNames:
// RequestedBy, ApprovedBy, Workflow and whatever a loaded definition's
// metadata step sets), compared without regard to case, configured as a
// field or not: what a workflow records is never a requester's word. A
// null or empty value is not given (as checkMetadata counts it) and
// passes.
func (s *Server) checkReservedMetadata(in map[string]any) error {
	for _, name := range slices.Sorted(maps.Keys(in)) { // the same field named every time
		if v := in[name]; v == nil || v == "" {
			continue
		}
		if reserved := s.reservedName(strings.TrimSpace(name)); reserved != "" {
			return &apiError{status: http.StatusBadRequest, code: keyfactor.CodeInvalidField,
				msg: "Metadata." + reserved + ": set by the workflow; a request may not supply it"}
		}
	}
	return nil
}

// reservedName is metadata field name, in the spelling workflows set it,
// when it is one they set (compared without case), else "": a request may
// not supply it (checkReservedMetadata), so it is not required of one
// either.
func (s *Server) reservedName(name string) string {
	for _, reserved := range s.defs.Load().MetadataNames() {
		if strings.EqualFold(reserved, name) {
			return reserved
		}
	}
	return ""
}

package api

import (
	"github.com/certflow/certflow/internal/enroll"
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
func seesState(r *store.Request, viewer *enroll.Caller) bool {
	if keyfactor.SeesDetails(roles(viewer)) {
		return true
	}
	w := r.Instance.Wait
	return w != nil && r.Instance.MayDecide(w.Step, viewer.Decider(), r.Requester.Name) == nil
}

// currentState is an instance's CurrentStateData for viewer: Vars and
// Steps (step outputs), filtered by def's visibility for a viewer who does
// not see everything (def nil: nothing shown), and Metadata (the
// certificate's, which its requester reads on the certificate anyway).
func currentState(r *store.Request, def *workflow.Definition, viewer *enroll.Caller) map[string]any {
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

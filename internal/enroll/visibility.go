package enroll

import (
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// What a caller may see of a request, in one place:
//
//   - the request at all: its requester, approvers and administrators
//     (who read every request), and whoever may decide its current wait
//     (Visible; CertificateVisible for an issued certificate, MayActOn
//     for recovering, renewing and revoking it). To anyone else every
//     path that takes its id (request, instance or certificate id)
//     answers exactly as for an id that does not exist: 404, the same
//     body.
//   - its instance's state (CurrentState): approvers, administrators
//     and its current deciders see all of vars and steps.<id>; its
//     requester sees step ids, states and decisions, and of vars and
//     step outputs only what the definition's `visible:` names
//     (workflow.Visibility). A definition no longer loaded shows nothing.
//   - failure details (the text of errors): approvers and administrators
//     (keyfactor.SeesDetails).

// Visible reports whether viewer may see request r: its requester,
// approvers (who read every request), and whoever may decide it now.
func Visible(r *store.Request, viewer *Caller) bool {
	if CertificateVisible(r, viewer) {
		return true
	}
	w := r.Instance.Wait
	return w != nil && r.Instance.MayDecide(w.Step, viewer.Decider(), r.Requester.Name) == nil
}

// CertificateVisible reports whether viewer may see an issued certificate:
// its requester, and approvers and administrators (who see every request).
func CertificateVisible(r *store.Request, viewer *Caller) bool {
	return r.Requester.Name == viewer.Name || viewer.Has(config.RoleApprover)
}

// MayActOn reports whether caller may act on (recover, renew, revoke) what
// requester asked for: the requester, or an administrator.
func MayActOn(requester string, caller *Caller) bool {
	return requester == caller.Name || caller.Has(config.RoleAdmin)
}

// SeesState reports whether viewer sees all of r's instance state: an
// approver or administrator, or one who may decide r's wait now.
func SeesState(r *store.Request, viewer *Caller) bool {
	if keyfactor.SeesDetails(viewer.RoleNames()) {
		return true
	}
	w := r.Instance.Wait
	return w != nil && r.Instance.MayDecide(w.Step, viewer.Decider(), r.Requester.Name) == nil
}

// CurrentState is an instance's CurrentStateData for viewer: Vars and
// Steps (step outputs), filtered by def's visibility for a viewer who does
// not see everything (def nil: nothing shown), and Metadata (the
// certificate's, which its requester reads on the certificate anyway).
func CurrentState(r *store.Request, def *workflow.Definition, viewer *Caller) map[string]any {
	inst := &r.Instance
	if viewer != nil && SeesState(r, viewer) {
		return map[string]any{"Vars": inst.Vars, "Steps": inst.Outputs, "Metadata": inst.Metadata}
	}
	var v workflow.Visibility
	if def != nil {
		v = def.Visible
	}
	return map[string]any{"Vars": v.Vars(inst.Vars), "Steps": v.Outputs(inst.Outputs), "Metadata": inst.Metadata}
}

// RoleNames are the caller's roles, as keyfactor renders for a viewer; a
// nil caller (an outside receiver, such as a callback's) has none.
func (c *Caller) RoleNames() []string {
	if c == nil {
		return nil
	}
	return c.Roles
}

package enroll

import (
	"slices"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// Caller is who asks: an authenticated user or token with its roles.
type Caller struct {
	Name  string
	Roles []string
}

// Has reports whether the caller holds any of roles; admin holds them all.
func (c *Caller) Has(roles ...string) bool {
	if slices.Contains(c.Roles, config.RoleAdmin) {
		return true
	}
	for _, r := range roles {
		if slices.Contains(c.Roles, r) {
			return true
		}
	}
	return false
}

// Decider is the caller as the workflow judges decisions.
func (c *Caller) Decider() workflow.Decider {
	return workflow.Decider{Name: c.Name, Has: c.Has}
}

// requester is the caller as a request records who asked.
func (c *Caller) requester() workflow.Requester {
	return workflow.Requester{Name: c.Name, Roles: c.Roles}
}

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

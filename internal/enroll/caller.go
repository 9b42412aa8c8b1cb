package enroll

import (
	"slices"

	"github.com/certflow/certflow/internal/config"
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

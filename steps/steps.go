// Package steps holds certflow's step types, one file each. A step type
// is a struct holding the services its steps use when they run (Issue
// holds the CAs and the store, HTTP an HTTP client, …) with a Build
// method, the workflow.Builder that compiles a definition's entry into a
// workflow.Step. Types gathers one value of each, and Types.Catalog maps
// their `uses:` names (the workflow.*Step constants) to their builders.
//
// Building reads at most the configuration, never a service: ForLint
// gives the step types with the configuration alone, which is how
// `certflow lint` loads definitions exactly as a running certflow does.
package steps

import (
	"context"
	"regexp"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/workflow"
)

// Types is one value of each step type, wired to what its steps use. The
// set step uses nothing and so has no field. The steps that act on
// certificates (renew, enroll, and revoke and metadata in event-triggered
// definitions) share one Actions: WithActions wires it into all four.
type Types struct {
	Validate Validate
	Issue    Issue
	Revoke   Revoke
	Metadata Metadata
	Notify   Notify
	HTTP     HTTP
	Approval Approval
	Renew    Renew
	Enroll   Enroll
}

// Catalog maps each step type's `uses:` name to its builder.
func (t Types) Catalog() workflow.Catalog {
	return workflow.Catalog{
		workflow.ValidateStep: t.Validate.Build,
		workflow.IssueStep:    t.Issue.Build,
		workflow.RevokeStep:   t.Revoke.Build,
		workflow.MetadataStep: t.Metadata.Build,
		workflow.NotifyStep:   t.Notify.Build,
		workflow.SetStep:      Set{}.Build,
		workflow.HTTPStep:     t.HTTP.Build,
		workflow.ApprovalStep: t.Approval.Build,
		workflow.RenewStep:    t.Renew.Build,
		workflow.EnrollStep:   t.Enroll.Build,
	}
}

// WithActions returns t with a wired into every step type that acts on
// certificates.
func (t Types) WithActions(a Actions) Types {
	t.Renew.Actions, t.Enroll.Actions, t.Revoke.Actions, t.Metadata.Actions = a, a, a, a
	return t
}

// ForLint returns the step types with what loading a definition reads, the
// configuration, and no service: their builders check definitions as a
// running certflow's do, but the steps they build must never run.
func ForLint(cfg *config.Config) Types {
	notify := Notify{AllowPrivate: cfg.Callbacks.AllowPrivate, SMTPAddr: cfg.SMTP.Addr}
	return Types{
		Validate: Validate{Config: cfg},
		Issue:    Issue{Config: cfg},
		Metadata: Metadata{Fields: cfg.Metadata},
		Notify:   notify,
		HTTP:     HTTP{AllowPrivate: cfg.Callbacks.AllowPrivate},
		Approval: Approval{Notify: notify},
		Enroll:   Enroll{Config: cfg},
	}
}

// stepVarRE is the shape of names steps create (variables, outputs).
var stepVarRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

// stepFunc adapts a function to workflow.Step.
type stepFunc func(ctx context.Context, run *workflow.Run) (workflow.Result, error)

func (f stepFunc) Run(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
	return f(ctx, run)
}

// pureFunc is a stepFunc for a step type with no effect outside its
// result (workflow.Pure): the engine folds its result into the next
// checkpoint instead of writing one of its own.
type pureFunc func(ctx context.Context, run *workflow.Run) (workflow.Result, error)

func (f pureFunc) Run(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
	return f(ctx, run)
}

// Pure implements workflow.Pure.
func (pureFunc) Pure() bool { return true }

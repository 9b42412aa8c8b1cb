// Package steps holds certflow's step types, one file each, each a
// workflow.Step. Catalog wires them to the services they need.
package steps

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/notify"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// Deps are the services steps use at run time. For linting only Config is
// needed: builders never touch the others.
type Deps struct {
	Config *config.Config
	CAs    *ca.Registry
	// CASubjects are the CAs' subjects, which policy keeps out of issued
	// certificates (nil: none known, as when linting).
	CASubjects *ca.Subjects
	Store      *store.Store
	Webhooks   *callback.Sender
	// HTTP is the client of the http step (callback.NewClient).
	HTTP *http.Client
	Log  *slog.Logger
	// Mailer sends the notify step's email; nil when smtp.addr is not set.
	Mailer *notify.Mailer
}

// Catalog returns the step types by their `uses:` names.
func Catalog(d *Deps) workflow.Catalog {
	return workflow.Catalog{
		workflow.ValidateStep: d.buildValidate,
		workflow.IssueStep:    d.buildIssue,
		workflow.RevokeStep:   d.buildRevoke,
		workflow.MetadataStep: d.buildMetadata,
		workflow.NotifyStep:   d.buildNotify,
		workflow.SetStep:      d.buildSet,
		workflow.HTTPStep:     d.buildHTTP,
		workflow.ApprovalStep: d.buildApproval,
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

package steps_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// A request the CA itself refuses (a leaf named as the CA) is denied, not
// retried, and leaves no certificate. The step knows no CA subjects here
// (Issue.CASubjects is nil), so policy lets the name through and the
// refusal is the CA's own.
func TestIssueStepDeniesWhatTheCARefuses(t *testing.T) {
	t.Parallel()
	fx, _, builtin := revokeFixture(t)
	ctx := context.Background()
	issue, id := issueStepFor(t, fx)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: builtin.Issuing().RawSubject, DNSNames: []string{"leaf.example.com"}}, keys()["P-256"])
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	env := envFor(t, fx.Config, workflow.Request{Template: config.DefaultTemplate, CertificateAuthority: builtin.Name()}, csr, nil)
	_, err = issue.Run(ctx, &workflow.Run{RequestID: id, StepID: "issue", Env: env, CSR: csr, Log: nopLogger()})
	var deny *workflow.DenyError
	if !errors.As(err, &deny) || !strings.Contains(err.Error(), "certificate authority's") {
		t.Fatalf("issuing a leaf named as the CA: %v, want a denial", err)
	}
	if c, err := fx.Store.Certificate(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a certificate was stored: %v %v", c, err)
	}
}

// The issue step signs under the claim its run was handed (the worker's,
// taken with its read of the request); without it, that claim's lock
// keeps the step out until the queue runs it again.
func TestIssueStepUsesTheClaimItsRunIsHanded(t *testing.T) {
	t.Parallel()
	fx, _, _ := revokeFixture(t)
	ctx := context.Background()
	issue, id := issueStepFor(t, fx)
	_, claim, err := fx.Store.GetForRun(ctx, id)
	if err != nil || claim == nil {
		t.Fatalf("GetForRun: %v, %v; want a claim", claim, err)
	}
	csr := newCSR(t, "P-256", "claim.example.com", "claim.example.com")
	run := &workflow.Run{RequestID: id, StepID: "issue", CSR: csr, Log: nopLogger(),
		Env: envFor(t, fx.Config, workflow.Request{ID: id, Template: config.DefaultTemplate}, csr, nil)}
	var later *workflow.RetryLaterError
	if _, err := issue.Run(ctx, run); !errors.As(err, &later) || !errors.Is(err, store.ErrBusy) {
		t.Fatalf("issuing without the run's claim: %v, want a retry later (ErrBusy)", err)
	}
	run.IssueClaim = claim
	res, err := issue.Run(ctx, run)
	if err != nil || res.Record == nil || res.Certificate == nil {
		t.Fatalf("issuing with the run's claim: %+v, %v; want a fresh certificate", res, err)
	}
}

// issueStepFor is a definition's one issue step, built from fx's
// catalogue, and a queued request for it to issue.
func issueStepFor(t *testing.T, fx *fixture) (workflow.Step, int64) {
	t.Helper()
	def, err := workflow.Parse("def.yaml", []byte("name: t\ntrigger: enrollment\nsteps:\n  - id: issue\n    uses: issue\n"), fx.catalog())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, _ := fx.Store.NewID(ctx)
	now := time.Now().UTC()
	if _, _, err := fx.Store.Create(ctx, &store.Request{ID: id, Disposition: store.Queued, Submitted: now, Updated: now, Trigger: "enrollment"}, 0); err != nil {
		t.Fatal(err)
	}
	return def.Steps[0].Step, id
}

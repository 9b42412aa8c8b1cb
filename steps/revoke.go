package steps

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// Revoke is the revoke step type, a revocation workflow's CA step: it
// records the revocation on the certificate (reason, comment, effective
// date, who), puts the certificate on its CA's revocation list and publishes
// a freshly signed CRL. It takes no `with:`. The CRL entry's revocation date
// is when this step ran; an earlier date the requester gave is its
// invalidityDate.
//
//	uses: revoke
//
// It is idempotent per request: a re-run finds the certificate revoked by
// its own request and only makes sure the list and the CRL carry it; a
// certificate revoked meanwhile by another request denies this one.
//
// In an event-triggered or schedule definition the revoke step is
// another one: it submits revocation requests (see eventRevoke).
type Revoke struct {
	// CAs sign the CRL.
	CAs *ca.Registry
	// Store holds the certificates, the revocation lists and the CRLs.
	Store *store.Store
	// Actions submit the revocations of event-triggered definitions'
	// revoke steps (nil in certflow lint).
	Actions Actions
}

// Build implements workflow.Builder.
func (rv Revoke) Build(spec *workflow.Spec) (workflow.Step, error) {
	if workflow.EventTrigger(spec.Trigger) {
		return rv.buildEvent(spec)
	}
	if spec.Trigger != workflow.TriggerRevocation {
		return nil, spec.Errorf(nil, "the revoke step runs only in revocation workflows (where it revokes the request's certificate) and in event-triggered or schedule definitions (where it submits revocations)")
	}
	var w struct{}
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	return stepFunc(rv.revoke), nil
}

func (rv Revoke) revoke(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
	ask := run.Env.Request.Revocation
	if ask.CertificateId <= 0 {
		return workflow.Result{}, workflow.Permanent(errors.New("the request names no certificate to revoke"))
	}
	now := time.Now().UTC()
	eff := ask.EffectiveDate
	if eff.IsZero() {
		eff = now
	}
	remote, err := rv.revokeAtCA(ctx, run, ask.CertificateId, ask.Reason)
	if err != nil {
		return workflow.Result{}, err
	}
	cert, changed, err := rv.Store.RevokeCertificate(ctx, ask.CertificateId, store.Revocation{
		Reason: ask.Reason, Comment: ask.Comment, EffectiveDate: eff.UTC(), InvalidityDate: ask.InvalidityDate.UTC(), Date: now,
		By: run.Env.Requester.Name, RequestID: run.RequestID, Depth: run.EventDepth,
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return workflow.Result{}, workflow.Deny("certificate %d no longer exists", ask.CertificateId)
	case err != nil:
		return workflow.Result{}, workflow.RetryLater(fmt.Errorf("revoke: %w", err))
	case !changed && cert.Revocation.RequestID != run.RequestID:
		return workflow.Result{}, workflow.Deny("certificate %d was revoked already (by request %d)", cert.ID, cert.Revocation.RequestID)
	}
	rev := cert.Revocation
	if remote {
		// The CA keeps its own status (OCSP, CRLs): it has it already.
		run.Log.Info("certificate revoked at its certificate authority", "certificate", cert.ID, "serial", cert.SerialNumber, "reason", rev.Reason, "authority", cert.CAName(), "changed", changed)
		return workflow.Result{Outputs: map[string]any{
			"certificate": cert.ID, "serial": cert.SerialNumber, "reason": rev.Reason, "effective_date": rev.EffectiveDate,
		}}, nil
	}
	if err := rv.Store.AddRevoked(ctx, cert.CAName(), store.RevokedEntry{
		Serial: cert.SerialNumber, RevokedAt: rev.Date, InvalidityDate: rev.InvalidityDate, Reason: rev.Reason, NotAfter: cert.NotAfter, CertificateID: cert.ID,
	}); err != nil {
		return workflow.Result{}, workflow.RetryLater(err)
	}
	auth, ok := rv.CAs.Get(cert.CAName())
	if !ok {
		return workflow.Result{}, workflow.Permanent(fmt.Errorf("certificate authority %s is not loaded", cert.CAName()))
	}
	revoker, ok := auth.(ca.Revoker)
	if !ok {
		return workflow.Result{}, workflow.Permanent(fmt.Errorf("certificate authority %s publishes no revocation list", cert.CAName()))
	}
	crl, err := ca.PublishCRL(ctx, rv.Store, revoker, now)
	if err != nil {
		// The revocation is recorded; the CRL must carry it before the
		// request may say REVOKED. The refresh loop would publish it too.
		return workflow.Result{}, workflow.RetryLater(fmt.Errorf("publish CRL: %w", err))
	}
	if changed {
		run.Log.Info("certificate revoked", "certificate", cert.ID, "serial", cert.SerialNumber, "reason", rev.Reason, "crl", crl.Number)
	} else {
		run.Log.Info("certificate revoked already by this request; CRL published again", "certificate", cert.ID, "crl", crl.Number)
	}
	return workflow.Result{Outputs: map[string]any{
		"certificate": cert.ID, "serial": cert.SerialNumber, "reason": rev.Reason,
		"effective_date": rev.EffectiveDate, "crl_number": crl.Number,
	}}, nil
}

// revokeAtCA asks a CA that keeps its own revocation status (ACME:
// ca.RemoteRevoker) to revoke the certificate, before certflow records it:
// a refusal then leaves nothing recorded. It reports whether the CA is
// such a one. A certificate revoked by another request is left to the
// record's check (denied there); the CA's "already revoked" counts as
// done, so a re-run after a crash goes on to record it.
func (rv Revoke) revokeAtCA(ctx context.Context, run *workflow.Run, id int64, reason int) (bool, error) {
	if !anyRemoteRevoker(rv.CAs) {
		// No CA of this certflow revokes by itself: the built-in path
		// reads the certificate once, in its compare-and-set.
		return false, nil
	}
	cert, err := rv.Store.Certificate(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, workflow.Deny("certificate %d no longer exists", id)
	case err != nil:
		return false, workflow.RetryLater(fmt.Errorf("revoke: %w", err))
	}
	auth, ok := rv.CAs.Get(cert.CAName())
	if !ok {
		return false, workflow.Permanent(fmt.Errorf("certificate authority %s is not loaded", cert.CAName()))
	}
	remote, ok := auth.(ca.RemoteRevoker)
	if !ok {
		return false, nil
	}
	if cert.Revocation != nil && cert.Revocation.RequestID != run.RequestID {
		return true, nil // the record's compare-and-set denies it
	}
	err = remote.RevokeAtCA(ctx, cert.Chain[0], reason)
	var prob *ca.Problem
	switch {
	case errors.As(err, &prob):
		return true, workflow.Deny("certificate authority %s refused the revocation: %v", cert.CAName(), prob)
	case err != nil:
		return true, workflow.RetryLater(fmt.Errorf("certificate authority %s: revoke: %w", cert.CAName(), err))
	}
	return true, nil
}

// anyRemoteRevoker reports whether one of the loaded CAs keeps its own
// revocation status (ca.RemoteRevoker).
func anyRemoteRevoker(reg *ca.Registry) bool {
	for _, a := range reg.All() {
		if _, ok := a.(ca.RemoteRevoker); ok {
			return true
		}
	}
	return false
}

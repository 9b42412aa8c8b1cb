package worker

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// revocationInput prepares a revocation request, which has no CSR: the
// expression environment's csr and sans describe the certificate to
// revoke (its subject, key and names), and certificate is that
// certificate, so definitions' match, if and check expressions read the
// same fields as on enrollment.
func (w *Worker) revocationInput(ctx context.Context, r *store.Request) (*workflow.Input, error) {
	id := r.Input.Revocation.CertificateId
	cert, err := w.Store.Certificate(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("certificate %d to revoke: %w", id, err)
		}
		return nil, err
	}
	if len(cert.Chain) == 0 {
		return nil, fmt.Errorf("certificate %d has no DER", id)
	}
	leaf, err := x509.ParseCertificate(cert.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("certificate %d does not parse: %w", id, err)
	}
	csr := pki.CertificateAsCSR(leaf)
	if r.Instance.Certificate == nil {
		r.Instance.Certificate = cert.Ref()
	}
	return workflow.NewInput(r.Trigger, r.Input, csr, r.Requester, false), nil
}

// settleRevocation derives a completed revocation's disposition: REVOKED
// once its revoke step ran (it is unconditioned, but a definition may let
// it fail with on_error: continue).
func settleRevocation(r *store.Request) {
	revoked := slices.ContainsFunc(r.Instance.History, func(h workflow.StepRecord) bool {
		return h.Uses == workflow.RevokeStep && h.Outcome == workflow.OutcomeDone
	})
	if revoked {
		r.Disposition, r.Message = store.Revoked, fmt.Sprintf("Certificate %d revoked", r.Input.Revocation.CertificateId)
		return
	}
	r.Disposition, r.Message = store.Failed, "the workflow completed without revoking the certificate"
}

// crlCheckEvery is how often workers look for CRLs to re-sign.
const crlCheckEvery = 10 * time.Minute

// RefreshCRLs keeps every CA's published CRL fresh until ctx ends: at
// start it publishes an empty one for a CA that has none, and it re-signs
// one that has less than ca.CRLRefreshBefore left, one process at a time.
// At start it also bars the keys of certificates revoked for
// keyCompromise before such revocations barred them (BarCompromisedKeys).
func (w *Worker) RefreshCRLs(ctx context.Context) {
	w.barCompromisedKeys(ctx)
	tick := time.NewTicker(crlCheckEvery)
	defer tick.Stop()
	for {
		w.RefreshCRLsOnce(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// barCompromisedKeys bars the keys of every CA's keyCompromise
// revocations (store.BarCompromisedKeys); a failure is logged, and the
// next start tries again.
func (w *Worker) barCompromisedKeys(ctx context.Context) {
	if w.CAs == nil {
		return
	}
	for _, a := range w.CAs.All() {
		if _, ok := a.(ca.Revoker); !ok {
			continue
		}
		n, err := w.Store.BarCompromisedKeys(ctx, a.Name())
		switch {
		case err != nil:
			w.Log.Warn("barring the keys of certificates revoked for key compromise", "ca", a.Name(), "err", err)
		case n > 0:
			w.Log.Info("keys of certificates revoked for key compromise barred", "ca", a.Name(), "count", n)
		}
	}
}

// RefreshCRLsOnce does one pass of RefreshCRLs as of now.
func (w *Worker) RefreshCRLsOnce(ctx context.Context, now time.Time) {
	if w.CAs == nil {
		return
	}
	for _, a := range w.CAs.All() {
		r, ok := a.(ca.Revoker)
		if !ok {
			continue
		}
		published, err := ca.RefreshCRL(ctx, w.Store, r, now)
		switch {
		case err != nil:
			w.Log.Warn("CRL refresh", "ca", a.Name(), "err", err)
		case published:
			w.Log.Info("CRL published", "ca", a.Name())
		}
	}
}

package api

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// maxClockSkew is how far in the future an EffectiveDate may lie (a
// client's clock ahead of ours); it is then taken as now. An earlier
// EffectiveDate may not precede the certificate's NotBefore; it becomes
// the CRL entry's invalidityDate, never its revocation date.
const maxClockSkew = 5 * time.Minute

// handleRevokeCertificates is POST /Certificates/Revoke: every
// certificate named gets a revocation request, run by the `revocation`
// workflow (which may wait for approval). Everything is checked before
// anything is written: an unknown or foreign id, a certificate revoked
// already or being revoked refuses the whole call.
func (s *Server) handleRevokeCertificates(w http.ResponseWriter, r *http.Request) {
	var body keyfactor.RevokeCertificateRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	caller := identity(r)
	now := time.Now().UTC()
	ask, err := checkRevocation(&body, now)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*s.cfg.API.RedisTimeout)
	defer cancel()
	rs, err := s.store.GetMany(ctx, body.CertificateIds)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	byID := map[int64]*store.Request{}
	for _, q := range rs {
		byID[q.ID] = q
	}
	var subs []*enrollment
	for i, id := range body.CertificateIds {
		field := fmt.Sprintf("CertificateIds[%d]", i)
		q := byID[id]
		var c *store.Certificate
		if q != nil {
			if c, err = q.Certificate(); err != nil {
				writeError(w, r, s.log, err)
				return
			}
		}
		switch {
		case c == nil || !certificateVisible(q, caller):
			writeError(w, r, s.log, newError(http.StatusNotFound, keyfactor.CodeNotFound, "%s: certificate %d: not found", field, id))
			return
		case !mayActOn(q.Requester.Name, caller):
			writeError(w, r, s.log, newError(http.StatusForbidden, keyfactor.CodeForbidden, "%s: %s may not revoke certificate %d: only its requester or an administrator may", field, caller.Name, id))
			return
		case c.Revocation != nil && (ask.Reason != store.ReasonKeyCompromise || c.Revocation.Reason == store.ReasonKeyCompromise):
			// Revoked already; only a later finding of key compromise
			// changes the reason (and bars the key).
			writeError(w, r, s.log, newError(http.StatusConflict, keyfactor.CodeConflict, "%s: certificate %d is revoked already (reason %d, effective %s)", field, id, c.Revocation.Reason, c.Revocation.EffectiveDate.Format(time.RFC3339)))
			return
		}
		if err := checkEffectiveDate(ask, c, field); err != nil {
			writeError(w, r, s.log, err)
			return
		}
		holder, err := s.store.RevocationUnderWay(ctx, id)
		if err == nil && holder > 0 {
			err = newError(http.StatusConflict, keyfactor.CodeConflict, "%s: a revocation of certificate %d is under way (request %d)", field, id, holder)
		}
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		if slices.ContainsFunc(subs, func(e *enrollment) bool { return e.req.Input.Revocation.CertificateId == id }) {
			continue // named twice: revoked once
		}
		e, err := s.revocationSubmit(q, c, caller, ask, now)
		if err == nil {
			err = s.selectDefinition(e)
		}
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		subs = append(subs, e)
	}
	reqs, err := s.submitRevocations(ctx, subs)
	if err != nil && len(reqs) == 0 {
		writeError(w, r, s.log, err)
		return
	}
	var refused []keyfactor.SuspendedRevocation
	if err != nil {
		// Some were accepted before Redis failed: they run, so the answer
		// must say so; the others are refused, free to be asked again.
		s.log.Warn("a revocation call was accepted in part", "accepted", len(reqs), "of", len(subs), "err", err)
		for _, e := range subs[len(reqs):] {
			refused = append(refused, keyfactor.SuspendedRevocation{
				CertId:  e.req.Input.Revocation.CertificateId,
				Message: "not submitted: certflow's store did not answer; ask for this revocation again",
			})
		}
	}
	s.answerRevocations(w, r, reqs, refused)
}

// checkRevocation checks the body's fields (not the certificates) and
// returns the revocation every request of the call carries.
func checkRevocation(body *keyfactor.RevokeCertificateRequest, now time.Time) (workflow.Revocation, error) {
	var ask workflow.Revocation
	switch {
	case len(body.CertificateIds) == 0:
		return ask, badField("CertificateIds", "required: at least one certificate id")
	case len(body.CertificateIds) > maxBatch:
		return ask, badField("CertificateIds", "more than %d ids", maxBatch)
	}
	for i, id := range body.CertificateIds {
		if id <= 0 {
			return ask, badField(fmt.Sprintf("CertificateIds[%d]", i), "want a positive certificate id, got %d", id)
		}
	}
	if body.Reason != nil {
		ask.Reason = *body.Reason
	}
	if ask.Reason < 0 || ask.Reason > 6 {
		return ask, badField("Reason", "want an RFC 5280 reason code from 0 to 6 (0 unspecified, 1 keyCompromise, 2 cACompromise, 3 affiliationChanged, 4 superseded, 5 cessationOfOperation, 6 certificateHold), got %d", ask.Reason)
	}
	ask.Comment = strings.TrimSpace(body.Comment)
	switch {
	case ask.Comment == "":
		return ask, badField("Comment", "required: say why the certificates are revoked")
	case len(ask.Comment) > maxComment:
		return ask, badField("Comment", "longer than %d characters", maxComment)
	}
	switch d := strings.TrimSpace(body.EffectiveDate); d {
	case "", "null", "{null}":
		ask.EffectiveDate = now
	default:
		t, err := parseTimestamp(d)
		if err != nil {
			return ask, badField("EffectiveDate", "%q is not an ISO 8601 time (e.g. 2023-11-19T16:23:01Z)", d)
		}
		if t.After(now.Add(maxClockSkew)) {
			return ask, badField("EffectiveDate", "%s is in the future; certflow revokes at once, with a date now or earlier", t.Format(time.RFC3339))
		}
		ask.EffectiveDate = t
		if t.After(now) {
			ask.EffectiveDate = now
		}
		if t.Before(now) {
			ask.InvalidityDate = t
		}
	}
	return ask, nil
}

// checkEffectiveDate refuses an EffectiveDate before the certificate
// existed: no key is compromised before it was certified, and a CRL entry
// so dated would claim what the CA never saw.
func checkEffectiveDate(ask workflow.Revocation, c *store.Certificate, field string) error {
	if !ask.InvalidityDate.IsZero() && ask.InvalidityDate.Before(c.NotBefore) {
		return badField("EffectiveDate", "%s precedes the NotBefore (%s) of certificate %d (%s)",
			ask.InvalidityDate.Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339), c.ID, field)
	}
	return nil
}

// revocationSubmit makes the revocation request of one certificate.
func (s *Server) revocationSubmit(issuing *store.Request, c *store.Certificate, caller *Identity, ask workflow.Revocation, now time.Time) (*enrollment, error) {
	leaf, err := x509.ParseCertificate(c.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("certificate %d does not parse: %w", c.ID, err)
	}
	ask.CertificateId = c.ID
	return &enrollment{
		csr: pki.CertificateAsCSR(leaf),
		req: store.Request{
			Disposition: store.Queued, Submitted: now, Updated: now, Trigger: workflow.TriggerRevocation,
			Requester: workflow.Requester{Name: caller.Name, Roles: caller.Roles},
			Subject:   c.SubjectDN, CommonName: c.IssuedCN,
			Input: workflow.Request{
				Template: c.Template, CertificateAuthority: c.Authority, Format: string(pki.FormatPEM),
				IncludeSubjectHeader: true, Metadata: maps.Clone(issuing.Input.Metadata),
				Timestamp: now, Revocation: ask,
			},
		},
	}, nil
}

// submitRevocations claims each certificate's revocation for a new
// request, then stores and enqueues the requests. A claim lost to a
// concurrent revocation refuses the call (409) and releases the claims
// taken; nothing else was written. Should storing or enqueueing fail
// part-way, the requests accepted until then are returned with the error
// (they run), and the rest have their claims released.
func (s *Server) submitRevocations(ctx context.Context, subs []*enrollment) ([]*store.Request, error) {
	var claimed []*enrollment
	release := func() {
		for _, e := range claimed {
			s.store.ReleaseRevocation(context.WithoutCancel(ctx), e.req.Input.Revocation.CertificateId, e.req.ID)
		}
	}
	for _, e := range subs {
		id, err := s.store.NewID(ctx)
		if err != nil {
			release()
			return nil, err
		}
		e.req.ID, e.req.Instance.ID = id, s.store.InstanceID(id)
		certID := e.req.Input.Revocation.CertificateId
		holder, err := s.store.ClaimRevocation(ctx, certID, id, s.store.RevocationOver)
		if err != nil {
			release()
			if errors.Is(err, store.ErrConflict) {
				return nil, newError(http.StatusConflict, keyfactor.CodeConflict, "CertificateIds: a revocation of certificate %d is under way (request %d)", certID, holder)
			}
			if errors.Is(err, store.ErrNotFound) {
				return nil, newError(http.StatusNotFound, keyfactor.CodeNotFound, "CertificateIds: certificate %d: not found", certID)
			}
			return nil, err
		}
		claimed = append(claimed, e)
	}
	out := make([]*store.Request, 0, len(subs))
	for i, e := range subs {
		req := &e.req
		if _, _, err := s.store.CreateQueued(ctx, req, 0, s.firstRun(req), store.KeyChecks{}); err != nil {
			claimed = subs[i:]
			release()
			return out, err
		}
		s.log.Info("revocation accepted", "request", req.ID, "instance", req.Instance.ID, "certificate", req.Input.Revocation.CertificateId,
			"reason", req.Input.Revocation.Reason, "requester", req.Requester.Name)
		out = append(out, req)
	}
	return out, nil
}

// answerRevocations waits (per Prefer, as enrollment does) for the
// revocations to settle and answers Keyfactor's RevocationResponse.
func (s *Server) answerRevocations(w http.ResponseWriter, r *http.Request, reqs []*store.Request, refused []keyfactor.SuspendedRevocation) {
	wait, async := parsePrefer(r.Header.Values("Prefer"), s.cfg.API.SyncWait, s.cfg.API.MaxSyncWait)
	if async {
		wait = 0
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	res := keyfactor.RevocationResponse{RevokedIds: []int64{}, SuspendedCerts: []keyfactor.SuspendedRevocation{}, Refused: []keyfactor.SuspendedRevocation{}}
	for _, req := range reqs {
		if wait > 0 {
			if latest, err := s.waiters.Wait(ctx, req.ID); latest != nil {
				req = latest
			} else if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				s.log.Warn("waiting for a revocation failed", "request", req.ID, "err", err)
			}
		}
		entry := keyfactor.SuspendedRevocation{
			CertId: req.Input.Revocation.CertificateId, WorkflowId: req.Instance.ID,
			KeyfactorRequestId: req.ID, RequestDisposition: string(req.Disposition), Message: keyfactor.DispositionMessage(req, roles(identity(r))),
		}
		switch req.Disposition {
		case store.Revoked:
			res.RevokedIds = append(res.RevokedIds, entry.CertId)
		case store.Pending:
			entry.Message = "waiting for approval: " + s.store.InstanceID(req.ID)
			res.SuspendedCerts = append(res.SuspendedCerts, entry)
		case store.Queued, store.Running:
			entry.Message = fmt.Sprintf("revocation request %d is still running; see GET /Workflow/Instances/%s", req.ID, req.Instance.ID)
			res.SuspendedCerts = append(res.SuspendedCerts, entry)
		default:
			res.Refused = append(res.Refused, entry)
		}
	}
	res.Refused = append(res.Refused, refused...)
	writeJSON(w, http.StatusOK, res)
}

// handleGetCRL is GET /CRL/{ca} (also {ca}.crl): the CA's current CRL,
// DER. It needs no credentials: a CRL is signed public data, and relying
// parties (openssl, browsers, TLS stacks) fetch it anonymously.
func (s *Server) handleGetCRL(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("ca")
	if n, ok := strings.CutSuffix(strings.ToLower(name), ".crl"); ok {
		name = n
	}
	c, ok := s.cfg.CA(name)
	if !ok {
		writeError(w, r, s.log, newError(http.StatusNotFound, keyfactor.CodeNotFound, "certificate authority %q: not found", name))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	crl, err := s.store.CRL(ctx, c.Name)
	if errors.Is(err, store.ErrNotFound) {
		err = newError(http.StatusNotFound, keyfactor.CodeNotFound, "certificate authority %s has published no CRL yet (a worker publishes one when it starts)", c.Name)
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Content-Length", strconv.Itoa(len(crl.DER)))
	w.Header().Set("Last-Modified", crl.ThisUpdate.Format(http.TimeFormat))
	w.Header().Set("Expires", crl.NextUpdate.Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	w.Write(crl.DER)
}

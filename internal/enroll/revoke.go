package enroll

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
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

// Revoke is POST /Certificates/Revoke: every certificate named gets a
// revocation request, run by the `revocation` workflow (which may wait for
// approval). Everything is checked before anything is written: an unknown
// or foreign id, a certificate revoked already or being revoked refuses
// the whole call. It returns the requests accepted; should storing fail
// part-way, those accepted until then (they run) and the rest as refused,
// free to be asked again.
func (s *Service) Revoke(ctx context.Context, caller *Caller, body *keyfactor.RevokeCertificateRequest) ([]*store.Request, []keyfactor.SuspendedRevocation, error) {
	now := time.Now().UTC()
	ask, err := checkRevocation(body, now)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*s.cfg.API.RedisTimeout)
	defer cancel()
	rs, err := s.store.GetMany(ctx, body.CertificateIds)
	if err != nil {
		return nil, nil, err
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
				return nil, nil, err
			}
		}
		switch {
		case c == nil || !CertificateVisible(q, caller):
			return nil, nil, fieldError(NotFound, keyfactor.CodeNotFound, field, "certificate %d: not found", id)
		case !MayActOn(q.Requester.Name, caller):
			return nil, nil, fieldError(Forbidden, keyfactor.CodeForbidden, field, "%s may not revoke certificate %d: only its requester or an administrator may", caller.Name, id)
		case c.Revocation != nil && (ask.Reason != store.ReasonKeyCompromise || c.Revocation.Reason == store.ReasonKeyCompromise):
			// Revoked already; only a later finding of key compromise
			// changes the reason (and bars the key).
			return nil, nil, fieldError(Conflict, keyfactor.CodeConflict, field, "certificate %d is revoked already (reason %d, effective %s)", id, c.Revocation.Reason, c.Revocation.EffectiveDate.Format(time.RFC3339))
		}
		if err := checkEffectiveDate(ask, c, field); err != nil {
			return nil, nil, err
		}
		holder, err := s.store.RevocationUnderWay(ctx, id)
		if err == nil && holder > 0 {
			err = fieldError(Conflict, keyfactor.CodeConflict, field, "a revocation of certificate %d is under way (request %d)", id, holder)
		}
		if err != nil {
			return nil, nil, err
		}
		if slices.ContainsFunc(subs, func(e *enrollment) bool { return e.req.Input.Revocation.CertificateId == id }) {
			continue // named twice: revoked once
		}
		e, err := s.revocationSubmit(q, c, caller, ask, now)
		if err == nil {
			err = s.selectDefinition(e)
		}
		if err != nil {
			return nil, nil, err
		}
		subs = append(subs, e)
	}
	reqs, err := s.submitRevocations(ctx, subs)
	if err != nil && len(reqs) == 0 {
		return nil, nil, err
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
	return reqs, refused, nil
}

// checkRevocation checks the body's fields (not the certificates) and
// returns the revocation every request of the call carries.
func checkRevocation(body *keyfactor.RevokeCertificateRequest, now time.Time) (workflow.Revocation, error) {
	var ask workflow.Revocation
	if err := checkCertificateIds(body.CertificateIds); err != nil {
		return ask, err
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

// checkCertificateIds checks the CertificateIds of a call on certificates
// in bulk (revocation, a metadata edit): 1 to maxBatch positive ids.
func checkCertificateIds(ids []int64) error {
	switch {
	case len(ids) == 0:
		return badField("CertificateIds", "required: at least one certificate id")
	case len(ids) > maxBatch:
		return badField("CertificateIds", "more than %d ids", maxBatch)
	}
	for i, id := range ids {
		if id <= 0 {
			return badField(fmt.Sprintf("CertificateIds[%d]", i), "want a positive certificate id, got %d", id)
		}
	}
	return nil
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
func (s *Service) revocationSubmit(issuing *store.Request, c *store.Certificate, caller *Caller, ask workflow.Revocation, now time.Time) (*enrollment, error) {
	leaf, err := x509.ParseCertificate(c.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("certificate %d does not parse: %w", c.ID, err)
	}
	ask.CertificateId = c.ID
	return &enrollment{
		csr: pki.CertificateAsCSR(leaf),
		req: store.Request{
			Disposition: store.Queued, Submitted: now, Updated: now, Trigger: workflow.TriggerRevocation,
			Requester: caller.requester(),
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
// concurrent revocation refuses the call (Conflict) and releases the claims
// taken; nothing else was written. Should storing or enqueueing fail
// part-way, the requests accepted until then are returned with the error
// (they run), and the rest have their claims released.
func (s *Service) submitRevocations(ctx context.Context, subs []*enrollment) ([]*store.Request, error) {
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
				return nil, fieldError(Conflict, keyfactor.CodeConflict, "CertificateIds", "a revocation of certificate %d is under way (request %d)", certID, holder)
			}
			if errors.Is(err, store.ErrNotFound) {
				return nil, fieldError(NotFound, keyfactor.CodeNotFound, "CertificateIds", "certificate %d: not found", certID)
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

package enroll

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
	"github.com/redis/go-redis/v9"
)

// enrollment is a decoded, checked submit, ready to store: what every
// kind (CSR, PFX, renewal, revocation) hands to submit or, for a
// revocation, to submitRevocations.
type enrollment struct {
	// caller is who submits it (nil for a revocation, which no policy
	// judges).
	caller *Caller
	req    store.Request
	csr    *x509.CertificateRequest // parsed and verified once, here
	// privateKey is PKCS#8 DER, sealed once the request id is known.
	privateKey []byte
	// pfxPassword is a PFX enrollment's Password, sealed once the request
	// id is known.
	pfxPassword string
	// pending is the generated CSR a forceEnroll marries (its key is
	// privateKey); it is deleted once the request is accepted.
	pending *store.PendingCSR
	// keyID names the CSR's public key (pki.PublicKeyID) when the submit
	// may be a generated CSR coming back; storeAndEnqueue looks it up.
	keyID string
	// barredKey names the CSR's public key (pki.PublicKeyID) for the
	// create to refuse if it was revoked for key compromise ("": the key
	// does not exist yet, a PFX enrollment's; the issue step checks it).
	barredKey string
}

// Submit is what every submit (CSR, PFX, renewal) carries besides its
// body and its own options.
type Submit struct {
	// IdempotencyKey is the client's Idempotency-Key ("": none).
	IdempotencyKey string
	// Allocated, when not nil, is called with the new request's id before
	// the request is enqueued (again, with another id, if the first was
	// withdrawn): a caller that waits for the request to settle starts
	// listening there.
	Allocated func(id int64)
}

// SubmitCSR is POST /Enrollment/CSR: it checks the body (CSR, template
// and CA, owner, SANs, metadata, enrollment fields, callback, private
// key), then submits it (submit: policy, workflow selection, store and
// enqueue). A CSR certflow generated comes back married to its stored key
// when forceEnroll is set. format is the certificate format the answer
// asks for. It returns the stored request or, existing set, the one the
// Idempotency-Key already names.
func (s *Service) SubmitCSR(ctx context.Context, caller *Caller, body *keyfactor.EnrollmentCSRRequest, format pki.Format, forceEnroll bool, o Submit) (req *store.Request, existing bool, err error) {
	if err := checkClientKey(o.IdempotencyKey); err != nil {
		return nil, false, err
	}
	e, err := s.checkCSR(caller, body, format, forceEnroll, o.IdempotencyKey)
	if err != nil {
		return nil, false, err
	}
	e.keyID = pki.CSRKeyID(e.csr)
	return s.submit(ctx, e, o.Allocated)
}

// checkCSR checks everything about a CSR enrollment that needs no Redis:
// the body and the catalogue. Every problem is an *Error naming the field.
func (s *Service) checkCSR(caller *Caller, body *keyfactor.EnrollmentCSRRequest, format pki.Format, forceEnroll bool, idemKey string) (*enrollment, error) {
	der, csr, err := DecodeCSR(body.CSR)
	if err != nil {
		return nil, err
	}
	e, err := s.enrollmentOf(caller, body, format, der, csr, idemKey)
	if err != nil {
		return nil, err
	}
	e.req.Input.ForceEnroll = forceEnroll
	return e, nil
}

// enrollmentOf checks the fields every enrollment body shares (CSR and PFX
// alike) and the Idempotency-Key idemKey, and builds the request to
// store. der is the CSR as sent (nil for a PFX enrollment, whose CSR the
// worker makes); csr is it parsed (for a PFX enrollment, the shape of the
// CSR to come).
func (s *Service) enrollmentOf(caller *Caller, body *keyfactor.EnrollmentCSRRequest, format pki.Format, der []byte, csr *x509.CertificateRequest, idemKey string) (*enrollment, error) {
	ts, err := parseTimestamp(body.Timestamp)
	if err != nil {
		return nil, err
	}
	tmpl, err := s.checkTemplateAndCA(body.Template, body.CertificateAuthority)
	if err != nil {
		return nil, err
	}
	if err := checkTemplateAccess(caller, tmpl); err != nil {
		return nil, err
	}
	owner, err := s.checkOwner(body.OwnerRoleId, body.OwnerRoleName, tmpl)
	if err != nil {
		return nil, err
	}
	sans, err := checkSANs(body.SANs, s.cfg.API.MaxSANs)
	if err != nil {
		return nil, err
	}
	if err := s.checkReservedMetadata(body.Metadata); err != nil {
		return nil, err
	}
	md, err := s.checkMetadata(body.Metadata, tmpl)
	if err != nil {
		return nil, err
	}
	fields, err := checkAdditionalFields(body.AdditionalEnrollmentFields, tmpl)
	if err != nil {
		return nil, err
	}
	if body.CallbackUrl != "" {
		if err := callback.CheckURL(body.CallbackUrl, s.cfg.Callbacks.AllowPrivate); err != nil {
			return nil, badField("CallbackUrl", "%v", err)
		}
	}
	e := &enrollment{csr: csr, caller: caller}
	if body.PrivateKey != "" {
		if tmpl == nil || !tmpl.KeyRetention {
			return nil, badField("PrivateKey", "the template does not retain private keys; leave PrivateKey out")
		}
		if len(body.PrivateKey) > maxPrivateKeyText {
			// Parsing validates the key, at a cost that grows with its size.
			return nil, badField("PrivateKey", "longer than %d bytes (an RSA-8192 key in PKCS#8 is about 6,500)", maxPrivateKeyText)
		}
		key, keyDER, err := pki.ParsePKCS8(body.PrivateKey)
		if err != nil {
			return nil, badField("PrivateKey", "%v", err)
		}
		if !pki.SamePublicKey(pki.PublicKeyOf(key), csr.PublicKey) {
			return nil, badField("PrivateKey", "does not match the CSR's public key")
		}
		e.privateKey = keyDER
	}
	if len(idemKey) > maxIdempotencyKey {
		return nil, badField("Idempotency-Key header", "longer than %d characters", maxIdempotencyKey)
	}
	now := time.Now().UTC()
	e.req = store.Request{
		Disposition: store.Queued,
		Submitted:   now,
		Updated:     now,
		Trigger:     workflow.TriggerEnrollment,
		Requester:   caller.requester(),
		CSR:         der,
		Subject:     pki.NameString(csr.RawSubject, csr.Subject),
		CommonName:  csr.Subject.CommonName,
		Input: workflow.Request{
			Template:                   templateName(tmpl),
			CertificateAuthority:       s.caName(body.CertificateAuthority),
			IncludeChain:               body.IncludeChain != nil && *body.IncludeChain,
			IncludeSubjectHeader:       body.IncludeSubjectHeader == nil || *body.IncludeSubjectHeader, // PEM only; applied when rendering
			Format:                     string(format),
			Metadata:                   md,
			SANs:                       sans,
			AdditionalEnrollmentFields: fields,
			OwnerRoleId:                owner.ID,
			OwnerRoleName:              owner.Name,
			HasPrivateKey:              e.privateKey != nil,
			CallbackUrl:                body.CallbackUrl,
			Timestamp:                  ts,
		},
		IdempotencyKey: idemKey,
	}
	return e, nil
}

// submit runs a checked submit the way every kind (CSR, PFX, renewal)
// goes: the policy that binds it (checkPolicy), a workflow that takes it
// (selectFor), its CSR's key noted for the create to refuse if it was
// revoked for key compromise, then storeAndEnqueue. allocated may be nil.
func (s *Service) submit(ctx context.Context, e *enrollment, allocated func(id int64)) (req *store.Request, existing bool, err error) {
	in := s.input(e)
	if err := s.checkPolicy(e, in); err != nil {
		return nil, false, err
	}
	if err := s.selectFor(e, in); err != nil {
		return nil, false, err
	}
	// A CSR sent, made for a renewal or generated by certflow: the create
	// refuses its key if it was revoked for key compromise. A PFX
	// enrollment's key does not exist yet (the issue step checks it).
	if len(e.req.CSR) > 0 {
		id, err := pki.PublicKeyID(e.csr.PublicKey)
		if err != nil {
			return nil, false, fieldError(Invalid, keyfactor.CodeInvalidCSR, "CSR", "its public key cannot be encoded: %s", err.Error())
		}
		e.barredKey = id
	}
	if allocated == nil {
		allocated = func(int64) {}
	}
	return s.storeAndEnqueue(ctx, e, allocated)
}

// storeAndEnqueue stores and enqueues a new request (or returns the one an
// Idempotency-Key already names, with existing set). A request whose
// enqueue fails is deleted: a rejected submit leaves nothing behind.
// allocated is called with the new request's id before it is enqueued
// (again, with another id, if the first was withdrawn).
//
// A CSR whose key certflow generated (a pending CSR) is found by the
// create itself (store.ErrGeneratedKey): only then is the pending CSR read
// and its key married to the request, under a new id.
func (s *Service) storeAndEnqueue(ctx context.Context, e *enrollment, allocated func(id int64)) (req *store.Request, existing bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	defer cancel()
	if e.req.IdempotencyKey != "" && e.req.IdempotencyFingerprint == "" {
		e.req.IdempotencyFingerprint = s.submitFingerprint(e) // before a generated key is married
	}
	req, existing, err = s.create(ctx, e, e.keyID, allocated)
	if !errors.Is(err, store.ErrGeneratedKey) {
		return req, existing, err
	}
	pending, err := s.store.PendingCSRByKey(ctx, e.keyID)
	if errors.Is(err, store.ErrNotFound) {
		// Enrolled or deleted since: an ordinary CSR now.
		return s.create(ctx, e, "", allocated)
	}
	if err != nil {
		return nil, false, err
	}
	if err := s.marryGeneratedKey(e, pending); err != nil {
		return nil, false, err
	}
	if err := s.claimGeneratedKey(ctx, e); err != nil {
		return nil, false, err
	}
	if e.pending != nil {
		defer func() {
			if err != nil || existing {
				// Not accepted: the generated CSR stays pending, free
				// for the next enrollment.
				s.store.ReleasePendingCSR(context.WithoutCancel(ctx), e.pending)
			}
		}()
	}
	req, existing, err = s.create(ctx, e, "", allocated)
	if err == nil && !existing && e.pending != nil {
		// The key now lives on the request; the pending CSR goes. Should
		// that fail, the CSR stays listed, and enrolling it again with
		// forceEnroll would marry the same key to a second request.
		if err := s.store.DeletePendingCSR(ctx, e.pending); err != nil {
			s.log.Warn("enrolled a generated CSR but could not delete it from the pending CSRs", "request", req.ID, "csr", e.pending.ID, "err", err)
		}
	}
	return req, existing, err
}

// create gives e's request an id and stores and enqueues it
// (store.CreateQueued, unless its CSR's key is unlessKey's generated one,
// or was revoked for key compromise).
// An id Redis forgot it gave (store.ErrIDTaken) is replaced.
func (s *Service) create(ctx context.Context, e *enrollment, unlessKey string, allocated func(id int64)) (req *store.Request, existing bool, err error) {
	req = &e.req
	for attempt := 0; ; attempt++ {
		id, err := s.store.NewID(ctx)
		if err != nil {
			return nil, false, err
		}
		req.ID, req.Instance.ID = id, s.store.InstanceID(id)
		allocated(id)
		req.PrivateKey, req.PFXPassword = nil, nil
		if e.privateKey != nil {
			req.PrivateKey = s.kek.Seal(e.privateKey, pki.RequestKeyAAD(id))
		}
		if e.pfxPassword != "" {
			req.PFXPassword = s.kek.Seal([]byte(e.pfxPassword), pki.PFXPasswordAAD(id))
		}
		var prevID int64
		prevID, existing, err = s.store.CreateQueued(ctx, req, s.cfg.API.IdempotencyTTL, s.firstRun(req), store.KeyChecks{Barred: e.barredKey, UnlessGenerated: unlessKey})
		if errors.Is(err, store.ErrKeyCompromised) {
			return nil, false, errKeyCompromised
		}
		if errors.Is(err, store.ErrIDTaken) && attempt < 3 {
			s.log.Warn("request id already taken (Redis lost its id counter?); taking another", "request", id)
			continue
		}
		if err != nil {
			return nil, false, err
		}
		if existing {
			prev, err := s.firstRequest(ctx, prevID)
			if err != nil {
				return nil, false, err
			}
			if !sameSubmit(prev, req) {
				return nil, false, fieldError(Conflict, keyfactor.CodeConflict, "Idempotency-Key header", "already used for a different request (%d)", prevID)
			}
			return prev, true, nil
		}
		s.log.Info("request accepted", "request", id, "instance", req.Instance.ID, "requester", req.Requester.Name, "template", req.Input.Template)
		return req, false, nil
	}
}

// firstRun enqueues req's first run, its record riding with the task
// (store.CreateQueued).
func (s *Service) firstRun(req *store.Request) store.Enqueue {
	return func(ctx context.Context, writes func(redis.Pipeliner)) error {
		return s.queue.EnqueueRunAfter(ctx, req.ID, req.Generation, writes)
	}
}

// firstRequest loads the request an Idempotency-Key names. The first
// submit may still be writing it (the key is claimed first), so a missing
// record is read again for a moment before giving up.
func (s *Service) firstRequest(ctx context.Context, id int64) (*store.Request, error) {
	for i := 0; ; i++ {
		r, err := s.store.Get(ctx, id)
		if !errors.Is(err, store.ErrNotFound) {
			return r, err
		}
		if i == 20 {
			return nil, fieldError(Conflict, keyfactor.CodeConflict, "Idempotency-Key header", "the first request with this key is still being created or was refused; retry")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

package enroll

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/policy"
	"github.com/certflow/certflow/internal/store"
)

// checkKeyPolicy refuses, before anything is generated, a key the
// template does not allow, naming the field that chose it; without a
// template, one the default generation policy (policy.ForGeneration) does
// not.
func checkKeyPolicy(t *config.Template, spec pki.KeySpec) error {
	rules := policy.ForGeneration()
	if t != nil {
		rules = policy.ForTemplate(t)
	}
	if param, msg := rules.CheckKeyKind(spec.Type, spec.Bits, spec.Curve); msg != "" {
		return badField(param, "%s", msg)
	}
	return nil
}

// keySpec reads KeyType/KeyLength/Curve into a spec; a refusal (Invalid)
// names the field at fault.
func keySpec(keyType string, keyLength int, curve string) (pki.KeySpec, error) {
	spec, err := pki.ParseKeySpec(keyType, keyLength, curve)
	var ke *pki.KeySpecError
	if errors.As(err, &ke) {
		return spec, badField(ke.Field, "%s", ke.Msg)
	}
	return spec, err
}

// csrGeneration is a checked POST /CSRGeneration/Generate: what to make.
type csrGeneration struct {
	requester string
	subject   pkix.Name
	spec      pki.KeySpec
	tmpl      *config.Template
	sans      map[string][]string
}

// checkCSRGeneration checks the body, without generating anything: the
// subject, the key against the template's policy (or, without a template,
// the default generation policy), the caller's access, the SANs.
func (s *Service) checkCSRGeneration(body *keyfactor.CSRGenerationRequest, caller *Caller) (*csrGeneration, error) {
	subject, err := pki.ParseSubject(body.Subject)
	if err != nil {
		return nil, badField("Subject", "%v", err)
	}
	spec, err := keySpec(body.KeyType, body.KeyLength, body.Curve)
	if err != nil {
		return nil, err
	}
	var tmpl *config.Template
	if body.Template != "" {
		t, ok := s.cfg.Template(body.Template)
		if !ok {
			return nil, fieldError(Invalid, keyfactor.CodeUnknownName, "Template", "unknown template %q", body.Template)
		}
		tmpl = t
	}
	if err := checkTemplateAccess(caller, tmpl); err != nil {
		return nil, err
	}
	if err := checkKeyPolicy(tmpl, spec); err != nil {
		return nil, err
	}
	sans, err := checkSANs(body.SANs, s.cfg.API.MaxSANs)
	if err != nil {
		return nil, err
	}
	return &csrGeneration{requester: caller.Name, subject: subject, spec: spec, tmpl: tmpl, sans: sans}, nil
}

// generateCSR makes g's key in slot and its CSR; it returns the pending
// CSR (without id and sealed key) and the PKCS#8 key.
func (s *Service) generateCSR(slot *pki.KeySlot, g *csrGeneration) (*store.PendingCSR, []byte, error) {
	key, err := slot.Generate(g.spec)
	if err != nil {
		return nil, nil, err
	}
	der, err := pki.NewCSR(key, pki.CSRRequest{Subject: g.subject, SANs: g.sans})
	if err != nil {
		return nil, nil, badField("SANs", "%v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	keyID, err := pki.PublicKeyID(key.Public())
	if err != nil {
		return nil, nil, err
	}
	return &store.PendingCSR{
		Requester: g.requester, Template: templateName(g.tmpl), Subject: g.subject.String(), SANs: g.sans,
		KeyType: g.spec.String(), Created: time.Now().UTC(), CSR: der, KeyID: keyID,
	}, keyDER, nil
}

// GenerateCSR is POST /CSRGeneration/Generate: generate a key and a CSR
// for it, keep the key sealed as a pending CSR, and return it (with its
// id; the key sealed).
//
// The work (the key) is done last, and never thrown away for a deadline
// it did not cause: the body and the key policy are checked first
// (Invalid), then a slot of the key pool is taken (TooMany, with
// RetryAfter, when none is free), then Redis is asked whether the
// requester has room and for the CSR's id (Conflict, or the store's error
// while nothing has been generated); only then is the key made, and
// stored under a Redis deadline of its own, which neither the generation's
// time nor a caller that stopped waiting (ctx ended) can use up.
func (s *Service) GenerateCSR(ctx context.Context, caller *Caller, body *keyfactor.CSRGenerationRequest) (*store.PendingCSR, error) {
	g, err := s.checkCSRGeneration(body, caller)
	if err != nil {
		return nil, err
	}
	slot, ok := s.keyPool.TryAcquire()
	if !ok {
		return nil, tooMany(keyPoolRetryAfter, fmt.Sprintf("key generation: all %d slots (api.key_generation_concurrency) are busy", s.keyPool.Size()))
	}
	defer slot.Release()
	noRoom := func() error {
		return fieldError(Conflict, keyfactor.CodeConflict, "CSRGeneration",
			"%s has %d pending CSRs, the most api.max_pending_csrs allows; enroll (forceEnroll=true) or delete some first", caller.Name, s.cfg.API.MaxPendingCSRs)
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	room, err := s.store.PendingCSRRoom(rctx, caller.Name, s.cfg.API.MaxPendingCSRs)
	var id int64
	if err == nil && room {
		id, err = s.store.NewCSRID(rctx)
	}
	cancel()
	if err != nil {
		return nil, err
	}
	if !room {
		return nil, noRoom()
	}
	p, key, err := s.generateCSR(slot, g)
	slot.Release()
	if err != nil {
		return nil, err
	}
	p.ID = id
	p.PrivateKey = s.kek.Seal(key, pki.PendingCSRAAD(p.ID))
	rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), s.cfg.API.RedisTimeout)
	defer cancel()
	if err := s.store.CreatePendingCSR(rctx, p, s.cfg.API.MaxPendingCSRs); errors.Is(err, store.ErrTooMany) {
		return nil, noRoom()
	} else if err != nil {
		return nil, err
	}
	s.log.Info("CSR generated; its key is kept sealed", "csr", p.ID, "requester", p.Requester, "template", p.Template, "key", p.KeyType)
	return p, nil
}

// PendingCSR is GET /CSRGeneration/Pending/{id}: pending CSR id for
// caller, NotFound when it does not exist or is someone else's.
func (s *Service) PendingCSR(ctx context.Context, caller *Caller, id int64) (*store.PendingCSR, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	defer cancel()
	return s.loadPendingCSR(ctx, caller, id)
}

func (s *Service) loadPendingCSR(ctx context.Context, caller *Caller, id int64) (*store.PendingCSR, error) {
	p, err := s.store.PendingCSR(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !MayActOn(p.Requester, caller)) {
		return nil, newError(NotFound, keyfactor.CodeNotFound, "pending CSR %d: not found", id)
	}
	return p, err
}

// DeletePendingCSR is DELETE /CSRGeneration/Pending/{id}: the generated
// key is destroyed with it.
func (s *Service) DeletePendingCSR(ctx context.Context, caller *Caller, id int64) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	defer cancel()
	p, err := s.loadPendingCSR(ctx, caller, id)
	if err == nil {
		err = s.store.DeletePendingCSR(ctx, p)
	}
	if err != nil {
		return err
	}
	s.log.Info("pending CSR deleted", "csr", p.ID, "by", caller.Name)
	return nil
}

// DeletePendingCSRs is DELETE /CSRGeneration/Pending: all of ids are
// deleted, or (one unknown or another's: NotFound naming its place) none.
func (s *Service) DeletePendingCSRs(ctx context.Context, caller *Caller, ids []int64) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	defer cancel()
	// Every id is checked before any is deleted; then all go in one
	// round trip.
	found, err := s.store.PendingCSRs(ctx, ids)
	if err != nil {
		return err
	}
	byID := make(map[int64]*store.PendingCSR, len(found))
	for _, p := range found {
		byID[p.ID] = p
	}
	for i, id := range ids {
		if p := byID[id]; p == nil || !MayActOn(p.Requester, caller) {
			return fieldError(NotFound, keyfactor.CodeNotFound, fmt.Sprintf("[%d]", i), "pending CSR %d: not found", id)
		}
	}
	return s.store.DeletePendingCSRs(ctx, found)
}

// marryGeneratedKey takes p, the pending CSR certflow generated for the
// key of a CSR that came back through POST /Enrollment/CSR
// (storeAndEnqueue finds it while allocating the request id). Without
// forceEnroll it is refused; with it, the stored key moves onto the
// enrollment (sealed under the new request's id) and the pending CSR is
// deleted once the request is accepted (storeAndEnqueue claims it first,
// so that one enrollment at a time takes the key). Only the CSR's requester (or an administrator) may enroll it:
// the key would otherwise become recoverable by someone else.
func (s *Service) marryGeneratedKey(e *enrollment, p *store.PendingCSR) error {
	if !MayActOn(p.Requester, e.caller) {
		return fieldError(Forbidden, keyfactor.CodeForbidden, "CSR", "generated by certflow for another requester; only they or an administrator may enroll it")
	}
	if !e.req.Input.ForceEnroll {
		return badField("forceEnroll", "the CSR was generated by certflow (pending CSR %d); enroll it with forceEnroll=true to marry the certificate to its stored private key", p.ID)
	}
	key, err := s.kek.Open(p.PrivateKey, pki.PendingCSRAAD(p.ID))
	if err != nil {
		return fmt.Errorf("pending CSR %d: %w", p.ID, err)
	}
	e.privateKey, e.pending = key, p
	e.req.Input.HasPrivateKey = true
	return nil
}

// claimGeneratedKey claims the pending CSR a forceEnroll marries, so that
// one enrollment at a time takes its key: a concurrent one is told to
// retry (Conflict). The claim outlives the longest submit (its Redis
// deadline). A CSR enrolled or deleted since it was read is an ordinary
// CSR now: the enrollment goes on without its key.
func (s *Service) claimGeneratedKey(ctx context.Context, e *enrollment) error {
	p := e.pending
	claimed, err := s.store.ClaimPendingCSR(ctx, p, 2*s.cfg.API.RedisTimeout+time.Second)
	switch {
	case errors.Is(err, store.ErrNotFound):
		e.pending, e.privateKey, e.req.Input.HasPrivateKey = nil, nil, false
		return nil
	case err != nil:
		return err
	case !claimed:
		return fieldError(Conflict, keyfactor.CodeConflict, "CSR", "pending CSR %d is being enrolled by another request; retry", p.ID)
	}
	return nil
}

// keyPoolRetryAfter is the Retry-After of a request the key pool turned
// away: about the time an allowed key takes to generate.
const keyPoolRetryAfter = time.Second

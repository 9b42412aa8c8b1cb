package api

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
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

// keySpec reads KeyType/KeyLength/Curve into a spec, as a 400 naming the
// field at fault.
func keySpec(keyType string, keyLength int, curve string) (pki.KeySpec, error) {
	spec, err := pki.ParseKeySpec(keyType, keyLength, curve)
	var ke *pki.KeySpecError
	if errors.As(err, &ke) {
		return spec, badField(ke.Field, "%s", ke.Msg)
	}
	return spec, err
}

// handleGenerateCSR is POST /CSRGeneration/Generate: generate a key and a
// CSR for it, keep the key sealed as a pending CSR, answer the CSR.
//
// The work (the key) is done last, and never thrown away for a deadline
// it did not cause: the body and the key policy are checked first (400),
// then a slot of the key pool is taken (429 with Retry-After when none is
// free), then Redis is asked whether the requester has room and for the
// CSR's id (409, or 503 while nothing has been generated); only then is
// the key made, and stored under a Redis deadline of its own, which
// neither the generation's time nor a client that stopped waiting can
// use up.
func (s *Server) handleGenerateCSR(w http.ResponseWriter, r *http.Request) {
	caller := identity(r)
	var body keyfactor.CSRGenerationRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	g, err := s.checkCSRGeneration(&body, caller)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	slot, ok := s.keyPool.TryAcquire()
	if !ok {
		s.tooMany(w, r, keyPoolRetryAfter, fmt.Sprintf("key generation: all %d slots (api.key_generation_concurrency) are busy", s.keyPool.Size()))
		return
	}
	defer slot.Release()
	tooMany := func() {
		writeError(w, r, s.log, newError(http.StatusConflict, keyfactor.CodeConflict,
			"CSRGeneration: %s has %d pending CSRs, the most api.max_pending_csrs allows; enroll (forceEnroll=true) or delete some first", caller.Name, s.cfg.API.MaxPendingCSRs))
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	room, err := s.store.PendingCSRRoom(ctx, caller.Name, s.cfg.API.MaxPendingCSRs)
	var id int64
	if err == nil && room {
		id, err = s.store.NewCSRID(ctx)
	}
	cancel()
	if err != nil || !room {
		if err == nil {
			tooMany()
		} else {
			writeError(w, r, s.log, err)
		}
		return
	}
	p, key, err := s.generateCSR(slot, g)
	slot.Release()
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	p.ID = id
	p.PrivateKey = s.kek.Seal(key, pki.PendingCSRAAD(p.ID))
	ctx, cancel = context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.API.RedisTimeout)
	defer cancel()
	if err := s.store.CreatePendingCSR(ctx, p, s.cfg.API.MaxPendingCSRs); errors.Is(err, store.ErrTooMany) {
		tooMany()
		return
	} else if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	s.log.Info("CSR generated; its key is kept sealed", "csr", p.ID, "requester", p.Requester, "template", p.Template, "key", p.KeyType)
	text := csrPEM(p.CSR)
	writeJSON(w, http.StatusOK, keyfactor.CSRContents{CSR: text, CSRText: text, Id: p.ID})
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
func (s *Server) checkCSRGeneration(body *keyfactor.CSRGenerationRequest, caller *Identity) (*csrGeneration, error) {
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
			return nil, &apiError{status: http.StatusBadRequest, code: keyfactor.CodeUnknownName, msg: fmt.Sprintf("Template: unknown template %q", body.Template)}
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
func (s *Server) generateCSR(slot *pki.KeySlot, g *csrGeneration) (*store.PendingCSR, []byte, error) {
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

func csrPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// loadPendingCSR loads the pending CSR named by the path's id for caller:
// 404 when it does not exist or is someone else's.
func (s *Server) loadPendingCSR(ctx context.Context, r *http.Request) (*store.PendingCSR, error) {
	id, err := pathID(r, "CSR")
	if err != nil {
		return nil, err
	}
	p, err := s.store.PendingCSR(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !mayActOn(p.Requester, identity(r))) {
		return nil, newError(http.StatusNotFound, keyfactor.CodeNotFound, "pending CSR %d: not found", id)
	}
	return p, err
}

// handleGetPendingCSR is GET /CSRGeneration/Pending/{id}.
func (s *Server) handleGetPendingCSR(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	p, err := s.loadPendingCSR(ctx, r)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, keyfactor.CSRGenerationResponseModel{CSRText: csrPEM(p.CSR), Id: p.ID, RequestTime: p.Created})
}

// handleDeletePendingCSR is DELETE /CSRGeneration/Pending/{id}: the
// generated key is destroyed with it.
func (s *Server) handleDeletePendingCSR(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	p, err := s.loadPendingCSR(ctx, r)
	if err == nil {
		err = s.store.DeletePendingCSR(ctx, p)
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	s.log.Info("pending CSR deleted", "csr", p.ID, "by", identity(r).Name)
	w.WriteHeader(http.StatusNoContent)
}

// handleDeletePendingCSRs is DELETE /CSRGeneration/Pending with a JSON
// array of ids: all of them are deleted, or (one unknown or another's)
// none.
func (s *Server) handleDeletePendingCSRs(w http.ResponseWriter, r *http.Request) {
	var ids []int64
	if err := decodeJSON(r, &ids); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if len(ids) == 0 || len(ids) > maxReturnLimit {
		writeError(w, r, s.log, badField("request body", "want an array of 1 to %d CSR ids", maxReturnLimit))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	// Every id is checked before any is deleted; then all go in one
	// round trip.
	found, err := s.store.PendingCSRs(ctx, ids)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	byID := make(map[int64]*store.PendingCSR, len(found))
	for _, p := range found {
		byID[p.ID] = p
	}
	for i, id := range ids {
		if p := byID[id]; p == nil || !mayActOn(p.Requester, identity(r)) {
			writeError(w, r, s.log, newError(http.StatusNotFound, keyfactor.CodeNotFound, "[%d]: pending CSR %d: not found", i, id))
			return
		}
	}
	if err := s.store.DeletePendingCSRs(ctx, found); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleListPendingCSRs is GET /CSRGeneration/Pending: the caller's
// pending CSRs (an administrator's: everyone's), oldest first, paged with
// pq.pageReturned / pq.returnLimit; queryString on Requester, Template.
func (s *Server) handleListPendingCSRs(w http.ResponseWriter, r *http.Request) {
	pg, err := parsePage(r, "requester", "template")
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	caller := identity(r)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	field := func(row *keyfactor.PendingCSRResponse) func(string) string {
		return func(f string) string {
			return map[string]string{"requester": row.Requester, "template": row.Template}[f]
		}
	}
	writePage(s, w, r, pg, field, func(offer func(keyfactor.PendingCSRResponse) bool) error {
		return walkIndex(ctx, listScan, s.store.PendingCSRIDs, s.store.PendingCSRs, func(p *store.PendingCSR) (bool, error) {
			if !mayActOn(p.Requester, caller) {
				return true, nil
			}
			return offer(keyfactor.PendingCSRResponse{Id: p.ID, CSR: csrPEM(p.CSR), RequestTime: p.Created, Subject: pki.SubjectParts(csrSubject(p.CSR)),
				Requester: p.Requester, Template: p.Template, KeyType: p.KeyType}), nil
		})
	})
}

// csrSubject returns the raw subject of a stored CSR.
func csrSubject(der []byte) []byte {
	c, err := pki.ParseCSR(der)
	if err != nil {
		return nil
	}
	return c.RawSubject
}

// marryGeneratedKey takes p, the pending CSR certflow generated for the
// key of a CSR that came back through POST /Enrollment/CSR (submit finds
// it while allocating the request id). Without forceEnroll it is refused;
// with it, the stored key moves onto the enrollment (sealed under the new
// request's id) and the pending CSR is deleted once the request is
// accepted (submit claims it first, so that one enrollment at a time takes
// the key). Only the CSR's requester (or an administrator) may enroll it:
// the key would otherwise become recoverable by someone else.
func (s *Server) marryGeneratedKey(e *enrollment, p *store.PendingCSR) error {
	caller := &Identity{Name: e.req.Requester.Name, Roles: e.req.Requester.Roles}
	if !mayActOn(p.Requester, caller) {
		return newError(http.StatusForbidden, keyfactor.CodeForbidden, "CSR: generated by certflow for another requester; only they or an administrator may enroll it")
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
// retry (409). The claim outlives the longest submit (its Redis
// deadline). A CSR enrolled or deleted since it was read is an ordinary
// CSR now: the enrollment goes on without its key.
func (s *Server) claimGeneratedKey(ctx context.Context, e *enrollment) error {
	p := e.pending
	claimed, err := s.store.ClaimPendingCSR(ctx, p, 2*s.cfg.API.RedisTimeout+time.Second)
	switch {
	case errors.Is(err, store.ErrNotFound):
		e.pending, e.privateKey, e.req.Input.HasPrivateKey = nil, nil, false
		return nil
	case err != nil:
		return err
	case !claimed:
		return newError(http.StatusConflict, keyfactor.CodeConflict, "CSR: pending CSR %d is being enrolled by another request; retry", p.ID)
	}
	return nil
}

// keyPoolRetryAfter is the Retry-After of a request the key pool turned
// away: about the time an allowed key takes to generate.
const keyPoolRetryAfter = time.Second

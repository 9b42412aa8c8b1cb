package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
)

// handleRevokeCertificates is POST /Certificates/Revoke: the body, then
// enroll.Service.Revoke (a revocation request per certificate, all checked
// before any is written), then the answer once they settle (Prefer).
func (s *Server) handleRevokeCertificates(w http.ResponseWriter, r *http.Request) {
	var body keyfactor.RevokeCertificateRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	reqs, refused, err := s.enroll.Revoke(r.Context(), identity(r), &body)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	s.answerRevocations(w, r, reqs, refused)
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
			KeyfactorRequestId: req.ID, RequestDisposition: string(req.Disposition), Message: keyfactor.DispositionMessage(req, identity(r).RoleNames()),
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

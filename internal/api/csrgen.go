package api

import (
	"context"
	"net/http"

	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
)

// handleGenerateCSR is POST /CSRGeneration/Generate (enroll.Service.GenerateCSR).
func (s *Server) handleGenerateCSR(w http.ResponseWriter, r *http.Request) {
	var body keyfactor.CSRGenerationRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	p, err := s.enroll.GenerateCSR(r.Context(), identity(r), &body)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	text := keyfactor.CSRText(p.CSR)
	writeJSON(w, http.StatusOK, keyfactor.CSRContents{CSR: text, CSRText: text, Id: p.ID})
}

// handleGetPendingCSR is GET /CSRGeneration/Pending/{id}.
func (s *Server) handleGetPendingCSR(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "CSR")
	var p *store.PendingCSR
	if err == nil {
		p, err = s.enroll.PendingCSR(r.Context(), identity(r), id)
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, keyfactor.CSRGenerationResponseModel{CSRText: keyfactor.CSRText(p.CSR), Id: p.ID, RequestTime: p.Created})
}

// handleDeletePendingCSR is DELETE /CSRGeneration/Pending/{id}: the
// generated key is destroyed with it.
func (s *Server) handleDeletePendingCSR(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "CSR")
	if err == nil {
		err = s.enroll.DeletePendingCSR(r.Context(), identity(r), id)
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
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
	if err := s.enroll.DeletePendingCSRs(r.Context(), identity(r), ids); err != nil {
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
		return enroll.WalkIndex(ctx, s.cfg.API.MaxScan, s.store.PendingCSRIDs, s.store.PendingCSRs, func(p *store.PendingCSR) (bool, error) {
			if !enroll.MayActOn(p.Requester, caller) {
				return true, nil
			}
			return offer(keyfactor.PendingCSRResponse{Id: p.ID, CSR: keyfactor.CSRText(p.CSR), RequestTime: p.Created, Subject: pki.SubjectParts(csrSubject(p.CSR)),
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

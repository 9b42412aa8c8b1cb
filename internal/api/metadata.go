package api

import (
	"net/http"

	"github.com/certflow/certflow/internal/keyfactor"
)

// handleUpdateMetadata is PUT /Certificates/Metadata: the body, then
// enroll.Service.UpdateMetadata (administrators only; checked in full
// before anything is written), answered 204 No Content.
func (s *Server) handleUpdateMetadata(w http.ResponseWriter, r *http.Request) {
	var body keyfactor.MetadataUpdateRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if err := s.enroll.UpdateMetadata(r.Context(), identity(r), &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleUpdateMetadataAll is PUT /Certificates/Metadata/All: the same for
// every certificate in CertificateIds (enroll.Service.UpdateMetadataAll),
// all or nothing, answered 204.
func (s *Server) handleUpdateMetadataAll(w http.ResponseWriter, r *http.Request) {
	var body keyfactor.MetadataAllUpdateRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if err := s.enroll.UpdateMetadataAll(r.Context(), identity(r), &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

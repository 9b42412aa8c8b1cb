package api

import (
	"net/http"
	"strings"

	"github.com/certflow/certflow/internal/keyfactor"
)

// handleRecover is POST /Certificates/Recover: the certificate with its
// retained private key, as a PKCS#12 protected by the caller's Password.
// Only the certificate's requester or an administrator may recover it;
// anyone else is told it does not exist.
func (s *Server) handleRecover(w http.ResponseWriter, r *http.Request) {
	if f := strings.ToUpper(strings.TrimSpace(r.Header.Get("x-certificateformat"))); f != "" && f != "PFX" {
		writeError(w, r, s.log, badField("x-certificateformat header", "%q is not supported for recovery: want PFX", f))
		return
	}
	var body keyfactor.CertificateRecoveryRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	out, err := s.enroll.Recover(r.Context(), identity(r), &body)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

package api

import (
	"context"
	"net/http"
	"strings"

	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
)

// handleEnrollPFX is POST /Enrollment/PFX. The request is checked and
// stored like a CSR enrollment, but without a CSR: the worker generates
// the key and the CSR before the workflow's steps run, so the template
// policy, the definition's rules and its approvals apply as to any
// request. The answer carries the PKCS#12 once the certificate is issued
// (now, or when polled at GET /Enrollment/Requests/{id}).
func (s *Server) handleEnrollPFX(w http.ResponseWriter, r *http.Request) {
	switch f := strings.ToUpper(strings.TrimSpace(r.Header.Get("x-certificateformat"))); f {
	case "PFX":
	case "":
		writeError(w, r, s.log, badField("x-certificateformat header", "missing: want PFX"))
		return
	default:
		writeError(w, r, s.log, badField("x-certificateformat header", "%q is not supported for PFX enrollment: want PFX", f))
		return
	}
	var body keyfactor.EnrollmentPFXRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	req, ok := s.accept(w, r, func(ctx context.Context, allocated func(id int64)) (*store.Request, bool, error) {
		return s.enroll.SubmitPFX(ctx, identity(r), &body, enroll.Submit{IdempotencyKey: r.Header.Get("Idempotency-Key"), Allocated: allocated})
	})
	if ok {
		s.writePFX(w, r, req, body.Password)
	}
}

// writePFX answers a PFX enrollment: 200 once it settled (with the
// PKCS#12 when issued), 202 with Location while it runs. password is the
// caller's, from the body (a repeated submit's, for an Idempotency-Key
// repeat, which must then match the first).
func (s *Server) writePFX(w http.ResponseWriter, r *http.Request, req *store.Request, password string) {
	s.writeAccepted(w, r, req, func(cert *store.Certificate) (any, error) {
		er, err := keyfactor.NewEnrollmentResponse(req, cert, pki.FormatPEM, identity(r).RoleNames())
		if err != nil {
			return nil, err
		}
		out := keyfactor.NewPFXEnrollmentResponse(er)
		if cert != nil {
			blob, err := s.enroll.PKCS12Of(req, cert, password)
			if err != nil {
				return nil, err
			}
			out.CertificateInformation.Pkcs12Blob = blob
		}
		return out, nil
	})
}

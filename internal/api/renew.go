package api

import (
	"context"
	"net/http"

	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
)

// handleRenew is POST /Enrollment/Renew: the x-certificateformat header
// (PEM when not given) and the body, then enroll.Service.SubmitRenewal,
// then Keyfactor's RenewalResponse once settled.
func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) {
	format := pki.FormatPEM
	if h := r.Header.Get("x-certificateformat"); h != "" {
		f, err := pki.ParseFormat(h)
		if err != nil {
			writeError(w, r, s.log, badField("x-certificateformat header", "%v", err))
			return
		}
		format = f
	}
	var body keyfactor.RenewalRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	req, ok := s.accept(w, r, func(ctx context.Context, allocated func(id int64)) (*store.Request, bool, error) {
		return s.enroll.SubmitRenewal(ctx, identity(r), &body, format, enroll.Submit{IdempotencyKey: r.Header.Get("Idempotency-Key"), Allocated: allocated})
	})
	if !ok {
		return
	}
	s.writeAccepted(w, r, req, func(cert *store.Certificate) (any, error) {
		er, err := keyfactor.NewEnrollmentResponse(req, cert, "", identity(r).RoleNames())
		if err != nil {
			return nil, err
		}
		return keyfactor.NewRenewalResponse(er, req.Input.RenewalCertificateId), nil
	})
}

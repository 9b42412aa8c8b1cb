package api

import (
	"net/http"

	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
)

// handleParseCSR is POST /Enrollment/CSR/Parse: the CSR's subject, one
// "Name=Value" string per attribute in the CSR's order, then its SANs in
// the names Windows (and so Keyfactor's portal) gives them.
func (s *Server) handleParseCSR(w http.ResponseWriter, r *http.Request) {
	var body keyfactor.CSRContents // Keyfactor's model for this body too; only CSR is read
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	_, csr, err := enroll.DecodeCSR(body.CSR)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	out := append([]string{}, pki.SubjectParts(csr.RawSubject)...)
	for _, n := range csr.DNSNames {
		out = append(out, "DNS Name="+n)
	}
	for _, ip := range csr.IPAddresses {
		out = append(out, "IP Address="+ip.String())
	}
	for _, e := range csr.EmailAddresses {
		out = append(out, "RFC822 Name="+e)
	}
	for _, u := range csr.URIs {
		out = append(out, "URL="+u.String())
	}
	writeJSON(w, http.StatusOK, out)
}

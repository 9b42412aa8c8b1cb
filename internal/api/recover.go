package api

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
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
	if err := pki.CheckPFXPassword(body.Password); err != nil {
		writeError(w, r, s.log, badField("Password", "%v", err))
		return
	}
	leafFirst, err := chainOrder(body.ChainOrder, rootFirst)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	req, cert, field, err := s.findCertificate(ctx, &body)
	caller := identity(r)
	if err == nil && !mayActOn(req.Requester.Name, caller) {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, r, s.log, newError(http.StatusNotFound, keyfactor.CodeNotFound, "%s: no such certificate", field))
		return
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	key, _, err := s.retainedKey(req)
	if errors.Is(err, errNoRetainedKey) {
		writeError(w, r, s.log, badField(field, "certificate %d has no retained private key to recover", cert.ID))
		return
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	pfx, err := pki.EncodePKCS12(key, cert.Chain, body.Password, pki.PKCS12Options{IncludeChain: body.IncludeChain, EndEntityFirst: leafFirst})
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	s.log.Info("private key recovered", "certificate", cert.ID, "by", caller.Name)
	writeJSON(w, http.StatusOK, keyfactor.RecoveryResponse{PFX: base64.StdEncoding.EncodeToString(pfx), FileName: pfxFileName(req.CommonName, cert.ID)})
}

// findCertificate resolves the body's identification to the certificate
// and the request that issued it; field is the body field that named it.
func (s *Server) findCertificate(ctx context.Context, b *keyfactor.CertificateRecoveryRequest) (req *store.Request, cert *store.Certificate, field string, err error) {
	switch {
	case b.CertID != 0:
		field = "CertID"
		if b.CertID < 0 {
			return nil, nil, field, badField(field, "must be a positive integer")
		}
		req, cert, err = s.issuedCertificate(ctx, b.CertID, "")
	case b.Thumbprint != "":
		field = "Thumbprint"
		if !isThumbprint(b.Thumbprint) {
			return nil, nil, field, badField(field, "want 40 hexadecimal digits (SHA-1)")
		}
		req, cert, err = s.issuedCertificate(ctx, 0, b.Thumbprint)
	case b.SerialNumber != "" || b.IssuerDN != "":
		field = "SerialNumber"
		if b.SerialNumber == "" || b.IssuerDN == "" {
			return nil, nil, field, badField(field, "SerialNumber and IssuerDN go together")
		}
		req, cert, err = s.certificateBySerial(ctx, b.SerialNumber, b.IssuerDN, func(*store.Request) bool { return true })
	default:
		return nil, nil, "CertID", badField("CertID", "required: name the certificate by CertID, Thumbprint, or SerialNumber and IssuerDN")
	}
	if err != nil {
		return nil, nil, field, err
	}
	return req, cert, field, nil
}

// pfxFileName names the archive after the certificate's common name.
func pfxFileName(cn string, id int64) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, strings.TrimPrefix(cn, "*."))
	if name == "" {
		name = "certificate-" + strconv.FormatInt(id, 10)
	}
	return name + ".pfx"
}

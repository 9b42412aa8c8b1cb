package enroll

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"

	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
)

// Recover is POST /Certificates/Recover: the certificate with its
// retained private key, as a PKCS#12 protected by the caller's Password.
// Only the certificate's requester or an administrator may recover it;
// anyone else is told it does not exist.
func (s *Service) Recover(ctx context.Context, caller *Caller, body *keyfactor.CertificateRecoveryRequest) (*keyfactor.RecoveryResponse, error) {
	if err := pki.CheckPFXPassword(body.Password); err != nil {
		return nil, badField("Password", "%v", err)
	}
	leafFirst, err := ChainOrder(body.ChainOrder)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	defer cancel()
	req, cert, field, err := s.findCertificate(ctx, body)
	if err == nil && !MayActOn(req.Requester.Name, caller) {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, fieldError(NotFound, keyfactor.CodeNotFound, field, "no such certificate")
	}
	if err != nil {
		return nil, err
	}
	key, _, err := s.retainedKey(req)
	if errors.Is(err, errNoRetainedKey) {
		return nil, badField(field, "certificate %d has no retained private key to recover", cert.ID)
	}
	if err != nil {
		return nil, err
	}
	pfx, err := pki.EncodePKCS12(key, cert.Chain, body.Password, pki.PKCS12Options{IncludeChain: body.IncludeChain, EndEntityFirst: leafFirst})
	if err != nil {
		return nil, err
	}
	s.log.Info("private key recovered", "certificate", cert.ID, "by", caller.Name)
	return &keyfactor.RecoveryResponse{PFX: base64.StdEncoding.EncodeToString(pfx), FileName: pfxFileName(req.CommonName, cert.ID)}, nil
}

// findCertificate resolves the body's identification to the certificate
// and the request that issued it; field is the body field that named it.
func (s *Service) findCertificate(ctx context.Context, b *keyfactor.CertificateRecoveryRequest) (req *store.Request, cert *store.Certificate, field string, err error) {
	switch {
	case b.CertID != 0:
		field = "CertID"
		if b.CertID < 0 {
			return nil, nil, field, badField(field, "must be a positive integer")
		}
		req, cert, err = s.IssuedCertificate(ctx, b.CertID, "")
	case b.Thumbprint != "":
		field = "Thumbprint"
		if !isThumbprint(b.Thumbprint) {
			return nil, nil, field, badField(field, "want 40 hexadecimal digits (SHA-1)")
		}
		req, cert, err = s.IssuedCertificate(ctx, 0, b.Thumbprint)
	case b.SerialNumber != "" || b.IssuerDN != "":
		field = "SerialNumber"
		if b.SerialNumber == "" || b.IssuerDN == "" {
			return nil, nil, field, badField(field, "SerialNumber and IssuerDN go together")
		}
		req, cert, err = s.CertificateBySerial(ctx, b.SerialNumber, b.IssuerDN, func(*store.Request) bool { return true })
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

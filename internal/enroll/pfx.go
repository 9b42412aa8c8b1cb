package enroll

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// maxFriendlyName bounds CustomFriendlyName.
const maxFriendlyName = 128

// SubmitPFX is POST /Enrollment/PFX: a PFX enrollment is checked (everything
// a CSR enrollment checks but the CSR, plus the subject, the key to
// generate, against the template's key policy: a refusal naming KeyType,
// KeyLength or Curve, and the password) and submitted like a CSR
// enrollment (submit), but without a CSR: the worker generates the key and
// the CSR before the workflow's steps run.
func (s *Service) SubmitPFX(ctx context.Context, caller *Caller, body *keyfactor.EnrollmentPFXRequest, o Submit) (req *store.Request, existing bool, err error) {
	if err := checkClientKey(o.IdempotencyKey); err != nil {
		return nil, false, err
	}
	e, err := s.checkPFX(caller, body, o.IdempotencyKey)
	if err != nil {
		return nil, false, err
	}
	return s.submit(ctx, e, o.Allocated)
}

// checkPFX is SubmitPFX's check: the enrollment a PFX order stands for,
// with the shape of the CSR the worker will make.
func (s *Service) checkPFX(caller *Caller, body *keyfactor.EnrollmentPFXRequest, idemKey string) (*enrollment, error) {
	switch {
	case body.CSR != "":
		return nil, badField("CSR", "PFX enrollment generates the key and CSR; use POST /Enrollment/CSR to enroll a CSR")
	case body.PrivateKey != "":
		return nil, badField("PrivateKey", "PFX enrollment generates the key; leave PrivateKey out")
	case body.RenewalCertificateId != 0:
		return nil, badField("RenewalCertificateId", "renewal is POST /Enrollment/Renew")
	case body.PopulateMissingValuesFromAD:
		return nil, badField("PopulateMissingValuesFromAD", "certflow has no Active Directory to read; give the whole Subject")
	}
	if err := pki.CheckPFXPassword(body.Password); err != nil {
		return nil, badField("Password", "%v", err)
	}
	if n := utf8.RuneCountInString(body.CustomFriendlyName); n > maxFriendlyName || strings.ContainsFunc(body.CustomFriendlyName, func(c rune) bool { return c > 0xFFFF || c < 0x20 }) {
		return nil, badField("CustomFriendlyName", "at most %d printable characters of the Basic Multilingual Plane", maxFriendlyName)
	}
	subject, err := pki.ParseSubject(body.Subject)
	if err != nil {
		return nil, badField("Subject", "%v", err)
	}
	tmpl, err := s.checkTemplateAndCA(body.Template, body.CertificateAuthority)
	if err != nil {
		return nil, err
	}
	spec, err := pfxKeySpec(body, tmpl)
	if err != nil {
		return nil, err
	}
	if err := checkKeyPolicy(tmpl, spec); err != nil {
		return nil, err
	}
	// The CSR the worker will make has this subject and this kind of key:
	// its shape is what definition selection and the policy see now.
	shape := &x509.CertificateRequest{Subject: subject, PublicKey: spec.PublicShape()}
	e, err := s.enrollmentOf(caller, &body.EnrollmentCSRRequest, "PFX", nil, shape, idemKey)
	if err != nil {
		return nil, err
	}
	leafFirst, err := ChainOrder(body.ChainOrder)
	if err != nil {
		return nil, err
	}
	e.req.Input.PFX = &workflow.PFXSpec{Subject: body.Subject, Key: workflow.KeySpec(spec), FriendlyName: body.CustomFriendlyName, EndEntityFirst: leafFirst}
	e.req.Input.HasPrivateKey = true
	e.req.Input.IncludeSubjectHeader = true
	e.pfxPassword = body.Password
	return e, nil
}

// pfxKeySpec is the key a PFX enrollment asks for; without KeyType,
// KeyLength and Curve, the template's first allowed kind (RSA, then ECC,
// then Ed25519), or RSA 2048 without a template.
func pfxKeySpec(body *keyfactor.EnrollmentPFXRequest, tmpl *config.Template) (pki.KeySpec, error) {
	if body.KeyType != "" || body.KeyLength != 0 || body.Curve != "" {
		return keySpec(body.KeyType, body.KeyLength, body.Curve)
	}
	switch {
	case tmpl == nil:
		return pki.ParseKeySpec("RSA", 2048, "")
	case len(tmpl.RSAKeySizes) > 0:
		return pki.ParseKeySpec("RSA", tmpl.RSAKeySizes[0], "")
	case len(tmpl.ECCCurves) > 0:
		return pki.ParseKeySpec("ECC", 0, tmpl.ECCCurves[0])
	case tmpl.AllowEd25519:
		return pki.ParseKeySpec("Ed25519", 0, "")
	}
	return pki.KeySpec{}, badField("KeyType", "template %s allows no key type", tmpl.Name)
}

// errWrongPFXPassword: a repeated submit's password is not the first's.
var errWrongPFXPassword = fieldError(Conflict, keyfactor.CodeConflict, "Password", "differs from the one this request was submitted with")

// PKCS12Of builds a PFX request's archive: the issued chain (IncludeChain
// as asked) and the retained key, protected by password ("" for the one
// the request was submitted with, read back from the record).
func (s *Service) PKCS12Of(req *store.Request, cert *store.Certificate, password string) (string, error) {
	if req.Input.PFX == nil {
		return "", errors.New("not a PFX request")
	}
	stored, err := s.kek.Open(req.PFXPassword, pki.PFXPasswordAAD(req.ID))
	if err != nil {
		return "", fmt.Errorf("request %d: PFX password: %w", req.ID, err)
	}
	if password == "" {
		password = string(stored)
	} else if password != string(stored) {
		return "", errWrongPFXPassword
	}
	key, _, err := s.retainedKey(req)
	if err != nil {
		return "", err
	}
	pfx, err := pki.EncodePKCS12(key, cert.Chain, password, pki.PKCS12Options{
		IncludeChain: req.Input.IncludeChain, FriendlyName: req.Input.PFX.FriendlyName, EndEntityFirst: req.Input.PFX.EndEntityFirst,
	})
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(pfx), nil
}

// PFXBlobFor returns the PKCS#12 of an issued PFX request for viewer, or
// "" when there is none to give: only the requester receives it.
func (s *Service) PFXBlobFor(req *store.Request, cert *store.Certificate, viewer *Caller) (string, error) {
	if req.Input.PFX == nil || cert == nil || req.Requester.Name != viewer.Name {
		return "", nil
	}
	return s.PKCS12Of(req, cert, "")
}

// samePFX reports whether two PFX orders (nil for CSR enrollments) ask
// for the same subject, key and friendly name.
func samePFX(a, b *workflow.PFXSpec) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// ChainOrder reads Keyfactor's ChainOrder, "RootFirst" or
// "EndEntityFirst" (any case); empty is the leaf first, everywhere:
// Keyfactor 10+ clients decode a PKCS#12 archive's first certificate as
// the leaf, and given the root first they took the root for the
// certificate they enrolled.
func ChainOrder(s string) (endEntityFirst bool, err error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "endentityfirst":
		return true, nil
	case "rootfirst":
		return false, nil
	}
	return false, badField("ChainOrder", "%q: want RootFirst or EndEntityFirst", s)
}

package api

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
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

// handleEnrollPFX is POST /Enrollment/PFX. The request is checked and
// stored like a CSR enrollment, but without a CSR: the worker generates
// the key and the CSR before the workflow's steps run, so the template
// policy, the definition's rules and its approvals apply as to any
// request. The answer carries the PKCS#12 once the certificate is issued
// (now, or when polled at GET /Enrollment/Requests/{id}).
func (s *Server) handleEnrollPFX(w http.ResponseWriter, r *http.Request) {
	e, err := s.decodePFXEnrollment(r, identity(r))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if req, ok := s.accept(w, r, e); ok {
		s.writePFX(w, r, req, e.pfxPassword)
	}
}

// decodePFXEnrollment checks a PFX enrollment: everything a CSR
// enrollment checks (but the CSR), plus the subject, the key to generate
// (against the template's key policy: a 400 naming KeyType, KeyLength or
// Curve) and the password.
func (s *Server) decodePFXEnrollment(r *http.Request, caller *Identity) (*enrollment, error) {
	switch f := strings.ToUpper(strings.TrimSpace(r.Header.Get("x-certificateformat"))); f {
	case "PFX":
	case "":
		return nil, badField("x-certificateformat header", "missing: want PFX")
	default:
		return nil, badField("x-certificateformat header", "%q is not supported for PFX enrollment: want PFX", f)
	}
	var body keyfactor.EnrollmentPFXRequest
	if err := decodeJSON(r, &body); err != nil {
		return nil, err
	}
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
	spec, err := pfxKeySpec(&body, tmpl)
	if err != nil {
		return nil, err
	}
	if err := checkKeyPolicy(tmpl, spec); err != nil {
		return nil, err
	}
	// The CSR the worker will make has this subject and this kind of key:
	// its shape is what definition selection and the policy see now.
	shape := &x509.CertificateRequest{Subject: subject, PublicKey: spec.PublicShape()}
	e, err := s.enrollmentOf(r, caller, &body.EnrollmentCSRRequest, "PFX", nil, shape)
	if err != nil {
		return nil, err
	}
	leafFirst, err := chainOrder(body.ChainOrder, rootFirst)
	if err != nil {
		return nil, err
	}
	e.req.Input.PFX = &workflow.PFXSpec{Subject: body.Subject, Key: spec, FriendlyName: body.CustomFriendlyName, EndEntityFirst: leafFirst}
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

// writePFX answers a PFX enrollment: 200 once it settled (with the
// PKCS#12 when issued), 202 with Location while it runs. password is the
// caller's, from the body (a repeated submit's, for an Idempotency-Key
// repeat, which must then match the first).
func (s *Server) writePFX(w http.ResponseWriter, r *http.Request, req *store.Request, password string) {
	s.writeAccepted(w, r, req, func(cert *store.Certificate) (any, error) {
		er, err := keyfactor.NewEnrollmentResponse(req, cert, pki.FormatPEM, roles(identity(r)))
		if err != nil {
			return nil, err
		}
		ci := er.CertificateInformation
		out := &keyfactor.PFXEnrollmentResponse{Metadata: er.Metadata, CertificateInformation: keyfactor.PFXCertificateInformation{
			SerialNumber: ci.SerialNumber, IssuerDN: ci.IssuerDN, Thumbprint: ci.Thumbprint, KeyfactorId: ci.KeyfactorID,
			KeyfactorRequestId: ci.KeyfactorRequestId, WorkflowInstanceId: ci.WorkflowInstanceId, WorkflowReferenceId: ci.WorkflowReferenceId,
			StoreIdsInvalidForRenewal: []string{}, RequestDisposition: ci.RequestDisposition, DispositionMessage: ci.DispositionMessage,
			EnrollmentContext: ci.EnrollmentContext, Certificates: ci.Certificates,
		}}
		if cert != nil {
			blob, err := s.pkcs12Of(req, cert, password)
			if err != nil {
				return nil, err
			}
			out.CertificateInformation.Pkcs12Blob = blob
		}
		return out, nil
	})
}

// errWrongPFXPassword: a repeated submit's password is not the first's.
var errWrongPFXPassword = newError(http.StatusConflict, keyfactor.CodeConflict, "Password: differs from the one this request was submitted with")

// pkcs12Of builds a PFX request's archive: the issued chain (IncludeChain
// as asked) and the retained key, protected by password ("" for the one
// the request was submitted with, read back from the record).
func (s *Server) pkcs12Of(req *store.Request, cert *store.Certificate, password string) (string, error) {
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

// pfxBlobFor returns the PKCS#12 of an issued PFX request for viewer, or
// "" when there is none to give: only the requester receives it.
func (s *Server) pfxBlobFor(ctx context.Context, req *store.Request, cert *store.Certificate, viewer *Identity) (string, error) {
	if req.Input.PFX == nil || cert == nil || req.Requester.Name != viewer.Name {
		return "", nil
	}
	return s.pkcs12Of(req, cert, "")
}

// samePFX reports whether two PFX orders (nil for CSR enrollments) ask
// for the same subject, key and friendly name.
func samePFX(a, b *workflow.PFXSpec) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// chainOrder reads Keyfactor's ChainOrder, "RootFirst" or
// "EndEntityFirst" (any case); empty is def (PKCS#12 archives put the
// root first, as Keyfactor's do; a download puts the leaf first).
func chainOrder(s string, def bool) (endEntityFirst bool, err error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return def, nil
	case "rootfirst":
		return false, nil
	case "endentityfirst":
		return true, nil
	}
	return false, badField("ChainOrder", "%q: want RootFirst or EndEntityFirst", s)
}

// Defaults of chainOrder.
const (
	rootFirst      = false
	endEntityFirst = true
)

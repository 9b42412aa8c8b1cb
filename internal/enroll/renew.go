package enroll

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// SubmitRenewal is POST /Enrollment/Renew: a new request for the identity
// of an issued certificate, run by the `renewal` trigger's workflow — or,
// when it names another template, by that template's enrollment workflow.
// The renewal is checked and turned into the enrollment it stands for:
// the old certificate's subject and SANs, template, owner, metadata and
// enrollment fields, with the new CSR or a CSR made here with the retained
// key (which the new request retains too).
//
// A renewal renews the same identity, and only a live one: the
// certificate must not be revoked (whoever asks, whatever key: an admin
// enrolls anew), nor expired for longer than api.renewal_grace, and what
// the renewal would certify — the CSR's subject (its DER) and SANs merged
// as the workflow merges them — must be exactly the certificate's (else
// Invalid, naming CSR). A renewal that names another template is an enrollment
// into it: it runs with trigger enrollment, so that template's enrollment
// workflow, with its rules and approvals, decides.
func (s *Service) SubmitRenewal(ctx context.Context, caller *Caller, body *keyfactor.RenewalRequest, format pki.Format, o Submit) (req *store.Request, existing bool, err error) {
	if err := checkClientKey(o.IdempotencyKey); err != nil {
		return nil, false, err
	}
	e, err := s.checkRenewal(ctx, caller, body, format, o.IdempotencyKey)
	if err != nil {
		return nil, false, err
	}
	req, existing, err = s.submit(ctx, e, o.Allocated)
	if err == nil && !existing {
		s.noteRenewal(ctx, req)
	}
	return req, existing, err
}

// noteRenewal marks the certificate a new renewal request renews as being
// renewed (Store.NoteRenewal), so that a renew step finds it under way and
// makes no second renewal beside it. Best effort: the renewal stands
// without the mark.
func (s *Service) noteRenewal(ctx context.Context, req *store.Request) {
	id := req.Input.RenewalCertificateId
	if id == 0 {
		return
	}
	if err := s.store.NoteRenewal(context.WithoutCancel(ctx), id, req.ID); err != nil {
		s.log.Warn("renewal submitted but not noted on the certificate", "certificate", id, "request", req.ID, "err", err)
	}
}

// checkRenewal is SubmitRenewal's check: the enrollment a renewal stands
// for. format is the certificate format asked for (PEM when not given).
func (s *Service) checkRenewal(ctx context.Context, caller *Caller, body *keyfactor.RenewalRequest, format pki.Format, idemKey string) (*enrollment, error) {
	if body.Timestamp != "" {
		if _, err := parseTimestamp(body.Timestamp); err != nil {
			return nil, err
		}
	}
	if body.CallbackUrl != "" {
		if err := callback.CheckURL(body.CallbackUrl, s.cfg.Callbacks.AllowPrivate); err != nil {
			return nil, badField("CallbackUrl", "%v", err)
		}
	}
	if len(idemKey) > maxIdempotencyKey {
		return nil, badField("Idempotency-Key header", "longer than %d characters", maxIdempotencyKey)
	}
	old, cert, err := s.renewedCertificate(ctx, body, caller)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(cert.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("stored certificate %d does not parse: %w", cert.ID, err)
	}
	if err := s.checkRenewable(ctx, body, cert, leaf, time.Now()); err != nil {
		return nil, err
	}
	tmplName := cmp.Or(body.Template, old.Input.Template)
	caName := body.CertificateAuthority
	if caName == "" && body.Template == "" {
		// Renew from where it came, as long as that CA still serves the template.
		caName = old.Input.CertificateAuthority
	}
	tmpl, err := s.checkTemplateAndCA(tmplName, caName)
	if err != nil {
		return nil, err
	}
	e := &enrollment{caller: caller}
	var der []byte
	if strings.TrimSpace(body.CSR) != "" {
		d, csr, err := DecodeCSR(body.CSR)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(csr.RawSubject, leaf.RawSubject) {
			return nil, badField("CSR", "its subject %q is not certificate %d's (%q): a renewal keeps the subject; enroll a new certificate instead", csr.Subject, cert.ID, leaf.Subject)
		}
		der, e.csr = d, csr
	} else {
		key, keyDER, err := s.openRetainedKey(old)
		if err != nil {
			return nil, err
		}
		if key == nil {
			return nil, badField("CSR", "required: certificate %d has no retained private key to renew with", cert.ID)
		}
		if tmpl != nil && !tmpl.KeyRetention {
			return nil, badField("Template", "%s does not retain private keys, so certificate %d's key cannot be renewed with it; send a CSR", tmpl.Name, cert.ID)
		}
		d, csr, err := renewalCSR(leaf, key)
		if err != nil {
			return nil, fmt.Errorf("renewal CSR for certificate %d: %w", cert.ID, err)
		}
		der, e.csr, e.privateKey = d, csr, keyDER
	}
	in := old.Input
	addCN := tmpl != nil && tmpl.RFCEnforcement
	if diff := sanDifference(leaf, e.csr, in.SANs, addCN); diff != "" {
		return nil, badField("CSR", "its names are not certificate %d's (%s): a renewal renews the same identity; enroll a new certificate for other names", cert.ID, diff)
	}
	// The old request's choices are held to today's template, as a new
	// submit's would be.
	if err := checkTemplateAccess(caller, tmpl); err != nil {
		return nil, err
	}
	var ownerID *int64
	if in.OwnerRoleId != 0 && in.OwnerRoleName == "" {
		ownerID = &in.OwnerRoleId
	}
	owner, err := s.checkOwner(ownerID, in.OwnerRoleName, tmpl)
	if err != nil {
		return nil, err
	}
	md := make(map[string]any, len(in.Metadata))
	for k, v := range in.Metadata {
		md[k] = v
	}
	metadata, err := s.checkMetadata(md, tmpl)
	if err != nil {
		return nil, err
	}
	fields, err := checkAdditionalFields(in.AdditionalEnrollmentFields, tmpl)
	if err != nil {
		return nil, err
	}
	// Into another template, or to another CA, a renewal is an
	// enrollment there: that template's or CA's enrollment rules and
	// approvals apply, not the renewal workflow (the names passed another
	// template's, or none at all).
	trigger := workflow.TriggerRenewal
	if !strings.EqualFold(templateName(tmpl), in.Template) || !s.sameCA(caName, cert) {
		trigger = workflow.TriggerEnrollment
	}
	now := time.Now().UTC()
	e.req = store.Request{
		Disposition: store.Queued,
		Submitted:   now,
		Updated:     now,
		Trigger:     trigger,
		Requester:   caller.requester(),
		CSR:         der,
		Subject:     pki.NameString(e.csr.RawSubject, e.csr.Subject),
		CommonName:  e.csr.Subject.CommonName,
		Input: workflow.Request{
			Template:                   templateName(tmpl),
			CertificateAuthority:       s.caName(caName),
			IncludeChain:               body.IncludeChain != nil && *body.IncludeChain,
			IncludeSubjectHeader:       true,
			Format:                     string(format),
			Metadata:                   metadata,
			SANs:                       maps.Clone(in.SANs),
			AdditionalEnrollmentFields: fields,
			OwnerRoleId:                owner.ID,
			OwnerRoleName:              owner.Name,
			HasPrivateKey:              e.privateKey != nil,
			CallbackUrl:                body.CallbackUrl,
			Timestamp:                  now,
			RenewalCertificateId:       cert.ID,
		},
		IdempotencyKey: idemKey,
	}
	return e, nil
}

// renewedCertificate finds the certificate a renewal names, by
// CertificateId or Thumbprint (one of them), with the request that issued
// it. Only its requester or an administrator may renew it; to anyone else
// it does not exist.
func (s *Service) renewedCertificate(ctx context.Context, body *keyfactor.RenewalRequest, caller *Caller) (*store.Request, *store.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	defer cancel()
	var id int64
	var thumbprint, field, what string
	switch {
	case body.CertificateId != nil && body.Thumbprint != "":
		return nil, nil, badField("CertificateId", "give CertificateId or Thumbprint, not both")
	case body.CertificateId != nil:
		if *body.CertificateId <= 0 {
			return nil, nil, badField("CertificateId", "must be a positive integer")
		}
		id, field, what = *body.CertificateId, "CertificateId", strconv.FormatInt(*body.CertificateId, 10)
	case body.Thumbprint != "":
		if !isThumbprint(body.Thumbprint) {
			return nil, nil, badField("Thumbprint", "want the certificate's SHA-1 thumbprint, 40 hex digits")
		}
		thumbprint, field, what = body.Thumbprint, "Thumbprint", strings.ToUpper(body.Thumbprint)
	default:
		return nil, nil, badField("CertificateId", "required: the CertificateId or Thumbprint of the certificate to renew")
	}
	notFound := fieldError(NotFound, keyfactor.CodeNotFound, field, "no certificate %s", what)
	old, cert, err := s.IssuedCertificate(ctx, id, thumbprint)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, notFound
	}
	if err != nil {
		return nil, nil, err
	}
	if !MayActOn(old.Requester.Name, caller) || len(cert.Chain) == 0 {
		return nil, nil, notFound
	}
	return old, cert, nil
}

// checkRenewable refuses a renewal of a certificate that is not live: one
// revoked (for whatever reason, whatever key the renewal would use, and
// whoever asks: a revoked identity is enrolled anew, through the
// enrollment workflow), expired for longer than api.renewal_grace, or
// being revoked (a revocation waiting for approval: renewed now, the new
// certificate would outlive the revocation, with the same key perhaps).
// The error names the field that named the certificate.
func (s *Service) checkRenewable(ctx context.Context, body *keyfactor.RenewalRequest, cert *store.Certificate, leaf *x509.Certificate, now time.Time) error {
	field := "CertificateId"
	if body.CertificateId == nil {
		field = "Thumbprint"
	}
	if rev := cert.Revocation; rev != nil {
		return badField(field, "certificate %d is revoked (reason %d) and cannot be renewed; enroll a new certificate (with a new key)", cert.ID, rev.Reason)
	}
	grace := s.cfg.API.RenewalGrace
	if now.After(leaf.NotAfter.Add(grace)) {
		return badField(field, "certificate %d expired at %s, beyond the renewal grace period (%s); enroll a new certificate", cert.ID, leaf.NotAfter.UTC().Format(time.RFC3339), grace)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	defer cancel()
	holder, err := s.store.RevocationUnderWay(ctx, cert.ID)
	if err != nil {
		return err
	}
	if holder > 0 {
		return fieldError(Conflict, keyfactor.CodeConflict, field, "a revocation of certificate %d is under way (request %d); it cannot be renewed meanwhile", cert.ID, holder)
	}
	return nil
}

// sanDifference describes how the SANs a renewal would certify — csr's
// merged with the old request's sans as the workflow merges them (with
// the CN under RFC 2818 enforcement) — differ from leaf's: "" when they
// are the same set. Every SAN type counts; order and duplicates do not;
// both sides go through workflow.MergeSANs, so names compare as policy
// and the CA see them (DNS names and mail domains without case, an IP
// address in one spelling).
func sanDifference(leaf *x509.Certificate, csr *x509.CertificateRequest, sans map[string][]string, addCN bool) string {
	got := sanSet(workflow.MergeSANs(workflow.NewCSR(csr), sans, addCN))
	want := sanSet(workflow.MergeSANs(workflow.NewCSR(pki.CertificateAsCSR(leaf)), nil, false))
	var added, missing []string
	for k := range got {
		if !want[k] {
			added = append(added, k)
		}
	}
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	if len(added) == 0 && len(missing) == 0 {
		return ""
	}
	slices.Sort(added)
	slices.Sort(missing)
	var parts []string
	if len(added) > 0 {
		parts = append(parts, "adds "+quoteSome(added))
	}
	if len(missing) > 0 {
		parts = append(parts, "lacks "+quoteSome(missing))
	}
	return strings.Join(parts, "; ")
}

// sanSet is merged SANs as a set of "<kind>:<name>".
func sanSet(s workflow.SANs) map[string]bool {
	set := map[string]bool{}
	for kind, list := range map[string][]string{"dns": s.DNS, "ip": s.IP, "email": s.Email, "uri": s.URI} {
		for _, v := range list {
			set[kind+":"+v] = true
		}
	}
	return set
}

// quoteSome quotes up to five names, and counts the rest.
func quoteSome(names []string) string {
	const most = 5
	var b strings.Builder
	for i, n := range names {
		if i == most {
			fmt.Fprintf(&b, " and %d more", len(names)-most)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(n))
	}
	return b.String()
}

// openRetainedKey opens the private key a request retained (nil when it
// retained none), through retainedKey, the one accessor of retained keys.
func (s *Service) openRetainedKey(req *store.Request) (crypto.Signer, []byte, error) {
	key, der, err := s.retainedKey(req)
	if errors.Is(err, errNoRetainedKey) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("retained key of request %d cannot sign", req.ID)
	}
	return signer, der, nil
}

// renewalCSR is a CSR for leaf's subject and names, signed with key.
func renewalCSR(leaf *x509.Certificate, key crypto.Signer) ([]byte, *x509.CertificateRequest, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		RawSubject: leaf.RawSubject, DNSNames: leaf.DNSNames, IPAddresses: leaf.IPAddresses,
		EmailAddresses: leaf.EmailAddresses, URIs: leaf.URIs,
	}, key)
	if err != nil {
		return nil, nil, err
	}
	csr, err := pki.ParseCSR(der)
	return der, csr, err
}

func isThumbprint(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// sameCA reports whether a renewal's CertificateAuthority (resolved by
// name or host\name; "" for the template's choice) is the CA that issued
// the certificate it renews. "" counts as the same: the template's CAs
// are the ones its enrollment could have had anyway.
func (s *Service) sameCA(name string, cert *store.Certificate) bool {
	if name == "" {
		return true
	}
	c, ok := s.cfg.CA(name)
	return ok && strings.EqualFold(c.Name, cert.CAName())
}

package enroll

import (
	"crypto/x509"
	"slices"
	"strings"

	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/policy"
	"github.com/certflow/certflow/workflow"
)

// checkPolicy holds a submit (CSR, PFX or renewal) to the policy that
// binds it, before anything is stored: the SAN count, then its template's
// rules or, without a template, its standalone CA's (which may also
// restrict who enrolls). in is the request as the workflow will see it,
// with the SANs merged and normalised. The answer names the field at
// fault: CSR (or, for a PFX enrollment, Subject and KeyType), or SANs.
func (s *Service) checkPolicy(e *enrollment, in *workflow.Input) error {
	if n := sanCount(e.csr, e.req.Input.SANs); n > s.cfg.API.MaxSANs {
		field := "SANs"
		if sanCount(e.csr, nil) > s.cfg.API.MaxSANs {
			field = "CSR"
		}
		return fieldError(Invalid, keyfactor.CodePolicy, field, "the request has %d subject alternative names, more than the %d allowed (api.max_sans)", n, s.cfg.API.MaxSANs)
	}
	rules, err := s.rulesFor(e)
	if err != nil {
		return err
	}
	v := rules.Check(&policy.Request{
		Subject: e.csr.Subject, RawSubject: e.csr.RawSubject, PublicKey: e.csr.PublicKey,
		SANs: policy.SANs(in.SANs), KeyGenerated: e.req.Input.PFX != nil,
	}, s.casubjects.All())
	if v == nil {
		return nil
	}
	return fieldError(Invalid, keyfactor.CodePolicy, violationField(v, e), "%s", v.Message)
}

// rulesFor returns the rules that bind e: its template's, or those of the
// standalone CA it names, whose allowed_requesters e's caller must match.
func (s *Service) rulesFor(e *enrollment) (*policy.Rules, error) {
	caller := e.caller
	if t, ok := s.cfg.Template(e.req.Input.Template); ok {
		r := policy.ForTemplate(t)
		return &r, nil
	}
	c, ok := s.cfg.CA(e.req.Input.CertificateAuthority)
	if !ok || !c.Standalone {
		return nil, badField("Template", "required unless CertificateAuthority names a standalone CA")
	}
	if !c.MayEnroll(caller.Roles) {
		return nil, fieldError(Forbidden, keyfactor.CodeForbidden, "CertificateAuthority", "%s may not enroll with certificate authority %s (allowed: %s)", caller.Name, c.Name, strings.Join(c.AllowedRequesters, ", "))
	}
	r := policy.ForCA(c)
	return &r, nil
}

// violationField names the request field a violation is about.
func violationField(v *policy.Violation, e *enrollment) string {
	pfx := e.req.Input.PFX != nil
	switch {
	case v.Part == policy.PartKey && pfx:
		return "KeyType"
	case v.Part == policy.PartSAN && fromBody(v, e.req.Input.SANs):
		return "SANs"
	case pfx:
		return "Subject" // a PFX's names come from its Subject and SANs
	}
	return "CSR"
}

// fromBody reports whether the body's SANs object gave the name a
// violation is about (else the CSR did): the body's names merged and
// normalised as the workflow does, so they compare with the violation's.
func fromBody(v *policy.Violation, sans map[string][]string) bool {
	body := policy.SANs(workflow.MergeSANs(workflow.CSR{}, sans, false))
	return slices.Contains(body.Of(v.Kind), v.Value)
}

// sanCount is how many SANs a request carries, its CSR's and its body's,
// before duplicates are merged.
func sanCount(csr *x509.CertificateRequest, body map[string][]string) int {
	n := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.EmailAddresses) + len(csr.URIs)
	for _, v := range body {
		n += len(v)
	}
	return n
}

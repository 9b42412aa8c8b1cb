package steps

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// Issue is the issue step type: it submits the request to a CA. It is
// idempotent per request: a re-run (a re-delivered task, two workers
// racing) returns the certificate already issued and never signs twice.
//
//	uses: issue
//	with:
//	  authority: "${{ request.CertificateAuthority }}"  # default: the request's, else one of the template's
//	  validity: 2160h                                  # default: the template's; capped by the CA
//
// Before signing it checks the policy again (Config, CASubjects) and, in
// the store, that the key was not revoked for compromise and that a
// renewed certificate is still renewable.
type Issue struct {
	// Config has the templates, the CAs' settings and crl_base_url.
	Config *config.Config
	// CAs sign.
	CAs *ca.Registry
	// CASubjects are the CAs' subjects, which policy keeps out of issued
	// certificates (nil: none known).
	CASubjects *ca.Subjects
	// Store holds the issue lock and the certificates.
	Store *store.Store
	// DryRun issues without a store (`certflow test`, POST
	// /Workflow/Definitions/Test): no issue lock, no look-up of a
	// revoked key or of the renewed certificate, and the certificate is
	// no Result.Record, so nothing is stored. Its CAs are throwaway ones.
	DryRun bool
}

type issueWith struct {
	Authority yaml.Node `yaml:"authority"`
	Validity  string    `yaml:"validity"`
}

// Build implements workflow.Builder.
func (is Issue) Build(spec *workflow.Spec) (workflow.Step, error) {
	if spec.Trigger == workflow.TriggerRevocation {
		return nil, spec.Errorf(nil, "the issue step does not run in revocation workflows (their CA step is %s)", workflow.RevokeStep)
	}
	var w issueWith
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	// Both settings are checked, so lint reports every mistake at once.
	var errs []error
	var authority *workflow.Template
	if w.Authority.Kind != 0 {
		t, err := spec.Template(w.Authority.Value, &w.Authority)
		switch {
		case err != nil:
			errs = append(errs, err)
		case t.IsLiteral():
			if _, ok := is.Config.CA(t.Source); !ok {
				errs = append(errs, spec.Errorf(&w.Authority, "authority: unknown certificate authority %q", t.Source))
			}
		}
		authority = t
	}
	var validity time.Duration
	if w.Validity != "" {
		v, err := time.ParseDuration(w.Validity)
		if err != nil || v <= 0 {
			errs = append(errs, spec.Errorf(spec.With, "validity: %q is not a positive duration (e.g. 2160h)", w.Validity))
		}
		validity = v
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return issueStep{is: is, authority: authority, validity: validity}, nil
}

// issueStep is a built issue step: it runs (Issue.issue), and, when an
// administrator stops a request waiting for its CA, gives the order up
// (Resume).
type issueStep struct {
	is        Issue
	authority *workflow.Template
	validity  time.Duration
}

func (s issueStep) Run(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
	return s.is.issue(ctx, run, s.authority, s.validity)
}

// Resume is called only for a wait the issue step made (an authority
// wait) that was stopped: the order will not be moved on, so what was
// presented for it is taken down and its pending authorizations
// deactivated, rather than left in the zone (dns-01) or in Redis
// (http-01) for the CA to validate; a certificate the CA issued for it
// meanwhile, which certflow never released, is revoked (abandon). A
// request whose certificate was stored meanwhile (a look that ended as
// the stop came) has nothing to give up.
func (s issueStep) Resume(ctx context.Context, run *workflow.Run, w *workflow.Wait) workflow.Result {
	if !w.ForAuthority() || w.Verdict != workflow.VerdictStopped || s.is.DryRun {
		return workflow.Result{}
	}
	pre, _ := run.IssueClaim.(*store.IssueClaim)
	existing, claim, _ := s.is.Store.ClaimIssue(ctx, run.RequestID, pre)
	if existing != nil {
		return workflow.Result{}
	}
	if claim != nil {
		defer claim.Release(context.WithoutCancel(ctx))
	}
	if rec, _, err := s.is.recordedOrder(ctx, run.RequestID); err == nil {
		s.is.abandon(ctx, run, rec, claim)
	}
	return workflow.Result{}
}

// issue returns the request's certificate, signing one only if none is
// stored (store.ClaimIssue): a re-run after a crash, or a second worker,
// gets the first one, without checking the policy again. The claim the
// worker took with its read of the request (run.IssueClaim) spares
// ClaimIssue its round trip; a claim of another kind counts as none. A new
// certificate is not stored here: it is the step's Result.Record, which
// the checkpoint after the step writes together with the instance, and
// the engine writes that checkpoint before any step with effects runs.
// A CA that issues by order (ca.Orderer: ACME) takes the order path
// (issue_order.go), which may suspend the instance instead.
func (is Issue) issue(ctx context.Context, run *workflow.Run, authority *workflow.Template, validity time.Duration) (workflow.Result, error) {
	if is.DryRun {
		p, err := is.prepare(ctx, run, authority, validity, "")
		if err != nil {
			return workflow.Result{}, err
		}
		cert, err := is.sign(ctx, run, p)
		if err != nil {
			return workflow.Result{}, err
		}
		cert.ID = run.RequestID
		return issued(cert, false), nil
	}
	pre, _ := run.IssueClaim.(*store.IssueClaim)
	existing, claim, err := is.Store.ClaimIssue(ctx, run.RequestID, pre)
	if err != nil {
		// Another worker holds the issue lock, or Redis failed: not the
		// step's fault; the queue runs it again later.
		return workflow.Result{}, workflow.RetryLater(fmt.Errorf("issue: %w", err))
	}
	if existing != nil {
		run.Log.Info("certificate already issued; reusing it", "certificate", existing.ID)
		return issued(existing, false), nil
	}
	signed := false
	defer func() {
		if !signed {
			claim.Release(context.WithoutCancel(ctx))
		}
	}()
	// An order placed with an external CA binds the request to that CA,
	// whatever the step would choose now.
	rec, retired, err := is.recordedOrder(ctx, run.RequestID)
	if err != nil {
		return workflow.Result{}, err
	}
	if retired.Order.URL != "" {
		// A restart retired the order that failed the request: given up
		// (a certificate the CA issued for it revoked), then dropped; if
		// the CA cannot be told now, the next look tries again.
		if is.abandon(ctx, run, retired, claim) {
			if err := claim.DropRetiredOrder(ctx); err != nil {
				run.Log.Warn("gave the retired order up, but could not drop its record; the next look tries again", "err", err)
			}
		}
	}
	p, err := is.prepare(ctx, run, authority, validity, rec.Authority)
	if err != nil {
		var later *workflow.RetryLaterError
		if rec.Order.URL != "" && !errors.As(err, &later) {
			// Its CA may no longer issue it (taken out of the template,
			// the policy changed): the order will not be moved on.
			is.abandon(ctx, run, rec, claim)
		}
		return workflow.Result{}, err
	}
	if o, ok := p.auth.(ca.Orderer); ok {
		res, cert, err := is.order(ctx, run, claim, o, p, rec)
		if cert != nil {
			signed = true
			claim.Signed(cert, run.RequestID)
			run.Log.Info("certificate issued", "certificate", cert.ID, "serial", cert.SerialNumber, "authority", cert.Authority)
		}
		return res, err
	}
	cert, err := is.sign(ctx, run, p)
	if err != nil {
		return workflow.Result{}, err
	}
	signed = true
	claim.Signed(cert, run.RequestID)
	run.Log.Info("certificate issued", "certificate", cert.ID, "serial", cert.SerialNumber, "authority", cert.Authority)
	return issued(cert, true), nil
}

// issued is the issue step's result; a fresh certificate is its record.
func issued(cert *store.Certificate, fresh bool) workflow.Result {
	res := workflow.Result{
		Certificate: cert.Ref(),
		Outputs: map[string]any{
			"id": cert.ID, "serial": cert.SerialNumber, "thumbprint": cert.Thumbprint,
			"authority": cert.Authority, "not_after": cert.NotAfter,
		},
	}
	if fresh {
		res.Record = cert
	}
	return res
}

// prepared is a request made ready for its CA: the CA chosen, the policy
// checked again, and what the CA is asked to sign.
type prepared struct {
	tmpl *config.Template
	ca   *config.CA
	auth ca.Authority
	req  *ca.Request
}

// prepare chooses the CA (the one named by bound, when an order binds the
// request to it) and checks, again, what the CA may sign: the template's
// policy, that the key was not revoked for compromise, that a renewed
// certificate is still renewable.
func (is Issue) prepare(ctx context.Context, run *workflow.Run, authority *workflow.Template, validity time.Duration, bound string) (prepared, error) {
	req := run.Env.Request
	tmpl, caCfg, err := is.pickAuthority(run, authority, bound)
	if err != nil {
		return prepared{}, err
	}
	// The template's policy binds every certificate, whatever steps the
	// definition has before this one.
	if msg := PolicyViolation(is.Config, is.CASubjects.All(), run, caCfg); msg != "" {
		return prepared{}, workflow.Deny("%s", msg)
	}
	// Checked at submit too; here again because the key may have been
	// revoked for keyCompromise while the request waited (an approval).
	// A dry run has no store to ask either.
	if !is.DryRun {
		if err := is.keyNotCompromised(ctx, run.CSR); err != nil {
			return prepared{}, err
		}
		if id := req.RenewalCertificateId; id != 0 {
			if err := is.stillRenewable(ctx, id); err != nil {
				return prepared{}, err
			}
		}
	}
	auth, ok := is.CAs.Get(caCfg.Name)
	if !ok {
		return prepared{}, workflow.Permanent(fmt.Errorf("certificate authority %s is configured but not loaded", caCfg.Name))
	}
	if validity == 0 && tmpl != nil {
		validity = tmpl.Validity
	}
	if validity == 0 || validity > caCfg.MaxValidity {
		validity = caCfg.MaxValidity
	}
	caReq, err := caRequest(run, tmpl, validity)
	if err != nil {
		return prepared{}, workflow.Permanent(err)
	}
	if base := is.Config.CRLBaseURL; base != "" && !caCfg.IsACME() {
		caReq.CRLDistributionPoints = []string{CRLURL(base, caCfg.Name)}
	}
	return prepared{tmpl: tmpl, ca: caCfg, auth: auth, req: caReq}, nil
}

// sign has a CA that signs at once (the built-in one) sign the request.
func (is Issue) sign(ctx context.Context, run *workflow.Run, p prepared) (*store.Certificate, error) {
	issued, err := p.auth.Issue(ctx, p.req)
	if errors.Is(err, ca.ErrRefused) {
		// The CA's own last line of policy: asking again will not help.
		return nil, workflow.Deny("certificate authority %s: %v", p.ca.Name, err)
	}
	if err != nil {
		// The CA's own failure: the step's retry policy and on_error decide.
		return nil, fmt.Errorf("certificate authority %s: %w", p.ca.Name, err)
	}
	return is.certificate(run, p, issued), nil
}

// certificate is the record of a certificate the CA issued for run.
func (is Issue) certificate(run *workflow.Run, p prepared, issued *ca.Issued) *store.Certificate {
	req, leaf := run.Env.Request, issued.Leaf
	c := &store.Certificate{
		Chain:        issued.Chain,
		SerialNumber: pki.SerialHex(leaf),
		Thumbprint:   pki.Thumbprint(leaf.Raw),
		IssuerDN:     pki.NameString(leaf.RawIssuer, leaf.Issuer),
		SubjectDN:    pki.NameString(leaf.RawSubject, leaf.Subject),
		NotBefore:    leaf.NotBefore,
		NotAfter:     leaf.NotAfter,
		Authority:    p.ca.QualifiedName(),
		Template:     req.Template,
		Requester:    run.Env.Requester.Name,
		Issued:       time.Now().UTC(),
		// The API resolved the owner to both forms at submit.
		OwnerRoleId:   req.OwnerRoleId,
		OwnerRoleName: req.OwnerRoleName,
	}
	c.Describe(leaf)
	return c
}

// stillRenewable denies a renewal whose certificate was revoked, or is
// being revoked, since the renewal was submitted (the API refuses both at
// submit; a renewal waiting for approval must not outlive them).
func (is Issue) stillRenewable(ctx context.Context, certID int64) error {
	old, err := is.Store.Certificate(ctx, certID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return workflow.Deny("certificate %d, which this request renews, no longer exists", certID)
	case err != nil:
		return workflow.RetryLater(err)
	case old.Revocation != nil:
		return workflow.Deny("certificate %d, which this request renews, was revoked (reason %d): it is not renewed", certID, old.Revocation.Reason)
	}
	holder, err := is.Store.RevocationUnderWay(ctx, certID)
	if err != nil {
		return workflow.RetryLater(err)
	}
	if holder > 0 {
		return workflow.Deny("certificate %d, which this request renews, is being revoked (request %d): it is not renewed", certID, holder)
	}
	return nil
}

// keyNotCompromised denies a CSR whose public key is one a certificate
// was revoked for (keyCompromise): such a key is never certified again.
func (is Issue) keyNotCompromised(ctx context.Context, csr *x509.CertificateRequest) error {
	keyID, err := pki.PublicKeyID(csr.PublicKey)
	if err != nil {
		return workflow.Deny("the CSR's public key cannot be encoded: %v", err)
	}
	compromised, err := is.Store.KeyCompromised(ctx, keyID)
	switch {
	case err != nil:
		return workflow.RetryLater(err)
	case compromised:
		return workflow.Deny("the CSR's key was revoked for key compromise: it is never certified again")
	}
	return nil
}

// pickAuthority chooses the CA: bound (the CA an order was placed with),
// else the step's `authority`, else the request's CertificateAuthority,
// else one of the template's at random.
func (is Issue) pickAuthority(run *workflow.Run, authority *workflow.Template, bound string) (*config.Template, *config.CA, error) {
	req := run.Env.Request
	var tmpl *config.Template
	if req.Template != "" {
		t, ok := is.Config.Template(req.Template)
		if !ok {
			return nil, nil, workflow.Deny("template %q no longer exists", req.Template)
		}
		tmpl = t
	}
	name := req.CertificateAuthority
	if bound != "" {
		name, authority = bound, nil
	}
	if authority != nil {
		s, err := authority.String(run.Env)
		if err != nil {
			return nil, nil, workflow.Permanent(fmt.Errorf("authority: %w", err))
		}
		if s != "" {
			name = s
		}
	}
	if name == "" {
		if tmpl == nil || len(tmpl.CAs) == 0 {
			return nil, nil, workflow.Deny("no certificate authority named and no template to choose one")
		}
		name = tmpl.CAs[rand.IntN(len(tmpl.CAs))]
	}
	c, ok := is.Config.CA(name)
	if !ok {
		return nil, nil, workflow.Deny("unknown certificate authority %q", name)
	}
	if tmpl != nil && !servesTemplate(tmpl, c) {
		return nil, nil, workflow.Deny("certificate authority %s does not serve template %s", c.Name, tmpl.Name)
	}
	return tmpl, c, nil
}

func servesTemplate(t *config.Template, c *config.CA) bool {
	return slices.ContainsFunc(t.CAs, func(n string) bool { return strings.EqualFold(n, c.Name) })
}

// caRequest turns the verified CSR and the merged SANs into what the CA signs.
func caRequest(run *workflow.Run, tmpl *config.Template, validity time.Duration) (*ca.Request, error) {
	csr := run.CSR
	r := &ca.Request{
		CSR:     csr.Raw,
		Subject: csr.Subject, RawSubject: csr.RawSubject, PublicKey: csr.PublicKey,
		DNSNames: run.Env.SANs.DNS, Emails: run.Env.SANs.Email, Validity: validity,
	}
	for name, v := range run.Env.Request.AdditionalEnrollmentFields {
		if r.EnrollmentFields == nil {
			r.EnrollmentFields = make(map[string]string, len(run.Env.Request.AdditionalEnrollmentFields))
		}
		r.EnrollmentFields[name] = fmt.Sprint(v) // the API stored them as text
	}
	for _, s := range run.Env.SANs.IP {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("SAN %q is not an IP address", s)
		}
		r.IPAddresses = append(r.IPAddresses, ip)
	}
	for _, s := range run.Env.SANs.URI {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("SAN %q is not a URI", s)
		}
		r.URIs = append(r.URIs, u)
	}
	keyType, _, _ := pki.DescribeKey(csr.PublicKey)
	r.KeyUsage = x509.KeyUsageDigitalSignature
	if tmpl == nil {
		r.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		return r, nil
	}
	for _, u := range tmpl.KeyUsages {
		ku, ok := pki.KeyUsages[u]
		if !ok {
			return nil, fmt.Errorf("template %s: unknown key usage %q", tmpl.Name, u)
		}
		// Key encipherment means RSA key transport; it is wrong for EC keys.
		if ku == x509.KeyUsageKeyEncipherment && keyType != "RSA" {
			continue
		}
		r.KeyUsage |= ku
	}
	for _, u := range tmpl.ExtKeyUsages {
		eku, ok := pki.ExtKeyUsages[u]
		if !ok {
			return nil, fmt.Errorf("template %s: unknown extended key usage %q", tmpl.Name, u)
		}
		r.ExtKeyUsage = append(r.ExtKeyUsage, eku)
	}
	return r, nil
}

// CRLURL is where certflow serves a CA's CRL under base (crl_base_url):
// GET /CRL/{ca}.crl.
func CRLURL(base, caName string) string {
	return strings.TrimRight(base, "/") + "/CRL/" + url.PathEscape(caName) + ".crl"
}

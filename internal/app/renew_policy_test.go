package app_test

import (
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

// names is a CSR's subject and SANs, every type.
type names struct {
	subject pkix.Name
	dns     []string
	ips     []string
	emails  []string
	uris    []string
}

// csrFor makes a CSR (base64 DER) for n signed by key.
func csrFor(t *testing.T, key crypto.Signer, n names) string {
	t.Helper()
	subject, err := asn1.Marshal(n.subject.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	spec := csrSpec{raw: subject, dns: n.dns, ips: n.ips, emails: n.emails, uris: n.uris, key: key}
	return base64.StdEncoding.EncodeToString(spec.der(t))
}

func newKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// gatedTemplateDef, which the renewal policy tests add to the shipped
// definitions: template Gated's enrollments wait for an approver.
var gatedTemplateDef = approvalGatedDef("gated-template", "Gated")

// approvalGatedDef is a definition, name, under which enrollments with
// template wait for an approver before the issue step.
func approvalGatedDef(name, template string) string {
	return `name: ` + name + `
trigger: enrollment
match: request.Template == "` + template + `"
priority: 10
steps:
  - id: approve
    uses: approval
    with: {roles: [approver]}
  - id: issue
    uses: issue
`
}

// More definitions the renewal policy tests add to the shipped ones:
// template Strict's enrollments refuse names under corp.internal.
const (
	// A revocation for affiliationChanged waits for an approver.
	gatedRevocationDef = `name: revocation-gated
trigger: revocation
match: request.Revocation.Reason == 3
priority: 10
steps:
  - id: approve
    uses: approval
    with: {roles: [approver]}
`
	strictTemplateDef = `name: strict-template
trigger: enrollment
match: request.Template == "Strict"
priority: 11
steps:
  - id: policy
    uses: validate
    with:
      policy: true
      rules:
        - check: 'none(sans.DNS, {lower(#) endsWith ".corp.internal"})'
          message: corp.internal names are not issued with the Strict template
  - id: issue
    uses: issue
`
)

// shippedDefinitionsWith is a definitions folder with the shipped
// definitions and extra (file name → YAML).
func shippedDefinitionsWith(t *testing.T, extra map[string]string) string {
	t.Helper()
	files := map[string]string{}
	for _, name := range []string{"enrollment-default.yaml", "renewal-default.yaml", "revocation-default.yaml"} {
		src, err := os.ReadFile(filepath.Join(testutil.DefinitionsDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(src)
	}
	for name, src := range extra {
		files[name] = src
	}
	return defsDir(t, files)
}

// addTemplate appends a copy of the first template (WebServer) under
// name, changed by change.
func addTemplate(c *config.Config, name string, change func(*config.Template)) {
	tmpl := c.Templates[0]
	tmpl.Name, tmpl.DisplayName = name, name
	if change != nil {
		change(&tmpl)
	}
	c.Templates = append(c.Templates, tmpl)
}

// renewalPolicyCertflow has, beside WebServer: Retained (keeps keys),
// Plain (no RFC 2818 enforcement, every SAN type), Gated and
// Strict (see gatedTemplateDef, strictTemplateDef) and Short (valid for
// two seconds), with api.renewal_grace as given; revocations for
// affiliationChanged wait for an approver (gatedRevocationDef).
func renewalPolicyCertflow(t *testing.T, grace time.Duration) *testutil.Certflow {
	dir := shippedDefinitionsWith(t, map[string]string{"gated.yaml": gatedTemplateDef, "strict.yaml": strictTemplateDef, "revocation-gated.yaml": gatedRevocationDef})
	return testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.API.RenewalGrace = grace
		addTemplate(c, "Retained", func(t *config.Template) { t.KeyRetention = true })
		addTemplate(c, "Plain", func(t *config.Template) { t.RFCEnforcement = false; t.SANTypes = config.SANTypes })
		addTemplate(c, "Gated", nil)
		addTemplate(c, "Strict", nil)
		addTemplate(c, "Short", func(t *config.Template) { t.Validity = 2 * time.Second })
	})
}

// certificateIDs is every certificate id in the inventory.
func certificateIDs(t *testing.T, cf *testutil.Certflow) []int64 {
	t.Helper()
	ids, err := cf.App.Store.CertificateIDs(t.Context(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// requestRecords is every request record's key.
func requestRecords(t *testing.T, cf *testutil.Certflow) []string {
	t.Helper()
	var out []string
	for _, k := range testutil.Keys(t, cf.Redis, cf.Prefix) {
		if strings.Contains(k, ":request:{") && strings.HasSuffix(k, "}") {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// mustEnroll enrolls csr (base64 DER) with extra body fields as auth and
// returns the answer, its certificate issued.
func mustEnroll(t *testing.T, cf *testutil.Certflow, auth, csr string, extra map[string]any) enrollResponse {
	t.Helper()
	body := testutil.EnrollBody(nil, extra)
	body["CSR"] = csr
	resp, er := enroll(t, cf, body, "Authorization", auth)
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	return er
}

// TestPolicyRenewal: a renewal renews the same, live identity. Each row
// is a renewal a hostile requester would send to obtain what enrollment
// would not give them: other names, another subject, a revoked or
// expired identity brought back. Each is refused with 400 naming the
// field at fault and leaves nothing behind; the same identity, its SANs
// reordered and in another case, renews.
func TestPolicyRenewal(t *testing.T) {
	t.Parallel()
	cf := renewalPolicyCertflow(t, 0)
	alice := "Bearer " + testutil.AliceToken
	admin := "Bearer " + testutil.AdminToken

	// The identity renewed: every SAN type, on a template that takes them.
	id := names{
		subject: pkix.Name{CommonName: "id.example.com", Organization: []string{"Certflow Tests"}},
		dns:     []string{"id.example.com", "alt.example.com"},
		ips:     []string{"192.0.2.10"},
		emails:  []string{"ops@example.com"},
		uris:    []string{"spiffe://example.com/svc/id"},
	}
	plain := mustEnroll(t, cf, alice, csrFor(t, newKey(t), id), map[string]any{"Template": "Plain"}).CertificateInformation
	// A certificate with the retained key, later revoked; and one that
	// expires in two seconds.
	stolenKey := newKey(t)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(stolenKey)
	stolenNames := names{subject: pkix.Name{CommonName: "stolen.example.com"}, dns: []string{"stolen.example.com"}}
	stolen := mustEnroll(t, cf, alice, csrFor(t, stolenKey, stolenNames), map[string]any{"Template": "Retained", "PrivateKey": base64.StdEncoding.EncodeToString(pkcs8)}).CertificateInformation
	shortNames := names{subject: pkix.Name{CommonName: "short.example.com"}, dns: []string{"short.example.com"}}
	short := mustEnroll(t, cf, alice, csrFor(t, newKey(t), shortNames), map[string]any{"Template": "Short"}).CertificateInformation
	if r, rr := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{stolen.KeyfactorID}, "Reason": 1, "Comment": "key stolen"}); r.Status != http.StatusOK || !slices.Equal(rr.RevokedIds, []int64{stolen.KeyfactorID}) {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	// A certificate whose revocation waits for an approver.
	leavingNames := names{subject: pkix.Name{CommonName: "leaving.example.com"}, dns: []string{"leaving.example.com"}}
	leaving := mustEnroll(t, cf, alice, csrFor(t, newKey(t), leavingNames), nil).CertificateInformation
	r, waiting := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{leaving.KeyfactorID}, "Reason": 3, "Comment": "moved on"})
	if r.Status != http.StatusOK || len(waiting.SuspendedCerts) != 1 {
		t.Fatalf("gated revoke: %d %s", r.Status, r.Body)
	}

	with := func(change func(*names)) names {
		n := id
		n.subject.Organization = slices.Clone(id.subject.Organization)
		n.dns, n.ips, n.emails, n.uris = slices.Clone(id.dns), slices.Clone(id.ips), slices.Clone(id.emails), slices.Clone(id.uris)
		change(&n)
		return n
	}
	renewPlain := func(n names) map[string]any {
		return map[string]any{"CertificateId": plain.KeyfactorID, "CSR": csrFor(t, newKey(t), n)}
	}
	const E = keyfactor.CodeInvalidField
	cases := []struct {
		name  string
		body  map[string]any
		auth  string
		field string // the start of the message
		// status and code: 400 and E unless set
		status int
		code   string
	}{
		{"a new CSR with an extra DNS SAN", renewPlain(with(func(n *names) { n.dns = append(n.dns, "evil.example.net") })), alice, "CSR: its names", 0, ""},
		{"an extra DNS SAN that differs only by a trailing label", renewPlain(with(func(n *names) { n.dns[1] = "alt.example.com.evil.net" })), alice, "CSR: its names", 0, ""},
		{"an extra IP SAN", renewPlain(with(func(n *names) { n.ips = append(n.ips, "127.0.0.1") })), alice, "CSR: its names", 0, ""},
		{"an extra URI SAN", renewPlain(with(func(n *names) { n.uris = append(n.uris, "spiffe://example.com/admin") })), alice, "CSR: its names", 0, ""},
		{"an extra e-mail SAN", renewPlain(with(func(n *names) { n.emails = append(n.emails, "ceo@example.com") })), alice, "CSR: its names", 0, ""},
		{"an e-mail SAN whose local part differs in case", renewPlain(with(func(n *names) { n.emails = []string{"OPS@example.com"} })), alice, "CSR: its names", 0, ""},
		{"a URI SAN swapped for another", renewPlain(with(func(n *names) { n.uris = []string{"spiffe://example.com/svc/other"} })), alice, "CSR: its names", 0, ""},
		{"an IP SAN swapped for another", renewPlain(with(func(n *names) { n.ips = []string{"192.0.2.11"} })), alice, "CSR: its names", 0, ""},
		{"one SAN fewer", renewPlain(with(func(n *names) { n.dns = n.dns[:1] })), alice, "CSR: its names", 0, ""},
		{"no SANs at all", renewPlain(with(func(n *names) { n.dns, n.ips, n.emails, n.uris = nil, nil, nil, nil })), alice, "CSR: its names", 0, ""},
		{"another subject", renewPlain(with(func(n *names) { n.subject.CommonName = "other.example.com" })), alice, "CSR: its subject", 0, ""},
		{"the same CN with an extra O", renewPlain(with(func(n *names) { n.subject.Organization = append(n.subject.Organization, "Evil Corp") })), alice, "CSR: its subject", 0, ""},
		{"the same CN without the O", renewPlain(with(func(n *names) { n.subject.Organization = nil })), alice, "CSR: its subject", 0, ""},
		{"extra names by the admin", renewPlain(with(func(n *names) { n.dns = append(n.dns, "evil.example.net") })), admin, "CSR: its names", 0, ""},
		{"a revoked certificate with its retained key", map[string]any{"CertificateId": stolen.KeyfactorID}, alice, "CertificateId: certificate " + strconv.FormatInt(stolen.KeyfactorID, 10) + " is revoked", 0, ""},
		{"a revoked certificate with a new key", map[string]any{"CertificateId": stolen.KeyfactorID, "CSR": csrFor(t, newKey(t), stolenNames)}, alice, "CertificateId: certificate " + strconv.FormatInt(stolen.KeyfactorID, 10) + " is revoked", 0, ""},
		{"a revoked certificate by thumbprint", map[string]any{"Thumbprint": stolen.Thumbprint, "CSR": csrFor(t, newKey(t), stolenNames)}, alice, "Thumbprint: certificate", 0, ""},
		{"a revoked certificate by the admin", map[string]any{"CertificateId": stolen.KeyfactorID, "CSR": csrFor(t, newKey(t), stolenNames)}, admin, "CertificateId: certificate " + strconv.FormatInt(stolen.KeyfactorID, 10) + " is revoked", 0, ""},
		{"a revoked certificate into another template", map[string]any{"CertificateId": stolen.KeyfactorID, "CSR": csrFor(t, newKey(t), stolenNames), "Template": "Plain"}, admin, "CertificateId: certificate", 0, ""},
		{"a certificate whose revocation waits for approval", map[string]any{"CertificateId": leaving.KeyfactorID, "CSR": csrFor(t, newKey(t), leavingNames)}, alice, "CertificateId: a revocation of certificate", http.StatusConflict, keyfactor.CodeConflict},
		{"a certificate whose revocation waits, by thumbprint and the admin", map[string]any{"Thumbprint": leaving.Thumbprint, "CSR": csrFor(t, newKey(t), leavingNames)}, admin, "Thumbprint: a revocation of certificate", http.StatusConflict, keyfactor.CodeConflict},
	}
	ids, records := certificateIDs(t, cf), requestRecords(t, cf)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := cf.Do(t, "POST", "/Enrollment/Renew", tc.body, "Authorization", tc.auth)
			assertError(t, r, cmp.Or(tc.status, http.StatusBadRequest), cmp.Or(tc.code, E), tc.field)
		})
	}

	// Expired (api.renewal_grace is 0 here): refused once NotAfter passed.
	waitUntilExpired(t, leafOf(t, short.Certificates))
	for _, auth := range []string{alice, admin} {
		r := cf.Do(t, "POST", "/Enrollment/Renew", map[string]any{"CertificateId": short.KeyfactorID, "CSR": csrFor(t, newKey(t), shortNames)}, "Authorization", auth)
		assertError(t, r, http.StatusBadRequest, E, "CertificateId: certificate "+strconv.FormatInt(short.KeyfactorID, 10)+" expired")
	}
	if got := certificateIDs(t, cf); !slices.Equal(got, ids) {
		t.Fatalf("certificates after the refusals: %v, were %v", got, ids)
	}
	if got := requestRecords(t, cf); !slices.Equal(got, records) {
		t.Fatalf("request records after the refusals: %v, were %v", got, records)
	}

	// The same identity, its SANs reordered, repeated and in upper case:
	// renewed.
	same := with(func(n *names) {
		n.dns = []string{"ALT.EXAMPLE.COM", "id.example.com", "Alt.Example.Com"}
		n.ips = []string{"::ffff:192.0.2.10"}
		n.emails = []string{"ops@EXAMPLE.com"}
	})
	resp, rr := renew(t, cf, map[string]any{"CertificateId": plain.KeyfactorID, "CSR": csrFor(t, newKey(t), same)}, "Authorization", alice)
	if resp.Status != http.StatusOK || rr.RequestDisposition != "ISSUED" || rr.RenewedCertificateId != plain.KeyfactorID {
		t.Fatalf("renewing the same identity, reordered: %d %s", resp.Status, resp.Body)
	}
	old, renewed := leafOf(t, plain.Certificates), leafOf(t, rr.Certificates)
	if string(old.RawSubject) != string(renewed.RawSubject) || len(renewed.URIs) != 1 || len(renewed.EmailAddresses) != 1 || len(renewed.IPAddresses) != 1 {
		t.Fatalf("renewed %s %v %v %v %v", renewed.Subject, renewed.DNSNames, renewed.IPAddresses, renewed.EmailAddresses, renewed.URIs)
	}

	// The waiting revocation denied, the certificate renews again.
	revocation := waiting.SuspendedCerts[0]
	mustSignal(t, cf, revocation.WorkflowId, testutil.BobToken, denyData("not yet"))
	if st := pollSettled(t, cf, "/Enrollment/Requests/"+strconv.FormatInt(revocation.KeyfactorRequestId, 10), admin); st.CertificateInformation.RequestDisposition != "DENIED" {
		t.Fatalf("the revocation settled %+v", st.CertificateInformation)
	}
	resp, rr = renew(t, cf, map[string]any{"CertificateId": leaving.KeyfactorID, "CSR": csrFor(t, newKey(t), leavingNames)}, "Authorization", alice)
	if resp.Status != http.StatusOK || rr.RequestDisposition != "ISSUED" {
		t.Fatalf("renewing once the revocation was denied: %d %s", resp.Status, resp.Body)
	}
}

// waitUntilExpired sleeps until leaf's NotAfter has passed (a Short
// certificate lives two seconds).
func waitUntilExpired(t *testing.T, leaf *x509.Certificate) {
	t.Helper()
	if d := time.Until(leaf.NotAfter); d > 10*time.Second {
		t.Fatalf("certificate valid until %s: not a short one", leaf.NotAfter)
	}
	for !time.Now().After(leaf.NotAfter.Add(100 * time.Millisecond)) {
		time.Sleep(time.Until(leaf.NotAfter.Add(150 * time.Millisecond)))
	}
}

// TestPolicyRenewalGracePeriod: with api.renewal_grace, an expired
// certificate renews within it.
func TestPolicyRenewalGracePeriod(t *testing.T) {
	t.Parallel()
	cf := renewalPolicyCertflow(t, time.Hour)
	alice := "Bearer " + testutil.AliceToken
	n := names{subject: pkix.Name{CommonName: "late.example.com"}, dns: []string{"late.example.com"}}
	short := mustEnroll(t, cf, alice, csrFor(t, newKey(t), n), map[string]any{"Template": "Short"}).CertificateInformation
	waitUntilExpired(t, leafOf(t, short.Certificates))
	resp, rr := renew(t, cf, map[string]any{"CertificateId": short.KeyfactorID, "CSR": csrFor(t, newKey(t), n)}, "Authorization", alice)
	if resp.Status != http.StatusOK || rr.RequestDisposition != "ISSUED" {
		t.Fatalf("renewing within the grace period: %d %s", resp.Status, resp.Body)
	}
}

// TestPolicyRenewalIntoAnotherTemplate: a renewal that names another
// template is an enrollment into it. Its enrollment workflow decides:
// template Gated's approval holds the renewal (no certificate until an
// approver decides), template Strict's rule denies a name enrolled
// elsewhere. Renewing within the same template runs the renewal workflow.
func TestPolicyRenewalIntoAnotherTemplate(t *testing.T) {
	t.Parallel()
	cf := renewalPolicyCertflow(t, 0)
	alice := "Bearer " + testutil.AliceToken
	web := names{subject: pkix.Name{CommonName: "app.example.com"}, dns: []string{"app.example.com"}}
	permissive := mustEnroll(t, cf, alice, csrFor(t, newKey(t), web), nil).CertificateInformation
	corp := names{subject: pkix.Name{CommonName: "db.corp.internal"}, dns: []string{"db.corp.internal"}}
	corpCert := mustEnroll(t, cf, alice, csrFor(t, newKey(t), corp), nil).CertificateInformation
	ids := certificateIDs(t, cf)

	for _, by := range []string{alice, "Bearer " + testutil.AdminToken} {
		resp, rr := renew(t, cf, map[string]any{"CertificateId": permissive.KeyfactorID, "CSR": csrFor(t, newKey(t), web), "Template": "Gated"}, "Authorization", by)
		if resp.Status != http.StatusOK && resp.Status != http.StatusAccepted {
			t.Fatalf("renew into Gated: %d %s", resp.Status, resp.Body)
		}
		if rr.RequestDisposition != "PENDING" || rr.KeyfactorId != 0 || len(rr.Certificates) != 0 {
			t.Fatalf("a renewal into an approval-gated template was not held for approval: %+v", rr)
		}
		stored, err := cf.App.Store.Get(t.Context(), rr.KeyfactorRequestId)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Trigger != "enrollment" || stored.Instance.Definition != "gated-template" || stored.Input.RenewalCertificateId != permissive.KeyfactorID || stored.Input.Template != "Gated" {
			t.Fatalf("the renewal into Gated ran as trigger %q, definition %q (renews %d, template %q)", stored.Trigger, stored.Instance.Definition, stored.Input.RenewalCertificateId, stored.Input.Template)
		}

		resp, rr = renew(t, cf, map[string]any{"CertificateId": corpCert.KeyfactorID, "CSR": csrFor(t, newKey(t), corp), "Template": "Strict"}, "Authorization", by)
		if resp.Status != http.StatusOK || rr.RequestDisposition != "DENIED" || rr.KeyfactorId != 0 {
			t.Fatalf("a name Strict's rule denies, renewed into Strict: %d %s", resp.Status, resp.Body)
		}
		if !strings.Contains(rr.DispositionMessage, "corp.internal names are not issued") {
			t.Fatalf("denied for another reason: %q", rr.DispositionMessage)
		}
	}
	if got := certificateIDs(t, cf); !slices.Equal(got, ids) {
		t.Fatalf("certificates after renewals into other templates: %v, were %v", got, ids)
	}
	// Its own template: the renewal workflow.
	resp, rr := renew(t, cf, map[string]any{"CertificateId": permissive.KeyfactorID, "CSR": csrFor(t, newKey(t), web)}, "Authorization", alice)
	if resp.Status != http.StatusOK || rr.RequestDisposition != "ISSUED" {
		t.Fatalf("renew in the same template: %d %s", resp.Status, resp.Body)
	}
	if stored, _ := cf.App.Store.Get(t.Context(), rr.KeyfactorRequestId); stored == nil || stored.Trigger != "renewal" || stored.Instance.Definition != "renewal-default" {
		t.Fatalf("a renewal in the same template ran as %+v", stored)
	}
}

// TestPolicyRenewalUnderATightenedKeyPolicy: a certificate issued for an
// RSA-2048 key, renewed after the template stopped allowing 2048 bits
// (certflow restarted with the new configuration on the same Redis), is
// refused at submit (400 naming CSR), with the retained key or a new CSR
// for such a key.
func TestPolicyRenewalUnderATightenedKeyPolicy(t *testing.T) {
	t.Parallel()
	_, prefix := testutil.Redis(t)
	dataDir := t.TempDir()
	shared := func(c *config.Config) {
		c.KeyPrefix, c.Queue, c.DataDir, c.KEKFile = prefix, prefix, dataDir, filepath.Join(dataDir, "kek")
	}
	csr, key := testutil.RSACSR(t, 2048, "rsa.example.com", "rsa.example.com")
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	var issued enrollResponse
	t.Run("issued under the old policy", func(t *testing.T) {
		cf := testutil.StartCertflow(t, func(c *config.Config) {
			shared(c)
			addTemplate(c, "Retained", func(t *config.Template) { t.KeyRetention = true })
		})
		issued = mustEnroll(t, cf, "Bearer "+testutil.AliceToken, base64.StdEncoding.EncodeToString(csr),
			map[string]any{"Template": "Retained", "PrivateKey": base64.StdEncoding.EncodeToString(pkcs8)})
	}) // that certflow stops here
	old := issued.CertificateInformation
	if old.KeyfactorID == 0 {
		t.FailNow()
	}
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		shared(c)
		addTemplate(c, "Retained", func(t *config.Template) { t.KeyRetention = true; t.RSAKeySizes = []int{3072, 4096} })
	})
	ids := certificateIDs(t, cf)
	fresh, _ := testutil.RSACSR(t, 2048, "rsa.example.com", "rsa.example.com")
	for _, body := range []map[string]any{
		{"CertificateId": old.KeyfactorID},
		{"CertificateId": old.KeyfactorID, "CSR": base64.StdEncoding.EncodeToString(fresh)},
	} {
		resp, _ := renew(t, cf, body, "Authorization", "Bearer "+testutil.AliceToken)
		assertError(t, resp, http.StatusBadRequest, keyfactor.CodePolicy, "CSR: template Retained does not allow RSA 2048-bit keys")
	}
	if got := certificateIDs(t, cf); !slices.Equal(got, ids) {
		t.Fatalf("certificates after the renewals: %v, were %v", got, ids)
	}
}

// TestPolicyCompromisedKey: a public key whose certificate was revoked for
// keyCompromise is never certified again, by anyone, on any path that
// reaches it: a CSR enrollment (with or without the key retained), a
// renewal of another certificate for that key (retained key or a CSR
// for it), a generated CSR sent back (forceEnroll or not). Each is
// refused with 400 naming CSR, for alice and the admin alike, and leaves
// nothing behind. A request for that key submitted before the revocation
// and held for approval is denied at the issue step. A PFX enrollment's
// key is generated fresh by the worker: it cannot be one of these (the
// issue step checks it all the same).
func TestPolicyCompromisedKey(t *testing.T) {
	t.Parallel()
	cf := renewalPolicyCertflow(t, 0)
	alice := "Bearer " + testutil.AliceToken
	admin := "Bearer " + testutil.AdminToken

	key := newKey(t)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	retained := base64.StdEncoding.EncodeToString(pkcs8)
	n := names{subject: pkix.Name{CommonName: "leaked.example.com"}, dns: []string{"leaked.example.com"}}
	stolen := mustEnroll(t, cf, alice, csrFor(t, key, n), map[string]any{"Template": "Retained", "PrivateKey": retained}).CertificateInformation
	// A second certificate for the same key, never revoked.
	twin := mustEnroll(t, cf, alice, csrFor(t, key, n), map[string]any{"Template": "Retained", "PrivateKey": retained}).CertificateInformation
	// A request for the key, held for approval across the revocation.
	resp, held := enroll(t, cf, testutil.EnrollBody(nil, map[string]any{"CSR": csrFor(t, key, n), "Template": "Gated"}), "Authorization", alice)
	if resp.Status != http.StatusOK || held.CertificateInformation.RequestDisposition != "PENDING" {
		t.Fatalf("gated enroll: %d %s", resp.Status, resp.Body)
	}
	// A key certflow generated, enrolled with forceEnroll.
	r, gen := generateCSR(t, cf, map[string]any{"Subject": "CN=gen-leaked.example.com", "KeyType": "ecc", "Curve": "1.2.840.10045.3.1.7",
		"Template": config.DefaultTemplate, "SANs": map[string]any{"dns": []string{"gen-leaked.example.com"}}}, "Authorization", alice)
	if r.Status != http.StatusOK {
		t.Fatalf("generate: %d %s", r.Status, r.Body)
	}
	genBody := func() map[string]any { return testutil.EnrollBody(nil, map[string]any{"CSR": gen.CSR}) }
	r = cf.Do(t, "POST", "/Enrollment/CSR?forceEnroll=true", genBody(), "x-certificateformat", "PEM", "Authorization", alice)
	var generated enrollResponse
	r.JSON(t, &generated)
	if r.Status != http.StatusOK || generated.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("forceEnroll: %d %s", r.Status, r.Body)
	}

	for _, id := range []int64{stolen.KeyfactorID, generated.CertificateInformation.KeyfactorID} {
		if r, rr := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{id}, "Reason": 1, "Comment": "key leaked"}); r.Status != http.StatusOK || !slices.Equal(rr.RevokedIds, []int64{id}) {
			t.Fatalf("revoke %d: %d %s", id, r.Status, r.Body)
		}
	}

	other := names{subject: pkix.Name{CommonName: "elsewhere.example.com"}, dns: []string{"elsewhere.example.com"}}
	cases := []struct {
		name, path string
		body       map[string]any
		field      string
	}{
		{"a CSR for the key, another name", "/Enrollment/CSR", testutil.EnrollBody(nil, map[string]any{"CSR": csrFor(t, key, other)}), "CSR: its key was revoked for key compromise"},
		{"a CSR for the key, the same name", "/Enrollment/CSR", testutil.EnrollBody(nil, map[string]any{"CSR": csrFor(t, key, n), "Template": "Plain"}), "CSR: its key was revoked for key compromise"},
		{"a CSR for the key with the key to retain", "/Enrollment/CSR", testutil.EnrollBody(nil, map[string]any{"CSR": csrFor(t, key, n), "Template": "Retained", "PrivateKey": retained}), "CSR: its key was revoked for key compromise"},
		{"a renewal of another certificate for the key, retained key", "/Enrollment/Renew", map[string]any{"CertificateId": twin.KeyfactorID}, "CSR: its key was revoked for key compromise"},
		{"a renewal of another certificate for the key, CSR", "/Enrollment/Renew", map[string]any{"CertificateId": twin.KeyfactorID, "CSR": csrFor(t, key, n)}, "CSR: its key was revoked for key compromise"},
		{"the generated CSR again, forceEnroll", "/Enrollment/CSR?forceEnroll=true", genBody(), "CSR: its key was revoked for key compromise"},
		{"the generated CSR again", "/Enrollment/CSR", genBody(), "CSR: its key was revoked for key compromise"},
		{"a renewal of the revoked certificate", "/Enrollment/Renew", map[string]any{"CertificateId": stolen.KeyfactorID}, "CertificateId: certificate"},
	}
	ids, records := certificateIDs(t, cf), requestRecords(t, cf)
	for _, tc := range cases {
		for _, who := range []struct{ name, auth string }{{"alice", alice}, {"admin", admin}} {
			t.Run(tc.name+" by "+who.name, func(t *testing.T) {
				r := cf.Do(t, "POST", tc.path, tc.body, "x-certificateformat", "PEM", "Authorization", who.auth)
				code := keyfactor.CodePolicy
				if strings.HasPrefix(tc.field, "CertificateId") {
					code = keyfactor.CodeInvalidField
				}
				assertError(t, r, http.StatusBadRequest, code, tc.field)
			})
		}
	}
	if got := certificateIDs(t, cf); !slices.Equal(got, ids) {
		t.Fatalf("certificates after the refusals: %v, were %v", got, ids)
	}
	if got := requestRecords(t, cf); !slices.Equal(got, records) {
		t.Fatalf("request records after the refusals: %v, were %v", got, records)
	}

	// Held across the revocation, then approved: denied before signing.
	mustSignal(t, cf, held.CertificateInformation.WorkflowInstanceId, testutil.BobToken, approveData("looks fine"))
	st := pollSettled(t, cf, "/Enrollment/Requests/"+strconv.FormatInt(held.CertificateInformation.KeyfactorRequestId, 10), alice)
	if d := st.CertificateInformation; d.RequestDisposition != "DENIED" || d.KeyfactorID != 0 || !strings.Contains(d.DispositionMessage, "key compromise") {
		t.Fatalf("the held request for a compromised key settled %+v", d)
	}
	if got := certificateIDs(t, cf); !slices.Equal(got, ids) {
		t.Fatalf("certificates after the held request: %v, were %v", got, ids)
	}

	// The way out: a new key, for the twin's identity.
	resp, rr := renew(t, cf, map[string]any{"CertificateId": twin.KeyfactorID, "CSR": csrFor(t, newKey(t), n)}, "Authorization", alice)
	if resp.Status != http.StatusOK || rr.RequestDisposition != "ISSUED" {
		t.Fatalf("renewal with a new key: %d %s", resp.Status, resp.Body)
	}
}

package app_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

// csrSpec is a CSR a test asks for: a P-256 key unless key is set.
type csrSpec struct {
	cn     string
	names  []pkix.AttributeTypeAndValue // the whole subject, instead of cn
	raw    []byte                       // the subject's DER, instead of both
	dns    []string
	ips    []string
	emails []string
	uris   []string
	key    crypto.Signer
}

func (c csrSpec) der(t *testing.T) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{DNSNames: c.dns, EmailAddresses: c.emails, RawSubject: c.raw}
	if c.names != nil {
		tmpl.Subject.ExtraNames = c.names
	} else {
		tmpl.Subject.CommonName = c.cn
	}
	for _, s := range c.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
	}
	for _, s := range c.uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	key := c.key
	if key == nil {
		var err error
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return der
}

// refusal is one row of an adversarial table: the body a hostile
// requester sends and the refusal it must get.
type refusal struct {
	name   string
	csr    csrSpec
	extra  map[string]any // more body fields (nil value: left out)
	auth   string         // default: alice, a requester
	status int            // default 400
	code   string         // default CodePolicy
	want   string         // the start of Message: the field, and more
}

// refuseAll sends each row and asserts its refusal, then that nothing of
// any row was stored and no certificate issued.
func refuseAll(t *testing.T, cf *testutil.Certflow, rows []refusal) {
	t.Helper()
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			auth := cmpOr(tc.auth, bearer(testutil.AliceToken))
			resp, _ := enroll(t, cf, testutil.EnrollBody(tc.csr.der(t), tc.extra), "Authorization", auth)
			assertError(t, resp, cmpOr(tc.status, http.StatusBadRequest), cmpOr(tc.code, keyfactor.CodePolicy), tc.want)
			if !strings.HasPrefix(errorMessage(t, resp), strings.SplitN(tc.want, ":", 2)[0]+":") {
				t.Errorf("message %q does not start with its field", errorMessage(t, resp))
			}
		})
	}
	assertNothingStored(t, cf)
	for _, k := range testutil.Keys(t, cf.Redis, cf.Prefix) {
		if strings.Contains(k, ":cert") {
			t.Errorf("a refused submit left %s behind", k)
		}
	}
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func errorMessage(t *testing.T, r *testutil.Response) string {
	t.Helper()
	var e keyfactor.Error
	r.JSON(t, &e)
	return e.Message
}

var (
	oidCN = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidO  = asn1.ObjectIdentifier{2, 5, 4, 10}
)

// TestPolicySANTypesAndNames: every SAN type is policy, and names are
// checked as a TLS client reads them, whether they come in the CSR or in
// the body's SANs.
func TestPolicySANTypesAndNames(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	caCert, err := ca.ReadChain(cf.Config.DataDir, config.DefaultCAName)
	if err != nil {
		t.Fatal(err)
	}
	sans := func(kind string, v ...string) map[string]any { return map[string]any{"SANs": map[string]any{kind: v}} }
	refuseAll(t, cf, []refusal{
		{name: "a URI SAN in the CSR", csr: csrSpec{cn: "web.example.com", uris: []string{"spiffe://example.com/ns/prod/sa/admin"}}, want: "CSR: template WebServer does not allow uri subject alternative names"},
		{name: "a URI SAN in the body", csr: csrSpec{cn: "web.example.com"}, extra: sans("uri", "spiffe://example.com/admin"), want: "SANs: template WebServer does not allow uri"},
		{name: "an e-mail SAN in the CSR", csr: csrSpec{cn: "web.example.com", emails: []string{"ceo@example.com"}}, want: "CSR: template WebServer does not allow email"},
		{name: "an e-mail SAN in the body", csr: csrSpec{cn: "web.example.com"}, extra: sans("rfc822", "ceo@example.com"), want: "SANs: template WebServer does not allow email"},
		{name: "a loopback IP in the CSR", csr: csrSpec{cn: "web.example.com", ips: []string{"127.0.0.1"}}, want: "CSR: ip name \"127.0.0.1\": loopback"},
		{name: "a loopback IPv6 in the body", csr: csrSpec{cn: "web.example.com"}, extra: sans("ip6", "::1"), want: "SANs: ip name \"::1\": loopback"},
		{name: "a link-local IP (cloud metadata)", csr: csrSpec{cn: "web.example.com"}, extra: sans("ip4", "169.254.169.254"), want: "SANs: ip name \"169.254.169.254\": link-local"},
		{name: "the unspecified address", csr: csrSpec{cn: "web.example.com", ips: []string{"0.0.0.0"}}, want: "CSR: ip name \"0.0.0.0\": the unspecified address"},
		{name: "a loopback CN", csr: csrSpec{cn: "127.0.0.1"}, want: "CSR: subject: common name \"127.0.0.1\": loopback"},
		{name: "localhost as a SAN", csr: csrSpec{cn: "web.example.com", dns: []string{"localhost"}}, want: "CSR: dns name \"localhost\": localhost names are not allowed"},
		{name: "two CNs, the wildcard first", csr: csrSpec{names: []pkix.AttributeTypeAndValue{{Type: oidCN, Value: "*.example.com"}, {Type: oidCN, Value: "host.example.com"}}}, want: "CSR: subject: the attribute CN appears more than once"},
		{name: "two Os", csr: csrSpec{names: []pkix.AttributeTypeAndValue{{Type: oidCN, Value: "host.example.com"}, {Type: oidO, Value: "Good"}, {Type: oidO, Value: "Evil"}}}, want: "CSR: subject: the attribute O appears more than once"},
		{name: "the issuing CA's subject", csr: csrSpec{raw: caCert[0].RawSubject, dns: []string{"web.example.com"}}, want: "CSR: subject: it is a certificate authority's subject"},
		{name: "the root CA's subject", csr: csrSpec{raw: caCert[1].RawSubject, dns: []string{"web.example.com"}}, want: "CSR: subject: it is a certificate authority's subject"},
		{name: "an upper-case wildcard", csr: csrSpec{cn: "web.example.com", dns: []string{"*.EXAMPLE.COM"}}, want: `CSR: dns name "*.example.com": wildcard names are not allowed`},
		{name: "a partial wildcard w*", csr: csrSpec{cn: "web.example.com", dns: []string{"w*.example.com"}}, want: "CSR: dns name \"w*.example.com\": a wildcard must be the whole left-most label"},
		{name: "a partial wildcard *w in the body", csr: csrSpec{cn: "web.example.com"}, extra: sans("dns", "*w.example.com"), code: keyfactor.CodeInvalidField, want: "SANs.dns[0]: \"*w.example.com\" is not a DNS name"},
		{name: "a partial wildcard CN", csr: csrSpec{cn: "w*.example.com"}, want: "CSR: subject: common name \"w*.example.com\": a wildcard must be the whole left-most label"},
		{name: "an IP address as a DNS name", csr: csrSpec{cn: "web.example.com", dns: []string{"10.1.2.3"}}, want: "CSR: dns name \"10.1.2.3\": the last label is numeric"},
		{name: "a NUL in a DNS SAN", csr: csrSpec{cn: "web.example.com", dns: []string{"evil.com\x00.example.com"}}, want: "CSR: dns name \"evil.com?.example.com\""},
		{name: "a newline in the CN", csr: csrSpec{cn: "web.example.com\nsubject=CN=root"}, want: "CSR: subject: the attribute CN has the control character 0x0a"},
		{name: "invalid punycode", csr: csrSpec{cn: "web.example.com", dns: []string{"xn--a.example.com"}}, want: "CSR: dns name \"xn--a.example.com\": label \"xn--a\" is not valid punycode"},
		{name: "an underscore", csr: csrSpec{cn: "web.example.com", dns: []string{"_dmarc.example.com"}}, want: "CSR: dns name \"_dmarc.example.com\""},
		{name: "a wildcard CN as a VisibleString", csr: csrSpec{raw: visibleName(oidCN, "*.example.com"), dns: []string{"web.example.com"}}, want: "CSR: subject: the attribute CN has a value of a type certflow does not read"},
		{name: "the issuing CA's name as VisibleStrings", csr: csrSpec{raw: visibleName(oidO, "certflow", oidCN, caCert[0].Subject.CommonName), dns: []string{"web.example.com"}}, want: "CSR: subject: the attribute O has a value of a type certflow does not read"},
		{name: "a bare public suffix", csr: csrSpec{cn: "web.example.com", dns: []string{"co.uk"}}, want: "CSR: dns name \"co.uk\": \"co.uk\" is a public suffix"},
		{name: "an IPv4 address in hex", csr: csrSpec{cn: "web.example.com", dns: []string{"0x7f000001"}}, want: "CSR: dns name \"0x7f000001\": the last label is numeric"},
	})
}

// TestPolicyNamesAreNormalisedBeforeRules: an upper-case name is the
// lower-case name to a rule and in the certificate, so a rule written in
// lower case cannot be passed by shouting.
func TestPolicyNamesAreNormalisedBeforeRules(t *testing.T) {
	t.Parallel()
	dir := defsDir(t, map[string]string{"deny.yaml": `name: no-corp
trigger: enrollment
steps:
  - id: policy
    uses: validate
    with:
      rules:
        - check: none(sans.DNS, {# endsWith ".corp.internal"}) && !(csr.CommonName endsWith ".corp.internal")
          message: corp.internal names are issued by the corp CA
  - id: issue
    uses: issue
`})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	for _, der := range [][]byte{
		csrSpec{cn: "ok.example.com", dns: []string{"DB.CORP.INTERNAL"}}.der(t),
		csrSpec{cn: "DB.Corp.Internal"}.der(t),
	} {
		_, er := enroll(t, cf, testutil.EnrollBody(der, nil))
		if d := er.CertificateInformation.RequestDisposition; d != "DENIED" {
			t.Errorf("an upper-case corp.internal name was %s, want DENIED", d)
		}
	}
	_, er := enroll(t, cf, testutil.EnrollBody(csrSpec{cn: "Web.Example.COM", dns: []string{"API.Example.com"}}.der(t), nil))
	if er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("%+v", er.CertificateInformation)
	}
	leaf := pemChain(t, er.CertificateInformation.Certificates, true)[0]
	if want := []string{"api.example.com", "web.example.com"}; !slices.Equal(leaf.DNSNames, want) {
		t.Errorf("DNS SANs %q, want %q", leaf.DNSNames, want)
	}
	if out := opensslText(t, leaf); !strings.Contains(out, "DNS:api.example.com, DNS:web.example.com") {
		t.Errorf("openssl shows the SANs as:\n%s", out)
	}
}

// opensslText is `openssl x509 -text` of a certificate.
func opensslText(t *testing.T, c *x509.Certificate) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "x509", "-noout", "-text", "-in", path).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509: %v\n%s", err, out)
	}
	return string(out)
}

// paulToken is a requester who also holds the partner-ops role.
const paulToken = "paul-token"

// partners adds a standalone CA with the default (safe) policy, for the
// holders of partner-ops.
func partners(c *config.Config) {
	c.CAs = append(c.CAs, config.CA{Name: "Partners", Host: "ext", Type: "builtin", KeyType: "ecdsa-p256", Standalone: true,
		MaxValidity: 90 * 24 * time.Hour, Policy: config.Policy{AllowedRequesters: []string{"partner-ops"}}})
	c.Auth.Users = append(c.Auth.Users, config.User{Name: "paul", Token: paulToken, Roles: []string{config.RoleRequester, "partner-ops"}})
}

// TestPolicyStandaloneCA: a standalone CA's defaults are safe; a request
// that names it without a template is held to them.
func TestPolicyStandaloneCA(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, partners)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	standalone := map[string]any{"Template": nil, "CertificateAuthority": `ext\Partners`}
	with := func(more map[string]any) map[string]any {
		out := map[string]any{"Template": nil, "CertificateAuthority": `ext\Partners`}
		for k, v := range more {
			out[k] = v
		}
		return out
	}
	paul := bearer(paulToken)
	refuseAll(t, cf, []refusal{
		{name: "a wildcard for someone else's domain", csr: csrSpec{cn: "*.google.com"}, extra: standalone, auth: paul, want: "CSR: subject: common name \"*.google.com\": wildcard names are not allowed"},
		{name: "RSA 1024", csr: csrSpec{cn: "p.example.com", key: rsa1024}, extra: standalone, auth: paul, want: "CSR: certificate authority Partners does not allow RSA 1024-bit keys"},
		{name: "Ed25519", csr: csrSpec{cn: "p.example.com", key: ed}, extra: standalone, auth: paul, want: "CSR: certificate authority Partners does not allow Ed25519 keys"},
		{name: "a URI SAN", csr: csrSpec{cn: "p.example.com"}, extra: with(map[string]any{"SANs": map[string]any{"uri": []string{"spiffe://x/y"}}}), auth: paul, want: "SANs: certificate authority Partners does not allow uri"},
		{name: "a requester without the CA's role", csr: csrSpec{cn: "p.example.com"}, extra: standalone, status: http.StatusForbidden, code: keyfactor.CodeForbidden, want: "CertificateAuthority: alice may not enroll with certificate authority Partners (allowed: partner-ops)"},
	})
	// Within the policy the CA issues, for at most its max_validity.
	_, er := enroll(t, cf, testutil.EnrollBody(csrSpec{cn: "p.example.com"}.der(t), standalone), "Authorization", paul)
	if er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("%+v", er.CertificateInformation)
	}
	if leaf := pemChain(t, er.CertificateInformation.Certificates, true)[0]; leaf.NotAfter.After(time.Now().Add(91 * 24 * time.Hour)) {
		t.Errorf("valid until %s, beyond the CA's 90 days", leaf.NotAfter)
	}
}

// TestPolicyWeakKeys: keys Go's parser accepts but no certificate should
// carry. The exponent-3 key is made by openssl, as a careless client
// would make it.
func TestPolicyWeakKeys(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	dir := t.TempDir()
	keyPath, csrPath := filepath.Join(dir, "k.pem"), filepath.Join(dir, "r.der")
	for _, args := range [][]string{
		{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-pkeyopt", "rsa_keygen_pubexp:3", "-out", keyPath},
		{"req", "-new", "-key", keyPath, "-subj", "/CN=e3.example.com", "-outform", "DER", "-out", csrPath},
	} {
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", args[0], err, out)
		}
	}
	der, err := os.ReadFile(csrPath)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := enroll(t, cf, testutil.EnrollBody(der, nil))
	assertError(t, resp, http.StatusBadRequest, keyfactor.CodeInvalidCSR, "CSR: invalid CSR: RSA public exponent must be 65537")
	assertNothingStored(t, cf)
}

// TestPolicySizeLimits: the SANs of a request, CSR and body together, and
// the CSR itself are bounded before any work depends on their size.
func TestPolicySizeLimits(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		retained := c.Templates[0]
		retained.Name, retained.KeyRetention = "Retained", true
		c.Templates = append(c.Templates, retained)
	})
	names := func(n int, prefix string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%d.example.com", prefix, i)
		}
		return out
	}
	bigCSR := base64.StdEncoding.EncodeToString(csrSpec{cn: "big.example.com", dns: names(1500, "a-rather-long-host-name-to-fill-the-request-")}.der(t))
	refuseAll(t, cf, []refusal{
		{name: "101 SANs in the CSR", csr: csrSpec{cn: "n.example.com", dns: names(101, "c")}, want: "CSR: the request has 101 subject alternative names, more than the 100 allowed"},
		{name: "101 SANs in the body", csr: csrSpec{cn: "n.example.com"}, extra: map[string]any{"SANs": map[string]any{"dns": names(101, "b")}}, code: keyfactor.CodeInvalidField, want: "SANs: more than 100 names"},
		{name: "60 in the CSR and 60 in the body", csr: csrSpec{cn: "n.example.com", dns: names(60, "c")}, extra: map[string]any{"SANs": map[string]any{"dns": names(60, "b")}}, want: "SANs: the request has 120 subject alternative names"},
		{name: "a CSR over 64 KiB", csr: csrSpec{cn: "n.example.com"}, extra: map[string]any{"CSR": bigCSR}, code: keyfactor.CodeInvalidCSR, want: "CSR: longer than 65536 bytes"},
		{name: "a PrivateKey over 8 KiB", csr: csrSpec{cn: "n.example.com"}, extra: map[string]any{"Template": "Retained", "PrivateKey": strings.Repeat("A", 9000)}, code: keyfactor.CodeInvalidField, want: "PrivateKey: longer than 8192 bytes"},
	})
}

// A standalone CA is listed only to those who may enroll with it.
func TestPolicyStandaloneCAIsListedToItsRequestersOnly(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, partners)
	for _, tc := range []struct {
		token string
		want  int
	}{{testutil.AliceToken, 0}, {paulToken, 1}, {testutil.AdminToken, 1}} {
		var ctx keyfactor.CSRContext
		getJSON(t, cf, "/Enrollment/CSR/Context/My", tc.token, &ctx)
		if len(ctx.StandaloneCAs) != tc.want {
			t.Errorf("%s sees standalone CAs %+v, want %d", tc.token, ctx.StandaloneCAs, tc.want)
		}
	}
}

// TestPolicyCompromiseFoundAfterARevocation: a requester cannot keep her
// key out of the compromised-key bar by revoking its certificate for a
// harmless reason first. A later revocation for keyCompromise (hers or an
// administrator's) changes the reason on the record and on the CRL,
// keeping the first revocation date, and bars the key; any other second
// revocation is still refused.
func TestPolicyCompromiseFoundAfterARevocation(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	alice, admin := bearer(testutil.AliceToken), bearer(testutil.AdminToken)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, er := enroll(t, cf, testutil.EnrollBody(csrSpec{cn: "k.example.com", key: key}.der(t), map[string]any{"IncludeChain": true}), "Authorization", alice)
	info := er.CertificateInformation
	if info.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll: %+v", info)
	}
	chain := pemChain(t, info.Certificates, true)
	if resp, _ := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{info.KeyfactorID}, "Reason": 4, "Comment": "replaced"}); resp.Status != http.StatusOK {
		t.Fatalf("revoke as superseded: %d %s", resp.Status, resp.Body)
	}
	crlPEM := filepath.Join(t.TempDir(), "crl.pem")
	first := fetchCRL(t, cf, "/CRL/"+config.DefaultCAName, chain[1], crlPEM).RevokedCertificateEntries
	for _, reason := range []int{4, 5, 0} {
		resp, _ := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{info.KeyfactorID}, "Reason": reason, "Comment": "again"})
		assertError(t, resp, http.StatusConflict, keyfactor.CodeConflict, "CertificateIds[0]: certificate")
	}
	if resp, _ := revoke(t, cf, admin, map[string]any{"CertificateIds": []int64{info.KeyfactorID}, "Reason": 1, "Comment": "found on a paste site"}); resp.Status != http.StatusOK {
		t.Fatalf("revoke again for key compromise: %d %s", resp.Status, resp.Body)
	}
	resp, _ := enroll(t, cf, testutil.EnrollBody(csrSpec{cn: "k2.example.com", key: key}.der(t), nil), "Authorization", alice)
	assertError(t, resp, http.StatusBadRequest, keyfactor.CodePolicy, "CSR: its key was revoked for key compromise")
	after := fetchCRL(t, cf, "/CRL/"+config.DefaultCAName, chain[1], crlPEM).RevokedCertificateEntries
	if len(first) != 1 || len(after) != 1 {
		t.Fatalf("CRL entries %d then %d, want 1 each", len(first), len(after))
	}
	if after[0].ReasonCode != 1 || !after[0].RevocationTime.Equal(first[0].RevocationTime) {
		t.Errorf("CRL entry after the second revocation: reason %d at %s; want keyCompromise at the first date %s", after[0].ReasonCode, after[0].RevocationTime, first[0].RevocationTime)
	}
	if resp, _ := revoke(t, cf, admin, map[string]any{"CertificateIds": []int64{info.KeyfactorID}, "Reason": 1, "Comment": "again"}); resp.Status != http.StatusConflict {
		t.Errorf("a third revocation, for key compromise again: %d %s; want 409", resp.Status, resp.Body)
	}
}

// TestPolicyARenewalDoesNotOutliveARevocation: a renewal waiting for
// approval when its certificate is revoked is denied at issue, not issued
// (submit refuses a revoked certificate's renewal; this is the other
// order).
func TestPolicyARenewalDoesNotOutliveARevocation(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, `name: renew-gated
trigger: renewal
steps:
  - id: approve
    uses: approval
    with: {roles: [approver]}
  - id: issue
    uses: issue
`, `name: enroll
trigger: enrollment
steps:
  - id: issue
    uses: issue
`, `name: rev
trigger: revocation
steps:
  - id: revoke
    uses: revoke
`)
	alice := bearer(testutil.AliceToken)
	csr, _ := testutil.CSR(t, "r.example.com", "r.example.com")
	_, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", alice)
	if er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll: %+v", er.CertificateInformation)
	}
	id := er.CertificateInformation.KeyfactorID
	fresh, _ := testutil.CSR(t, "r.example.com", "r.example.com")
	resp, rr := renew(t, cf, map[string]any{"CertificateId": id, "CSR": base64.StdEncoding.EncodeToString(fresh)}, "Authorization", alice)
	if resp.Status != http.StatusOK || rr.RequestDisposition != "PENDING" {
		t.Fatalf("renew: %d %s; want PENDING", resp.Status, resp.Body)
	}
	if r, _ := revoke(t, cf, bearer(testutil.AdminToken), map[string]any{"CertificateIds": []int64{id}, "Reason": 5, "Comment": "host decommissioned"}); r.Status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	mustSignal(t, cf, rr.WorkflowInstanceId, testutil.BobToken, approveData("ok"))
	st := pollFinal(t, cf, rr.KeyfactorRequestId)
	if d := st.CertificateInformation; d.RequestDisposition != "DENIED" || d.KeyfactorID != 0 || !strings.Contains(d.DispositionMessage, "was revoked") {
		t.Fatalf("the renewal settled %+v; want DENIED, no certificate", d)
	}
}

// TestPolicyRenewalToAnotherCAIsAnEnrollmentThere: a renewal naming
// another CA than the one that issued the certificate runs that CA's
// enrollment workflow (here approval-gated), not the renewal workflow.
func TestPolicyRenewalToAnotherCAIsAnEnrollmentThere(t *testing.T) {
	t.Parallel()
	dir := defsDir(t, map[string]string{
		"a.yaml": "name: enroll-open\ntrigger: enrollment\nsteps:\n  - {id: issue, uses: issue}\n",
		"b.yaml": `name: enroll-b-gated
trigger: enrollment
priority: 10
match: request.CertificateAuthority == "PartnerB"
steps:
  - id: approve
    uses: approval
    with: {roles: [approver]}
  - id: issue
    uses: issue
`,
		"r.yaml": "name: renew\ntrigger: renewal\nsteps:\n  - {id: issue, uses: issue}\n",
	})
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.CAs = append(c.CAs,
			config.CA{Name: "PartnerA", Host: "h", Type: "builtin", KeyType: "ecdsa-p256", Standalone: true, MaxValidity: time.Hour},
			config.CA{Name: "PartnerB", Host: "h", Type: "builtin", KeyType: "ecdsa-p256", Standalone: true, MaxValidity: time.Hour})
	})
	alice := bearer(testutil.AliceToken)
	_, er := enroll(t, cf, testutil.EnrollBody(csrSpec{cn: "p.example.com"}.der(t), map[string]any{"Template": nil, "CertificateAuthority": "PartnerA"}), "Authorization", alice)
	if er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll with PartnerA: %+v", er.CertificateInformation)
	}
	id := er.CertificateInformation.KeyfactorID
	csr := func() string { return base64.StdEncoding.EncodeToString(csrSpec{cn: "p.example.com"}.der(t)) }
	_, same := renew(t, cf, map[string]any{"CertificateId": id, "CSR": csr()}, "Authorization", alice)
	if same.RequestDisposition != "ISSUED" {
		t.Fatalf("renewal with the same CA: %+v; want ISSUED by the renewal workflow", same)
	}
	for _, name := range []string{"PartnerB", `h\PartnerB`, "partnerb"} {
		_, rr := renew(t, cf, map[string]any{"CertificateId": id, "CertificateAuthority": name, "CSR": csr()}, "Authorization", alice)
		if rr.RequestDisposition != "PENDING" || len(rr.Certificates) != 0 {
			t.Errorf("renewal into %s: %s; want PENDING behind PartnerB's enrollment approval", name, rr.RequestDisposition)
		}
	}
}

// visibleName is a subject whose attributes (OID, value pairs, one RDN
// each) are VisibleStrings, a string type x509 does not decode.
func visibleName(pairs ...any) []byte {
	var rdns pkix.RDNSequence
	for i := 0; i < len(pairs); i += 2 {
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: pairs[i].(asn1.ObjectIdentifier), Value: asn1.RawValue{Tag: 26, Bytes: []byte(pairs[i+1].(string))}}})
	}
	der, err := asn1.Marshal(rdns)
	if err != nil {
		panic(err)
	}
	return der
}

// TestPolicyPFXSubjects: a PFX enrollment's Subject, which certflow turns
// into the CSR it makes, is held to the same rules as a CSR's, at submit
// (400 naming Subject, nothing stored).
func TestPolicyPFXSubjects(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	for _, tc := range []struct{ name, subject, want string }{
		{"an e-mail address on a server template", "CN=pfx.example.com,E=ceo@example.com", "Subject: subject: emailAddress \"ceo@example.com\": template WebServer does not allow e-mail names"},
		{"two common names", "CN=pfx.example.com,CN=*.example.com", "Subject: subject: the attribute CN appears more than once"},
		{"a wildcard common name", "CN=*.example.com", "Subject: subject: common name \"*.example.com\": wildcard names are not allowed"},
		{"a line break in the common name", `CN=pfx.example.com\0Asubject=CN=root`, "Subject: subject: the attribute CN has the control character 0x0a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cf.Do(t, "POST", "/Enrollment/PFX", pfxBody(map[string]any{"Subject": tc.subject}), "x-certificateformat", "PFX", "Authorization", bearer(testutil.AliceToken))
			assertError(t, r, http.StatusBadRequest, keyfactor.CodePolicy, tc.want)
		})
	}
	assertNothingStored(t, cf)
}

// TestPolicyTheSigningCAsPolicyBinds: without a template, the policy at
// issue is that of the CA that signs, which a definition's `authority:`
// may choose: a request accepted under a permissive standalone CA is
// denied when the definition sends it to a stricter one, or to a CA that
// serves templates.
func TestPolicyTheSigningCAsPolicyBinds(t *testing.T) {
	t.Parallel()
	def := func(authority string) string {
		return "name: route\ntrigger: enrollment\nsteps:\n  - id: issue\n    uses: issue\n    with: {authority: " + authority + "}\n"
	}
	for _, tc := range []struct{ authority, want string }{
		{"PartnerB", "wildcard names are not allowed"},
		{config.DefaultCAName, "is not a standalone CA"},
	} {
		t.Run(tc.authority, func(t *testing.T) {
			dir := defsDir(t, map[string]string{"route.yaml": def(tc.authority)})
			cf := testutil.StartCertflow(t, func(c *config.Config) {
				c.Definitions = dir
				c.CAs = append(c.CAs,
					config.CA{Name: "PartnerA", Host: "h", Type: "builtin", KeyType: "ecdsa-p256", Standalone: true, MaxValidity: time.Hour, Policy: config.Policy{AllowWildcards: true}},
					config.CA{Name: "PartnerB", Host: "h", Type: "builtin", KeyType: "ecdsa-p256", Standalone: true, MaxValidity: time.Hour})
			})
			_, er := enroll(t, cf, testutil.EnrollBody(csrSpec{cn: "*.partner.example.com"}.der(t), map[string]any{"Template": nil, "CertificateAuthority": "PartnerA"}), "Authorization", bearer(testutil.AliceToken))
			if d := er.CertificateInformation; d.RequestDisposition != "DENIED" || d.KeyfactorID != 0 || !strings.Contains(d.DispositionMessage, tc.want) {
				t.Fatalf("routed to %s: %+v; want DENIED naming %q", tc.authority, d, tc.want)
			}
		})
	}
}

package policy_test

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
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/policy"
	"github.com/certflow/certflow/workflow"
)

var testKeys = sync.OnceValue(func() map[string]crypto.Signer {
	m := map[string]crypto.Signer{}
	for _, bits := range []int{1024, 2048} {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		m["RSA-"+itoa(bits)] = k
	}
	for name, c := range map[string]elliptic.Curve{"P-224": elliptic.P224(), "P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			panic(err)
		}
		m[name] = k
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	m["Ed25519"] = ed
	return m
})

func itoa(n int) string { return big.NewInt(int64(n)).String() }

var (
	oidCN    = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidO     = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidOU    = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidEmail = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
)

// req is a request under test: a CSR made from it, parsed as the API
// parses it, with the SANs merged as the engine merges them.
type req struct {
	key     string
	cn      string // "" with names set: names is the whole subject
	names   []pkix.AttributeTypeAndValue
	dns     []string
	ips     []string
	emails  []string
	uris    []string
	body    map[string][]string // the request body's SANs
	noCN    bool                // do not add the CN to the SANs (no RFC 2818 merge)
	rawPub  any                 // a public key to judge instead of the CSR's
	subject []byte
}

func (r req) build(t *testing.T) *policy.Request {
	t.Helper()
	key := r.key
	if key == "" {
		key = "P-256"
	}
	tmpl := &x509.CertificateRequest{DNSNames: r.dns, EmailAddresses: r.emails}
	if r.names != nil {
		tmpl.Subject.ExtraNames = r.names
	} else {
		tmpl.Subject.CommonName = r.cn
	}
	if r.subject != nil {
		tmpl.RawSubject = r.subject
	}
	for _, s := range r.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(s))
	}
	for _, s := range r.uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, testKeys()[key])
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	sans := workflow.MergeSANs(workflow.NewCSR(csr), r.body, !r.noCN)
	pub := csr.PublicKey
	if r.rawPub != nil {
		pub = r.rawPub
	}
	return &policy.Request{Subject: csr.Subject, RawSubject: csr.RawSubject, PublicKey: pub, SANs: policy.SANs(sans)}
}

func webServer(change func(*config.Template)) policy.Rules {
	cfg := config.Default()
	t := cfg.Templates[0]
	if change != nil {
		change(&t)
	}
	return policy.ForTemplate(&t)
}

// weakRSA is a 2048-bit RSA public key with the given exponent and a
// modulus that is the product of factor and a large odd number.
func weakRSA(t *testing.T, e int, factor int64) *rsa.PublicKey {
	big2047 := new(big.Int).Lsh(big.NewInt(1), 2047)
	q := new(big.Int).Div(big2047, big.NewInt(factor))
	q.SetBit(q, 0, 1)
	n := new(big.Int).Mul(q, big.NewInt(factor))
	if n.Bit(0) == 0 && factor%2 == 1 {
		t.Fatal("test modulus came out even")
	}
	return &rsa.PublicKey{N: n, E: e}
}

// TestPolicyTable is the adversarial table of the rules a template and a
// standalone CA enforce: each row a request a hostile requester would
// send, and the refusal it gets (nil deny: the request is allowed).
func TestPolicyTable(t *testing.T) {
	t.Parallel()
	rsa3 := func() *rsa.PublicKey {
		k := *testKeys()["RSA-2048"].Public().(*rsa.PublicKey)
		k.E = 3
		return &k
	}
	caSubject, _ := asn1.Marshal(pkix.Name{CommonName: "CertflowIssuingCA", Organization: []string{"certflow"}}.ToRDNSequence())
	caSubjectUTF8, _ := asn1.Marshal(pkix.RDNSequence{
		{{Type: oidO, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("CERTFLOW")}}},
		{{Type: oidCN, Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("certflowissuingca")}}},
	})
	cas := policy.NewCASubjects(caSubject)
	tests := []struct {
		name  string
		rules policy.Rules
		req   req
		part  policy.Part
		deny  []string // nil: allowed; else the message contains each
	}{
		// Keys.
		{name: "RSA 2048 is allowed", rules: webServer(nil), req: req{key: "RSA-2048", cn: "www.example.com", dns: []string{"www.example.com"}}},
		{name: "RSA 1024 is denied, naming the size", rules: webServer(nil), req: req{key: "RSA-1024", cn: "www.example.com"}, part: policy.PartKey, deny: []string{"template WebServer", "RSA 1024-bit", "allowed: 2048, 3072, 4096"}},
		{name: "RSA 2048 is denied when the template lists only larger keys", rules: webServer(func(t *config.Template) { t.RSAKeySizes = []int{3072, 4096} }), req: req{key: "RSA-2048", cn: "www.example.com"}, part: policy.PartKey, deny: []string{"RSA 2048-bit", "allowed: 3072, 4096"}},
		{name: "RSA exponent 3 is refused", rules: webServer(nil), req: req{key: "RSA-2048", cn: "www.example.com", rawPub: rsa3()}, part: policy.PartKey, deny: []string{"exponent must be 65537"}},
		{name: "an RSA modulus with a small prime factor is refused", rules: webServer(nil), req: req{key: "RSA-2048", cn: "www.example.com", rawPub: weakRSA(t, 65537, 16381)}, part: policy.PartKey, deny: []string{"small prime factor"}},
		{name: "an RSA modulus divisible by 3 is refused", rules: webServer(nil), req: req{key: "RSA-2048", cn: "www.example.com", rawPub: weakRSA(t, 65537, 3)}, part: policy.PartKey, deny: []string{"small prime factor"}},
		{name: "an even RSA modulus is refused", rules: webServer(nil), req: req{key: "RSA-2048", cn: "www.example.com", rawPub: weakRSA(t, 65537, 2)}, part: policy.PartKey, deny: []string{"even"}},
		{name: "P-256 is allowed", rules: webServer(nil), req: req{key: "P-256", cn: "www.example.com"}},
		{name: "P-384 is allowed", rules: webServer(nil), req: req{key: "P-384", cn: "www.example.com"}},
		{name: "P-521 is denied for WebServer", rules: webServer(nil), req: req{key: "P-521", cn: "www.example.com"}, part: policy.PartKey, deny: []string{"ECC curve P-521", "allowed: P-256, P-384"}},
		{name: "P-224 is denied", rules: webServer(nil), req: req{key: "P-224", cn: "www.example.com"}, part: policy.PartKey, deny: []string{"ECC curve P-224"}},
		{name: "P-521 is allowed when the template lists it", rules: webServer(func(t *config.Template) { t.ECCCurves = append(t.ECCCurves, "P-521") }), req: req{key: "P-521", cn: "www.example.com"}},
		{name: "Ed25519 is denied by default", rules: webServer(nil), req: req{key: "Ed25519", cn: "www.example.com"}, part: policy.PartKey, deny: []string{"does not allow Ed25519"}},
		{name: "Ed25519 is allowed with AllowEd25519", rules: webServer(func(t *config.Template) { t.AllowEd25519 = true }), req: req{key: "Ed25519", cn: "www.example.com"}},
		{name: "the key is checked before the names", rules: webServer(nil), req: req{key: "RSA-1024", cn: "*.example.com", dns: []string{"*.example.com"}}, part: policy.PartKey, deny: []string{"RSA 1024-bit"}},

		// Wildcards.
		{name: "a wildcard SAN is denied by default", rules: webServer(nil), req: req{cn: "www.example.com", dns: []string{"www.example.com", "*.example.com"}}, part: policy.PartSAN, deny: []string{`"*.example.com"`, "wildcard names are not allowed"}},
		{name: "a requested wildcard SAN is denied by default", rules: webServer(nil), req: req{cn: "www.example.com", body: map[string][]string{"dns": {"*.api.example.com"}}}, part: policy.PartSAN, deny: []string{"wildcard"}},
		{name: "a wildcard CN is denied by default even when it is not a SAN", rules: webServer(nil), req: req{cn: "*.example.com", dns: []string{"www.example.com"}}, part: policy.PartSubject, deny: []string{"common name", "wildcard"}},
		{name: "a wildcard is allowed with AllowWildcards", rules: webServer(func(t *config.Template) { t.AllowWildcards = true }), req: req{cn: "*.example.com", dns: []string{"*.example.com"}}},
		{name: "a partial wildcard label w* is refused even where wildcards are allowed", rules: webServer(func(t *config.Template) { t.AllowWildcards = true }), req: req{cn: "www.example.com", dns: []string{"w*.example.com"}}, part: policy.PartSAN, deny: []string{"whole left-most label"}},
		{name: "a partial wildcard label *w is refused", rules: webServer(nil), req: req{cn: "www.example.com", dns: []string{"*w.example.com"}}, part: policy.PartSAN, deny: []string{"whole left-most label"}},
		{name: "a partial wildcard CN is refused", rules: webServer(nil), req: req{cn: "w*.example.com"}, part: policy.PartSubject, deny: []string{"whole left-most label"}},
		{name: "an inner wildcard is refused", rules: webServer(func(t *config.Template) { t.AllowWildcards = true }), req: req{cn: "www.example.com", dns: []string{"www.*.example.com"}}, part: policy.PartSAN, deny: []string{"whole left-most label"}},
		{name: "a wildcard under .com is never issued", rules: webServer(func(t *config.Template) { t.AllowWildcards = true }), req: req{cn: "x.example.com", dns: []string{"*.com"}}, part: policy.PartSAN, deny: []string{"public suffix"}},
		{name: "a wildcard under co.uk is never issued", rules: webServer(func(t *config.Template) { t.AllowWildcards = true }), req: req{cn: "*.co.uk"}, part: policy.PartSubject, deny: []string{"public suffix"}},
		{name: "a wildcard CN hidden behind a second CN is refused", rules: webServer(nil), req: req{names: []pkix.AttributeTypeAndValue{{Type: oidCN, Value: "*.example.com"}, {Type: oidCN, Value: "host.example.com"}}}, part: policy.PartSubject, deny: []string{"CN appears more than once"}},

		// Names as a TLS client reads them.
		{name: "upper case passes as lower case", rules: webServer(nil), req: req{cn: "WWW.EXAMPLE.COM", dns: []string{"API.Example.com"}}},
		{name: "an underscore is refused", rules: webServer(nil), req: req{cn: "www.example.com", dns: []string{"bad_name.example.com"}}, part: policy.PartSAN, deny: []string{`"_"`}},
		{name: "a trailing dot is refused", rules: webServer(nil), req: req{cn: "www.example.com", body: map[string][]string{"dns": {"example.com."}}}, part: policy.PartSAN, deny: []string{"empty label"}},
		{name: "an IP address written as a DNS name is refused", rules: webServer(nil), req: req{cn: "www.example.com", dns: []string{"10.0.0.1"}}, part: policy.PartSAN, deny: []string{"IP address belongs in an IP SAN"}},
		{name: "a numeric last label is refused", rules: webServer(nil), req: req{cn: "www.example.com", dns: []string{"host.123"}}, part: policy.PartSAN, deny: []string{"numeric"}},
		{name: "a NUL in a DNS SAN is refused", rules: webServer(nil), req: req{cn: "www.example.com", body: map[string][]string{"dns": {"evil.com\x00.example.com"}}}, part: policy.PartSAN, deny: []string{"0x00"}},
		{name: "a NUL in the CN is refused", rules: webServer(nil), req: req{cn: "evil.com\x00.example.com"}, part: policy.PartSubject, deny: []string{"control character"}},
		{name: "a newline in the CN is refused", rules: webServer(nil), req: req{cn: "a.example.com\nsubject=CN=root"}, part: policy.PartSubject, deny: []string{"control character"}},
		{name: "invalid punycode is refused", rules: webServer(nil), req: req{cn: "www.example.com", dns: []string{"xn--a.example.com"}}, part: policy.PartSAN, deny: []string{"punycode"}},
		{name: "valid punycode is allowed", rules: webServer(nil), req: req{cn: "xn--bcher-kva.example.com"}},
		{name: "hyphens in places 3 and 4 outside punycode are refused", rules: webServer(nil), req: req{cn: "www.example.com", dns: []string{"ab--cd.example.com"}}, part: policy.PartSAN, deny: []string{"third and fourth"}},
		{name: "a 64-character label is refused", rules: webServer(nil), req: req{cn: "www.example.com", dns: []string{strings.Repeat("a", 64) + ".example.com"}}, part: policy.PartSAN, deny: []string{"longer than 63"}},
		{name: "localhost is refused", rules: webServer(nil), req: req{cn: "www.example.com", dns: []string{"localhost"}}, part: policy.PartSAN, deny: []string{"localhost"}},
		{name: "a localhost CN is refused", rules: webServer(nil), req: req{cn: "LOCALHOST"}, part: policy.PartSubject, deny: []string{"localhost"}},
		{name: "a name under .localhost is refused", rules: webServer(nil), req: req{cn: "www.example.com", dns: []string{"app.localhost"}}, part: policy.PartSAN, deny: []string{"localhost"}},
		{name: "an IPv4 address in hex as a DNS name is refused", rules: webServer(nil), req: req{cn: "www.example.com", dns: []string{"0x7f000001"}}, part: policy.PartSAN, deny: []string{"numeric"}},
		{name: "a bare public suffix is refused", rules: webServer(nil), req: req{cn: "www.example.com", dns: []string{"co.uk"}}, part: policy.PartSAN, deny: []string{"public suffix"}},
		{name: "a bare TLD is refused", rules: webServer(nil), req: req{cn: "www.example.com", body: map[string][]string{"dns": {"com"}}}, part: policy.PartSAN, deny: []string{"public suffix"}},
		{name: "a single-label internal name is a host", rules: webServer(nil), req: req{cn: "www.example.com", dns: []string{"intranet"}}},
		{name: "an https URI without a host is refused", rules: webServer(func(t *config.Template) { t.SANTypes = []string{"dns", "uri"} }), req: req{cn: "www.example.com", uris: []string{"https:evil.com/x"}}, part: policy.PartSAN, deny: []string{"needs a host"}},
		{name: "a spiffe URI without a host is refused", rules: webServer(func(t *config.Template) { t.SANTypes = []string{"dns", "uri"} }), req: req{cn: "www.example.com", uris: []string{"spiffe:example.com/ns/a"}}, part: policy.PartSAN, deny: []string{"needs a host"}},
		{name: "a URN needs no host", rules: webServer(func(t *config.Template) { t.SANTypes = []string{"dns", "uri"} }), req: req{cn: "www.example.com", uris: []string{"urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"}}},
		{name: "a CN in a string type Go does not read is refused", rules: webServer(nil), req: req{cn: "x", subject: visibleStringCN("*.example.com"), dns: []string{"www.example.com"}}, part: policy.PartSubject, deny: []string{"type certflow does not read"}},
		{name: "localhost is allowed with allow_local_names", rules: webServer(func(t *config.Template) { t.AllowLocalNames = true }), req: req{cn: "localhost", ips: []string{"127.0.0.1"}}},
		{name: "a wildcard CN with a space is still a wildcard", rules: webServer(func(t *config.Template) { t.RFCEnforcement = false }), req: req{cn: "*.example.com x"}, part: policy.PartSubject, deny: []string{"common name"}},
		{name: "an emailAddress in the subject is an e-mail name", rules: webServer(nil), req: req{names: []pkix.AttributeTypeAndValue{{Type: oidCN, Value: "a.example.com"}, {Type: oidEmail, Value: "ceo@example.com"}}}, part: policy.PartSubject, deny: []string{"emailAddress", "does not allow e-mail"}},
		{name: "an emailAddress where e-mail is allowed", rules: webServer(func(t *config.Template) { t.SANTypes = []string{"dns", "email"} }), req: req{names: []pkix.AttributeTypeAndValue{{Type: oidCN, Value: "a.example.com"}, {Type: oidEmail, Value: "ceo@example.com"}}}},
		{name: "a person's CN is not a host name", rules: webServer(func(t *config.Template) { t.RFCEnforcement = false }), req: req{cn: "Jane Doe"}},

		// SAN types and addresses.
		{name: "a URI SAN is refused by a server template", rules: webServer(nil), req: req{cn: "www.example.com", uris: []string{"spiffe://example.com/admin"}}, part: policy.PartSAN, deny: []string{"does not allow uri", "allowed types: dns, ip"}},
		{name: "a requested URI SAN is refused by a server template", rules: webServer(nil), req: req{cn: "www.example.com", body: map[string][]string{"uri": {"spiffe://example.com/admin"}}}, part: policy.PartSAN, deny: []string{"does not allow uri"}},
		{name: "an email SAN is refused by a server template", rules: webServer(nil), req: req{cn: "www.example.com", emails: []string{"ceo@example.com"}}, part: policy.PartSAN, deny: []string{"does not allow email"}},
		{name: "an email SAN is allowed by an e-mail template", rules: webServer(func(t *config.Template) { t.ExtKeyUsages = []string{"EmailProtection"}; t.RFCEnforcement = false }), req: req{cn: "Jane Doe", emails: []string{"jane@Example.COM"}}},
		{name: "a URI SAN is allowed where san_types lists uri", rules: webServer(func(t *config.Template) { t.SANTypes = []string{"dns", "uri"} }), req: req{cn: "www.example.com", uris: []string{"spiffe://example.com/web"}}},
		{name: "a URI with user information is refused", rules: webServer(func(t *config.Template) { t.SANTypes = []string{"dns", "uri"} }), req: req{cn: "www.example.com", uris: []string{"https://root:pw@example.com/"}}, part: policy.PartSAN, deny: []string{"user information"}},
		{name: "a URI on a loopback host is refused", rules: webServer(func(t *config.Template) { t.SANTypes = []string{"dns", "uri"} }), req: req{cn: "www.example.com", uris: []string{"https://127.0.0.1/"}}, part: policy.PartSAN, deny: []string{"loopback"}},
		{name: "an IP SAN is allowed", rules: webServer(nil), req: req{cn: "www.example.com", ips: []string{"192.0.2.10", "2001:db8::1"}}},
		{name: "a loopback IP SAN is refused", rules: webServer(nil), req: req{cn: "www.example.com", ips: []string{"127.0.0.1"}}, part: policy.PartSAN, deny: []string{"loopback"}},
		{name: "an IPv6 loopback SAN is refused", rules: webServer(nil), req: req{cn: "www.example.com", body: map[string][]string{"ip6": {"::1"}}}, part: policy.PartSAN, deny: []string{"loopback"}},
		{name: "a link-local IP SAN is refused", rules: webServer(nil), req: req{cn: "www.example.com", ips: []string{"169.254.169.254"}}, part: policy.PartSAN, deny: []string{"link-local"}},
		{name: "an IPv6 link-local SAN is refused", rules: webServer(nil), req: req{cn: "www.example.com", ips: []string{"fe80::1"}}, part: policy.PartSAN, deny: []string{"link-local"}},
		{name: "the unspecified address is refused", rules: webServer(nil), req: req{cn: "www.example.com", ips: []string{"0.0.0.0"}}, part: policy.PartSAN, deny: []string{"unspecified"}},
		{name: "a multicast address is refused even with local names", rules: webServer(func(t *config.Template) { t.AllowLocalNames = true }), req: req{cn: "www.example.com", ips: []string{"224.0.0.1"}}, part: policy.PartSAN, deny: []string{"multicast"}},
		{name: "a loopback CN is refused", rules: webServer(nil), req: req{cn: "127.0.0.1"}, part: policy.PartSubject, deny: []string{"loopback"}},
		{name: "an IP SAN is refused where san_types has only dns", rules: webServer(func(t *config.Template) { t.SANTypes = []string{"dns"} }), req: req{cn: "www.example.com", ips: []string{"192.0.2.1"}}, part: policy.PartSAN, deny: []string{"does not allow ip"}},

		// Subjects.
		{name: "two CNs are refused", rules: webServer(nil), req: req{names: []pkix.AttributeTypeAndValue{{Type: oidCN, Value: "a.example.com"}, {Type: oidCN, Value: "b.example.com"}}}, part: policy.PartSubject, deny: []string{"CN appears more than once"}},
		{name: "two Os are refused", rules: webServer(nil), req: req{names: []pkix.AttributeTypeAndValue{{Type: oidCN, Value: "a.example.com"}, {Type: oidO, Value: "Good"}, {Type: oidO, Value: "Evil"}}}, part: policy.PartSubject, deny: []string{"O appears more than once"}},
		{name: "two OUs are allowed", rules: webServer(nil), req: req{names: []pkix.AttributeTypeAndValue{{Type: oidCN, Value: "a.example.com"}, {Type: oidOU, Value: "Web"}, {Type: oidOU, Value: "Ops"}}}},
		{name: "a CA's subject is refused", rules: webServer(nil), req: req{cn: "x", subject: caSubject}, part: policy.PartSubject, deny: []string{"certificate authority's subject"}},
		{name: "a CA's subject in another case and encoding is refused", rules: webServer(nil), req: req{cn: "x", subject: caSubjectUTF8}, part: policy.PartSubject, deny: []string{"certificate authority's subject"}},

		// RFC 2818.
		{name: "RFC 2818 denies no DNS or IP SAN and a CN that is not a name", rules: webServer(nil), req: req{cn: "My Server"}, part: policy.PartSAN, deny: []string{"enforces RFC 2818"}},
		{name: "RFC 2818 accepts a DNS-name CN that MergeSANs added", rules: webServer(nil), req: req{cn: "www.example.com"}},
		{name: "RFC 2818 accepts an IP CN that MergeSANs added", rules: webServer(nil), req: req{cn: "192.0.2.10"}},
		{name: "RFC 2818 looks at SANs only: a DNS-name CN not added is not enough", rules: webServer(nil), req: req{cn: "www.example.com", noCN: true}, part: policy.PartSAN, deny: []string{"enforces RFC 2818"}},
		{name: "without RFC 2818 enforcement no SAN is needed", rules: webServer(func(t *config.Template) { t.RFCEnforcement = false }), req: req{cn: "My Server"}},

		// A standalone CA's defaults are safe.
		{name: "a standalone CA refuses RSA 1024 by default", rules: standalone(nil), req: req{key: "RSA-1024", cn: "www.example.com"}, part: policy.PartKey, deny: []string{"certificate authority Partners", "RSA 1024-bit"}},
		{name: "a standalone CA refuses Ed25519 by default", rules: standalone(nil), req: req{key: "Ed25519", cn: "www.example.com"}, part: policy.PartKey, deny: []string{"Ed25519"}},
		{name: "a standalone CA refuses wildcards by default", rules: standalone(nil), req: req{cn: "*.google.com"}, part: policy.PartSubject, deny: []string{"wildcard"}},
		{name: "a standalone CA refuses URI SANs by default", rules: standalone(nil), req: req{cn: "www.example.com", uris: []string{"spiffe://x/y"}}, part: policy.PartSAN, deny: []string{"does not allow uri"}},
		{name: "a standalone CA allows what its entry allows", rules: standalone(func(c *config.CA) { c.AllowEd25519 = true; c.AllowWildcards = true }), req: req{key: "Ed25519", cn: "*.example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := tt.rules.Check(tt.req.build(t), cas)
			if tt.deny == nil {
				if v != nil {
					t.Fatalf("denied: %q; want allowed", v.Message)
				}
				return
			}
			if v == nil {
				t.Fatalf("allowed; want denied with %q", tt.deny)
			}
			if v.Part != tt.part {
				t.Errorf("part %d, want %d (%s)", v.Part, tt.part, v.Message)
			}
			for _, w := range tt.deny {
				if !strings.Contains(v.Message, w) {
					t.Errorf("message %q does not contain %q", v.Message, w)
				}
			}
		})
	}
}

func standalone(change func(*config.CA)) policy.Rules {
	cfg := config.Default()
	c := cfg.CAs[0]
	c.Name, c.Standalone = "Partners", true
	if change != nil {
		change(&c)
	}
	return policy.ForCA(&c)
}

// The merged SANs are what the certificate carries: a rule must see them
// normalised and once each.
func TestMergeSANsNormalisesAndDeduplicates(t *testing.T) {
	t.Parallel()
	r := req{cn: "WWW.Example.COM", dns: []string{"WWW.example.com", "api.EXAMPLE.com"}, emails: []string{"Jane@EXAMPLE.com"},
		body: map[string][]string{"dns": {"www.example.com", "API.example.com"}, "ip4": {"192.0.2.1"}, "ip6": {"::ffff:192.0.2.1"}}}
	got := r.build(t).SANs
	if want := []string{"www.example.com", "api.example.com"}; strings.Join(got.DNS, ",") != strings.Join(want, ",") {
		t.Errorf("DNS = %q, want %q", got.DNS, want)
	}
	if len(got.IP) != 1 || got.IP[0] != "192.0.2.1" {
		t.Errorf("IP = %q, want one 192.0.2.1", got.IP)
	}
	if len(got.Email) != 1 || got.Email[0] != "Jane@example.com" {
		t.Errorf("Email = %q, want Jane@example.com", got.Email)
	}
}

// BenchmarkMergeSANs shows the merge is linear: the sub-benchmarks' ns/op
// grow in proportion to the number of names.
func BenchmarkMergeSANs(b *testing.B) {
	for _, n := range []int{100, 1000} {
		c := workflow.CSR{}
		body := map[string][]string{}
		for i := range n {
			c.DNSNames = append(c.DNSNames, "h"+itoa(i)+".example.com")
			body["dns"] = append(body["dns"], "r"+itoa(i)+".example.com")
		}
		b.Run(itoa(n), func(b *testing.B) {
			for b.Loop() {
				workflow.MergeSANs(c, body, false)
			}
		})
	}
}

// BenchmarkCheckKeySanity is the cost of the RSA sanity checks (the
// small-prime GCD) per request.
func BenchmarkCheckKeySanity(b *testing.B) {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	policy.CheckKeySanity(&k.PublicKey)
	for b.Loop() {
		if err := policy.CheckKeySanity(&k.PublicKey); err != nil {
			b.Fatal(err)
		}
	}
}

// visibleStringCN is a subject of one CN encoded as a VisibleString, a
// string type x509 does not decode.
func visibleStringCN(cn string) []byte {
	der, err := asn1.Marshal(pkix.RDNSequence{{{Type: oidCN, Value: asn1.RawValue{Tag: 26, Bytes: []byte(cn)}}}})
	if err != nil {
		panic(err)
	}
	return der
}

package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/pki"
)

// x509TBS is what x509.CreateCertificate would sign for tmpl, and how.
func x509TBS(t *testing.T, tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) (tbs, alg []byte, opts crypto.SignerOpts) {
	t.Helper()
	c := &tbsCapture{signer: signer}
	if _, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, c); !errors.Is(err, errCaptured) {
		t.Fatalf("x509.CreateCertificate: %v", err)
	}
	alg, err := tbsSignatureAlgorithm(c.tbs)
	if err != nil {
		t.Fatal(err)
	}
	return c.tbs, alg, c.opts
}

// testCA is a CA certificate of key, parsed, as Builtin holds its issuer.
func testCA(t *testing.T, key crypto.Signer, withSKID bool) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Leaf Test CA", Organization: []string{"certflow"}},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if !withSKID {
		ca.SubjectKeyId = nil // as a CA made without one would be
	}
	return ca
}

// randomLeaf is a template of the built-in CA's shape with every part
// drawn at random: subjects (empty, the CA's own, others), validity on
// both sides of UTCTime's range, serials, key usages (now and then with
// bits beyond RFC 5280's nine, which leafTBS must refuse), authority key
// ids, SANs of each kind and CRL distribution points.
func randomLeaf(r *mrand.Rand, parent *x509.Certificate) *x509.Certificate {
	pick := func(n int) int { return r.IntN(n) }
	t := &x509.Certificate{BasicConstraintsValid: pick(4) != 0, MaxPathLen: []int{0, -1}[pick(2)]}
	switch pick(5) {
	case 0:
		t.RawSubject = []byte{0x30, 0} // empty: the SANs become critical
	case 1:
		t.RawSubject = parent.RawSubject // the CA's own: no authority key id
	default:
		name := pkix.Name{CommonName: fmt.Sprintf("host-%d.example.com", pick(1000))}
		if pick(2) == 0 {
			name.Organization = []string{"Example", "Ünïcode Org"}
			name.OrganizationalUnit = []string{"ops"}
		}
		t.RawSubject, _ = asn1.Marshal(name.ToRDNSequence())
	}
	switch pick(3) {
	case 0:
		t.SerialNumber = big.NewInt(int64(pick(3))) // 0, 1, 2
	case 1:
		t.SerialNumber = new(big.Int).Lsh(big.NewInt(1), uint(8*pick(20)+7)) // leading bit set: a zero octet first
	default:
		t.SerialNumber, _ = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	}
	years := []int{1949, 1950, 2025, 2049, 2050, 2100}
	t.NotBefore = time.Date(years[pick(4)], time.Month(1+pick(12)), 1+pick(28), pick(24), pick(60), pick(60), pick(1e9), time.FixedZone("x", 3600*(pick(5)-2)))
	t.NotAfter = time.Date(years[2+pick(4)], 12, 31, 23, 59, 59, 999999999, time.UTC)
	t.KeyUsage = x509.KeyUsage(pick(1 << 9))
	if pick(4) == 0 {
		// Undefined bits: just above decipherOnly, in the third byte and
		// beyond (x509 encodes these as an empty bit string), negative.
		t.KeyUsage |= []x509.KeyUsage{1 << 9, 1 << 15, 1 << 16, 1 << 30, -1 << 31}[pick(5)]
	}
	if pick(3) == 0 {
		t.AuthorityKeyId = []byte{byte(pick(256)), 2, 3}
	}
	ekus := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageCodeSigning,
		x509.ExtKeyUsageEmailProtection, x509.ExtKeyUsageTimeStamping, x509.ExtKeyUsageOCSPSigning, x509.ExtKeyUsageAny,
		x509.ExtKeyUsageIPSECUser, x509.ExtKeyUsageMicrosoftKernelCodeSigning, x509.ExtKeyUsageNetscapeServerGatedCrypto}
	for range pick(4) {
		t.ExtKeyUsage = append(t.ExtKeyUsage, ekus[pick(len(ekus))])
	}
	for i := range pick(4) {
		t.DNSNames = append(t.DNSNames, fmt.Sprintf("n%d.example.com", i))
	}
	for i := range pick(3) {
		t.EmailAddresses = append(t.EmailAddresses, fmt.Sprintf("ops%d@example.com", i))
	}
	for range pick(4) {
		ips := []string{"192.0.2.7", "2001:db8::1", "10.1.2.3"}
		ip := net.ParseIP(ips[pick(len(ips))]) // 16 bytes, v4 too
		if v4 := ip.To4(); v4 != nil && pick(2) == 0 {
			ip = v4
		}
		t.IPAddresses = append(t.IPAddresses, ip)
	}
	for i := range pick(3) {
		u, _ := url.Parse(fmt.Sprintf("spiffe://example.org/svc/%d?x=a b", i))
		t.URIs = append(t.URIs, u)
	}
	for i := range pick(3) {
		t.CRLDistributionPoints = append(t.CRLDistributionPoints, fmt.Sprintf("http://crl.example.com/%d.crl", i))
	}
	return t
}

// leafTBS must build exactly what x509 builds, with the same signature
// algorithm and options, for every template of its shape, CA key and
// leaf key; and refuse (leave to x509) what it does not model: key usage
// bits beyond RFC 5280's, leaf keys other than RSA, ECDSA and Ed25519.
func TestLeafTBSMatchesX509(t *testing.T) {
	t.Parallel()
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	x25519, _ := ecdh.X25519().GenerateKey(rand.Reader)
	p256ECDH, _ := p256.ECDH()
	edPub := edKey.Public().(ed25519.PublicKey)
	leafKeys := map[string]any{"p256": p256.Public(), "p384": p384.Public(), "p521": p521.Public(), "rsa": rsaKey.Public(), "ed25519": edKey.Public(),
		"x25519": x25519.PublicKey(), "p256 ECDH": p256ECDH.PublicKey(), "*ed25519": &edPub}
	modelled := func(tmpl *x509.Certificate, pub any) bool {
		switch pub.(type) {
		case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
			return tmpl.KeyUsage >= 0 && tmpl.KeyUsage < 1<<9
		}
		return false
	}
	for caName, key := range map[string]crypto.Signer{"p256": p256, "p384": p384, "p521": p521, "rsa": rsaKey} {
		for _, skid := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s CA, key id %v", caName, skid), func(t *testing.T) {
				t.Parallel()
				parent := testCA(t, key, skid)
				r := mrand.New(mrand.NewPCG(uint64(len(caName)), 1))
				for i := range 300 {
					tmpl := randomLeaf(r, parent)
					for leafName, pub := range leafKeys {
						got, gotAlg, gotOpts, ok := leafTBS(tmpl, parent, pub, key)
						if !modelled(tmpl, pub) {
							if ok {
								t.Fatalf("template %d, %s leaf, key usage %#x: built, want it left to x509", i, leafName, int(tmpl.KeyUsage))
							}
							continue
						}
						if !ok {
							t.Fatalf("template %d, %s leaf: not built, want built", i, leafName)
						}
						want, wantAlg, wantOpts := x509TBS(t, tmpl, parent, pub, key)
						if !bytes.Equal(got, want) || !bytes.Equal(gotAlg, wantAlg) || gotOpts.HashFunc() != wantOpts.HashFunc() {
							t.Fatalf("template %d, %s leaf: differs from x509\n got %x\nwant %x\nalg %x / %x, hash %v / %v\ntemplate %+v",
								i, leafName, got, want, gotAlg, wantAlg, gotOpts.HashFunc(), wantOpts.HashFunc(), tmpl)
						}
					}
				}
			})
		}
	}
}

// Templates of any other shape are left to x509, whose result (or
// refusal) stands.
func TestLeafTBSLeavesOtherTemplatesToX509(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	parent := testCA(t, key, true)
	base := func() *x509.Certificate {
		rs, _ := asn1.Marshal(pkix.Name{CommonName: "x"}.ToRDNSequence())
		return &x509.Certificate{SerialNumber: big.NewInt(1), RawSubject: rs, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true}
	}
	if _, _, _, ok := leafTBS(base(), parent, key.Public(), key); !ok {
		t.Fatal("the base template is not built: the cases below prove nothing")
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edSigner, _ := ed25519.GenerateKey(rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	x25519, _ := ecdh.X25519().GenerateKey(rand.Reader)
	cases := map[string]struct {
		change func(*x509.Certificate)
		signer crypto.Signer
		pub    any
	}{
		"a CA":                              {change: func(c *x509.Certificate) { c.IsCA = true }},
		"a path length":                     {change: func(c *x509.Certificate) { c.MaxPathLen = 2 }},
		"a zero path length":                {change: func(c *x509.Certificate) { c.MaxPathLenZero = true }},
		"no raw subject":                    {change: func(c *x509.Certificate) { c.RawSubject = nil; c.Subject = pkix.Name{CommonName: "x"} }},
		"extra extensions":                  {change: func(c *x509.Certificate) { c.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3}}} }},
		"an unknown EKU":                    {change: func(c *x509.Certificate) { c.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 2, 3}} }},
		"an EKU x509 lacks":                 {change: func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsage(99)} }},
		"a subject key id":                  {change: func(c *x509.Certificate) { c.SubjectKeyId = []byte{1} }},
		"an OCSP server":                    {change: func(c *x509.Certificate) { c.OCSPServer = []string{"http://ocsp"} }},
		"policies":                          {change: func(c *x509.Certificate) { c.PolicyIdentifiers = []asn1.ObjectIdentifier{{1, 2, 3}} }},
		"name constraints":                  {change: func(c *x509.Certificate) { c.PermittedDNSDomains = []string{"example.com"} }},
		"a non-ASCII DNS name":              {change: func(c *x509.Certificate) { c.DNSNames = []string{"bücher.example"} }},
		"a non-ASCII email":                 {change: func(c *x509.Certificate) { c.EmailAddresses = []string{"ö@example.com"} }},
		"an odd IP length":                  {change: func(c *x509.Certificate) { c.IPAddresses = []net.IP{{1, 2, 3}} }},
		"a named algorithm":                 {change: func(c *x509.Certificate) { c.SignatureAlgorithm = x509.ECDSAWithSHA384 }},
		"no serial":                         {change: func(c *x509.Certificate) { c.SerialNumber = nil }},
		"a negative serial":                 {change: func(c *x509.Certificate) { c.SerialNumber = big.NewInt(-1) }},
		"another CA's key":                  {signer: otherKey},
		"an Ed25519 CA":                     {signer: edSigner},
		"a P-224 leaf key":                  {pub: p224.Public()},
		"a P-224 CA":                        {signer: p224},
		"an X25519 leaf key":                {pub: x25519.PublicKey()},
		"a key usage bit past decipherOnly": {change: func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature | 1<<9 }},
		"a key usage bit in the third byte": {change: func(c *x509.Certificate) { c.KeyUsage = 1 << 16 }},
		"a negative key usage":              {change: func(c *x509.Certificate) { c.KeyUsage = -1 }},
	}
	for name, c := range cases {
		tmpl := base()
		if c.change != nil {
			c.change(tmpl)
		}
		signer, pub := crypto.Signer(key), any(key.Public())
		if c.signer != nil {
			signer = c.signer
		}
		if c.pub != nil {
			pub = c.pub
		}
		if _, _, _, ok := leafTBS(tmpl, parent, pub, signer); ok {
			t.Errorf("%s: built, want it left to x509", name)
		}
	}
}

// The built-in CA's certificates, from its own Issue, verify under
// crypto/x509 and parse back to what was asked: the path a real
// enrollment takes goes through leafTBS.
func TestIssueBuildsItsLeavesWithLeafTBS(t *testing.T) {
	t.Parallel()
	raw := make([]byte, 32)
	rand.Read(raw)
	kek, err := pki.NewKEK(raw)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := OpenBuiltin(t.TempDir(), "Leaf", "ecdsa-p256", kek, true)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "svc.example.com"}}, key)
	csr, _ := x509.ParseCertificateRequest(csrDER)
	req := &Request{
		Subject: csr.Subject, RawSubject: csr.RawSubject, PublicKey: csr.PublicKey, Validity: time.Hour,
		DNSNames: []string{"svc.example.com"}, IPAddresses: []net.IP{net.ParseIP("192.0.2.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		CRLDistributionPoints: []string{"http://crl.example.com/ca.crl"},
	}
	issued, err := b.Issue(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	leaf := issued.Leaf
	if err := leaf.CheckSignatureFrom(b.Issuing()); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: leaf.SerialNumber, RawSubject: csr.RawSubject, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		KeyUsage: req.KeyUsage, ExtKeyUsage: req.ExtKeyUsage, BasicConstraintsValid: true, DNSNames: req.DNSNames,
		IPAddresses: req.IPAddresses, CRLDistributionPoints: req.CRLDistributionPoints,
	}
	if _, _, _, ok := leafTBS(tmpl, b.Issuing(), csr.PublicKey, b.signer); !ok {
		t.Fatal("the built-in CA's template is not of leafTBS's shape")
	}
	want, _, _ := x509TBS(t, tmpl, b.Issuing(), csr.PublicKey, b.signer)
	if !bytes.Equal(leaf.RawTBSCertificate, want) {
		t.Fatal("the issued certificate is not what x509 would have signed")
	}
}

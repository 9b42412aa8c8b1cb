package pki

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
	mrand "math/rand/v2"
	"net"
	"net/url"
	"reflect"
	"testing"
	"time"
)

// parseKeys are keys of every kind the fast path reads, and one it does not.
var parseKeys = func() []crypto.Signer {
	var ks []crypto.Signer
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		k, _ := ecdsa.GenerateKey(c, rand.Reader)
		ks = append(ks, k)
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	r, _ := rsa.GenerateKey(rand.Reader, 2048)
	return append(ks, ed, r)
}()

// randomCSR makes a CSR of a random shape: subjects of every string type
// and many attribute types, SANs of every kind, extra extensions (some
// critical, some repeated), every key kind and several signature
// algorithms.
func randomCSR(t testing.TB, rnd *mrand.Rand) []byte {
	pick := func(xs ...string) string { return xs[rnd.IntN(len(xs))] }
	str := func() string {
		return pick("example", "Ex Ample Ltd.", "a*b", "ä-ö", "O'Brien (x)", "", "x&y", "tab\there", "東京", "A=1,B=2", "\xff\xfe")
	}
	tmpl := &x509.CertificateRequest{}
	if rnd.IntN(8) > 0 {
		tmpl.Subject.CommonName = str()
	}
	for range rnd.IntN(3) {
		tmpl.Subject.Organization = append(tmpl.Subject.Organization, str())
	}
	if rnd.IntN(3) == 0 {
		tmpl.Subject.Country = []string{pick("DE", "US", "ÜÜ")}
		tmpl.Subject.OrganizationalUnit = []string{str()}
		tmpl.Subject.Locality, tmpl.Subject.Province = []string{str()}, []string{str()}
		tmpl.Subject.SerialNumber = str()
	}
	for range rnd.IntN(3) {
		oids := []asn1.ObjectIdentifier{
			{1, 2, 840, 113549, 1, 9, 1}, {0, 9, 2342, 19200300, 100, 1, 25}, {0, 9, 2342, 19200300, 100, 1, 1},
			{2, 5, 4, 42}, {2, 5, 4, 200}, {1, 3, 6, 1, 4, 1, 311, 60, 2, 1, 3}, {2, 5, 4, 4},
		}
		var v any = str()
		if rnd.IntN(6) == 0 {
			v = rnd.IntN(1000) // not a string: x509 only
		}
		tmpl.Subject.ExtraNames = append(tmpl.Subject.ExtraNames, pkix.AttributeTypeAndValue{Type: oids[rnd.IntN(len(oids))], Value: v})
	}
	for range rnd.IntN(4) {
		switch rnd.IntN(5) {
		case 0, 1:
			tmpl.DNSNames = append(tmpl.DNSNames, pick("www.example.com", "*.example.org", "bad name", "ü.example"))
		case 2:
			tmpl.EmailAddresses = append(tmpl.EmailAddresses, pick("a@example.com", "ö@x"))
		case 3:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP{10, 0, 0, byte(rnd.IntN(256))}, net.ParseIP("2001:db8::1"))
		case 4:
			u, _ := url.Parse(pick("https://example.com/x", "spiffe://trust/ns"))
			tmpl.URIs = append(tmpl.URIs, u)
		}
	}
	for range rnd.IntN(3) {
		oid := asn1.ObjectIdentifier{1, 2, 3, rnd.IntN(3)}
		if rnd.IntN(4) == 0 {
			oid = asn1.ObjectIdentifier{2, 5, 29, 37} // extended key usage
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oid, Critical: rnd.IntN(2) == 0, Value: []byte{5, 0}})
	}
	key := parseKeys[rnd.IntN(len(parseKeys))]
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		tmpl.SignatureAlgorithm = []x509.SignatureAlgorithm{0, x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512, x509.ECDSAWithSHA1}[rnd.IntN(5)]
	}
	if _, ok := key.(*rsa.PrivateKey); ok {
		tmpl.SignatureAlgorithm = []x509.SignatureAlgorithm{0, x509.SHA384WithRSA, x509.SHA512WithRSA, x509.SHA256WithRSAPSS}[rnd.IntN(4)]
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil // a template x509 will not encode (a duplicate extension, a name it refuses)
	}
	return der
}

// agree fails t unless ParseCSR answers der exactly as x509 does.
func agree(t testing.TB, der []byte) (fast bool) {
	t.Helper()
	want, wantErr := x509.ParseCertificateRequest(der)
	got, fast := parseCSRFast(der)
	if !fast {
		return false
	}
	if wantErr != nil {
		t.Fatalf("the fast path accepted a CSR x509 refuses (%v): %x", wantErr, der)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the fast path differs from x509 on %x:\n got %#v\nwant %#v", der, got, want)
	}
	return true
}

// TestParseCSRAgreesWithX509 holds the fast path to x509's answers, field
// for field, over thousands of random CSRs and of corruptions of them:
// wherever it answers, it answers what x509 does.
func TestParseCSRAgreesWithX509(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := mrand.New(mrand.NewPCG(1, seed))
	var made, fast, mutated, mutatedFast int
	for made < 3000 {
		der := randomCSR(t, rnd)
		if der == nil {
			continue
		}
		made++
		if agree(t, der) {
			fast++
		}
		for range 4 {
			m := append([]byte(nil), der...)
			switch rnd.IntN(3) {
			case 0:
				m[rnd.IntN(len(m))] ^= byte(1 << rnd.IntN(8))
			case 1:
				m[rnd.IntN(len(m))] = byte(rnd.IntN(256))
			case 2:
				m = m[:rnd.IntN(len(m))]
			}
			mutated++
			if agree(t, m) {
				mutatedFast++
			}
		}
	}
	t.Logf("%d random CSRs, %d on the fast path; %d corruptions, %d of them on the fast path", made, fast, mutated, mutatedFast)
	// The test means something only if both paths were taken often.
	if fast < made/4 || fast > made*9/10 || mutatedFast < 100 {
		t.Fatalf("fast path taken for %d of %d CSRs and %d of %d corruptions: the shapes tested are off", fast, made, mutatedFast, mutated)
	}
}

// The CSRs clients send most (Go's, OpenSSL's defaults: P-256 or RSA, a
// subject, DNS SANs) take the fast path.
func TestParseCSRTakesTheFastPathForTheUsualShape(t *testing.T) {
	for _, key := range parseKeys {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:  pkix.Name{CommonName: "www.example.com", Organization: []string{"Example"}, Country: []string{"DE"}},
			DNSNames: []string{"www.example.com", "example.com"}, IPAddresses: []net.IP{{192, 0, 2, 1}},
		}, key)
		if err != nil {
			t.Fatal(err)
		}
		if !agree(t, der) {
			t.Errorf("a %T CSR of the usual shape went to x509", key)
		}
		got, err := ParseCSR(der)
		if err != nil || got.Subject.CommonName != "www.example.com" || len(got.DNSNames) != 2 || got.CheckSignature() != nil {
			t.Errorf("ParseCSR: %+v, %v", got, err)
		}
	}
	if _, err := ParseCSR([]byte{0x30, 0x00}); err == nil {
		t.Error("an empty SEQUENCE parsed")
	}
}

// FuzzParseCSR: on any input, ParseCSR's fast path answers as x509 does.
func FuzzParseCSR(f *testing.F) {
	rnd := mrand.New(mrand.NewPCG(2, 2))
	for n := 0; n < 40; {
		if der := randomCSR(f, rnd); der != nil {
			f.Add(der)
			n++
		}
	}
	f.Fuzz(func(t *testing.T, der []byte) { agree(t, der) })
}

// BenchmarkParseCSR: a P-256 CSR with a subject and two DNS names, as the
// bench sends, through ParseCSR and through x509.
func BenchmarkParseCSR(b *testing.B) {
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "bench.example.com"}, DNSNames: []string{"bench.example.com", "www.bench.example.com"},
	}, parseKeys[0])
	b.Run("ParseCSR", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ParseCSR(der)
		}
	})
	b.Run("x509", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			x509.ParseCertificateRequest(der)
		}
	})
}

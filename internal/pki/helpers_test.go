package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The RSA-2048 material in testdata was made with the openssl CLI (so the
// tests also see a CSR and keys that Go did not produce):
//
//	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2048.pkcs8.pem
//	openssl pkey -in rsa2048.pkcs8.pem -traditional -out rsa2048.pkcs1.pem
//	openssl req -new -key rsa2048.pkcs8.pem -subj "/CN=rsa.certflow.test/O=Certflow Tests" -out rsa2048.csr.pem
//	openssl req -x509 -key rsa2048.pkcs8.pem -subj "/CN=openssl.certflow.test/O=Certflow Tests" \
//	    -set_serial 0x7A3F00C1D2E3F4A5 -days 3650 -out openssl-cert.pem
//
// They are test keys and protect nothing.

// readPEM returns the DER of the single PEM block in testdata/name and
// checks its label.
func readPEM(t *testing.T, name, wantType string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != wantType {
		t.Fatalf("testdata/%s: want one PEM %q block", name, wantType)
	}
	return block.Bytes
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testRSAKey is the openssl-made RSA-2048 key, parsed with crypto/x509
// directly (not with the code under test).
func testRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := x509.ParsePKCS8PrivateKey(readPEM(t, "rsa2048.pkcs8.pem", "PRIVATE KEY"))
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PrivateKey)
}

func newECKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newEd25519Key(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newCSR returns the DER of a CSR for cn signed by key.
func newCSR(t *testing.T, key crypto.Signer, cn string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: cn, Organization: []string{"Certflow Tests"}},
		DNSNames: []string{cn},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// testChain is a real three-certificate chain: root → intermediate → leaf.
type testChain struct {
	root, intermediate, leaf []byte
}

func newTestChain(t *testing.T) testChain {
	t.Helper()
	now := time.Now()
	rootKey := newECKey(t, elliptic.P256())
	interKey := newECKey(t, elliptic.P256())
	leafKey := newECKey(t, elliptic.P256())

	create := func(tmpl, parent *x509.Certificate, pub, signer any) []byte {
		t.Helper()
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1001),
		Subject:               pkix.Name{CommonName: "Certflow Test Root", Organization: []string{"Certflow Tests"}, Country: []string{"DE"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	rootDER := create(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	rootCert, err := x509.ParseCertificate(rootDER)
	if err != nil {
		t.Fatal(err)
	}
	interTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(2002),
		Subject:               pkix.Name{CommonName: "Certflow Test Issuing CA", Organization: []string{"Certflow Tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	interDER := create(interTmpl, rootCert, interKey.Public(), rootKey)
	interCert, err := x509.ParseCertificate(interDER)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(3003),
		Subject:      pkix.Name{CommonName: "leaf.certflow.test"},
		DNSNames:     []string{"leaf.certflow.test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER := create(leafTmpl, interCert, leafKey.Public(), interKey)

	// Make sure it really is a chain.
	leafCert, err := x509.ParseCertificate(leafDER)
	if err != nil {
		t.Fatal(err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(rootCert)
	inters.AddCert(interCert)
	if _, err := leafCert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: "leaf.certflow.test"}); err != nil {
		t.Fatalf("test chain does not verify: %v", err)
	}
	return testChain{root: rootDER, intermediate: interDER, leaf: leafDER}
}

// hmacOf is HMAC-SHA256 of data under key.
func hmacOf(key, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(data)
	return h.Sum(nil)
}

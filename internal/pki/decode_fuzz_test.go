package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/certflow/certflow/internal/pki"
)

// FuzzCSRDecoding: DecodeCSR never panics, every failure wraps ErrCSR,
// and what it accepts re-parses to the same subject.
func FuzzCSRDecoding(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "fuzz.example.com"}}, key)
	for _, seed := range []string{
		base64.StdEncoding.EncodeToString(der),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		base64.StdEncoding.EncodeToString(der[:len(der)/2]),
		"", "-----BEGIN", "not base64 !", "MII=",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, csr, err := pki.DecodeCSR(s)
		if err != nil {
			if !errors.Is(err, pki.ErrCSR) {
				t.Fatalf("error does not wrap ErrCSR: %v", err)
			}
			return
		}
		again, err := x509.ParseCertificateRequest(got)
		if err != nil || string(again.RawSubject) != string(csr.RawSubject) {
			t.Fatalf("accepted DER does not re-parse to the same subject: %v", err)
		}
		_ = pki.VerifyCSR(csr)
		pki.DescribeKey(csr.PublicKey)
		pki.CurveName(csr.PublicKey)
	})
}

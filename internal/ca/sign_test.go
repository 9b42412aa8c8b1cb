package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/pki"
)

// Every encoder (each shortcut on, each off) must make what
// x509.CreateCertificate makes: the same TBSCertificate and signature
// algorithm, with a signature that verifies.
func TestCreateCertificateMatchesX509(t *testing.T) {
	t.Parallel()
	ec256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, key := range map[string]crypto.Signer{"p256": ec256, "p384": ec384, "rsa": rsaKey} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			now := time.Now().Truncate(time.Second)
			caTmpl := &x509.Certificate{
				SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"},
				NotBefore: now, NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
				KeyUsage: x509.KeyUsageCertSign,
			}
			caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, key.Public(), key)
			if err != nil {
				t.Fatal(err)
			}
			parent, _ := x509.ParseCertificate(caDER)
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "svc.example.com"},
				NotBefore: now, NotAfter: now.Add(time.Hour), DNSNames: []string{"svc.example.com"},
				KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				BasicConstraintsValid: true,
			}
			want, err := x509.CreateCertificate(rand.Reader, tmpl, parent, leafKey.Public(), key)
			if err != nil {
				t.Fatal(err)
			}
			w, err := x509.ParseCertificate(want)
			if err != nil {
				t.Fatal(err)
			}
			for encName, enc := range testEncoders {
				got, err := enc.create(rand.Reader, tmpl, parent, leafKey.Public(), key)
				if err != nil {
					t.Fatalf("%s: %v", encName, err)
				}
				g, err := x509.ParseCertificate(got)
				if err != nil {
					t.Fatalf("%s: %v", encName, err)
				}
				if !bytes.Equal(g.RawTBSCertificate, w.RawTBSCertificate) || g.SignatureAlgorithm != w.SignatureAlgorithm {
					t.Fatalf("%s: differs from x509.CreateCertificate: alg %v, want %v", encName, g.SignatureAlgorithm, w.SignatureAlgorithm)
				}
				if err := g.CheckSignatureFrom(parent); err != nil {
					t.Fatalf("%s: %v", encName, err)
				}
				// The DER is canonical: re-encoding the parts yields it again.
				if len(got) != len(g.Raw) {
					t.Fatalf("%s: trailing bytes after the certificate", encName)
				}
			}
		})
	}
}

// A signer whose signatures do not verify is caught, even on a
// self-signed template (no parent key: the signer's own is checked).
func TestSignCertificateChecksASelfSignedTemplate(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: now, NotAfter: now.Add(time.Hour)}
	for name, enc := range testEncoders {
		if _, err := enc.sign(rand.Reader, tmpl, tmpl, key.Public(), badSigner{key}); err == nil || (enc.capture != nil && !errors.Is(err, ErrBadSignature)) {
			t.Fatalf("%s: a signer returning bad signatures: %v, want ErrBadSignature", name, err)
		}
		if _, err := enc.sign(rand.Reader, tmpl, tmpl, key.Public(), key); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// testEncoders are the encoders a built-in CA may run with: the switch on
// or off, and what the start-up check leaves when a shortcut fails it.
var testEncoders = map[string]encoder{
	"hand-built leaves, capture":       handEncoder,
	"capture (speed.leaf_encoder off)": captureEncoder,
	"hand-built leaves, x509 signs":    {leaf: leafTBS},
	"x509 signs everything":            {},
}

type badSigner struct{ *ecdsa.PrivateKey }

func (b badSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return other.Sign(r, digest, opts)
}

// What the built-in CA issues verifies with OpenSSL up to its root.
func TestIssuedCertificatesVerifyWithOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("no openssl on PATH")
	}
	t.Parallel()
	for _, keyType := range []string{"ecdsa-p256", "rsa-2048"} {
		t.Run(keyType, func(t *testing.T) {
			t.Parallel()
			raw := make([]byte, 32)
			rand.Read(raw)
			kek, _ := pki.NewKEK(raw)
			dir := t.TempDir()
			b, _, err := OpenBuiltin(dir, "OpenSSL", keyType, kek, true)
			if err != nil {
				t.Fatal(err)
			}
			leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			issued, err := b.Issue(context.Background(), &Request{
				Subject: pkix.Name{CommonName: "svc.example.com"}, PublicKey: leafKey.Public(),
				DNSNames: []string{"svc.example.com"}, Validity: time.Hour,
				KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				t.Fatal(err)
			}
			write := func(name string, der []byte) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			leaf, inter, root := write("leaf.pem", issued.Chain[0]), write("issuing.pem", issued.Chain[1]), write("root.pem", issued.Chain[2])
			out, err := exec.Command(openssl, "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", root, "-untrusted", inter, leaf).CombinedOutput()
			if err != nil {
				t.Fatalf("openssl verify: %v\n%s", err, out)
			}
		})
	}
}

package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// issuedChain makes root → leaf for a key of spec and returns the key and
// the chain's DER, leaf first.
func issuedChain(t *testing.T, spec KeySpec) (crypto.Signer, [][]byte) {
	t.Helper()
	caKey, _ := KeySpec{Type: "ECC", Curve: "P-256"}.Generate()
	key, err := spec.Generate()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "PKCS12 Test Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "p12.example.com"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), DNSNames: []string{"p12.example.com"}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, [][]byte{leafDER, caDER}
}

// opensslPKCS12 runs openssl pkcs12 on the archive and returns its output.
func opensslPKCS12(t *testing.T, pfx []byte, password string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.p12")
	if err := os.WriteFile(path, pfx, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "pkcs12", "-in", path, "-passin", "pass:"+password, "-nodes", "-info").CombinedOutput()
	return string(out), err
}

func TestEncodePKCS12IsReadByOpenSSLAndGo(t *testing.T) {
	t.Parallel()
	const password = "correct horse battery"
	for _, tc := range []struct {
		name         string
		spec         KeySpec
		includeChain bool
		friendlyName string
		leafFirst    bool
	}{
		{name: "RSA leaf only", spec: KeySpec{Type: "RSA", Bits: 2048}},
		{name: "ECC with chain and friendly name", spec: KeySpec{Type: "ECC", Bits: 384, Curve: "P-384"}, includeChain: true, friendlyName: "Web Server 2026 prod"},
		{name: "ECC with chain, end entity first", spec: KeySpec{Type: "ECC", Bits: 256, Curve: "P-256"}, includeChain: true, leafFirst: true, friendlyName: "x"},
		{name: "Ed25519 with chain", spec: KeySpec{Type: "Ed25519", Bits: 256}, includeChain: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, chain := issuedChain(t, tc.spec)
			pfx, err := EncodePKCS12(key, chain, password, PKCS12Options{IncludeChain: tc.includeChain, FriendlyName: tc.friendlyName, EndEntityFirst: tc.leafFirst})
			if err != nil {
				t.Fatal(err)
			}
			out, err := opensslPKCS12(t, pfx, password)
			if tc.spec.Type == "Ed25519" && err != nil && strings.Contains(out, "unsupported") {
				t.Skip("this openssl cannot read Ed25519 keys")
			}
			if err != nil {
				t.Fatalf("openssl pkcs12: %v\n%s", err, out)
			}
			for _, want := range []string{"PBES2, PBKDF2, AES-256-CBC", "MAC: sha256", "-----BEGIN PRIVATE KEY-----", "subject=CN = p12.example.com"} {
				if !strings.Contains(out, want) {
					t.Errorf("openssl output lacks %q:\n%s", want, out)
				}
			}
			if got, want := strings.Count(out, "-----BEGIN CERTIFICATE-----"), map[bool]int{false: 1, true: 2}[tc.includeChain]; got != want {
				t.Errorf("%d certificates in the archive, want %d", got, want)
			}
			// The bags in order: the key, then the certificates root first
			// and the leaf last (Keyfactor's order), or the leaf first when
			// asked; the friendly name on the key and the leaf.
			blocks, err := pkcs12.ToPEM(pfx, password)
			if tc.spec.Type == "Ed25519" {
				blocks, err = nil, nil // go-pkcs12's ToPEM knows no Ed25519 keys; openssl read it above
			}
			if err != nil {
				t.Fatal(err)
			}
			var order []string
			for _, b := range blocks {
				what, wantName := b.Type, tc.friendlyName
				if b.Type == "CERTIFICATE" {
					c, _ := x509.ParseCertificate(b.Bytes)
					if what = c.Subject.CommonName; what != "p12.example.com" {
						wantName = "" // a CA certificate is not labelled
					}
				}
				if b.Headers["friendlyName"] != wantName {
					t.Errorf("%s has friendlyName %q, want %q", what, b.Headers["friendlyName"], wantName)
				}
				order = append(order, what)
			}
			want := "PRIVATE KEY|p12.example.com"
			switch {
			case tc.includeChain && tc.leafFirst:
				want = "PRIVATE KEY|p12.example.com|PKCS12 Test Root"
			case tc.includeChain:
				want = "PRIVATE KEY|PKCS12 Test Root|p12.example.com"
			}
			if got := strings.Join(order, "|"); blocks != nil && got != want {
				t.Errorf("bags %s, want %s", got, want)
			}
			// The key openssl prints is the certificate's.
			block, _ := pem.Decode([]byte(out[strings.Index(out, "-----BEGIN PRIVATE KEY-----"):]))
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			leaf, _ := x509.ParseCertificate(chain[0])
			if !SamePublicKey(PublicKeyOf(k), leaf.PublicKey) {
				t.Fatal("the archive's key does not match its certificate")
			}
			// And Go's reader (which takes the first certificate for the
			// leaf) agrees when the leaf comes first.
			if !tc.includeChain || tc.leafFirst {
				gk, gleaf, cas, err := pkcs12.DecodeChain(pfx, password)
				if err != nil || !SamePublicKey(PublicKeyOf(gk), gleaf.PublicKey) || len(cas) != map[bool]int{false: 0, true: 1}[tc.includeChain] {
					t.Fatalf("go-pkcs12 DecodeChain: %v (%d CA certificates)", err, len(cas))
				}
			}
			if _, err := opensslPKCS12(t, pfx, "wrong password!"); err == nil {
				t.Fatal("openssl opened the archive with a wrong password")
			}
		})
	}
}

func TestEncodePKCS12Refusals(t *testing.T) {
	t.Parallel()
	key, chain := issuedChain(t, KeySpec{Type: "ECC", Curve: "P-256"})
	other, _ := KeySpec{Type: "ECC", Curve: "P-256"}.Generate()
	for _, tc := range []struct {
		name     string
		key      any
		password string
		want     string
	}{
		{"an empty password", key, "", "required"},
		{"a short password", key, "short", "at least 8"},
		{"a password outside the BMP", key, "emoji 😀 password", "cannot encode"},
		{"a key that is not the certificate's", other, "long enough pw", "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := EncodePKCS12(tc.key, chain, tc.password, PKCS12Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

package pki

import (
	"bytes"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned is a self-signed certificate whose subject has common name
// cn and organization org.
func selfSigned(t *testing.T, cn, org string) []byte {
	t.Helper()
	key := newECKey(t, elliptic.P256())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{org}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestPolicyVisibilitySubjectHeaderCannotBeForged: a common name carrying
// line breaks, NUL and other control characters is rendered with RFC 4514
// hex escapes, so the PEM entry keeps exactly one subject= line, followed
// by its certificate.
func TestPolicyVisibilitySubjectHeaderCannotBeForged(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, cn, want string
	}{
		{"a newline forging a second header", "a\nsubject=CN=evil", `subject=CN=a\0Asubject=CN=evil,O=Org`},
		{"a forged PEM block", "x\n-----BEGIN CERTIFICATE-----\nAAAA", `subject=CN=x\0A-----BEGIN CERTIFICATE-----\0AAAAA,O=Org`},
		{"NUL", "a\x00b.example.com", `subject=CN=a\00b.example.com,O=Org`},
		{"CR, tab, DEL", "a\rb\tc\x7f", `subject=CN=a\0Db\09c\7F,O=Org`},
		{"C1 next-line and line separator", "a\u0085b\u2028c", `subject=CN=a\C2\85b\E2\80\A8c,O=Org`},
		{"RFC 4514 specials stay backslash-escaped", `a,b+c\0A`, `subject=CN=a\,b\+c\\0A,O=Org`},
		{"printable UTF-8 stays as it is", "café.example.com", "subject=CN=café.example.com,O=Org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			der := selfSigned(t, tt.cn, "Org")
			out, err := EncodeChain([][]byte{der}, FormatPEM, true)
			if err != nil {
				t.Fatal(err)
			}
			header, got := splitEntry(t, out[0]) // fails unless one header line, then the block
			if header != tt.want {
				t.Errorf("header %q, want %q", header, tt.want)
			}
			if !bytes.Equal(got, der) {
				t.Error("the PEM block is not the certificate")
			}
			if strings.Count("\n"+out[0], "\nsubject=") != 1 || strings.ContainsAny(header, "\x00\r\n") {
				t.Errorf("entry %q: more than its one header line", out[0])
			}
		})
	}
}

// TestSubjectHeaderMatchesOpenSSL holds the escaping of an ASCII subject
// to openssl's own (x509 -subject -nameopt RFC2253, whose esc_ctrl writes
// control characters as \XX).
func TestSubjectHeaderMatchesOpenSSL(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	der := selfSigned(t, "a\nsubject=CN=evil\x00z\r\x7f,+\\", "Org")
	out, err := EncodeChain([][]byte{der}, FormatPEM, true)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "c.pem")
	if err := os.WriteFile(file, []byte(out[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := exec.Command("openssl", "x509", "-in", file, "-noout", "-subject", "-nameopt", "RFC2253").Output()
	if err != nil {
		t.Fatal(err)
	}
	header, _, _ := strings.Cut(out[0], "\n")
	if header != strings.TrimSpace(string(want)) {
		t.Fatalf("certflow: %q\nopenssl:  %q", header, want)
	}
}

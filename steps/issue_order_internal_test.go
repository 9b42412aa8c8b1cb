package steps

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/ca"
)

// issuedBy makes a CA and a leaf it signed for pub with the names of
// tmpl: what an external CA might return.
func issuedBy(t *testing.T, pub any, tmpl x509.Certificate) *ca.Issued {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test External CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(2), time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, caCert, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &ca.Issued{Leaf: leaf, Chain: [][]byte{der, caDER}}
}

// An external CA's certificate is released only for the names policy
// approved (the CSR's): a CA that adds a name — in the SANs, the CN, or
// as an e-mail or URI SAN — gets its certificate refused, even when its
// own order lists the name too (the order is the CA's word, not policy's).
func TestAnExternalCertificateNamingMoreThanTheCSRIsRefused(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "WWW.example.com."},
		DNSNames: []string{"www.example.com", "api.example.com."}, IPAddresses: []net.IP{net.ParseIP("192.0.2.7")},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(csrDER)
	u, _ := url.Parse("https://evil.example.net/")
	for _, tc := range []struct {
		name string
		leaf x509.Certificate
		want string // "" = accepted
	}{
		{"the CSR's names", x509.Certificate{Subject: pkix.Name{CommonName: "www.example.com"}, DNSNames: []string{"www.example.com", "API.example.com"}, IPAddresses: []net.IP{net.ParseIP("::ffff:192.0.2.7")}}, ""},
		{"fewer names", x509.Certificate{DNSNames: []string{"www.example.com"}}, ""},
		{"an added DNS name", x509.Certificate{DNSNames: []string{"www.example.com", "evil.example.net"}}, "evil.example.net"},
		{"an added IP", x509.Certificate{DNSNames: []string{"www.example.com"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}, "127.0.0.1"},
		{"another CN", x509.Certificate{Subject: pkix.Name{CommonName: "evil.example.net"}, DNSNames: []string{"www.example.com"}}, "evil.example.net"},
		{"an e-mail SAN", x509.Certificate{DNSNames: []string{"www.example.com"}, EmailAddresses: []string{"ceo@example.com"}}, "ceo@example.com"},
		{"a URI SAN", x509.Certificate{DNSNames: []string{"www.example.com"}, URIs: []*url.URL{u}}, "https://evil.example.net/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := issuedForCSR(issuedBy(t, &key.PublicKey, tc.leaf), csr)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v; want a refusal naming %s", err, tc.want)
			}
		})
	}
}

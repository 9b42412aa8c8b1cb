package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"net"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

func TestParseCSRListsSubjectAndSANs(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://example.com/web")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "web.example.com", Organization: []string{"Example"}, OrganizationalUnit: []string{"IT"}, Country: []string{"US"}},
		DNSNames: []string{"web.example.com", "www.example.com"}, IPAddresses: []net.IP{net.ParseIP("192.0.2.1")},
		EmailAddresses: []string{"pki@example.com"}, URIs: []*url.URL{u},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, csr := range []string{
		base64.StdEncoding.EncodeToString(der),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
	} {
		r := cf.Do(t, "POST", "/Enrollment/CSR/Parse", map[string]any{"CSR": csr}, "Authorization", "Bearer "+testutil.AliceToken)
		var got []string
		if r.Status != http.StatusOK {
			t.Fatalf("parse: %d %s", r.Status, r.Body)
		}
		r.JSON(t, &got)
		want := []string{"C=US", "O=Example", "OU=IT", "CN=web.example.com",
			"DNS Name=web.example.com", "DNS Name=www.example.com", "IP Address=192.0.2.1",
			"RFC822 Name=pki@example.com", "URL=spiffe://example.com/web"}
		if !slices.Equal(got, want) {
			t.Fatalf("parse answered %q\nwant %q", got, want)
		}
	}
	tampered := append([]byte(nil), der...)
	tampered[len(tampered)-3] ^= 0xff
	for name, tc := range map[string]struct {
		body any
		code string
		msg  string
	}{
		"missing CSR":              {map[string]any{}, keyfactor.CodeInvalidField, "CSR: required"},
		"garbled CSR":              {map[string]any{"CSR": "nope"}, keyfactor.CodeInvalidCSR, "CSR:"},
		"CSR that does not verify": {map[string]any{"CSR": base64.StdEncoding.EncodeToString(tampered)}, keyfactor.CodeInvalidCSR, "CSR: invalid CSR: signature"},
		"CSR not a string":         {map[string]any{"CSR": 7}, keyfactor.CodeInvalidField, "CSR"},
		"not JSON":                 {"{", keyfactor.CodeInvalidField, "request body"},
	} {
		t.Run(name, func(t *testing.T) {
			assertError(t, cf.Do(t, "POST", "/Enrollment/CSR/Parse", tc.body), 400, tc.code, tc.msg)
		})
	}
	if r := cf.Do(t, "POST", "/Enrollment/CSR/Parse", map[string]any{"CSR": base64.StdEncoding.EncodeToString(der)}, "Authorization", ""); r.Status != http.StatusUnauthorized {
		t.Fatalf("an anonymous parse answered %d", r.Status)
	}
}

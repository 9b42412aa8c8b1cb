package enroll

import (
	"crypto/x509"
	"net"
	"net/url"
	"strings"
	"testing"
)

// sanDifference compares SAN sets as a TLS client reads them: every type
// counts, order and duplicates do not, DNS names and e-mail domains
// ignore case, IP addresses compare by value; the request's own SANs and
// the CN under RFC 2818 enforcement count as what the renewal would
// certify.
func TestSANDifference(t *testing.T) {
	uri := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	leaf := &x509.Certificate{
		DNSNames:       []string{"a.example.com", "b.example.com"},
		IPAddresses:    []net.IP{net.ParseIP("192.0.2.1").To4()},
		EmailAddresses: []string{"Ops@example.com"},
		URIs:           []*url.URL{uri("spiffe://example.com/a")},
	}
	csr := func(change func(*x509.CertificateRequest)) *x509.CertificateRequest {
		c := &x509.CertificateRequest{
			DNSNames: []string{"a.example.com", "b.example.com"}, IPAddresses: []net.IP{net.ParseIP("192.0.2.1")},
			EmailAddresses: []string{"Ops@example.com"}, URIs: []*url.URL{uri("spiffe://example.com/a")},
		}
		if change != nil {
			change(c)
		}
		return c
	}
	for _, tc := range []struct {
		name  string
		csr   *x509.CertificateRequest
		sans  map[string][]string
		addCN bool
		want  string // "" for the same set, else a fragment of the difference
	}{
		{"the same", csr(nil), nil, false, ""},
		{"reordered, repeated, upper-case DNS", csr(func(c *x509.CertificateRequest) {
			c.DNSNames = []string{"B.EXAMPLE.COM", "a.example.com", "A.Example.Com"}
		}), nil, false, ""},
		{"an IPv4-mapped IPv6 address", csr(func(c *x509.CertificateRequest) { c.IPAddresses = []net.IP{net.ParseIP("::ffff:192.0.2.1")} }), nil, false, ""},
		{"the e-mail domain in upper case", csr(func(c *x509.CertificateRequest) { c.EmailAddresses = []string{"Ops@EXAMPLE.COM"} }), nil, false, ""},
		{"a name the request added, not in the CSR", csr(func(c *x509.CertificateRequest) { c.DNSNames = c.DNSNames[:1] }), map[string][]string{"dns": {"b.example.com"}}, false, ""},
		{"the e-mail local part in another case", csr(func(c *x509.CertificateRequest) { c.EmailAddresses = []string{"ops@example.com"} }), nil, false, `adds "email:ops@example.com"; lacks "email:Ops@example.com"`},
		{"an extra DNS name", csr(func(c *x509.CertificateRequest) { c.DNSNames = append(c.DNSNames, "evil.example.net") }), nil, false, `adds "dns:evil.example.net"`},
		{"an extra DNS name from the request's SANs", csr(nil), map[string][]string{"dns": {"evil.example.net"}}, false, `adds "dns:evil.example.net"`},
		{"an extra IP", csr(func(c *x509.CertificateRequest) { c.IPAddresses = append(c.IPAddresses, net.ParseIP("::1")) }), nil, false, `adds "ip:::1"`},
		{"an extra URI", csr(func(c *x509.CertificateRequest) { c.URIs = append(c.URIs, uri("spiffe://example.com/b")) }), nil, false, `adds "uri:spiffe://example.com/b"`},
		{"a missing URI", csr(func(c *x509.CertificateRequest) { c.URIs = nil }), nil, false, `lacks "uri:spiffe://example.com/a"`},
		{"the CN added under RFC 2818", csr(func(c *x509.CertificateRequest) { c.Subject.CommonName = "c.example.com" }), nil, true, `adds "dns:c.example.com"`},
		{"the CN already a SAN under RFC 2818", csr(func(c *x509.CertificateRequest) { c.Subject.CommonName = "A.example.com" }), nil, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := sanDifference(leaf, tc.csr, tc.sans, tc.addCN)
			if (got == "") != (tc.want == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("sanDifference = %q, want %q", got, tc.want)
			}
		})
	}
}

package acme_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/acme"
	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
)

func csrOf(t *testing.T, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	return csr
}

func TestIdentifiers(t *testing.T) {
	u, _ := url.Parse("spiffe://example.test/a")
	for _, c := range []struct {
		name      string
		csr       x509.CertificateRequest
		challenge string
		want      []string
		refused   string // in the error
	}{
		{name: "SANs, CN among them", csr: x509.CertificateRequest{Subject: pkix.Name{CommonName: "a.example.test"}, DNSNames: []string{"a.example.test", "B.example.test"}},
			want: []string{"a.example.test", "b.example.test"}},
		{name: "CN not among SANs", csr: x509.CertificateRequest{Subject: pkix.Name{CommonName: "cn.example.test"}, DNSNames: []string{"a.example.test"}},
			want: []string{"a.example.test", "cn.example.test"}},
		{name: "CN only", csr: x509.CertificateRequest{Subject: pkix.Name{CommonName: "cn.example.test"}}, want: []string{"cn.example.test"}},
		{name: "CN not a host name", csr: x509.CertificateRequest{Subject: pkix.Name{CommonName: "Jane Doe"}, DNSNames: []string{"a.example.test"}},
			want: []string{"a.example.test"}},
		{name: "IP SANs", csr: x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("192.0.2.1"), net.ParseIP("2001:db8::1")}},
			want: []string{"192.0.2.1", "2001:db8::1"}},
		{name: "wildcard by dns-01", csr: x509.CertificateRequest{DNSNames: []string{"*.example.test"}}, challenge: config.ChallengeDNS01,
			want: []string{"*.example.test"}},
		{name: "wildcard by http-01", csr: x509.CertificateRequest{DNSNames: []string{"*.example.test"}}, refused: `wildcard "*.example.test"`},
		{name: "wildcard CN by http-01", csr: x509.CertificateRequest{Subject: pkix.Name{CommonName: "*.example.test"}}, refused: `wildcard "*.example.test"`},
		{name: "email", csr: x509.CertificateRequest{DNSNames: []string{"a.example.test"}, EmailAddresses: []string{"jane@example.test"}}, refused: `email address "jane@example.test"`},
		{name: "URI", csr: x509.CertificateRequest{DNSNames: []string{"a.example.test"}, URIs: []*url.URL{u}}, refused: `URI "spiffe://example.test/a"`},
		{name: "no name", csr: x509.CertificateRequest{Subject: pkix.Name{CommonName: "nohost"}}, refused: "no DNS name or IP address"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := acme.Identifiers(csrOf(t, &c.csr), cmpOr(c.challenge, config.ChallengeHTTP01))
			if c.refused != "" {
				if !errors.Is(err, acme.ErrUnsupportedName) || !strings.Contains(err.Error(), c.refused) {
					t.Fatalf("got %v, %v; want ErrUnsupportedName naming %s", got, err, c.refused)
				}
				return
			}
			if err != nil || !slices.Equal(got, c.want) {
				t.Fatalf("got %v, %v; want %v", got, err, c.want)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestPlaceRefusesBeforeReachingTheCA(t *testing.T) {
	e := newEnv(t)
	// No CA listens here: a refusal must come before any exchange.
	a := e.open(t, "nowhere", acmeConfig("https://127.0.0.1:1/dir", ""))
	if _, err := a.Place(context.Background(), &ca.Request{CSR: []byte("not a CSR")}); err == nil || !strings.Contains(err.Error(), "CSR does not parse") {
		t.Fatalf("Place of a bad CSR: %v", err)
	}
	req := &ca.Request{CSR: func() []byte {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{EmailAddresses: []string{"a@example.test"}}, k)
		return der
	}()}
	if _, err := a.Place(context.Background(), req); !errors.Is(err, acme.ErrUnsupportedName) {
		t.Fatalf("Place of an email CSR: %v; want ErrUnsupportedName", err)
	}
	// The CA unreachable: a plain error (try again), not a problem.
	_, err := a.Place(context.Background(), request(t, "a.example.test", "a.example.test"))
	var p *ca.Problem
	var ra *ca.RetryAfterError
	if err == nil || errors.As(err, &p) || errors.As(err, &ra) {
		t.Fatalf("Place with the CA unreachable: %v; want a plain error", err)
	}
	if _, err := a.Advance(context.Background(), req, ca.Order{URL: "https://127.0.0.1:1/order/1", State: []byte("{not json")}); err == nil || !strings.Contains(err.Error(), "state does not decode") {
		t.Fatalf("Advance with a corrupt state: %v", err)
	}
}

func TestOpenChecksItsSettings(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	notPEM := dir + "/bundle.pem"
	os.WriteFile(notPEM, []byte("hello"), 0o644)
	for _, c := range []struct {
		name string
		cfg  func(*config.ACME)
		want string
	}{
		{"plain http directory", func(c *config.ACME) { c.Directory = "http://127.0.0.1:1/dir" }, "acme.directory"},
		{"missing bundle", func(c *config.ACME) { c.CABundle = dir + "/none.pem" }, "acme.ca_bundle"},
		{"bundle without PEM", func(c *config.ACME) { c.CABundle = notPEM }, "holds no PEM certificate"},
		{"missing EAB key file", func(c *config.ACME) {
			c.EAB = &config.EAB{KeyID: "k", HMACKeyFile: dir + "/none"}
		}, "hmac_key_file"},
		{"EAB key not base64url", func(c *config.ACME) {
			c.EAB = &config.EAB{KeyID: "k", HMACKey: "not base64!"}
		}, "acme.external_account_binding.hmac_key: want"},
		{"EAB key too short", func(c *config.ACME) {
			c.EAB = &config.EAB{KeyID: "k", HMACKey: "c2hvcnQ"}
		}, "at least 16 bytes"},
		{"unknown provider", func(c *config.ACME) { c.Challenge, c.DNS.Provider = config.ChallengeDNS01, "nosuch" }, `provider "nosuch" is not one certflow includes`},
		{"provider without its variables", func(c *config.ACME) { c.Challenge, c.DNS.Provider = config.ChallengeDNS01, "httpreq" }, "HTTPREQ_ENDPOINT"},
		{"cloudflare without its variables", func(c *config.ACME) { c.Challenge, c.DNS.Provider = config.ChallengeDNS01, "cloudflare" }, "CLOUDFLARE_"},
		{"hook to loopback", func(c *config.ACME) {
			c.Challenge = config.ChallengeDNS01
			c.DNS.Hook = &config.DNSHook{Present: config.DNSHookCall{URL: "http://127.0.0.1:9/p"}, Cleanup: config.DNSHookCall{URL: "https://dns.example.test/c"}}
		}, "hook.present.url"},
		{"hook to localhost", func(c *config.ACME) {
			c.Challenge = config.ChallengeDNS01
			c.DNS.Hook = &config.DNSHook{Present: config.DNSHookCall{URL: "https://dns.example.test/p"}, Cleanup: config.DNSHookCall{URL: "http://localhost/c"}}
		}, "hook.cleanup.url"},
		{"hook header file missing", func(c *config.ACME) {
			c.Challenge = config.ChallengeDNS01
			c.DNS.Hook = &config.DNSHook{Present: config.DNSHookCall{URL: "https://dns.example.test/p"}, Cleanup: config.DNSHookCall{URL: "https://dns.example.test/c"},
				HeaderFiles: map[string]string{"Authorization": dir + "/none"}}
		}, "hook.header_files.Authorization"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := acmeConfig("https://127.0.0.1:1/dir", "")
			c.cfg(cfg)
			_, err := acme.Open(&config.CA{Name: "x", Type: config.CATypeACME, ACME: cfg}, acme.Deps{Store: e.st, KEK: e.kek})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: %v; want an error naming %s", err, c.want)
			}
		})
	}
	if _, err := acme.Open(&config.CA{Name: "b", Type: config.CATypeBuiltin}, acme.Deps{Store: e.st, KEK: e.kek}); err == nil {
		t.Fatal("Open of a builtin CA succeeded")
	}
	if _, err := acme.Open(&config.CA{Name: "b", Type: config.CATypeACME, ACME: acmeConfig("https://127.0.0.1:1/dir", "")}, acme.Deps{}); err == nil {
		t.Fatal("Open without a store succeeded")
	}
}

func TestLegoProviderByName(t *testing.T) {
	// httpreq, a lego provider, posting to a real (local) server.
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.URL.Path+" "+string(b))
		mu.Unlock()
	}))
	defer srv.Close()
	t.Setenv("HTTPREQ_ENDPOINT", srv.URL)
	p, err := acme.NewPresenter(config.ACMEDNS{Provider: "httpreq"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Present(context.Background(), "a.example.test", "tok", "tok.thumb"); err != nil {
		t.Fatalf("Present: %v", err)
	}
	fqdn, value := acme.TXTRecord("a.example.test", "tok.thumb")
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || !strings.HasPrefix(got[0], "/present ") || !strings.Contains(got[0], fqdn) || !strings.Contains(got[0], value) {
		t.Fatalf("httpreq sent %q; want /present with %s=%s", got, fqdn, value)
	}
}

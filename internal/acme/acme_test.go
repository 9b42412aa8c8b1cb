package acme_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/acme"
	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
)

// env is one certflow deployment's shared state: a Redis prefix and a KEK.
type env struct {
	st  *store.Store
	kek *pki.KEK
}

func newEnv(t *testing.T) env {
	rdb, prefix := testutil.Redis(t)
	return env{st: store.New(rdb, prefix), kek: testutil.KEK(t)}
}

// acmeConfig is an acme CA's settings with the defaults config fills.
func acmeConfig(directory, bundle string) *config.ACME {
	return &config.ACME{
		Directory: directory, CABundle: bundle, Challenge: config.ChallengeHTTP01,
		PollInterval: time.Second, MaxPollInterval: 5 * time.Second, OrderTimeout: time.Hour, Timeout: 10 * time.Second,
	}
}

// open opens the CA as one process would: a fresh Authority on e.
func (e env) open(t *testing.T, name string, cfg *config.ACME) *acme.Authority {
	t.Helper()
	a, err := acme.Open(&config.CA{Name: name, Type: config.CATypeACME, ACME: cfg}, acme.Deps{Store: e.st, KEK: e.kek, Version: "test"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return a
}

// serveHTTP01 serves e's http-01 answers on a fresh loopback port, as
// the lead's port-80 listener will, and returns the port.
func (e env) serveHTTP01(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: acme.HTTP01Handler(e.st)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func request(t *testing.T, cn string, dns ...string) *ca.Request {
	der, _ := testutil.CSR(t, cn, dns...)
	return &ca.Request{CSR: der}
}

// drive advances o until the CA issues or refuses, as the issue step's
// polls would (waiting what the CA asks, at most a second here).
func drive(t *testing.T, a *acme.Authority, req *ca.Request, o ca.Order) (ca.Progress, error) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute) // a hang guard, not a speed check
	for {
		p, err := a.Advance(ctx, req, o)
		if err != nil || p.Issued != nil {
			return p, err
		}
		if len(p.Order.State) > 0 {
			o = p.Order
		}
		if time.Now().After(deadline) {
			t.Fatalf("order still %s after 2 minutes", p.Status)
		}
		time.Sleep(min(max(p.RetryAfter, 100*time.Millisecond), time.Second))
	}
}

// checkIssued checks the certificate against the request and Pebble's
// roots.
func checkIssued(t *testing.T, p ca.Progress, req *ca.Request, roots *x509.CertPool, names ...string) {
	t.Helper()
	if p.Status != "valid" || p.Issued == nil {
		t.Fatalf("progress %+v: want valid and issued", p)
	}
	csr, _ := x509.ParseCertificateRequest(req.CSR)
	leaf := p.Issued.Leaf
	if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
		t.Fatal("leaf does not certify the CSR's key")
	}
	got := slices.Sorted(slices.Values(leaf.DNSNames))
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Fatalf("leaf names %v, want %v", got, names)
	}
	if len(p.Issued.Chain) < 2 || !slices.Equal(p.Issued.Chain[0], leaf.Raw) {
		t.Fatalf("chain of %d certificates, leaf first: want leaf and intermediates", len(p.Issued.Chain))
	}
	inter := x509.NewCertPool()
	for _, der := range p.Issued.Chain[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: names[0]}); err != nil {
		t.Fatalf("leaf does not verify to the CA's root: %v", err)
	}
}

func TestIssueByHTTP01ThroughPebble(t *testing.T) {
	e := newEnv(t)
	port := e.serveHTTP01(t)
	pb := startPebble(t, pebbleOptions{HTTPPort: port})
	a := e.open(t, "pebble", acmeConfig(pb.DirectoryURL, pb.CABundle))

	req := request(t, "www.example.test", "www.example.test", "api.example.test")
	o, err := a.Place(context.Background(), req)
	if err != nil {
		t.Fatalf("Place: %v", err)
	}
	if o.URL == "" {
		t.Fatal("Place gave no order URL")
	}
	p, err := drive(t, a, req, o)
	if err != nil {
		t.Fatalf("Advance: %v", err)
	}
	checkIssued(t, p, req, pb.Roots(t), "www.example.test", "api.example.test")
	if p.Order.URL != o.URL {
		t.Fatalf("order URL changed: %s → %s", o.URL, p.Order.URL)
	}
	// Advancing a valid order again gives the same certificate.
	again, err := a.Advance(context.Background(), req, p.Order)
	if err != nil || again.Issued == nil || !again.Issued.Leaf.Equal(p.Issued.Leaf) {
		t.Fatalf("Advance of a valid order: %+v, %v; want the same certificate", again, err)
	}
	if got := pb.CertStatus(t, p.Issued.Leaf.SerialNumber.Text(16)); got != "Valid" {
		t.Fatalf("Pebble's status of the certificate: %q", got)
	}
	if _, err := a.Issue(context.Background(), req); !errors.Is(err, acme.ErrIssuesByOrder) {
		t.Fatalf("Issue: %v; want ErrIssuesByOrder", err)
	}
	_ = strconv.Itoa
}

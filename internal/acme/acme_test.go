package acme_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/acme"
	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/internal/testutil/acmetest"
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
	return driveSeen(t, a, req, o, func(ca.Progress) {})
}

// driveSeen is drive, showing seen each progress.
func driveSeen(t *testing.T, a *acme.Authority, req *ca.Request, o ca.Order, seen func(ca.Progress)) (ca.Progress, error) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute) // a hang guard, not a speed check
	for {
		p, err := a.Advance(ctx, req, o)
		seen(p)
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
	if p.Status != "valid" || p.Issued == nil || !p.Finishing {
		t.Fatalf("progress %+v: want valid, issued and finishing", p)
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
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: port, RetryAfterOrder: 3})
	a := e.open(t, "pebble", acmeConfig(pb.DirectoryURL, pb.CABundle))

	req := request(t, "www.example.test", "www.example.test", "api.example.test")
	o, err := a.Place(context.Background(), req)
	if err != nil {
		t.Fatalf("Place: %v", err)
	}
	if o.URL == "" {
		t.Fatal("Place gave no order URL")
	}
	// Pebble answers the finalization "processing", asking to be asked
	// again later (Retry-After): Advance reports it.
	var processing []ca.Progress
	p, err := driveSeen(t, a, req, o, func(p ca.Progress) {
		if p.Status == "processing" {
			processing = append(processing, p)
		}
	})
	if err != nil {
		t.Fatalf("Advance: %v", err)
	}
	checkIssued(t, p, req, pool(pb.Roots(t)), "www.example.test", "api.example.test")
	if len(processing) == 0 || processing[0].RetryAfter <= 0 || processing[0].RetryAfter > 3*time.Second {
		t.Fatalf("progress while processing: %+v; want Pebble's Retry-After (3s)", processing)
	}
	if p.Order.URL != o.URL {
		t.Fatalf("order URL changed: %s → %s", o.URL, p.Order.URL)
	}
	// Advancing a valid order again gives the same certificate.
	again, err := a.Advance(context.Background(), req, p.Order)
	if err != nil || again.Issued == nil || !again.Issued.Leaf.Equal(p.Issued.Leaf) {
		t.Fatalf("Advance of a valid order: %+v, %v; want the same certificate", again, err)
	}
	if got, _ := pb.CertStatus(t, p.Issued.Leaf.SerialNumber.Text(16)); got != "Valid" {
		t.Fatalf("Pebble's status of the certificate: %q", got)
	}
	if _, err := a.Issue(context.Background(), req); !errors.Is(err, acme.ErrIssuesByOrder) {
		t.Fatalf("Issue: %v; want ErrIssuesByOrder", err)
	}

	// An IP address identifier, validated over http-01 too.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, k)
	ipReq := &ca.Request{CSR: der}
	o, err = a.Place(context.Background(), ipReq)
	if err != nil {
		t.Fatalf("Place for an IP address: %v", err)
	}
	p, err = drive(t, a, ipReq, o)
	if err != nil {
		t.Fatalf("Advance for an IP address: %v", err)
	}
	if ips := p.Issued.Leaf.IPAddresses; len(ips) != 1 || !ips[0].Equal(net.IPv4(127, 0, 0, 1)) || len(p.Issued.Leaf.DNSNames) != 0 {
		t.Fatalf("certificate for %v %v; want 127.0.0.1 alone", ips, p.Issued.Leaf.DNSNames)
	}
}

// challSrvHook is a dns-01 hook that sets and clears TXT records through
// pebble-challtestsrv's management API: the generic hook against a real
// DNS server's HTTP API.
func challSrvHook(cs *acmetest.ChallSrv) *config.DNSHook {
	return &config.DNSHook{
		Present:      config.DNSHookCall{URL: cs.MgmtURL + "/set-txt", Body: `{"host":"{fqdn}","value":"{value}"}`},
		Cleanup:      config.DNSHookCall{URL: cs.MgmtURL + "/clear-txt", Body: `{"host":"{fqdn}"}`},
		AllowPrivate: true,
	}
}

func dns01Config(directory, bundle string, hook *config.DNSHook) *config.ACME {
	cfg := acmeConfig(directory, bundle)
	cfg.Challenge = config.ChallengeDNS01
	cfg.DNS.Hook = hook
	return cfg
}

func TestIssueByDNS01HookThroughPebbleWithItsUnreliabilityOn(t *testing.T) {
	e := newEnv(t)
	// Rejected nonces (lego retries them) and authorizations reused at
	// random (already valid: nothing to present).
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{Env: []string{"PEBBLE_WFE_NONCEREJECT=30", "PEBBLE_AUTHZREUSE=50"}})
	a := e.open(t, "pebble-dns", dns01Config(pb.DirectoryURL, pb.CABundle, challSrvHook(pb.DNS)))
	roots := pool(pb.Roots(t))
	// Several orders for overlapping names, so that reuse happens.
	for i, names := range [][]string{
		{"wild.example.test", "*.wild.example.test"},
		{"a.example.test", "b.example.test"},
		{"a.example.test", "b.example.test", "c.example.test"},
	} {
		req := request(t, names[0], names...)
		o, err := a.Place(context.Background(), req)
		if err != nil {
			t.Fatalf("order %d: Place: %v", i, err)
		}
		p, err := drive(t, a, req, o)
		if err != nil {
			t.Fatalf("order %d: Advance: %v", i, err)
		}
		checkIssued(t, p, req, roots, names...)
	}
}

// countingPresenter counts presentations, per domain.
type countingPresenter struct {
	acme.Presenter
	mu       sync.Mutex
	presents map[string]int
	cleanups atomic.Int32
}

func (c *countingPresenter) Present(ctx context.Context, domain, token, keyAuth string) error {
	c.mu.Lock()
	c.presents[domain]++
	c.mu.Unlock()
	return c.Presenter.Present(ctx, domain, token, keyAuth)
}

func (c *countingPresenter) CleanUp(ctx context.Context, domain, token, keyAuth string) error {
	c.cleanups.Add(1)
	return c.Presenter.CleanUp(ctx, domain, token, keyAuth)
}

// countedDNS01 is a Pebble that never reuses an authorization, and a
// dns-01 configuration answering it through the hook on its challenge
// server, counted.
func countedDNS01(t *testing.T) (*acmetest.Pebble, *countingPresenter, *config.ACME) {
	t.Helper()
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{Env: []string{"PEBBLE_AUTHZREUSE=0"}})
	hook, err := acme.NewHook(*challSrvHook(pb.DNS), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return pb, &countingPresenter{Presenter: hook, presents: map[string]int{}}, dns01Config(pb.DirectoryURL, pb.CABundle, challSrvHook(pb.DNS))
}

func TestAnotherProcessResumesTheOrderWithoutPresentingAgain(t *testing.T) {
	e := newEnv(t)
	pb, counter, cfg := countedDNS01(t)
	cfg.DNS.PropagationDelay = 2 * time.Second
	open := func() *acme.Authority {
		a, err := acme.Open(&config.CA{Name: "pebble", Type: config.CATypeACME, ACME: cfg}, acme.Deps{Store: e.st, KEK: e.kek, Presenter: counter})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	first := open()
	req := request(t, "resume.example.test", "resume.example.test", "two.resume.example.test")
	o, err := first.Place(context.Background(), req)
	if err != nil {
		t.Fatalf("Place: %v", err)
	}
	// The first process presents both records, then must wait out the
	// propagation delay before asking the CA to look: it says so.
	p, err := first.Advance(context.Background(), req, o)
	if err != nil {
		t.Fatalf("first Advance: %v", err)
	}
	if p.Status != "pending" || p.Issued != nil || p.Finishing || p.RetryAfter <= 0 || p.RetryAfter > cfg.DNS.PropagationDelay {
		t.Fatalf("first Advance: %+v; want pending (not finishing), asked again within the propagation delay", p)
	}
	// The first process "crashes"; another, with its own Authority on the
	// same Redis, resumes the recorded order.
	second := open()
	p2, err := drive(t, second, req, p.Order)
	if err != nil {
		t.Fatalf("second process: %v", err)
	}
	checkIssued(t, p2, req, pool(pb.Roots(t)), "resume.example.test", "two.resume.example.test")
	if p2.Order.URL != o.URL {
		t.Fatalf("second process used order %s, want %s", p2.Order.URL, o.URL)
	}
	for _, d := range []string{"resume.example.test", "two.resume.example.test"} {
		if n := counter.presents[d]; n != 1 {
			t.Errorf("%s presented %d times; want once", d, n)
		}
	}
	if n := counter.cleanups.Load(); n != 2 {
		t.Errorf("%d cleanups; want 2 (one per record)", n)
	}
	k1, _ := first.AccountURL(context.Background())
	k2, _ := second.AccountURL(context.Background())
	if k1 == "" || k1 != k2 {
		t.Fatalf("account %q and %q: want one", k1, k2)
	}
}

func TestAccountIsRegisteredOnceByRacingProcesses(t *testing.T) {
	e := newEnv(t)
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{})
	cfg := acmeConfig(pb.DirectoryURL, pb.CABundle)
	const n = 4
	kids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		a := e.open(t, "race", cfg)
		wg.Go(func() { kids[i], errs[i] = a.AccountURL(context.Background()) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("process %d: %v", i, errs[i])
		}
		if kids[i] == "" || kids[i] != kids[0] {
			t.Fatalf("accounts %q: want one", kids)
		}
	}
	rec, err := e.st.ACMEAccount(context.Background(), "race", pb.DirectoryURL)
	if err != nil || rec.URL != kids[0] {
		t.Fatalf("stored account %q, %v; want %q", rec.URL, err, kids[0])
	}
	if strings.Contains(string(rec.SealedKey), "PRIVATE") || len(rec.SealedKey) < 100 {
		t.Fatalf("stored key does not look sealed (%d bytes)", len(rec.SealedKey))
	}
	// Another directory is another account.
	pb2 := acmetest.StartPebble(t, acmetest.PebbleOptions{})
	other := e.open(t, "race", acmeConfig(pb2.DirectoryURL, pb2.CABundle))
	kid2, err := other.AccountURL(context.Background())
	if err != nil || kid2 == "" || kid2 == kids[0] {
		t.Fatalf("account at the new directory %q, %v; want a new one", kid2, err)
	}
	if rec, err := e.st.ACMEAccount(context.Background(), "race", pb.DirectoryURL); err != nil || rec.URL != kids[0] {
		t.Fatalf("the first directory's account changed: %q, %v", rec.URL, err)
	}
}

func TestExternalAccountBinding(t *testing.T) {
	const kid, hmac = "kid-1", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{EAB: map[string]string{kid: hmac}})

	t.Run("required and not given", func(t *testing.T) {
		e := newEnv(t)
		a := e.open(t, "eab", acmeConfig(pb.DirectoryURL, pb.CABundle))
		_, err := a.AccountURL(context.Background())
		var p *ca.Problem
		if !errors.As(err, &p) || p.Type != "urn:ietf:params:acme:error:externalAccountRequired" || !p.Refusal() {
			t.Fatalf("registration without EAB: %v; want the CA's externalAccountRequired problem", err)
		}
	})
	t.Run("given in a file", func(t *testing.T) {
		e := newEnv(t)
		file := t.TempDir() + "/hmac"
		if err := os.WriteFile(file, []byte(hmac+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := acmeConfig(pb.DirectoryURL, pb.CABundle)
		cfg.EAB = &config.EAB{KeyID: kid, HMACKeyFile: file}
		a := e.open(t, "eab", cfg)
		if _, err := a.AccountURL(context.Background()); err != nil {
			t.Fatalf("registration with EAB: %v", err)
		}
	})
	t.Run("given inline but wrong", func(t *testing.T) {
		e := newEnv(t)
		cfg := acmeConfig(pb.DirectoryURL, pb.CABundle)
		cfg.EAB = &config.EAB{KeyID: kid, HMACKey: "c2VjcmV0LWJ1dC13cm9uZy1zZWNyZXQtYnV0LXdyb25nLXNlY3JldA"}
		a := e.open(t, "eab", cfg)
		_, err := a.AccountURL(context.Background())
		var p *ca.Problem
		if !errors.As(err, &p) {
			t.Fatalf("registration with a wrong HMAC key: %v; want the CA's problem", err)
		}
	})
	t.Run("key file readable by others", func(t *testing.T) {
		e := newEnv(t)
		file := t.TempDir() + "/hmac"
		os.WriteFile(file, []byte(hmac), 0o644)
		cfg := acmeConfig(pb.DirectoryURL, pb.CABundle)
		cfg.EAB = &config.EAB{KeyID: kid, HMACKeyFile: file}
		_, err := acme.Open(&config.CA{Name: "eab", Type: config.CATypeACME, ACME: cfg}, acme.Deps{Store: e.st, KEK: e.kek})
		if err == nil || !strings.Contains(err.Error(), "hmac_key_file") {
			t.Fatalf("Open with a world-readable key file: %v; want an error naming hmac_key_file", err)
		}
	})
}

func TestANameTheCARefusesIsItsProblem(t *testing.T) {
	e := newEnv(t)
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{DomainBlocklist: []string{"blocked.example.test"}})
	a := e.open(t, "pebble", acmeConfig(pb.DirectoryURL, pb.CABundle))
	_, err := a.Place(context.Background(), request(t, "ok.example.test", "ok.example.test", "www.blocked.example.test"))
	var p *ca.Problem
	if !errors.As(err, &p) {
		t.Fatalf("Place: %v; want *ca.Problem", err)
	}
	if p.Type != "urn:ietf:params:acme:error:rejectedIdentifier" || !strings.Contains(p.Detail, "www.blocked.example.test") || !p.Refusal() {
		t.Fatalf("problem %+v: want rejectedIdentifier naming the name, a refusal", p)
	}

	// A profile the CA does not offer.
	cfg := acmeConfig(pb.DirectoryURL, pb.CABundle)
	cfg.Profile = "nosuch"
	_, err = e.open(t, "pebble", cfg).Place(context.Background(), request(t, "ok.example.test", "ok.example.test"))
	if !errors.As(err, &p) || p.Type != "urn:ietf:params:acme:error:invalidProfile" || !strings.Contains(p.Detail, "nosuch") || !p.Refusal() {
		t.Fatalf("Place with an unknown profile: %v; want the CA's invalidProfile problem", err)
	}
}

func TestAFailedValidationIsTheCAsProblem(t *testing.T) {
	e := newEnv(t)
	// Pebble's VA reaches a server answering from another deployment's
	// Redis: 404 for every token.
	port := newEnv(t).serveHTTP01(t)
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: port, Env: []string{"PEBBLE_AUTHZREUSE=0"}})
	a := e.open(t, "pebble", acmeConfig(pb.DirectoryURL, pb.CABundle))
	req := request(t, "fail.example.test", "fail.example.test")
	o, err := a.Place(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := drive(t, a, req, o)
	var p *ca.Problem
	if !errors.As(err, &p) {
		t.Fatalf("Advance: %v; want *ca.Problem", err)
	}
	// Pebble, like Let's Encrypt, calls a failed http-01 validation
	// "unauthorized".
	if p.Type != "urn:ietf:params:acme:error:unauthorized" || !strings.Contains(p.Detail, "404") {
		t.Fatalf("problem %+v: want the CA's validation problem", p)
	}
	if len(p.Subproblems) == 0 || p.Subproblems[0].Identifier != "fail.example.test" {
		t.Fatalf("problem %+v: want the identifier's subproblem", p)
	}
	// The answer was taken down.
	var st struct {
		Authz map[string]struct{ Token string }
	}
	if err := json.Unmarshal(prog.Order.State, &st); err != nil || len(st.Authz) != 1 {
		t.Fatalf("order state %s: want the one challenge presented", prog.Order.State)
	}
	for _, az := range st.Authz {
		if _, err := e.st.HTTP01(context.Background(), az.Token); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("http-01 answer still stored after the order failed: %v", err)
		}
	}
}

func TestRevokeAtCA(t *testing.T) {
	e := newEnv(t)
	port := e.serveHTTP01(t)
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: port})
	a := e.open(t, "pebble", acmeConfig(pb.DirectoryURL, pb.CABundle))
	req := request(t, "revoke.example.test", "revoke.example.test")
	o, err := a.Place(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	p, err := drive(t, a, req, o)
	if err != nil {
		t.Fatal(err)
	}
	serial := p.Issued.Leaf.SerialNumber.Text(16)
	// Another process revokes it (the account's key signs).
	if err := e.open(t, "pebble", acmeConfig(pb.DirectoryURL, pb.CABundle)).RevokeAtCA(context.Background(), p.Issued.Leaf.Raw, 4); err != nil {
		t.Fatalf("RevokeAtCA: %v", err)
	}
	if got, reason := pb.CertStatus(t, serial); got != "Revoked" || reason != 4 {
		t.Fatalf("Pebble's status after revocation: %q, reason %d; want Revoked, 4 (superseded)", got, reason)
	}
	if err := a.RevokeAtCA(context.Background(), p.Issued.Leaf.Raw, 4); err != nil {
		t.Fatalf("revoking again: %v; want success (already revoked)", err)
	}
	if err := a.RevokeAtCA(context.Background(), p.Issued.Leaf.Raw, 11); err == nil {
		t.Fatal("reason 11 accepted")
	}
	// Pebble offers ARI: a window for the certificate.
	info, err := a.RenewalInfo(context.Background(), p.Issued.Leaf)
	if err != nil {
		t.Fatalf("RenewalInfo: %v", err)
	}
	if info.Start.IsZero() || !info.End.After(info.Start) {
		t.Fatalf("renewal window %v – %v", info.Start, info.End)
	}
}

func pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestAnAccountTheCALostIsRegisteredAgain(t *testing.T) {
	e := newEnv(t)
	port := e.serveHTTP01(t)
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: port})
	a := e.open(t, "pebble", acmeConfig(pb.DirectoryURL, pb.CABundle))
	req := request(t, "lost.example.test", "lost.example.test")
	o, err := a.Place(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := a.AccountURL(context.Background())
	pb.Restart(t) // Pebble forgets its accounts and orders

	// The order went with the account: the CA's problem.
	_, err = a.Advance(context.Background(), req, o)
	var p *ca.Problem
	if !errors.As(err, &p) {
		t.Fatalf("Advance of an order the CA lost: %v; want the CA's problem", err)
	}
	// The next order registers the same key again and goes through.
	o, err = a.Place(context.Background(), req)
	if err != nil {
		t.Fatalf("Place after the CA lost the account: %v", err)
	}
	if _, err := drive(t, a, req, o); err != nil {
		t.Fatalf("Advance: %v", err)
	}
	after, _ := a.AccountURL(context.Background())
	other, _ := e.open(t, "pebble", acmeConfig(pb.DirectoryURL, pb.CABundle)).AccountURL(context.Background())
	if after == "" || after == before || other != after {
		t.Fatalf("accounts: before %q, after %q, another process %q; want one new account", before, after, other)
	}
}

func TestAbandonTakesDownTheRecordsAndDeactivatesTheAuthorizations(t *testing.T) {
	e := newEnv(t)
	_, counter, cfg := countedDNS01(t)
	cfg.DNS.PropagationDelay = time.Hour // presented, never answered
	a, err := acme.Open(&config.CA{Name: "pebble", Type: config.CATypeACME, ACME: cfg}, acme.Deps{Store: e.st, KEK: e.kek, Presenter: counter})
	if err != nil {
		t.Fatal(err)
	}
	req := request(t, "gone.example.test", "gone.example.test", "www.gone.example.test")
	o, err := a.Place(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Advance(context.Background(), req, o)
	if err != nil || p.Status != "pending" {
		t.Fatalf("Advance: %+v, %v", p, err)
	}
	if issued, err := a.Abandon(context.Background(), p.Order); err != nil || issued != nil {
		t.Fatalf("Abandon: %x, %v; want nothing issued", issued, err)
	}
	if n := counter.cleanups.Load(); n != 2 {
		t.Fatalf("%d records taken down; want 2", n)
	}
	// The CA holds the order dead: asking again is its problem.
	_, err = a.Advance(context.Background(), req, p.Order)
	var prob *ca.Problem
	if !errors.As(err, &prob) {
		t.Fatalf("Advance after Abandon: %v; want the CA's problem", err)
	}
	if _, err := a.Abandon(context.Background(), p.Order); err != nil {
		t.Fatalf("Abandon again: %v", err)
	}
}

// An order the CA issued cannot be given up: Abandon returns its leaf,
// for the caller to revoke if it never released it.
func TestAbandonOfAnIssuedOrderReturnsItsLeaf(t *testing.T) {
	e := newEnv(t)
	_, counter, cfg := countedDNS01(t)
	a, err := acme.Open(&config.CA{Name: "pebble", Type: config.CATypeACME, ACME: cfg}, acme.Deps{Store: e.st, KEK: e.kek, Presenter: counter})
	if err != nil {
		t.Fatal(err)
	}
	req := request(t, "late.example.test", "late.example.test")
	o, err := a.Place(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	p, err := drive(t, a, req, o)
	if err != nil || p.Issued == nil {
		t.Fatalf("drive: %+v, %v", p, err)
	}
	issued, err := a.Abandon(context.Background(), p.Order)
	if err != nil || !bytes.Equal(issued, p.Issued.Leaf.Raw) {
		t.Fatalf("Abandon of an issued order: %d bytes, %v; want the issued leaf", len(issued), err)
	}
}

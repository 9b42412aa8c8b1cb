package acmetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/acme/api"
)

// solver answers one challenge of its type and returns how to undo it.
type solver struct {
	typ   string
	solve func(t *testing.T, name, token, keyAuth string) (undo func())
}

// dns01 answers dns-01 through a ChallSrv's TXT records.
func dns01(dns *ChallSrv) solver {
	return solver{typ: "dns-01", solve: func(t *testing.T, name, _, keyAuth string) func() {
		sum := sha256.Sum256([]byte(keyAuth))
		fqdn := "_acme-challenge." + name + "."
		dns.SetTXT(t, fqdn, base64.RawURLEncoding.EncodeToString(sum[:]))
		return func() { dns.ClearTXT(t, fqdn) }
	}}
}

// http01 answers http-01 from a server on 127.0.0.1:port.
type http01 struct {
	mu   sync.Mutex
	keys map[string]string // token → key authorization
	port int
}

func startHTTP01(t *testing.T) *http01 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &http01{keys: map[string]string{}, port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *http01) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, "/.well-known/acme-challenge/")
	h.mu.Lock()
	keyAuth, found := h.keys[token]
	h.mu.Unlock()
	if !ok || !found {
		http.NotFound(w, r)
		return
	}
	w.Write([]byte(keyAuth))
}

func (h *http01) solver() solver {
	return solver{typ: "http-01", solve: func(_ *testing.T, _, token, keyAuth string) func() {
		h.mu.Lock()
		h.keys[token] = keyAuth
		h.mu.Unlock()
		return func() {
			h.mu.Lock()
			delete(h.keys, token)
			h.mu.Unlock()
		}
	}}
}

// issued is a certificate obtained through ACME, with the account that
// ordered it.
type issued struct {
	core  *api.Core
	leaf  *x509.Certificate
	chain []*x509.Certificate // leaf first, as the server sent it
}

// obtain registers an account at dirURL and orders, authorizes (with s)
// and downloads a certificate for name.
func obtain(t *testing.T, client *http.Client, dirURL, name string, s solver) issued {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	accountKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	core, err := api.New(client, "certflow-acmetest", dirURL, "", accountKey)
	if err != nil {
		t.Fatalf("directory %s: %v", dirURL, err)
	}
	if _, err := core.Accounts.New(ctx, acme.Account{TermsOfServiceAgreed: true}); err != nil {
		t.Fatalf("new account: %v", err)
	}
	order, err := core.Orders.New(ctx, []string{name}, nil)
	if err != nil {
		t.Fatalf("new order: %v", err)
	}
	for _, authzURL := range order.Authorizations {
		authz, err := core.Authorizations.Get(ctx, authzURL)
		if err != nil {
			t.Fatalf("authorization: %v", err)
		}
		if authz.Status == acme.StatusValid {
			continue
		}
		var chal *acme.Challenge
		for i := range authz.Challenges {
			if authz.Challenges[i].Type == s.typ {
				chal = &authz.Challenges[i]
			}
		}
		if chal == nil {
			t.Fatalf("authorization for %s offers no %s: %+v", name, s.typ, authz.Challenges)
		}
		keyAuth, err := core.GetKeyAuthorization(chal.Token)
		if err != nil {
			t.Fatal(err)
		}
		undo := s.solve(t, name, chal.Token, keyAuth)
		if _, err := core.Challenges.New(ctx, chal.URL); err != nil {
			t.Fatalf("accept challenge: %v", err)
		}
		poll(t, ctx, "authorization", func() (bool, error) {
			a, err := core.Authorizations.Get(ctx, authzURL)
			if err != nil {
				return false, err
			}
			switch a.Status {
			case acme.StatusValid:
				return true, nil
			case acme.StatusPending, acme.StatusProcessing:
				return false, nil
			}
			return false, errors.New("authorization " + a.Status + ": " + challengeErrors(a))
		})
		undo()
	}

	certKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
	}, certKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.Orders.UpdateForCSR(ctx, order.Finalize, csr); err != nil {
		t.Fatalf("finalize: %v", err)
	}
	var certURL string
	poll(t, ctx, "order", func() (bool, error) {
		o, err := core.Orders.Get(ctx, order.Location)
		if err != nil {
			return false, err
		}
		switch o.Status {
		case acme.StatusValid:
			certURL = o.Certificate
			return true, nil
		case acme.StatusProcessing, acme.StatusReady, acme.StatusPending:
			return false, nil
		}
		return false, errors.New("order " + o.Status)
	})
	raw, err := core.Certificates.Get(ctx, certURL, true)
	if err != nil {
		t.Fatalf("download certificate: %v", err)
	}
	chain, err := parsePEMCerts(raw.Cert)
	if err != nil || len(chain) < 2 {
		t.Fatalf("certificate chain: %d certificates, %v", len(chain), err)
	}
	if !chain[0].PublicKey.(*ecdsa.PublicKey).Equal(certKey.Public()) {
		t.Fatal("the certificate is not for the CSR's key")
	}
	return issued{core: core, leaf: chain[0], chain: chain}
}

func challengeErrors(a acme.Authorization) string {
	var msgs []string
	for _, c := range a.Challenges {
		if c.Error != nil {
			msgs = append(msgs, c.Type+": "+c.Error.Error())
		}
	}
	return strings.Join(msgs, "; ")
}

// poll calls check until it reports done, failing on its error or at ctx's end.
func poll(t *testing.T, ctx context.Context, what string, check func() (bool, error)) {
	t.Helper()
	for {
		done, err := check()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// verify checks the issued chain against roots for name.
func verify(t *testing.T, c issued, name string, roots []*x509.Certificate) {
	t.Helper()
	rootPool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r)
	}
	for _, i := range c.chain[1:] {
		inter.AddCert(i)
	}
	if _, err := c.leaf.Verify(x509.VerifyOptions{
		DNSName: name, Roots: rootPool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		t.Fatalf("chain of %s does not verify: %v", name, err)
	}
}

func revoke(t *testing.T, c issued, reason uint) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.core.Certificates.Revoke(ctx, acme.RevokeCertMessage{
		Certificate: base64.RawURLEncoding.EncodeToString(c.leaf.Raw), Reason: &reason,
	})
	if err != nil {
		t.Fatalf("revoke: %v", err)
	}
}

func TestPebbleDNS01(t *testing.T) {
	t.Parallel()
	p := StartPebble(t, PebbleOptions{})
	const name = "dns01.acmetest.example.com"
	c := obtain(t, p.HTTPClient(), p.DirectoryURL, name, dns01(p.DNS))
	verify(t, c, name, p.Roots(t))

	serial := c.leaf.SerialNumber.Text(16)
	if status, _ := p.CertStatus(t, serial); status != "Valid" {
		t.Fatalf("status before revocation: %q, want Valid", status)
	}
	revoke(t, c, 4) // superseded
	if status, reason := p.CertStatus(t, serial); status != "Revoked" || reason != 4 {
		t.Fatalf("status after revocation: %q reason %d, want Revoked reason 4", status, reason)
	}
	if status, _ := p.CertStatus(t, "1234abcd"); status != "" {
		t.Fatalf("status of a serial never issued: %q, want empty", status)
	}
}

func TestPebbleHTTP01(t *testing.T) {
	t.Parallel()
	h := startHTTP01(t)
	p := StartPebble(t, PebbleOptions{HTTPPort: h.port})
	const name = "http01.acmetest.example.com"
	c := obtain(t, p.HTTPClient(), p.DirectoryURL, name, h.solver())
	verify(t, c, name, p.Roots(t))
	if got, want := c.chain[1].Raw, p.Intermediates(t)[0].Raw; string(got) != string(want) {
		t.Fatal("the chain's second certificate is not Pebble's intermediate")
	}
	revoke(t, c, 1) // keyCompromise
	if status, reason := p.CertStatus(t, c.leaf.SerialNumber.Text(16)); status != "Revoked" || reason != 1 {
		t.Fatalf("status after revocation: %q reason %d, want Revoked reason 1", status, reason)
	}
}

func TestPebbleEABRequired(t *testing.T) {
	t.Parallel()
	hmacKey := base64.RawURLEncoding.EncodeToString([]byte("acmetest-eab-hmac-key-32-bytes!!"))
	p := StartPebble(t, PebbleOptions{EAB: map[string]string{"kid-1": hmacKey}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	core, err := api.New(p.HTTPClient(), "certflow-acmetest", p.DirectoryURL, "", key)
	if err != nil {
		t.Fatal(err)
	}
	if !core.GetDirectory().Meta.ExternalAccountRequired {
		t.Fatal("directory meta does not say externalAccountRequired")
	}
	_, err = core.Accounts.New(ctx, acme.Account{TermsOfServiceAgreed: true})
	var problem *acme.ProblemDetails
	if !errors.As(err, &problem) || problem.Type != "urn:ietf:params:acme:error:externalAccountRequired" {
		t.Fatalf("account without binding: %v, want problem externalAccountRequired", err)
	}

	// With the binding, the same key gets an account.
	acct, err := core.Accounts.NewEAB(ctx, acme.Account{TermsOfServiceAgreed: true}, "kid-1", hmacKey)
	if err != nil || acct.Status != acme.StatusValid {
		t.Fatalf("account with binding: %+v, %v", acct, err)
	}
}

func TestPebbleRestart(t *testing.T) {
	t.Parallel()
	p := StartPebble(t, PebbleOptions{})
	before := p.Roots(t)[0]
	p.Restart(t)
	after := p.Roots(t)[0]
	if before.Equal(after) {
		t.Fatal("a restarted Pebble kept its root; it keeps its CA in memory")
	}
}

func TestStepCADNS01(t *testing.T) {
	t.Parallel()
	dns := StartChallSrv(t)
	s := StartStepCA(t, StepCAOptions{Resolver: dns.DNSAddr})
	const name = "stepca.acmetest.example.com"
	c := obtain(t, s.HTTPClient(), s.DirectoryURL, name, dns01(dns))
	verify(t, c, name, []*x509.Certificate{s.Root})
	if !c.chain[1].Equal(s.Intermediate) {
		t.Fatal("the chain's second certificate is not step-ca's intermediate")
	}

	if s.Revoked(t, c.leaf.SerialNumber) {
		t.Fatal("on the CRL before revocation")
	}
	revoke(t, c, 4)
	if !s.Revoked(t, c.leaf.SerialNumber) {
		t.Fatal("not on the CRL after revocation")
	}
}

func TestBinaryUnknownTool(t *testing.T) {
	_, err := findOrInstall(t, "openssl")
	if err == nil || !strings.Contains(err.Error(), `unknown tool "openssl"`) {
		t.Fatalf("err = %v, want unknown tool", err)
	}
}

func TestStepCAHTTP01(t *testing.T) {
	t.Parallel()
	dns := StartChallSrv(t)
	h := startHTTP01(t)
	s := StartStepCA(t, StepCAOptions{Resolver: dns.DNSAddr, HTTPPort: h.port})
	const name = "stepca-http.acmetest.example.com"
	c := obtain(t, s.HTTPClient(), s.DirectoryURL, name, h.solver())
	verify(t, c, name, []*x509.Certificate{s.Root})
}

func TestChallSrvRecords(t *testing.T) {
	t.Parallel()
	c := StartChallSrv(t)
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, c.DNSAddr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if addrs, err := r.LookupHost(ctx, "any.acmetest.example.com"); err != nil || len(addrs) != 1 || addrs[0] != "127.0.0.1" {
		t.Fatalf("default A: %v, %v; want [127.0.0.1]", addrs, err)
	}
	c.AddA(t, "moved.acmetest.example.com", "192.0.2.7")
	if addrs, err := r.LookupHost(ctx, "moved.acmetest.example.com"); err != nil || len(addrs) != 1 || addrs[0] != "192.0.2.7" {
		t.Fatalf("added A: %v, %v; want [192.0.2.7]", addrs, err)
	}

	const fqdn = "_acme-challenge.txt.acmetest.example.com."
	c.SetTXT(t, fqdn, "one")
	c.SetTXT(t, strings.TrimSuffix(fqdn, "."), "two")
	txt, err := r.LookupTXT(ctx, fqdn)
	if err != nil || len(txt) != 2 {
		t.Fatalf("TXT: %v, %v; want one and two", txt, err)
	}
	c.ClearTXT(t, fqdn)
	if txt, err := r.LookupTXT(ctx, fqdn); err == nil && len(txt) > 0 {
		t.Fatalf("TXT after ClearTXT: %v", txt)
	}
}

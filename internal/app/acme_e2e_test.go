package app_test

// End-to-end tests of enrollment through external ACME CAs (issue 20):
// real Pebble, pebble-challtestsrv and step-ca processes, a whole
// certflow on the real Redis, everything asserted through the HTTP API.

import (
	"cmp"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/internal/testutil/acmetest"
)

// Modes of a caProxy.
const (
	proxyPass  int32 = iota // pass requests on to the CA
	proxyFail               // answer 500 without asking the CA
	proxyStall              // accept the request and never answer
)

// caProxy is an HTTPS reverse proxy in front of an ACME server, switched
// by the test between passing requests on, answering 500 and stalling.
// It terminates TLS with a certificate of its own (Bundle trusts it and
// the upstream) and keeps the client's Host, so that Pebble names its
// URLs after the proxy and every later request comes through it too. It
// counts the orders the CA created through it.
type caProxy struct {
	DirectoryURL string // the upstream directory's, through the proxy
	Bundle       string // PEM: the proxy's certificate and the upstream's CA bundle

	mode     atomic.Int32
	orders   atomic.Int32 // 201 answers to POST newOrder
	requests atomic.Int32 // every request that reached the proxy
	stalled  atomic.Int32 // requests held in proxyStall
	// failAfterOrder switches the proxy to proxyFail once the CA created
	// an order (that answer still goes through).
	failAfterOrder atomic.Bool
	// busyDownloads is how many certificate downloads (Pebble's /certZ/)
	// are answered 503 with a Retry-After of busyFor seconds (0: an
	// hour), without asking the CA.
	busyDownloads, busyFor atomic.Int32

	mu sync.Mutex
	// stallEnd is when the last stalled request ended (its client gave
	// up); afterStall, how long after it each next request came.
	stallEnd   time.Time
	afterStall []time.Duration
	// downloaded are the leaves of the certificate downloads the CA
	// answered through the proxy.
	downloaded []*x509.Certificate
}

// leaves are the leaves of the certificates downloaded through the proxy.
func (p *caProxy) leaves() []*x509.Certificate {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.downloaded)
}

// gapsAfterStalls is how long after each stalled request the next one
// came.
func (p *caProxy) gapsAfterStalls() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.afterStall)
}

func startCAProxy(t *testing.T, directory, upstreamBundle string) *caProxy {
	t.Helper()
	target, err := url.Parse(directory)
	if err != nil {
		t.Fatal(err)
	}
	upstreamPEM, err := os.ReadFile(upstreamBundle)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(upstreamPEM) {
		t.Fatalf("%s holds no certificate", upstreamBundle)
	}
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	t.Cleanup(transport.CloseIdleConnections)

	// The path the CA creates orders at, from its directory.
	resp, err := (&http.Client{Transport: transport, Timeout: 10 * time.Second}).Get(directory)
	if err != nil {
		t.Fatal(err)
	}
	var dir struct{ NewOrder string }
	err = json.NewDecoder(resp.Body).Decode(&dir)
	resp.Body.Close()
	newOrder, perr := url.Parse(dir.NewOrder)
	if err != nil || perr != nil || dir.NewOrder == "" {
		t.Fatalf("the CA's directory names no newOrder: %v %v", err, perr)
	}

	p := &caProxy{}
	done := make(chan struct{})
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = target.Scheme, target.Host
			r.Out.Host = r.In.Host
		},
		Transport: transport,
		ModifyResponse: func(resp *http.Response) error {
			if strings.HasPrefix(resp.Request.URL.Path, "/certZ/") && resp.StatusCode == http.StatusOK {
				leaf, err := acmetest.PeekLeaf(resp)
				if err != nil {
					return err
				}
				if leaf != nil {
					p.mu.Lock()
					p.downloaded = append(p.downloaded, leaf)
					p.mu.Unlock()
				}
			}
			if resp.Request.Method == http.MethodPost && resp.Request.URL.Path == newOrder.Path && resp.StatusCode == http.StatusCreated {
				p.orders.Add(1)
				if p.failAfterOrder.Load() {
					p.mode.Store(proxyFail)
				}
			}
			return nil
		},
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		p.mu.Lock()
		if !p.stallEnd.IsZero() {
			p.afterStall = append(p.afterStall, time.Since(p.stallEnd))
			p.stallEnd = time.Time{}
		}
		p.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/certZ/") && p.busyDownloads.Add(-1) >= 0 {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Retry-After", strconv.Itoa(int(cmp.Or(p.busyFor.Load(), 3600))))
			http.Error(w, "come back in an hour", http.StatusServiceUnavailable)
			return
		}
		switch p.mode.Load() {
		case proxyFail:
			io.Copy(io.Discard, r.Body)
			http.Error(w, "the CA is having a bad day", http.StatusInternalServerError)
		case proxyStall:
			p.stalled.Add(1)
			select {
			case <-r.Context().Done(): // the client gave up
			case <-done:
			}
			p.mu.Lock()
			p.stallEnd = time.Now()
			p.mu.Unlock()
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) }) // runs first: stalled handlers return

	p.DirectoryURL = srv.URL + target.RequestURI()
	p.Bundle = filepath.Join(t.TempDir(), "ca-bundle.pem")
	bundle := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), upstreamPEM...)
	if err := os.WriteFile(p.Bundle, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// challSrvHook is a dns-01 hook on challtestsrv's management API.
func challSrvHook(cs *acmetest.ChallSrv) *config.DNSHook {
	return &config.DNSHook{
		Present:      config.DNSHookCall{URL: cs.MgmtURL + "/set-txt", Body: `{"host":"{fqdn}","value":"{value}"}`},
		Cleanup:      config.DNSHookCall{URL: cs.MgmtURL + "/clear-txt", Body: `{"host":"{fqdn}"}`},
		AllowPrivate: true,
	}
}

// acmeSettings are an acme CA's settings for these tests: quick polls.
func acmeSettings(directory, bundle string) config.ACME {
	return config.ACME{
		Directory: directory, CABundle: bundle,
		PollInterval: 200 * time.Millisecond, MaxPollInterval: time.Second, Timeout: 5 * time.Second,
	}
}

// routeTemplate adds a CA and a template (a copy of WebServer) whose
// enrollments go to it.
func routeTemplate(c *config.Config, template string, ca config.CA) {
	c.CAs = append(c.CAs, ca)
	addTemplate(c, template, func(t *config.Template) { t.CAs = []string{ca.Name} })
}

// pebbleCertflow starts a Pebble (opts; its HTTPPort is certflow's
// http-01 listener) and a certflow whose definitions folder is the
// shipped one plus defs, changed by mutate.
func pebbleCertflow(t *testing.T, opts acmetest.PebbleOptions, defs map[string]string, mutate func(*config.Config, *acmetest.Pebble)) (*testutil.Certflow, *acmetest.Pebble) {
	t.Helper()
	port := testutil.FreePort(t)
	opts.HTTPPort = port
	pb := acmetest.StartPebble(t, opts)
	dir := shippedDefinitionsWith(t, defs)
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.ACMEClient.HTTP01Listen = fmt.Sprintf("127.0.0.1:%d", port)
		mutate(c, pb)
	})
	return cf, pb
}

// proxiedPebbleCertflow is pebbleCertflow (with defs) whose template
// AcmeServer goes to CA PebbleProxied: Pebble behind a caProxy, with
// acmeSettings changed by mutate (may be nil).
func proxiedPebbleCertflow(t *testing.T, defs map[string]string, mutate func(*config.Config, *config.ACME)) (*testutil.Certflow, *acmetest.Pebble, *caProxy) {
	t.Helper()
	var proxy *caProxy
	cf, pb := pebbleCertflow(t, acmetest.PebbleOptions{}, defs, func(c *config.Config, pb *acmetest.Pebble) {
		proxy = startCAProxy(t, pb.DirectoryURL, pb.CABundle)
		a := acmeSettings(proxy.DirectoryURL, proxy.Bundle)
		if mutate != nil {
			mutate(c, &a)
		}
		routeTemplate(c, "AcmeServer", config.NewACMECA("PebbleProxied", a))
	})
	return cf, pb, proxy
}

// submitAsync enrolls without waiting (Prefer: respond-async) and returns
// the request's id.
func submitAsync(t *testing.T, cf *testutil.Certflow, body map[string]any, auth string) int64 {
	t.Helper()
	resp, er := enroll(t, cf, body, "Prefer", "respond-async", "Authorization", auth)
	if resp.Status != http.StatusAccepted && resp.Status != http.StatusOK || er.CertificateInformation.KeyfactorRequestId <= 0 {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	return er.CertificateInformation.KeyfactorRequestId
}

// pollUntil polls request id until done says so (a hang guard of a
// minute, not a speed check); every answer on the way goes through check
// (may be nil).
func pollUntil(t *testing.T, cf *testutil.Certflow, id int64, what string, done func(requestStatus) bool, check func(requestStatus)) requestStatus {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := getRequest(t, cf, id)
		if check != nil {
			check(st)
		}
		if done(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %d: %s did not happen within a minute: %+v timeline %s", id, what, st.CertificateInformation, timeline(st))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// final is disposition ISSUED, DENIED or FAILED.
func final(st requestStatus) bool {
	return slices.Contains([]string{"ISSUED", "DENIED", "FAILED"}, st.CertificateInformation.RequestDisposition)
}

// waitingForCA reports whether the request waits for its CA with the
// order status given.
func waitingForCA(ca, status string) func(requestStatus) bool {
	return func(st requestStatus) bool {
		info := st.CertificateInformation
		return info.RequestDisposition == "PENDING" &&
			strings.HasPrefix(info.DispositionMessage, "waiting for certificate authority "+ca+": order "+status+";")
	}
}

// issuedChain checks an ISSUED request's certificate: the CSR's key and
// names, and a chain that crypto/x509 verifies to root, and returns leaf
// and chain.
func issuedChain(t *testing.T, st requestStatus, key crypto.Signer, root *x509.Certificate, names ...string) []*x509.Certificate {
	t.Helper()
	info := st.CertificateInformation
	if info.RequestDisposition != "ISSUED" || len(info.Certificates) == 0 || info.KeyfactorID <= 0 {
		t.Fatalf("request %d: %+v; want ISSUED with its certificate", info.KeyfactorRequestId, info)
	}
	chain := pemChain(t, info.Certificates, true)
	leaf := chain[0]
	if !pki.SamePublicKey(leaf.PublicKey, key.Public()) {
		t.Fatal("the certificate does not carry the CSR's public key")
	}
	if got, want := slices.Sorted(slices.Values(leaf.DNSNames)), slices.Sorted(slices.Values(names)); !slices.Equal(got, want) {
		t.Fatalf("the certificate names %v, want %v", got, want)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: names[0]}); err != nil {
		t.Fatalf("crypto/x509 does not verify the chain to the CA's root: %v", err)
	}
	return chain
}

// opensslVerifyTo runs openssl verify of chain[0] with the rest untrusted
// and root trusted.
func opensslVerifyTo(t *testing.T, chain []*x509.Certificate, root *x509.Certificate) {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, certs ...*x509.Certificate) string {
		var b []byte
		for _, c := range certs {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	args := []string{"verify", "-CAfile", write("root.pem", root)}
	if len(chain) > 1 {
		args = append(args, "-untrusted", write("untrusted.pem", chain[1:]...))
	}
	args = append(args, write("leaf.pem", chain[0]))
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}

// revokeThroughAPI revokes certificate id through POST
// /Certificates/Revoke as alice, and checks certflow's record and the
// revocation request say so.
func revokeThroughAPI(t *testing.T, cf *testutil.Certflow, id int64, reason int) {
	t.Helper()
	resp, rr := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{id}, "Reason": reason, "Comment": "end to end"})
	if resp.Status != http.StatusOK || !slices.Equal(rr.RevokedIds, []int64{id}) {
		t.Fatalf("revoke: %d %s", resp.Status, resp.Body)
	}
	if _, rec := getCert(t, cf, alice, id, ""); rec.CertStateString != "Revoked" || rec.RevocationReason == nil || *rec.RevocationReason != reason {
		t.Fatalf("certificate %d after the revocation: %s reason %v", id, rec.CertStateString, rec.RevocationReason)
	}
	// The revocation ran as its own request, REVOKED.
	var insts []struct {
		ReferenceId        int64
		RequestDisposition string
		Definition         struct{ WorkflowType string }
	}
	q := url.QueryEscape(`RequestDisposition -eq "REVOKED"`)
	if r := cf.Do(t, "GET", "/Workflow/Instances/My?pq.queryString="+q, nil, "Authorization", alice); r.Status != http.StatusOK {
		t.Fatalf("GET /Workflow/Instances/My: %d %s", r.Status, r.Body)
	} else {
		r.JSON(t, &insts)
	}
	if len(insts) != 1 || insts[0].Definition.WorkflowType != "revocation" {
		t.Fatalf("REVOKED instances of alice: %+v; want the one revocation", insts)
	}
	if st := getRequest(t, cf, insts[0].ReferenceId); st.CertificateInformation.RequestDisposition != "REVOKED" {
		t.Fatalf("revocation request %d: %+v", insts[0].ReferenceId, st.CertificateInformation)
	}
}

// step-ca, a second ACME implementation: dns-01 answered through the
// config's generic hook on challtestsrv (step-ca's resolver); the chain
// verifies to step-ca's root with crypto/x509 and openssl; revocation
// through the API lands on step-ca's CRL.
func TestEnrollmentThroughStepCAByDNS01Hook(t *testing.T) {
	t.Parallel()
	cs := acmetest.StartChallSrv(t)
	sc := acmetest.StartStepCA(t, acmetest.StepCAOptions{Resolver: cs.DNSAddr})
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		a := acmeSettings(sc.DirectoryURL, sc.CABundle)
		a.Challenge, a.DNS.Hook = config.ChallengeDNS01, challSrvHook(cs)
		routeTemplate(c, "StepServer", config.NewACMECA("StepCA", a))
	})
	names := []string{"step.certflow.test", "www.step.certflow.test"}
	csr, key := testutil.CSR(t, names[0], names...)
	id := submitAsync(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "StepServer", "IncludeChain": true}), alice)
	st := pollUntil(t, cf, id, "a final disposition", final, nil)
	chain := issuedChain(t, st, key, sc.Root, names...)
	if !chain[len(chain)-1].Equal(sc.Intermediate) && !chain[len(chain)-1].Equal(sc.Root) {
		t.Fatalf("the chain ends with %s, not step-ca's intermediate or root", chain[len(chain)-1].Subject)
	}
	opensslVerifyTo(t, chain, sc.Root)
	// The hook took its records down again once the order was done.
	dns := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, cs.DNSAddr)
	}}
	cs.SetTXT(t, "_acme-challenge.control.certflow.test", "seen")
	if txt, err := dns.LookupTXT(context.Background(), "_acme-challenge.control.certflow.test."); err != nil || !slices.Equal(txt, []string{"seen"}) {
		t.Fatalf("the resolver does not see challtestsrv's records: %v, %v", txt, err)
	}
	for _, name := range names {
		if txt, _ := dns.LookupTXT(context.Background(), "_acme-challenge."+name+"."); len(txt) != 0 {
			t.Fatalf("TXT records of _acme-challenge.%s after issuance: %v; want the hook's cleanup to have removed them", name, txt)
		}
	}
	if sc.Revoked(t, chain[0].SerialNumber) {
		t.Fatal("step-ca lists the new certificate as revoked")
	}

	revokeThroughAPI(t, cf, st.CertificateInformation.KeyfactorID, 1)
	if !sc.Revoked(t, chain[0].SerialNumber) {
		t.Fatal("step-ca's CRL does not list the certificate revoked through certflow")
	}
}

// orderOf is the order recorded for request id (the request's `o`
// field), nil when none is.
func orderOf(t *testing.T, cf *testutil.Certflow, id int64) []byte {
	t.Helper()
	o, _, err := store.New(cf.Redis.(*redis.Client), cf.Prefix).OrderOf(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// kfErrorMessage is a Keyfactor error answer's message, checking its status
// and code.
func kfErrorMessage(t *testing.T, r *testutil.Response, status int, code string) string {
	t.Helper()
	var e keyfactor.Error
	if err := json.Unmarshal(r.Body, &e); err != nil || r.Status != status || e.ErrorCode != code {
		t.Fatalf("got %d %s; want %d %s", r.Status, r.Body, status, code)
	}
	return e.Message
}

// Pebble behind an approval: nothing reaches the CA before an approver
// approves; while the request then waits for the CA (made unavailable
// right after it created the order), an approver's signal is not a
// decision (409) and the request is not among the approver's pending
// approvals; once the CA answers again the one order is issued, and the
// certificate is revoked at Pebble through POST /Certificates/Revoke.
// Beside it: the CA listing, a name Pebble refuses, and a SAN the CSR
// does not carry.
func TestApprovalGatedEnrollmentThroughPebble(t *testing.T) {
	t.Parallel()
	var proxy *caProxy
	const secretQuery = "?token=not-for-listing"
	cf, pb := pebbleCertflow(t, acmetest.PebbleOptions{DomainBlocklist: []string{"blocked.certflow.test"}},
		map[string]string{"acme-gated.yaml": approvalGatedDef("acme-gated", "AcmeGated")},
		func(c *config.Config, pb *acmetest.Pebble) {
			proxy = startCAProxy(t, pb.DirectoryURL, pb.CABundle)
			routeTemplate(c, "AcmeGated", config.NewACMECA("PebbleGated", acmeSettings(proxy.DirectoryURL+secretQuery, proxy.Bundle)))
			routeTemplate(c, "AcmeServer", config.NewACMECA("Pebble", acmeSettings(pb.DirectoryURL, pb.CABundle)))
		})
	root := pb.Roots(t)[0]

	t.Run("GET /CertificateAuthority lists the acme CAs", func(t *testing.T) {
		r := cf.Do(t, "GET", "/CertificateAuthority", nil, "Authorization", alice)
		if r.Status != http.StatusOK || strings.Contains(string(r.Body), "not-for-listing") {
			t.Fatalf("GET /CertificateAuthority: %d %s; want 200 without the directory's query", r.Status, r.Body)
		}
		var cas []keyfactor.CertificateAuthority
		r.JSON(t, &cas)
		want := map[string]string{"PebbleGated": proxy.DirectoryURL, "Pebble": pb.DirectoryURL}
		for _, c := range cas {
			dir, ok := want[c.LogicalName]
			if !ok {
				continue
			}
			delete(want, c.LogicalName)
			var props map[string]string
			if err := json.Unmarshal([]byte(c.Properties), &props); err != nil {
				t.Fatalf("%s: Properties %q: %v", c.LogicalName, c.Properties, err)
			}
			if props["Type"] != "acme" || props["Directory"] != dir || props["Challenge"] != "http-01" {
				t.Fatalf("%s: Properties %v; want Type acme, Directory %s, Challenge http-01", c.LogicalName, props, dir)
			}
		}
		if len(want) > 0 {
			t.Fatalf("GET /CertificateAuthority does not list %v", want)
		}
	})

	t.Run("approval gated", func(t *testing.T) {
		names := []string{"gated.certflow.test"}
		csr, key := testutil.CSR(t, names[0], names...)
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "AcmeGated", "IncludeChain": true}), "Authorization", alice)
		info := er.CertificateInformation
		if resp.Status != http.StatusOK || info.RequestDisposition != "PENDING" || strings.Contains(info.DispositionMessage, "certificate authority") {
			t.Fatalf("enroll: %d %s; want PENDING awaiting approval", resp.Status, resp.Body)
		}
		id, inst := info.KeyfactorRequestId, info.WorkflowInstanceId
		if got := listInstanceIDs(t, cf, "/Workflow/Instances/AssignedToMe", bearer(testutil.BobToken)); !slices.Contains(got, inst) {
			t.Fatalf("AssignedToMe for bob = %v; want %s", got, inst)
		}
		if n := proxy.requests.Load(); n != 0 || orderOf(t, cf, id) != nil {
			t.Fatalf("before the approval: %d requests reached the CA, order %s; want none", n, orderOf(t, cf, id))
		}

		proxy.failAfterOrder.Store(true)
		mustSignal(t, cf, inst, testutil.BobToken, approveData("ok"))
		pollUntil(t, cf, id, "a wait for the unavailable CA", waitingForCA("PebbleGated", "unavailable"), func(st requestStatus) {
			if d := st.CertificateInformation.RequestDisposition; d != "PENDING" && d != "RUNNING" && d != "QUEUED" {
				t.Fatalf("request %d is %s (%s) while the CA is unavailable", id, d, st.CertificateInformation.DispositionMessage)
			}
		})
		if n := proxy.orders.Load(); n != 1 || orderOf(t, cf, id) == nil {
			t.Fatalf("%d orders at the CA, recorded %s; want the one, recorded", n, orderOf(t, cf, id))
		}

		// Waiting for the CA is not waiting for a decision: the approval
		// step's signal is refused, and the issue step takes none.
		r := signal(t, cf, inst, bearer(testutil.BobToken), signalBody("approve.ApprovalStatus", approveData("again")))
		if msg := kfErrorMessage(t, r, http.StatusConflict, keyfactor.CodeConflict); !strings.Contains(msg, "not waiting for a decision at step approve") {
			t.Fatalf("signal while the request waits for its CA: %q", msg)
		}
		r = signal(t, cf, inst, bearer(testutil.BobToken), signalBody("issue.ApprovalStatus", approveData("again")))
		if msg := kfErrorMessage(t, r, http.StatusBadRequest, keyfactor.CodeInvalidField); !strings.HasPrefix(msg, "SignalKey") {
			t.Fatalf("signal to the issue step: %q", msg)
		}
		if got := listInstanceIDs(t, cf, "/Workflow/Instances/AssignedToMe", bearer(testutil.BobToken)); slices.Contains(got, inst) {
			t.Fatalf("AssignedToMe for bob lists %s, which waits for its CA: %v", inst, got)
		}
		if st := getRequest(t, cf, id); !waitingForCA("PebbleGated", "unavailable")(st) {
			t.Fatalf("after the refused signals: %+v", st.CertificateInformation)
		}

		proxy.mode.Store(proxyPass)
		st := pollUntil(t, cf, id, "a final disposition", final, nil)
		chain := issuedChain(t, st, key, root, names...)
		if n := proxy.orders.Load(); n != 1 {
			t.Fatalf("%d orders at the CA; want 1", n)
		}
		if outcomes(st, "approve", "Completed") != 1 || outcomes(st, "issue", "Completed") != 1 {
			t.Fatalf("timeline %s: want approve and issue completed once each", timeline(st))
		}
		serial := chain[0].SerialNumber.Text(16)
		if status, _ := pb.CertStatus(t, serial); status != "Valid" {
			t.Fatalf("Pebble's status of the certificate: %q", status)
		}

		revokeThroughAPI(t, cf, st.CertificateInformation.KeyfactorID, 4)
		if status, reason := pb.CertStatus(t, serial); status != "Revoked" || reason != 4 {
			t.Fatalf("Pebble's status of the revoked certificate: %q reason %d; want Revoked, 4 (superseded)", status, reason)
		}
	})

	t.Run("a name the CA refuses", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "ok.certflow.test", "ok.certflow.test", "www.blocked.certflow.test")
		id := submitAsync(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "AcmeServer"}), alice)
		st := pollUntil(t, cf, id, "a final disposition", final, nil)
		info := st.CertificateInformation
		if info.RequestDisposition != "DENIED" || !strings.Contains(info.DispositionMessage, "urn:ietf:params:acme:error:rejectedIdentifier") ||
			!strings.Contains(info.DispositionMessage, "www.blocked.certflow.test") || len(info.Certificates) != 0 || info.KeyfactorID != 0 {
			t.Fatalf("request %d: %+v; want DENIED with Pebble's rejectedIdentifier problem naming the name", id, info)
		}
		if o := orderOf(t, cf, id); o != nil {
			t.Fatalf("an order is recorded for a name the CA refused to order: %s", o)
		}
	})

	// What an ACME CA would certify beyond what policy checked, or cannot
	// certify as asked, is refused before any order: SANs the body adds
	// (a DNS name, an IP), e-mail and URI SANs in the body or the CSR, and
	// a second CN hidden in the subject.
	for _, tc := range []struct {
		name string
		csr  csrSpec
		sans map[string]any
		want string // in the refusal: a DENIED message, or a 400's
	}{
		{"a SAN the CSR does not carry", csrSpec{cn: "san.certflow.test", dns: []string{"san.certflow.test"}},
			map[string]any{"dns": []string{"san.certflow.test", "extra.certflow.test"}}, "extra.certflow.test"},
		{"an IP the CSR does not carry", csrSpec{cn: "ip.certflow.test", dns: []string{"ip.certflow.test"}},
			map[string]any{"dns": []string{"ip.certflow.test"}, "ip4": []string{"192.0.2.9"}}, "192.0.2.9"},
		{"an e-mail SAN in the body", csrSpec{cn: "mail.certflow.test", dns: []string{"mail.certflow.test"}},
			map[string]any{"dns": []string{"mail.certflow.test"}, "rfc822": []string{"ceo@certflow.test"}}, "ceo@certflow.test"},
		{"a URI SAN in the body", csrSpec{cn: "uri.certflow.test", dns: []string{"uri.certflow.test"}},
			map[string]any{"dns": []string{"uri.certflow.test"}, "uri": []string{"https://evil.certflow.test/"}}, "https://evil.certflow.test/"},
		{"an e-mail SAN in the CSR", csrSpec{cn: "mail2.certflow.test", dns: []string{"mail2.certflow.test"}, emails: []string{"cfo@certflow.test"}},
			nil, "cfo@certflow.test"},
		{"a URI SAN in the CSR", csrSpec{cn: "uri2.certflow.test", dns: []string{"uri2.certflow.test"}, uris: []string{"spiffe://certflow.test/x"}},
			nil, "spiffe://certflow.test/x"},
		{"a second CN", csrSpec{names: []pkix.AttributeTypeAndValue{{Type: oidCN, Value: "victim.example.org"}, {Type: oidCN, Value: "cn2.certflow.test"}}, dns: []string{"cn2.certflow.test"}},
			nil, "CN appears more than once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := testutil.EnrollBody(tc.csr.der(t), map[string]any{"Template": "AcmeServer"})
			if tc.sans != nil {
				body["SANs"] = tc.sans
			}
			resp, er := enroll(t, cf, body, "Authorization", alice)
			info := er.CertificateInformation
			denied := resp.Status == http.StatusOK && info.RequestDisposition == "DENIED" && strings.Contains(info.DispositionMessage, tc.want)
			refused := resp.Status == http.StatusBadRequest && strings.Contains(string(resp.Body), tc.want)
			if !denied && !refused {
				t.Fatalf("enroll: %d %s; want it refused or DENIED naming %s", resp.Status, resp.Body, tc.want)
			}
			if id := info.KeyfactorRequestId; id > 0 {
				if o := orderOf(t, cf, id); o != nil {
					t.Fatalf("an order was placed for the refused request: %s", o)
				}
			}
		})
	}
}

// A CA that answers 500, then one that stalls (accepts the request and
// never answers): with one worker and a short acme.timeout, the ACME
// request waits (PENDING, the CA unavailable), never FAILED, while
// built-in-CA enrollments meanwhile are issued (no worker held); once the
// CA answers again the request is issued from one order.
func TestAnUnavailableACMECALeavesTheRequestWaitingAndNoWorkerHeld(t *testing.T) {
	t.Parallel()
	var proxy *caProxy
	cf, pb := pebbleCertflow(t, acmetest.PebbleOptions{}, nil, func(c *config.Config, pb *acmetest.Pebble) {
		proxy = startCAProxy(t, pb.DirectoryURL, pb.CABundle)
		proxy.mode.Store(proxyFail)
		a := acmeSettings(proxy.DirectoryURL, proxy.Bundle)
		a.Timeout = time.Second
		routeTemplate(c, "AcmeServer", config.NewACMECA("PebbleProxied", a))
		c.Worker.Concurrency = 1
	})
	names := []string{"patient.certflow.test"}
	csr, key := testutil.CSR(t, names[0], names...)
	id := submitAsync(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "AcmeServer", "IncludeChain": true}), alice)
	neverSettled := func(st requestStatus) {
		t.Helper()
		if d := st.CertificateInformation.RequestDisposition; d != "QUEUED" && d != "RUNNING" && d != "PENDING" {
			t.Fatalf("request %d is %s (%s) while its CA is unavailable; want it waiting", id, d, st.CertificateInformation.DispositionMessage)
		}
	}
	unavailable := waitingForCA("PebbleProxied", "unavailable")
	builtin := func(cn string) {
		t.Helper()
		csr, _ := testutil.CSR(t, cn)
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", alice)
		if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("a built-in-CA enrollment while the ACME CA is unavailable: %d %s", resp.Status, resp.Body)
		}
	}

	// 500: the request waits, looked at again and again.
	pollUntil(t, cf, id, "a wait for the CA", unavailable, neverSettled)
	seen := proxy.requests.Load()
	waitFor(t, "another look at the CA", func() bool { return proxy.requests.Load() > seen })
	pollUntil(t, cf, id, "a wait for the CA", unavailable, neverSettled)
	builtin("meanwhile.certflow.test")

	// Stalling: each look ends with the client's timeout, the request
	// still waits, and the one worker still issues from the built-in CA.
	proxy.mode.Store(proxyStall)
	waitFor(t, "two stalled looks at the CA", func() bool {
		neverSettled(getRequest(t, cf, id))
		return proxy.stalled.Load() >= 2
	})
	builtin("stalled.certflow.test")
	pollUntil(t, cf, id, "a wait for the CA", unavailable, neverSettled)
	// The next look waits poll_interval (200 ms) after the stalled one
	// gave up, not after it began: a CA that stalls is not asked again
	// back to back. (A lower bound; the margin is for the proxy noticing
	// the client gave up a little after certflow did.)
	for _, gap := range proxy.gapsAfterStalls() {
		if gap < 100*time.Millisecond {
			t.Fatalf("a look at the CA came %s after a stalled one ended; want the poll interval between them (all: %v)", gap, proxy.gapsAfterStalls())
		}
	}
	// What is recorded is only when certflow began to ask (its waits and
	// order_timeout count from there): no order.
	var rec struct {
		Order  struct{ URL string }
		Placed time.Time
	}
	if err := json.Unmarshal(orderOf(t, cf, id), &rec); err != nil || rec.Order.URL != "" || rec.Placed.IsZero() {
		t.Fatalf("recorded while the CA was unavailable: %s (%v); want when asking began and no order", orderOf(t, cf, id), err)
	}
	if n := proxy.orders.Load(); n != 0 {
		t.Fatalf("%d orders while the CA was unavailable", n)
	}

	proxy.mode.Store(proxyPass)
	st := pollUntil(t, cf, id, "a final disposition", final, neverSettledOrIssued(t, id))
	issuedChain(t, st, key, pb.Roots(t)[0], names...)
	if n := proxy.orders.Load(); n != 1 {
		t.Fatalf("%d orders at the CA for the request; want 1", n)
	}
	if outcomes(st, "issue", "Completed") != 1 || outcomes(st, "issue", "Failed") != 0 {
		t.Fatalf("timeline %s: want the issue step completed once, never failed", timeline(st))
	}
}

// neverSettledOrIssued fails the test when request id is DENIED or FAILED.
func neverSettledOrIssued(t *testing.T, id int64) func(requestStatus) {
	return func(st requestStatus) {
		t.Helper()
		if d := st.CertificateInformation.RequestDisposition; d == "DENIED" || d == "FAILED" {
			t.Fatalf("request %d is %s: %s", id, d, st.CertificateInformation.DispositionMessage)
		}
	}
}

// External account binding: Pebble requires it; a CA configured with the
// right HMAC key (in a 0600 file) issues, one with a wrong key ends with
// Pebble's problem and issues nothing.
func TestExternalAccountBindingThroughPebble(t *testing.T) {
	t.Parallel()
	const kid, hmac = "certflow-kid", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	keyFile := func(name, key string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	right, wrong := keyFile("right", hmac), keyFile("wrong", "c2VjcmV0LWJ1dC13cm9uZy1zZWNyZXQtYnV0LXdyb25nLXNlY3JldA")
	cf, pb := pebbleCertflow(t, acmetest.PebbleOptions{EAB: map[string]string{kid: hmac}}, nil, func(c *config.Config, pb *acmetest.Pebble) {
		for name, file := range map[string]string{"AcmeEAB": right, "AcmeWrongEAB": wrong} {
			a := acmeSettings(pb.DirectoryURL, pb.CABundle)
			a.EAB = &config.EAB{KeyID: kid, HMACKeyFile: file}
			routeTemplate(c, name, config.NewACMECA("Pebble"+strings.TrimPrefix(name, "Acme"), a))
		}
	})
	names := []string{"bound.certflow.test"}
	csr, key := testutil.CSR(t, names[0], names...)
	good := submitAsync(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "AcmeEAB", "IncludeChain": true}), alice)
	csr2, _ := testutil.CSR(t, "unbound.certflow.test", "unbound.certflow.test")
	bad := submitAsync(t, cf, testutil.EnrollBody(csr2, map[string]any{"Template": "AcmeWrongEAB", "IncludeChain": true}), alice)

	st := pollUntil(t, cf, good, "a final disposition", final, nil)
	chain := issuedChain(t, st, key, pb.Roots(t)[0], names...)
	if status, _ := pb.CertStatus(t, chain[0].SerialNumber.Text(16)); status != "Valid" {
		t.Fatalf("Pebble's status of the certificate: %q", status)
	}

	st = pollUntil(t, cf, bad, "a final disposition", final, nil)
	info := st.CertificateInformation
	if (info.RequestDisposition != "DENIED" && info.RequestDisposition != "FAILED") ||
		!strings.Contains(info.DispositionMessage, "urn:ietf:params:acme:error:unauthorized") ||
		!strings.Contains(info.DispositionMessage, "external account binding") {
		t.Fatalf("request with the wrong EAB key: %+v; want it refused with Pebble's problem", info)
	}
	if len(info.Certificates) != 0 || info.KeyfactorID != 0 || orderOf(t, cf, bad) != nil {
		t.Fatalf("request with the wrong EAB key: %+v, order %s; want nothing issued or ordered", info, orderOf(t, cf, bad))
	}
	if strings.Contains(cf.Logs.String(), hmac) || strings.Contains(cf.Logs.String(), "c2VjcmV0LWJ1dC13cm9uZy") {
		t.Fatal("an HMAC key is in certflow's log")
	}
}

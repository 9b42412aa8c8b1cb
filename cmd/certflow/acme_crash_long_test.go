//go:build long

package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/internal/testutil/acmetest"
)

// acmeProxy stands between certflow and Pebble (TLS with Pebble's own
// certificate, so certflow's ca_bundle trusts it; the Host header kept, so
// Pebble names its URLs after the proxy and every later exchange passes
// through it too). It counts what Pebble answered, keeps the certificates
// it served, and holds the first POST to a path with the prefix hold until
// the client making it goes away (the worker killed).
type acmeProxy struct {
	URL  string // https://127.0.0.1:<port>
	hold string
	held chan struct{} // receives once the held POST arrived

	mu       sync.Mutex
	holding  bool
	answered map[string]int // "POST /order-plz 201" → n
	certs    []*x509.Certificate
}

func startACMEProxy(t *testing.T, pb *acmetest.Pebble, hold string) *acmeProxy {
	t.Helper()
	dir := filepath.Dir(pb.CABundle) // acmetest keeps Pebble's TLS certificate and key beside the bundle
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(pb.DirectoryURL)
	target.Path = ""
	p := &acmeProxy{hold: hold, held: make(chan struct{}, 1), answered: map[string]int{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport:      pb.HTTPClient().Transport,
		ModifyResponse: p.saw,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, hold) && p.holdFirst() {
				p.held <- struct{}{}
				<-r.Context().Done() // the worker is killed with the exchange open
				return
			}
			rp.ServeHTTP(w, r)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}},
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	p.URL = "https://" + ln.Addr().String()
	return p
}

func (p *acmeProxy) holdFirst() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holding {
		return false
	}
	p.holding = true
	return true
}

// saw counts Pebble's answer and keeps the certificates it served.
func (p *acmeProxy) saw(resp *http.Response) error {
	r := resp.Request
	prefix := r.URL.Path
	for _, fixed := range []string{"/my-order/", "/finalize-order/", "/certZ/", "/authZ/", "/chalZ/", "/my-account/"} {
		if strings.HasPrefix(prefix, fixed) {
			prefix = fixed
		}
	}
	key := fmt.Sprintf("%s %s %d", r.Method, prefix, resp.StatusCode)
	var cert *x509.Certificate
	if prefix == "/certZ/" && resp.StatusCode == http.StatusOK {
		var err error
		if cert, err = acmetest.PeekLeaf(resp); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answered[key]++
	if cert != nil {
		p.certs = append(p.certs, cert)
	}
	return nil
}

// count is how many answers Pebble gave whose "METHOD path status"
// starts with key.
func (p *acmeProxy) count(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, v := range p.answered {
		if strings.HasPrefix(k, key) {
			n += v
		}
	}
	return n
}

// TestLongAWorkerKilledInAnACMEOrderResumesTheSameOrder kills the worker
// process with SIGKILL while its ACME order is open at Pebble — once
// while it finalizes (the order ready, not finalized), once after the
// order is valid but before the certificate is downloaded and stored — and
// shows that the next worker finishes that order: one new-order at
// Pebble, one finalization, one certificate, carrying the CSR's key, and
// one issue step in the request's timeline. It is in the long suite: the
// killed worker's issue lock (store.issueLockTTL, a minute) has to run out
// before the next worker may go on, so each case takes over a minute.
func TestLongAWorkerKilledInAnACMEOrderResumesTheSameOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, hold string }{
		{"while finalizing", "/finalize-order/"},
		{"before the certificate is stored", "/certZ/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			acmeCrash(t, tc.hold)
		})
	}
}

func acmeCrash(t *testing.T, hold string) {
	httpPort := testutil.FreePort(t)
	// No rejected nonces: each POST the test counts reached Pebble once.
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: httpPort, Env: []string{"PEBBLE_WFE_NONCEREJECT=0"}})
	proxy := startACMEProxy(t, pb, hold)

	_, prefix := testutil.Redis(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "defs"), 0o755)
	os.WriteFile(filepath.Join(dir, "defs", "acme.yaml"), []byte("name: acme\ntrigger: enrollment\nsteps:\n  - {id: issue, uses: issue}\n"), 0o644)
	cfg := fmt.Sprintf(`key_prefix: %[1]s
queue: %[1]s
worker:
  task_timeout: 5s
  reconcile_after: 6s
acme_client: {http01_listen: "127.0.0.1:%[2]d"}
certificate_authorities:
  - {name: CertflowIssuingCA, type: builtin}
  - name: Pebble
    type: acme
    acme: {directory: "%[3]s/dir", ca_bundle: "%[4]s", poll_interval: 200ms, max_poll_interval: 1s, timeout: 5s}
templates:
  - {name: AcmeServer, certificate_authorities: [Pebble]}
auth:
  users:
    - {name: alice, token: alice-token, roles: [requester]}
    - {name: bob, token: bob-token, roles: [approver]}
`, prefix, httpPort, proxy.URL, pb.CABundle)
	os.WriteFile(filepath.Join(dir, "certflow.yaml"), []byte(cfg), 0o600)
	env, base := startAPI(t, dir)
	victim, victimLogs := startProcess(t, dir, env, "worker")

	csr, key := testutil.CSR(t, "crash.acme.test", "crash.acme.test")
	loc := submitBodyAsync(t, base, testutil.EnrollBody(csr, map[string]any{"Template": "AcmeServer"}))
	select {
	case <-proxy.held:
	case <-time.After(60 * time.Second):
		t.Fatalf("the worker never reached %s\n%s", hold, victimLogs.String())
	}
	if proxy.count("POST /order-plz ") != 1 || proxy.count("POST /order-plz 201") != 1 {
		t.Fatalf("before the crash: %v, want one new-order, answered 201", proxy.answered)
	}
	victim.Process.Signal(syscall.SIGKILL)
	victim.Wait()

	_, nextLogs := startProcess(t, dir, env, "worker")
	var st approvalStatus
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st = getApproval(t, base, loc)
		d := st.CertificateInformation.RequestDisposition
		if d == "ISSUED" {
			break
		}
		if d != "QUEUED" && d != "RUNNING" && d != "PENDING" || time.Now().After(deadline) {
			t.Fatalf("request is %s (%s); timeline %+v", d, st.CertificateInformation.DispositionMessage, st.Timeline)
		}
	}
	if n := proxy.count("POST /order-plz "); n != 1 {
		t.Errorf("%d new-order POSTs reached Pebble, want 1 (%v)", n, proxy.answered)
	}
	if n, ok := proxy.count("POST /finalize-order/ "), proxy.count("POST /finalize-order/ 200"); n != 1 || ok != 1 {
		t.Errorf("%d finalize POSTs reached Pebble (%d answered 200), want 1 (%v)", n, ok, proxy.answered)
	}
	if st.count("issue", "Completed") != 1 {
		t.Errorf("timeline %+v: want one issue step completed", st.Timeline)
	}
	certs := st.CertificateInformation.Certificates
	if len(certs) != 1 {
		t.Fatalf("%d certificates in the answer, want 1", len(certs))
	}
	block, _ := pem.Decode([]byte(certs[0]))
	if block == nil {
		t.Fatalf("the certificate is not PEM: %q", certs[0])
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !pki.SamePublicKey(leaf.PublicKey, key.Public()) {
		t.Error("the certificate does not carry the CSR's public key")
	}
	opensslSamePublicKey(t, block.Bytes, key.Public())
	// One certificate: each one Pebble served (a download may be asked
	// again after the crash) is the one certflow stored, and Pebble knows it.
	proxy.mu.Lock()
	served := proxy.certs
	proxy.mu.Unlock()
	if len(served) == 0 {
		t.Fatal("no certificate went through the proxy")
	}
	for _, c := range served {
		if c.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
			t.Errorf("Pebble served certificate %x, certflow stored %x", c.SerialNumber, leaf.SerialNumber)
		}
	}
	if status, _ := pb.CertStatus(t, leaf.SerialNumber.Text(16)); status != "Valid" {
		t.Errorf("Pebble says %q of the certificate certflow stored", status)
	}
	if signed := strings.Count(victimLogs.String()+nextLogs.String(), `msg="certificate issued"`); signed != 1 {
		t.Errorf("%d certificates recorded as issued, want 1", signed)
	}
}

// opensslSamePublicKey checks with `openssl x509 -pubkey` that the
// certificate (DER) carries pub.
func opensslSamePublicKey(t *testing.T, der []byte, pub any) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Log("no openssl on the PATH; the key was compared with crypto/x509 only")
		return
	}
	cmd := exec.Command("openssl", "x509", "-inform", "DER", "-noout", "-pubkey")
	cmd.Stdin = bytes.NewReader(der)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl x509 -pubkey: %v", err)
	}
	want, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(out)
	if b == nil || !bytes.Equal(b.Bytes, want) {
		t.Errorf("openssl reads the public key\n%s\nwhich is not the CSR's", out)
	}
}

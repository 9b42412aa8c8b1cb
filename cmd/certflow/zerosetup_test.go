package main

import (
	"crypto/x509"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/testutil"
)

// zeroSetup talks to a `certflow serve` run with no Redis configured.
type zeroSetup struct {
	t    *testing.T
	dir  string
	port int
	base string
}

func newZeroSetup(t *testing.T) *zeroSetup {
	port := testutil.FreePort(t)
	return &zeroSetup{t: t, dir: t.TempDir(), port: port, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
}

func (z *zeroSetup) do(method, path string, body any, headers ...string) *testutil.Response {
	z.t.Helper()
	token, err := os.ReadFile(filepath.Join(z.dir, ".certflow", "admin-token"))
	if err != nil {
		z.t.Fatalf("the admin token is not there once serve says it is ready: %v", err)
	}
	return testutil.Do(z.t, z.base, method, path, body, append([]string{"Authorization", "Bearer " + strings.TrimSpace(string(token))}, headers...)...)
}

// enroll issues a certificate and returns its id and serial.
func (z *zeroSetup) enroll(cn string) (int64, *big.Int) {
	z.t.Helper()
	csr, _ := testutil.CSR(z.t, cn, cn)
	r := z.do("POST", "/Enrollment/CSR", testutil.EnrollBody(csr, nil), "x-certificateformat", "PEM")
	var resp struct {
		CertificateInformation struct {
			KeyfactorID        int64
			SerialNumber       string
			RequestDisposition string
		}
	}
	r.JSON(z.t, &resp)
	ci := resp.CertificateInformation
	serial, ok := new(big.Int).SetString(ci.SerialNumber, 16)
	if r.Status != http.StatusOK || ci.RequestDisposition != "ISSUED" || !ok {
		z.t.Fatalf("enroll %s: %d %s", cn, r.Status, r.Body)
	}
	return ci.KeyfactorID, serial
}

func (z *zeroSetup) revoke(id int64) {
	z.t.Helper()
	r := z.do("POST", "/Certificates/Revoke", map[string]any{"CertificateIds": []int64{id}, "Reason": 1, "Comment": "key compromise"})
	var resp struct{ RevokedIds []int64 }
	r.JSON(z.t, &resp)
	if r.Status != http.StatusOK || len(resp.RevokedIds) != 1 || resp.RevokedIds[0] != id {
		z.t.Fatalf("revoke %d: %d %s", id, r.Status, r.Body)
	}
}

// checkRevoked fails unless certificate id reads as revoked.
func (z *zeroSetup) checkRevoked(id int64) {
	z.t.Helper()
	r := z.do("GET", fmt.Sprintf("/Certificates/%d", id), nil)
	var c struct{ CertStateString string }
	r.JSON(z.t, &c)
	if r.Status != http.StatusOK || c.CertStateString != "Revoked" {
		z.t.Fatalf("certificate %d: %d %s", id, r.Status, r.Body)
	}
}

// crl is the issuing CA's published CRL, checked with crypto/x509 (and
// its number with openssl, as a relying party reads it).
func (z *zeroSetup) crl() *x509.RevocationList {
	z.t.Helper()
	r := testutil.Do(z.t, z.base, "GET", "/CRL/CertflowIssuingCA", nil, "Authorization", "")
	if r.Status != http.StatusOK {
		z.t.Fatalf("CRL: %d %s", r.Status, r.Body)
	}
	crl, err := x509.ParseRevocationList(r.Body)
	if err != nil {
		z.t.Fatal(err)
	}
	if n := testutil.OpenSSLCRLNumber(z.t, r.Body); n.Cmp(crl.Number) != 0 {
		z.t.Fatalf("openssl reads CRL number %s, x509 %s", n, crl.Number)
	}
	return crl
}

func listed(crl *x509.RevocationList, serials ...*big.Int) bool {
	for _, s := range serials {
		found := false
		for _, e := range crl.RevokedCertificateEntries {
			found = found || e.SerialNumber.Cmp(s) == 0
		}
		if !found {
			return false
		}
	}
	return true
}

// The zero-setup mode with redis-server on the PATH keeps its records: a
// certificate revoked before a restart is still there, still revoked, and
// on the CRL, and the next CRL's number is higher; after certflow is
// killed with SIGKILL the next start works and has lost nothing.
func TestZeroSetupKeepsRecordsAndRevocationsAcrossRestarts(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is required for this test")
	}
	z := newZeroSetup(t)
	p := startServe(t, z.dir, z.port)
	first, firstSerial := z.enroll("first.example.com")
	second, secondSerial := z.enroll("second.example.com")
	z.revoke(first)
	before := z.crl()
	if !listed(before, firstSerial) || listed(before, secondSerial) {
		t.Fatalf("CRL before the restart lists %v", before.RevokedCertificateEntries)
	}
	p.stop(t)
	if out, err := exec.Command("redis-cli", "-s", filepath.Join(z.dir, ".certflow", "redis", "redis.sock"), "PING").CombinedOutput(); err == nil && strings.Contains(string(out), "PONG") {
		t.Fatal("the redis-server still answers after certflow stopped")
	}

	p = startServe(t, z.dir, z.port)
	z.checkRevoked(first)
	if crl := z.crl(); !listed(crl, firstSerial) || crl.Number.Cmp(before.Number) < 0 {
		t.Fatalf("after the restart the CRL (number %s, was %s) lists %v", crl.Number, before.Number, crl.RevokedCertificateEntries)
	}
	z.revoke(second)
	after := z.crl()
	if !listed(after, firstSerial, secondSerial) || after.Number.Cmp(before.Number) <= 0 {
		t.Fatalf("the CRL after the restart: number %s (was %s), entries %v", after.Number, before.Number, after.RevokedCertificateEntries)
	}
	var status struct {
		Store struct {
			Persistent   bool
			RestartLoses string
		}
	}
	r := z.do("GET", "/Status", nil)
	r.JSON(t, &status)
	if !status.Store.Persistent || status.Store.RestartLoses != "" {
		t.Fatalf("/Status: %s", r.Body)
	}

	// SIGKILL: certflow cannot stop its redis-server; the next start must
	// not trip over it, and nothing acknowledged is lost.
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	p = startServe(t, z.dir, z.port)
	defer p.stop(t)
	z.checkRevoked(first)
	z.checkRevoked(second)
	if crl := z.crl(); !listed(crl, firstSerial, secondSerial) || crl.Number.Cmp(after.Number) < 0 {
		t.Fatalf("after SIGKILL and a restart the CRL (number %s, was %s) lists %v", crl.Number, after.Number, crl.RevokedCertificateEntries)
	}
	if strings.Contains(p.stderr.String(), "redis: ") {
		t.Fatalf("go-redis's own log lines reached the log:\n%s", p.stderr.String())
	}
}

// Without redis-server on the PATH, the zero-setup mode runs on an
// in-memory Redis and says what a restart loses: at start, in the log and
// on standard output, and in GET /Status.
func TestZeroSetupWithoutRedisServerSaysWhatARestartLoses(t *testing.T) {
	t.Parallel()
	z := newZeroSetup(t)
	p := startServeEnv(t, z.dir, z.port, []string{"PATH=" + t.TempDir()}) // no redis-server there
	defer p.stop(t)
	const loses = "NOTHING SURVIVES A RESTART but the CA"
	if !strings.Contains(p.stderr.String(), "no redis-server on the PATH") || !strings.Contains(p.stderr.String(), loses) {
		t.Fatalf("the log does not say what a restart loses:\n%s", p.stderr.String())
	}
	if !strings.Contains(p.seen.String(), "Running on an in-memory Redis: "+loses) {
		t.Fatalf("the start-up text does not say what a restart loses:\n%s", p.seen.String())
	}
	var status struct {
		Store struct {
			Redis        string
			Persistent   bool
			RestartLoses string
		}
	}
	r := z.do("GET", "/Status", nil)
	r.JSON(t, &status)
	if r.Status != http.StatusOK || status.Store.Persistent || status.Store.Redis != "in-memory" || !strings.Contains(status.Store.RestartLoses, "revocations are lost") {
		t.Fatalf("/Status: %d %s", r.Status, r.Body)
	}
	if _, err := os.Stat(filepath.Join(z.dir, ".certflow", "redis")); err == nil {
		t.Fatal("a redis folder was made with no redis-server to use it")
	}
}

// The ready line comes last, once the API listens and the admin token and
// the CA are on disk, in the documented shape.
func TestServePrintsTheReadyLineOnceItsFilesExist(t *testing.T) {
	t.Parallel()
	z := newZeroSetup(t)
	p := startServe(t, z.dir, z.port)
	defer p.stop(t)
	lines := strings.Split(strings.TrimSpace(p.seen.String()), "\n")
	want := fmt.Sprintf("certflow ready: %s (admin token in .certflow/admin-token)", z.base)
	if lines[len(lines)-1] != want || strings.Count(p.seen.String(), ReadyPrefix) != 1 {
		t.Fatalf("the last line is %q, want %q", lines[len(lines)-1], want)
	}
	for _, f := range []string{"admin-token", "ca/CertflowIssuingCA/root.crt"} {
		if _, err := os.Stat(filepath.Join(z.dir, ".certflow", f)); err != nil {
			t.Fatalf("ready, but %s is not there: %v", f, err)
		}
	}
	if r := testutil.Do(t, z.base, "GET", "/readyz", nil, "Authorization", ""); r.Status != http.StatusOK {
		t.Fatalf("/readyz once ready: %d %s", r.Status, r.Body)
	}
}

// `api` with a Redis that does not answer says so plainly, once, without
// go-redis's own log lines, the password of the URL, the "try it" text or
// the ready line; /readyz says not ready, without credentials and without
// details. Once Redis answers, the ready line follows.
func TestAPIWithARedisThatDoesNotAnswerSaysSoPlainly(t *testing.T) {
	t.Parallel()
	// A user with a password: the password must not be printed.
	srv := testutil.StartRedisServer(t, "--user", "user", "on", ">s3cret", "~*", "&*", "+@all")
	srv.Kill() // its port is known, and nothing listens there now
	dir := t.TempDir()
	port := testutil.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	_, logs := startProcess(t, dir, []string{fmt.Sprintf("CERTFLOW_REDIS_URL=redis://user:s3cret@127.0.0.1:%d/0", srv.Port), "CERTFLOW_ADMIN_TOKEN=cf_test"},
		"api", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	want := fmt.Sprintf("certflow is listening on %s but is NOT READY: Redis at 127.0.0.1:%d does not answer.", base, srv.Port)
	waitForText(t, logs, want)
	r := testutil.Do(t, base, "GET", "/readyz", nil, "Authorization", "")
	if r.Status != http.StatusServiceUnavailable || strings.TrimSpace(string(r.Body)) != `{"status":"not ready"}` {
		t.Fatalf("/readyz with Redis down: %d %s", r.Status, r.Body)
	}
	text := logs.String()
	for _, bad := range []string{"\nredis: ", "s3cret", "Try it", ReadyPrefix} {
		if strings.Contains("\n"+text, bad) {
			t.Fatalf("with Redis down, the output holds %q:\n%s", strings.TrimSpace(bad), text)
		}
	}
	if strings.Count(text, "NOT READY") != 1 || strings.Count(text, `msg="Redis does not answer:`) != 1 {
		t.Fatalf("the output does not say it once each on standard output and in the log:\n%s", text)
	}
	srv.Start()
	waitForText(t, logs, ReadyPrefix+base+"\n")
	if r := testutil.Do(t, base, "GET", "/readyz", nil, "Authorization", ""); r.Status != http.StatusOK {
		t.Fatalf("/readyz once Redis answers: %d %s", r.Status, r.Body)
	}
}

// `worker` says what it runs: queue, concurrency, servers and Redis.
func TestWorkerPrintsAStartLine(t *testing.T) {
	t.Parallel()
	_, prefix := testutil.Redis(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf("key_prefix: %s\nqueue: %s\nworker:\n  concurrency: 6\n  servers: 2\n", prefix, prefix)
	os.WriteFile(filepath.Join(dir, "certflow.yaml"), []byte(cfg), 0o600)
	_, logs := startProcess(t, dir, []string{"CERTFLOW_REDIS_URL=" + testutil.RedisURL(), "CERTFLOW_CONFIG=certflow.yaml"}, "worker")
	opts, _ := redis.ParseURL(testutil.RedisURL())
	waitForText(t, logs, fmt.Sprintf("certflow worker running: queue %s, concurrency 6 over 2 servers, Redis %s\n", prefix, opts.Addr))
}

package testutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/app"
	"github.com/certflow/certflow/internal/config"
)

// Certflow is a whole certflow (API and worker in one process, as `serve`
// runs it) against the real test Redis, under a key prefix of its own.
type Certflow struct {
	URL string
	// HTTPSURL is the HTTPS listener's (https://localhost:port, the name
	// the issued server certificate is for); HTTPSClient trusts it.
	HTTPSURL string
	Config   *config.Config
	App      *app.App
	Redis    redis.UniversalClient
	Prefix   string
	Logs     *SyncBuffer
	stop     func()
}

// Stop stops this certflow (API and worker) before the test ends, as a
// process that goes away; its Redis data stays.
func (c *Certflow) Stop() { c.stop() }

// Test users, with their credentials.
const (
	AdminToken    = "test-admin-token"
	AliceToken    = "alice-token" // requester
	BobToken      = "bob-token"   // approver
	CarolPassword = "carol-password"
)

// DefinitionsDir is the repository's definitions folder.
func DefinitionsDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "definitions")
}

var carolHash = sync.OnceValue(func() string {
	h, _ := bcrypt.GenerateFromPassword([]byte(CarolPassword), bcrypt.MinCost)
	return string(h)
})

// TestConfig is the configuration StartCertflow begins from: real Redis,
// a temporary data dir, loopback callbacks allowed, a short callback
// retry schedule, users alice (requester), bob (approver), carol
// (requester, Basic auth).
func TestConfig(t testing.TB, prefix string) *config.Config {
	cfg := config.Default()
	cfg.RedisURL = RedisURL()
	cfg.KeyPrefix, cfg.Queue = prefix, prefix
	cfg.DataDir = t.TempDir()
	cfg.KEKFile = filepath.Join(cfg.DataDir, "kek")
	cfg.Definitions = DefinitionsDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS.Listen = "127.0.0.1:0"
	cfg.API.SyncWait = 10 * time.Second
	cfg.Callbacks.AllowPrivate = true
	cfg.Callbacks.Schedule = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
	cfg.Worker.Concurrency = 8
	cfg.Auth.Users = []config.User{
		{Name: "alice", Token: AliceToken, Roles: []string{config.RoleRequester}},
		{Name: "bob", Token: BobToken, Roles: []string{config.RoleApprover}},
		{Name: "carol", PasswordHash: carolHash(), Roles: []string{config.RoleRequester}},
	}
	return &cfg
}

// StartCertflow starts certflow with TestConfig changed by mutate (may be
// nil), and stops it when the test ends.
func StartCertflow(t testing.TB, mutate func(*config.Config)) *Certflow {
	t.Helper()
	rdb, prefix := Redis(t)
	cfg := TestConfig(t, prefix)
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	logs := &SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.Open(cfg, app.RoleBoth, AdminToken, log, io.Discard)
	if err != nil {
		t.Fatalf("open certflow: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := a.ServeAPI(ctx, func(addr net.Addr) { addrc <- addr }); err != nil {
			t.Errorf("api: %v", err)
			close(addrc)
		}
	}()
	go func() {
		defer wg.Done()
		if err := a.RunWorker(ctx); err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	a.FollowReloads(ctx)
	stop := sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		a.Close()
	})
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("certflow logs:\n%s", logs.String())
		}
	})
	addr, ok := <-addrc
	if !ok {
		t.FailNow()
	}
	cf := &Certflow{URL: "http://" + addr.String(), Config: cfg, App: a, Redis: rdb, Prefix: prefix, Logs: logs, stop: stop}
	if tlsAddr := a.HTTPSAddr(); tlsAddr != nil {
		cf.HTTPSURL = fmt.Sprintf("https://localhost:%d", tlsAddr.(*net.TCPAddr).Port)
	}
	return cf
}

// HTTPSClient is a client of the HTTPS listener that trusts only the CA
// bundle certflow wrote (or, with tls.cert_file, the roots given), and
// verifies the server's name as any client would.
func (c *Certflow) HTTPSClient(t testing.TB, roots ...*x509.Certificate) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if bundle := c.App.TLS.BundlePath(); bundle != "" {
		data, err := os.ReadFile(bundle)
		if err != nil || !pool.AppendCertsFromPEM(data) {
			t.Fatalf("CA bundle %s: %v", bundle, err)
		}
	}
	for _, r := range roots {
		pool.AddCert(r)
	}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true,
	}}
}

// Response is an HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test if it is not JSON.
func (r *Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("answer %d is not JSON (%v): %s", r.Status, err, r.Body)
	}
}

// Do sends a request to certflow as the admin, unless headers (name,
// value pairs) set Authorization ("" to send none). body is sent as is
// when it is a string or []byte, else as JSON.
func (c *Certflow) Do(t testing.TB, method, path string, body any, headers ...string) *Response {
	t.Helper()
	return Do(t, c.URL, method, path, body, headers...)
}

// Do is Certflow.Do against any base URL. The exchange is checked against
// certflow's OpenAPI document (CheckContract).
func Do(t testing.TB, base, method, path string, body any, headers ...string) *Response {
	t.Helper()
	return DoWith(t, &http.Client{Timeout: 60 * time.Second}, base, method, path, body, headers...)
}

// DoWith is Do through client (an HTTPS client, say).
func DoWith(t testing.TB, client *http.Client, base, method, path string, body any, headers ...string) *Response {
	t.Helper()
	var sent []byte
	switch b := body.(type) {
	case nil:
	case string:
		sent = []byte(b)
	case []byte:
		sent = b
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		sent = data
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(sent)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
	CheckContract(t, req, sent, out)
	return out
}

// EnrollBody is a valid POST /Enrollment/CSR body for csr, with extra
// fields set over it (a nil value deletes a field).
func EnrollBody(csr []byte, extra map[string]any) map[string]any {
	b := map[string]any{
		"CSR":       base64.StdEncoding.EncodeToString(csr),
		"Template":  config.DefaultTemplate,
		"Timestamp": time.Now().UTC().Format(time.RFC3339),
	}
	for k, v := range extra {
		if v == nil {
			delete(b, k)
		} else {
			b[k] = v
		}
	}
	return b
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

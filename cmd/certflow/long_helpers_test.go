//go:build long

package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
)

// rig is one certflow deployment made of real processes (`certflow api`,
// any number of `certflow worker`s) sharing a data dir, a config file, a
// definitions folder and one Redis.
type rig struct {
	t      *testing.T
	dir    string
	env    []string
	base   string // the API's URL
	prefix string
	rdb    *redis.Client // straight to the rig's Redis, for store checks
	store  *store.Store
}

// rigOptions shape a rig.
type rigOptions struct {
	RedisURL   string // default: the shared test Redis under a fresh prefix
	Prefix     string // required with RedisURL
	Definition string // the one workflow definition (YAML)
	Worker     string // YAML lines under worker: (indented two spaces)
}

// newRig writes the config and definition, makes the CA once (`ca init`)
// and returns the rig; start its processes with api and worker.
func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	if o.RedisURL == "" {
		_, o.Prefix = testutil.Redis(t) // deletes the prefix's keys at the end
		o.RedisURL = testutil.RedisURL()
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "defs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "defs", "flow.yaml"), []byte(o.Definition), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`key_prefix: %[1]s
queue: %[1]s
api:
  rate_limit: 0
worker:
%[2]s
callbacks: {allow_private: true}
auth:
  users:
    - {name: alice, token: alice-token, roles: [requester]}
`, o.Prefix, o.Worker)
	if err := os.WriteFile(filepath.Join(dir, "certflow.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	port := testutil.FreePort(t)
	r := &rig{
		t: t, dir: dir, prefix: o.Prefix, base: fmt.Sprintf("http://127.0.0.1:%d", port),
		env: []string{
			"CERTFLOW_REDIS_URL=" + o.RedisURL, "CERTFLOW_CONFIG=certflow.yaml",
			"CERTFLOW_DEFINITIONS=defs", fmt.Sprintf("CERTFLOW_LISTEN=127.0.0.1:%d", port),
		},
	}
	opts, err := redis.ParseURL(o.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	r.rdb = redis.NewClient(opts)
	t.Cleanup(func() { r.rdb.Close() })
	r.store = store.New(r.rdb, o.Prefix)
	if out, code := run2(t, dir, "ca", "init", "--config", "certflow.yaml"); code != 0 {
		t.Fatalf("ca init: %s", out)
	}
	return r
}

// api starts `certflow api` and waits until it listens.
func (r *rig) api() (*exec.Cmd, *testutil.SyncBuffer) {
	r.t.Helper()
	cmd, logs := startProcess(r.t, r.dir, r.env, "api")
	waitForText(r.t, logs, "listening on")
	return cmd, logs
}

// worker starts a `certflow worker`.
func (r *rig) worker() (*exec.Cmd, *testutil.SyncBuffer) {
	r.t.Helper()
	return startProcess(r.t, r.dir, r.env, "worker")
}

// kill9 kills a process with SIGKILL and reaps it.
func kill9(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

// httpClient has a timeout: no test call can hang.
var httpClient = &http.Client{Timeout: 30 * time.Second}

// call is one HTTP exchange as alice; unlike testutil.Do it returns
// errors, so it may run outside the test's goroutine.
func (r *rig) call(method, path string, body any, headers ...string) (int, http.Header, []byte, error) {
	return r.callWith(context.Background(), method, path, body, headers...)
}

// callCtx is call bounded by ctx.
func (r *rig) callCtx(ctx context.Context, method, path string, body any, headers ...string) (int, []byte, error) {
	status, _, data, err := r.callWith(ctx, method, path, body, headers...)
	return status, data, err
}

func (r *rig) callWith(ctx context.Context, method, path string, body any, headers ...string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer alice-token")
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data, err
}

// answer is what the tests read of an enrollment answer or a poll.
type answer struct {
	CertificateInformation struct {
		SerialNumber       string
		KeyfactorID        int64
		KeyfactorRequestId int64
		RequestDisposition string
	}
}

// submitAsync posts an enrollment for a fresh CSR named cn with Prefer:
// respond-async and returns the answer's status, request id and body.
func (r *rig) submitAsync(csr []byte) (int, int64, []byte, error) {
	status, _, body, err := r.call("POST", "/Enrollment/CSR", testutil.EnrollBody(csr, nil),
		"x-certificateformat", "PEM", "Prefer", "respond-async")
	if err != nil {
		return 0, 0, nil, err
	}
	var a answer
	if status == http.StatusAccepted {
		if err := json.Unmarshal(body, &a); err != nil {
			return status, 0, body, fmt.Errorf("202 that is not JSON: %v: %s", err, body)
		}
	}
	return status, a.CertificateInformation.KeyfactorRequestId, body, nil
}

// mustSubmitAsync submits and fails the test unless the answer is 202.
func (r *rig) mustSubmitAsync(cn string) int64 {
	r.t.Helper()
	csr, _ := testutil.CSR(r.t, cn)
	status, id, body, err := r.submitAsync(csr)
	if err != nil || status != http.StatusAccepted || id <= 0 {
		r.t.Fatalf("submit %s: %d %s %v", cn, status, body, err)
	}
	return id
}

// errLost is a request the API no longer knows: with Redis answering,
// a record that is gone will not come back.
var errLost = errors.New("lost")

// mustIssueSync enrolls synchronously and fails the test unless the
// answer is 200 ISSUED.
func (r *rig) mustIssueSync(cn string) int64 {
	r.t.Helper()
	csr, _ := testutil.CSR(r.t, cn)
	status, _, body, err := r.call("POST", "/Enrollment/CSR", testutil.EnrollBody(csr, nil), "x-certificateformat", "PEM")
	var a answer
	if err == nil {
		err = json.Unmarshal(body, &a)
	}
	if err != nil || status != http.StatusOK || a.CertificateInformation.RequestDisposition != "ISSUED" {
		r.t.Fatalf("synchronous enrollment of %s: %d %s %v", cn, status, body, err)
	}
	return a.CertificateInformation.KeyfactorRequestId
}

// disposition polls one request.
func (r *rig) disposition(id int64) (string, error) {
	status, _, body, err := r.call("GET", fmt.Sprintf("/Enrollment/Requests/%d", id), nil)
	if err != nil {
		return "", err
	}
	if status == http.StatusNotFound {
		return "", fmt.Errorf("GET request %d: %w: %s", id, errLost, body)
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("GET request %d: %d %s", id, status, body)
	}
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return "", err
	}
	return a.CertificateInformation.RequestDisposition, nil
}

// waitIssued polls every request until all are ISSUED, failing the test
// as soon as one settles otherwise or is not found, or when within runs
// out. Polls that
// fail (Redis still coming back) are retried. The loop is bounded by
// within and by a round count.
func (r *rig) waitIssued(ids []int64, within time.Duration) {
	r.t.Helper()
	left := map[int64]string{}
	for _, id := range ids {
		left[id] = "unpolled"
	}
	deadline := time.Now().Add(within)
	for round := 0; len(left) > 0; round++ {
		var mu sync.Mutex
		var wg sync.WaitGroup
		var bad []string
		sem := make(chan struct{}, 8)
		pending := make([]int64, 0, len(left))
		for id := range left {
			pending = append(pending, id)
		}
		for _, id := range pending {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				d, err := r.disposition(id)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, errLost):
					bad = append(bad, err.Error())
				case err != nil:
					left[id] = err.Error()
				case d == "ISSUED":
					delete(left, id)
				case d == "QUEUED" || d == "RUNNING":
					left[id] = d
				default:
					bad = append(bad, fmt.Sprintf("request %d ended %s", id, d))
				}
			}()
		}
		wg.Wait()
		if len(bad) > 0 {
			r.t.Fatalf("%s", strings.Join(bad, "; "))
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) || round == 2000 {
			n := 0
			var sample []string
			for id, st := range left {
				if n++; n <= 10 {
					sample = append(sample, fmt.Sprintf("%d: %s", id, st))
				}
			}
			r.t.Fatalf("%d of %d requests not ISSUED after %v (e.g. %s)", len(left), len(ids), within, strings.Join(sample, ", "))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkOneCertificateEach reads every request record under the rig's
// prefix straight from Redis and checks that each of ids has one
// certificate, issued for that request's own CSR (its public key), that
// no two certificates in the store share a serial number and, with
// exact, that no other request holds one. Given worker logs, it also
// checks that the CA signed exactly len(ids) times (a worker logs each
// signature it stores, once).
func (r *rig) checkOneCertificateEach(ids []int64, exact bool, workerLogs ...*testutil.SyncBuffer) {
	r.t.Helper()
	ctx := context.Background()
	want := map[int64]bool{}
	for _, id := range ids {
		want[id] = true
	}
	// Every request record in the store, whoever made it.
	var records []string
	iter := r.rdb.Scan(ctx, 0, r.prefix+":request:{*}", 1000).Iterator()
	for iter.Next(ctx) {
		if strings.HasSuffix(iter.Val(), "}") {
			records = append(records, iter.Val())
		}
	}
	if err := iter.Err(); err != nil {
		r.t.Fatal(err)
	}
	serials := map[string]string{} // serial → record key
	withCert := 0
	for _, key := range records {
		has, err := r.rdb.HExists(ctx, key, "x").Result()
		if err != nil {
			r.t.Fatal(err)
		}
		if !has {
			continue
		}
		withCert++
		id, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(key, r.prefix+":request:{"), "}"), 10, 64)
		if err != nil {
			r.t.Fatalf("%s: not a request's key", key)
		}
		c, err := r.store.Certificate(ctx, id)
		if err != nil {
			r.t.Fatalf("%s: certificate does not decode: %v", key, err)
		}
		if other, dup := serials[c.SerialNumber]; dup {
			r.t.Errorf("%s and %s hold certificates with serial %s", other, key, c.SerialNumber)
		}
		serials[c.SerialNumber] = key
		if exact && !want[c.RequestID] {
			r.t.Errorf("%s holds a certificate, but the test never had that request accepted", key)
		}
	}
	if exact && withCert != len(ids) {
		r.t.Errorf("%d certificates in the store (of %d request records), want %d", withCert, len(records), len(ids))
	}
	for _, id := range ids {
		req, err := r.store.Get(ctx, id)
		if err != nil {
			r.t.Fatalf("request %d: %v", id, err)
		}
		c, err := req.Certificate()
		if err != nil || c == nil {
			r.t.Fatalf("request %d has no certificate: %v", id, err)
		}
		if c.RequestID != id || len(c.Chain) == 0 {
			r.t.Fatalf("request %d holds certificate %+v", id, c)
		}
		leaf, err := x509.ParseCertificate(c.Chain[0])
		if err != nil {
			r.t.Fatalf("request %d: certificate does not parse: %v", id, err)
		}
		csr, err := x509.ParseCertificateRequest(req.CSR)
		if err != nil {
			r.t.Fatal(err)
		}
		if !pki.SamePublicKey(leaf.PublicKey, csr.PublicKey) {
			r.t.Errorf("request %d: its certificate is for another key", id)
		}
		if serial := pki.SerialHex(leaf); serial != c.SerialNumber {
			r.t.Errorf("request %d: stored serial %s, certificate's %s", id, c.SerialNumber, serial)
		}
	}
	if len(workerLogs) > 0 {
		signed := 0
		for _, l := range workerLogs {
			signed += strings.Count(l.String(), `msg="certificate issued"`)
		}
		if signed != len(ids) {
			r.t.Errorf("the CA signed %d times for %d requests", signed, len(ids))
		}
	}
}

// checkSerialsAnswered checks that the API reports the stored certificate
// of each request.
func (r *rig) checkSerialsAnswered(ids []int64) {
	r.t.Helper()
	ctx := context.Background()
	for _, id := range ids {
		status, _, body, err := r.call("GET", fmt.Sprintf("/Enrollment/Requests/%d", id), nil)
		if err != nil || status != 200 {
			r.t.Fatalf("GET %d: %d %s %v", id, status, body, err)
		}
		var a answer
		if err := json.Unmarshal(body, &a); err != nil {
			r.t.Fatal(err)
		}
		c, err := r.store.CertificateOf(ctx, id)
		if err != nil {
			r.t.Fatal(err)
		}
		if a.CertificateInformation.SerialNumber != c.SerialNumber || a.CertificateInformation.KeyfactorID != id {
			r.t.Errorf("request %d: API reports serial %s (certificate %d), store holds %s", id,
				a.CertificateInformation.SerialNumber, a.CertificateInformation.KeyfactorID, c.SerialNumber)
		}
	}
}

// waitExit waits (bounded) for a process to exit and returns its error.
func waitExit(t *testing.T, cmd *exec.Cmd, within time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("%v did not exit within %v", cmd.Args, within)
		return errors.New("unreachable")
	}
}

// hold is an HTTP endpoint for workflow steps: it counts calls per path
// and, while armed, holds each call until released (or until the caller
// goes away), telling the test of each arrival.
type hold struct {
	mu      sync.Mutex
	calls   map[string]int
	armed   bool
	release chan struct{}
	arrived chan string
}

func newHold() *hold {
	return &hold{calls: map[string]int{}, release: make(chan struct{}), arrived: make(chan string, 1000)}
}

func (h *hold) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.calls[r.URL.Path]++
	n, armed, release := h.calls[r.URL.Path], h.armed, h.release
	h.mu.Unlock()
	if armed {
		select {
		case h.arrived <- r.URL.Path:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"call": %d}`, n)
}

// arm makes calls wait until the next releaseAll.
func (h *hold) arm() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.armed = true
	h.release = make(chan struct{})
}

// releaseAll lets every held call answer and disarms.
func (h *hold) releaseAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.armed {
		close(h.release)
	}
	h.armed = false
}

func (h *hold) count(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[path]
}

// waitArrivals waits (bounded) for n held calls.
func (h *hold) waitArrivals(t *testing.T, n int, within time.Duration) []string {
	t.Helper()
	var got []string
	deadline := time.After(within)
	for len(got) < n {
		select {
		case p := <-h.arrived:
			got = append(got, p)
		case <-deadline:
			t.Fatalf("%d of %d held calls arrived within %v", len(got), n, within)
		}
	}
	return got
}

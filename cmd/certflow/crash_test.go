package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/testutil"
)

// counter counts calls per path; the first call to /slow blocks until the
// test kills the worker making it.
type counter struct {
	mu      sync.Mutex
	calls   map[string]int
	inSlow  chan struct{}
	release chan struct{}
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.calls[r.URL.Path]++
	n := c.calls[r.URL.Path]
	c.mu.Unlock()
	if r.URL.Path == "/slow" && n == 1 {
		c.inSlow <- struct{}{}
		select {
		case <-c.release:
		case <-r.Context().Done():
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"call": %d}`, n)
}

func (c *counter) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[path]
}

// TestAWorkerKilledMidWorkflowResumesAfterTheLastFinishedStep kills a
// worker process with SIGKILL while it is inside the third http step and
// shows, with a counting HTTP endpoint, that the next worker resumes at
// that step: no finished step runs twice, one certificate is signed. Pure
// steps (validate, set) sit between them, whose results are only
// persisted with the next checkpoint: the one just before the killed step
// runs again, harmlessly.
func TestAWorkerKilledMidWorkflowResumesAfterTheLastFinishedStep(t *testing.T) {
	t.Parallel()
	c := &counter{calls: map[string]int{}, inSlow: make(chan struct{}, 1), release: make(chan struct{})}
	srv := httptest.NewServer(c)
	defer srv.Close()
	defer close(c.release)

	_, prefix := testutil.Redis(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "defs"), 0o755)
	def := fmt.Sprintf(`name: counted
trigger: enrollment
steps:
  - {id: check, uses: validate}
  - {id: a, uses: http, with: {url: "%[1]s/a"}}
  - {id: b, uses: http, with: {url: "%[1]s/b"}}
  - {id: tier, uses: set, with: {tier: gold}}
  - {id: slow, uses: http, with: {url: "%[1]s/slow"}}
  - {id: issue, uses: issue}
  - {id: c, uses: http, with: {url: "%[1]s/c"}}
`, srv.URL)
	os.WriteFile(filepath.Join(dir, "defs", "counted.yaml"), []byte(def), 0o644)
	cfg := fmt.Sprintf(`key_prefix: %[1]s
queue: %[1]s
worker:
  task_timeout: 5s
  reconcile_after: 6s
callbacks: {allow_private: true}
auth:
  users:
    - {name: alice, token: alice-token, roles: [requester]}
`, prefix)
	os.WriteFile(filepath.Join(dir, "certflow.yaml"), []byte(cfg), 0o600)
	env, base := startAPI(t, dir)
	victim, victimLogs := startProcess(t, dir, env, "worker")

	loc := submitAsync(t, base, "crash.example.com")
	select {
	case <-c.inSlow:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker never reached the third step")
	}
	victim.Process.Signal(syscall.SIGKILL)
	victim.Wait()

	// The next worker resumes it: asynq once the dead worker's lease
	// runs out, or the reconciler once the request made no progress for
	// reconcile_after — whichever comes first.
	_, nextLogs := startProcess(t, dir, env, "worker")
	deadline := time.Now().Add(3 * time.Minute)
	var st struct {
		CertificateInformation struct{ RequestDisposition string }
	}
	for {
		testutil.Do(t, base, "GET", loc, nil, "Authorization", "Bearer alice-token").JSON(t, &st)
		if st.CertificateInformation.RequestDisposition == "ISSUED" {
			break
		}
		if d := st.CertificateInformation.RequestDisposition; d != "RUNNING" && d != "QUEUED" || time.Now().After(deadline) {
			t.Fatalf("request ended %s", d)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for path, want := range map[string]int{"/a": 1, "/b": 1, "/slow": 2, "/c": 1} {
		if got := c.count(path); got != want {
			t.Errorf("%s was called %d times, want %d", path, got, want)
		}
	}
	// Each fresh signature is logged once by the worker that made it.
	signed := strings.Count(victimLogs.String()+nextLogs.String(), `msg="certificate issued"`)
	if signed != 1 {
		t.Errorf("%d certificates signed, want 1", signed)
	}
}

func waitForText(t *testing.T, logs *testutil.SyncBuffer, text string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("%q never appeared:\n%s", text, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

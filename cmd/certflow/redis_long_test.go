//go:build long

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

// pacedSteps answers every call after a short pause, so that a worker
// runs behind the submits and a backlog of accepted requests builds up.
type pacedSteps struct{ calls atomic.Int64 }

func (p *pacedSteps) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.calls.Add(1)
	select {
	case <-time.After(40 * time.Millisecond):
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"ok": true}`)
}

// TestLongRedisKill9WithAOFLosesNothingAcknowledged submits enrollments
// from eight clients without pause while a worker works through them,
// kills Redis (appendonly yes, appendfsync always) with SIGKILL in the
// middle, and restarts it from its AOF. Every request answered 202 before
// the kill — queued or running when Redis died — completes ISSUED with a
// certificate of its own, with the same certflow processes; a new submit
// works too.
func TestLongRedisKill9WithAOFLosesNothingAcknowledged(t *testing.T) {
	t.Parallel()
	redisSrv := testutil.StartRedisServer(t, "--appendonly", "yes", "--appendfsync", "always")
	steps := &pacedSteps{}
	srv := httptest.NewServer(steps)
	defer srv.Close()
	r := newRig(t, rigOptions{
		RedisURL: redisSrv.URL(), Prefix: testutil.Prefix(t),
		Definition: fmt.Sprintf(`name: paced
trigger: enrollment
steps:
  - {id: paced, uses: http, with: {url: "%s/paced"}}
  - {id: issue, uses: issue}
`, srv.URL),
		Worker: "  concurrency: 4\n  task_timeout: 5s\n  reconcile_after: 8s",
	})
	r.api()
	r.worker()
	// One synchronous enrollment first: the worker is up and taking tasks
	// before the clients start.
	r.mustIssueSync("warm-up.example.com")

	const clients, killAt = 8, 120
	var (
		mu      sync.Mutex
		acked   []int64
		refused = map[int]int{} // status (0: no answer) → count
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	killed := make(chan struct{})
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000 && !stop.Load(); i++ {
				csr, _ := testutil.CSR(t, fmt.Sprintf("aof-%d-%d.example.com", c, i))
				status, id, _, err := r.submitAsync(csr)
				mu.Lock()
				switch {
				case err == nil && status == http.StatusAccepted:
					acked = append(acked, id)
					if len(acked) == killAt {
						close(killed)
					}
				case err != nil:
					refused[0]++
				default:
					refused[status]++
				}
				failedAfterKill := status != http.StatusAccepted && len(acked) >= killAt
				mu.Unlock()
				if failedAfterKill {
					return // this client has seen the outage
				}
			}
		}()
	}
	select {
	case <-killed:
	case <-time.After(60 * time.Second):
		stop.Store(true)
		wg.Wait()
		t.Fatalf("only %d submits acknowledged in 60 s; refused: %v", len(acked), refused)
	}
	redisSrv.Kill()
	started := steps.calls.Load()
	wg.Wait() // every client stops at its first refusal (bounded by its loop)
	stop.Store(true)
	mu.Lock()
	ids := append([]int64(nil), acked...)
	t.Logf("acknowledged %d (the worker had started %d) before Redis died; refused: %v", len(ids), started, refused)
	for status := range refused {
		if status != 0 && status != http.StatusServiceUnavailable {
			t.Errorf("a submit during the outage was answered %d, want 503", status)
		}
	}
	mu.Unlock()

	redisSrv.Start() // same folder: replays the AOF
	// Generous: an issue lock taken just before the kill outlives it (a
	// minute) and is waited out with backoff.
	r.waitIssued(ids, 150*time.Second)
	r.checkOneCertificateEach(ids, false)
	r.checkSerialsAnswered(ids)

	// The same processes (one api, one worker: nothing restarted them)
	// serve new work.
	r.mustIssueSync("after-restart.example.com")
}

// TestLongRedisOutageAnswers503AndLosesNothing takes Redis away twice
// from a running `certflow api` and `certflow worker` — frozen (SIGSTOP:
// connections open, no answers, as a hung or partitioned Redis) and
// killed (SIGKILL, restarted from its AOF) — each time with requests
// accepted before it, some in a step and some queued. During the outage
// submits and polls answer 503 in Keyfactor's error shape within 5 s and
// /readyz says not ready; once Redis is back, with no certflow process
// restarted, /readyz says ready, every request accepted before the outage
// is ISSUED and a new submit is issued.
func TestLongRedisOutageAnswers503AndLosesNothing(t *testing.T) {
	t.Parallel()
	redisSrv := testutil.StartRedisServer(t, "--appendonly", "yes", "--appendfsync", "always")
	h := newHold()
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer h.releaseAll()
	const concurrency = 4
	r := newRig(t, rigOptions{
		RedisURL: redisSrv.URL(), Prefix: testutil.Prefix(t),
		Definition: fmt.Sprintf(`name: held
trigger: enrollment
steps:
  - {id: held, uses: http, with: {url: "%s/held/${{ request.ID }}"}}
  - {id: issue, uses: issue}
`, srv.URL),
		Worker: fmt.Sprintf("  concurrency: %d\n  task_timeout: 4s\n  reconcile_after: 6s", concurrency),
	})
	r.api()
	r.worker()
	r.mustIssueSync("warm-up.example.com")

	var accepted []int64
	for _, outage := range []string{"frozen", "killed"} {
		h.arm()
		var before []int64
		for i := range 3 * concurrency {
			before = append(before, r.mustSubmitAsync(fmt.Sprintf("%s-%d.example.com", outage, i)))
		}
		h.waitArrivals(t, concurrency, 30*time.Second) // every slot in the step, the rest queued
		if outage == "frozen" {
			redisSrv.Pause()
		} else {
			redisSrv.Kill()
		}
		// The held steps end during the outage: their checkpoints fail.
		h.releaseAll()
		r.checkUnavailable(t, outage, before[0])
		if outage == "frozen" {
			redisSrv.Resume()
		} else {
			redisSrv.Start()
		}
		status, _, body, err := r.call("GET", "/readyz", nil)
		if err != nil || status != http.StatusOK {
			t.Fatalf("/readyz once Redis is back (%s): %d %s %v", outage, status, body, err)
		}
		r.waitIssued(before, 150*time.Second)
		r.mustIssueSync("after-" + outage + ".example.com")
		accepted = append(accepted, before...)
	}
	r.checkOneCertificateEach(accepted, false)
}

// checkUnavailable checks, with Redis unreachable, that submits (three at
// once) and a poll answer 503 with Keyfactor's error body within 5 s and
// that /readyz answers not ready.
func (r *rig) checkUnavailable(t *testing.T, outage string, known int64) {
	t.Helper()
	csr, _ := testutil.CSR(t, "during-"+outage+".example.com")
	type result struct {
		what   string
		status int
		body   []byte
		err    error
		took   time.Duration
	}
	calls := []struct{ what, method, path string }{
		{"submit", "POST", "/Enrollment/CSR"}, {"submit", "POST", "/Enrollment/CSR"}, {"submit", "POST", "/Enrollment/CSR"},
		{"poll", "GET", fmt.Sprintf("/Enrollment/Requests/%d", known)},
		{"readyz", "GET", "/readyz"},
	}
	results := make(chan result, len(calls))
	for _, c := range calls {
		go func() {
			var body any
			if c.method == "POST" {
				body = testutil.EnrollBody(csr, nil)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			status, data, err := r.callCtx(ctx, c.method, c.path, body, "x-certificateformat", "PEM")
			results <- result{c.what, status, data, err, time.Since(start)}
		}()
	}
	for range calls {
		res := <-results
		if res.err != nil {
			t.Errorf("%s with Redis %s: no answer within 5 s: %v", res.what, outage, res.err)
			continue
		}
		if res.status != http.StatusServiceUnavailable {
			t.Errorf("%s with Redis %s: %d %s, want 503", res.what, outage, res.status, res.body)
			continue
		}
		if res.what == "readyz" {
			if !strings.Contains(string(res.body), "not ready") {
				t.Errorf("/readyz with Redis %s: %s", outage, res.body)
			}
			continue
		}
		var e map[string]any
		if err := json.Unmarshal(res.body, &e); err != nil || len(e) != 2 || e["ErrorCode"] != keyfactor.CodeUnavailable || e["Message"] == "" {
			t.Errorf("%s with Redis %s: body %s is not Keyfactor's error shape with code %s", res.what, outage, res.body, keyfactor.CodeUnavailable)
		}
		t.Logf("%s with Redis %s: 503 in %v", res.what, outage, res.took.Round(time.Millisecond))
	}
	if t.Failed() {
		t.FailNow()
	}
}

//go:build long

package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	r.waitIssued(ids, 120*time.Second)
	r.checkOneCertificateEach(ids, false)
	r.checkSerialsAnswered(ids)

	// The same processes (one api, one worker: nothing restarted them)
	// serve new work.
	r.mustIssueSync("after-restart.example.com")
}

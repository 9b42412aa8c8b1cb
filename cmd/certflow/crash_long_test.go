//go:build long

package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/testutil"
)

// stepGate serves the http steps around the issue step. Until tripped is
// set it answers at once; after `after` calls to /after/… it holds every
// call (counting how many it holds) until the caller goes away, so that a
// worker can be killed with all its task slots in the middle of a step.
type stepGate struct {
	mu       sync.Mutex
	calls    map[string]int // path → calls
	afters   int
	holdFrom int  // hold once afters reaches this (0: never)
	holding  bool // holding now
	held     int  // calls held right now
	heldOnce map[string]bool
}

func (g *stepGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.calls[r.URL.Path]++
	if strings.HasPrefix(r.URL.Path, "/after/") {
		g.afters++
	}
	if g.holdFrom > 0 && g.afters >= g.holdFrom {
		g.holding = true
	}
	hold := g.holding
	if hold {
		g.held++
		g.heldOnce[r.URL.Path] = true
	}
	g.mu.Unlock()
	if hold {
		<-r.Context().Done() // the worker died
		g.mu.Lock()
		g.held--
		g.mu.Unlock()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"ok": true}`)
}

func (g *stepGate) heldNow() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

// TestLongWorkerKill9With300Requests: 300 requests accepted
// asynchronously by `certflow api` before any worker runs; a `certflow
// worker` is killed with SIGKILL while every one of its task slots is in
// the middle of a workflow (some before the issue step, some after it);
// another worker finishes the job. Every request ends ISSUED with one
// certificate of its own: 300 certificates, 300 distinct serials, 300
// signatures by the CA — none signed twice.
func TestLongWorkerKill9With300Requests(t *testing.T) {
	t.Parallel()
	const (
		total       = 300
		concurrency = 16
		killAfter   = 100 // /after calls before the victim's slots are held
	)
	gate := &stepGate{calls: map[string]int{}, heldOnce: map[string]bool{}, holdFrom: killAfter}
	srv := httptest.NewServer(gate)
	defer srv.Close()
	r := newRig(t, rigOptions{
		Definition: fmt.Sprintf(`name: around-issue
trigger: enrollment
steps:
  - {id: before, uses: http, with: {url: "%[1]s/before/${{ request.ID }}"}}
  - {id: issue, uses: issue}
  - {id: after, uses: http, with: {url: "%[1]s/after/${{ request.ID }}"}}
`, srv.URL),
		// task_timeout under reconcile_after: the reconciler moves a
		// request on only once no task of it can still be running.
		Worker: fmt.Sprintf("  concurrency: %d\n  task_timeout: 5s\n  reconcile_after: 8s\n  shutdown_timeout: 2s", concurrency),
	})
	r.api()

	// Accept all 300 first: nothing runs them yet.
	ids := make([]int64, total)
	errs := make(chan error, total)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range total {
		csr, _ := testutil.CSR(t, fmt.Sprintf("crash-%d.example.com", i))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			status, id, body, err := r.submitAsync(csr)
			if err == nil && (status != http.StatusAccepted || id <= 0) {
				err = fmt.Errorf("submit %d: %d %s", i, status, body)
			}
			if err != nil {
				errs <- err
				return
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	victim, victimLogs := r.worker()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; gate.heldNow() < concurrency; i++ {
		if time.Now().After(deadline) || i == 6000 {
			t.Fatalf("the victim never had all %d slots in a step (%d held)\n%s", concurrency, gate.heldNow(), victimLogs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	kill9(victim)
	gate.mu.Lock()
	gate.holdFrom, gate.holding = 0, false
	inFlight := make([]string, 0, len(gate.heldOnce))
	for p := range gate.heldOnce {
		inFlight = append(inFlight, p)
	}
	doneBefore := gate.afters - len(gate.heldOnce)
	gate.mu.Unlock()
	t.Logf("killed the worker with %d requests in a step; about %d had finished", len(inFlight), doneBefore)

	// Another worker: asynq gives the dead worker's tasks back once
	// their lease expires, the reconciler once they made no progress for
	// reconcile_after — whichever comes first.
	_, nextLogs := r.worker()
	r.waitIssued(ids, 150*time.Second)
	r.checkOneCertificateEach(ids, true, victimLogs, nextLogs)
	r.checkSerialsAnswered(ids)

	// The requests caught in a step ran that step again, resuming there
	// (the step after the issue step ran again without a second signature).
	for _, p := range inFlight {
		if n := gate.count(p); n < 2 {
			t.Errorf("%s, interrupted by the kill, was called %d times", p, n)
		}
	}
	for _, id := range ids {
		for _, step := range []string{"before", "after"} {
			if n := gate.count(fmt.Sprintf("/%s/%d", step, id)); n < 1 || n > 2 {
				t.Errorf("request %d: step %s called %d times", id, step, n)
			}
		}
	}
}

func (g *stepGate) count(path string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[path]
}

// TestLongWorkersKilledAtArbitraryMomentsIssueEachRequestOnce is the
// same 300 requests with nothing held: two workers in turn are killed
// with SIGKILL at whatever their 16 tasks are doing once 60 and then 150
// requests have reached the last step — inside the issue step, between a
// signature and its storing, in a checkpoint — and a third finishes. Every
// request ends ISSUED with one certificate for its own key; the store
// holds exactly 300 certificates with 300 distinct serials. (It takes
// about a minute: a kill inside the issue step leaves the request's issue
// lock held until it expires.)
func TestLongWorkersKilledAtArbitraryMomentsIssueEachRequestOnce(t *testing.T) {
	t.Parallel()
	const total = 300
	gate := &stepGate{calls: map[string]int{}, heldOnce: map[string]bool{}}
	srv := httptest.NewServer(gate)
	defer srv.Close()
	r := newRig(t, rigOptions{
		Definition: fmt.Sprintf(`name: around-issue
trigger: enrollment
steps:
  - {id: before, uses: http, with: {url: "%[1]s/before/${{ request.ID }}"}}
  - {id: issue, uses: issue}
  - {id: after, uses: http, with: {url: "%[1]s/after/${{ request.ID }}"}}
`, srv.URL),
		Worker: "  concurrency: 16\n  task_timeout: 5s\n  reconcile_after: 8s",
	})
	r.api()
	ids := make([]int64, total)
	for i := range total {
		ids[i] = r.mustSubmitAsync(fmt.Sprintf("arbitrary-%d.example.com", i))
	}
	afters := func() int {
		gate.mu.Lock()
		defer gate.mu.Unlock()
		return gate.afters
	}
	for _, killAt := range []int{60, 150} {
		victim, logs := r.worker()
		deadline := time.Now().Add(60 * time.Second)
		for i := 0; afters() < killAt; i++ {
			if time.Now().After(deadline) || i == 30000 {
				t.Fatalf("the worker did not get %d requests to the last step (%d)\n%s", killAt, afters(), logs.String())
			}
			time.Sleep(2 * time.Millisecond)
		}
		kill9(victim)
		t.Logf("killed a worker once %d requests had reached the last step", afters())
	}
	start := time.Now()
	_, lastLogs := r.worker()
	r.waitIssued(ids, 150*time.Second)
	// A worker killed inside the issue step leaves the request's issue
	// lock to expire (a minute): the next one waits it out, retrying.
	t.Logf("the last worker finished in %v; %d times it found a dead worker's issue lock", time.Since(start).Round(time.Second),
		strings.Count(lastLogs.String(), "another worker is issuing for this request"))
	r.checkOneCertificateEach(ids, true)
	r.checkSerialsAnswered(ids)
}

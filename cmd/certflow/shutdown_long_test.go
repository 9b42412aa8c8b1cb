//go:build long

package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// slowSteps serves /pre/<cn> at once and holds /hold/<cn>: the "quick"
// request's call until the test releases it, the "stuck" request's first
// call until its caller gives up; later calls answer at once.
type slowSteps struct {
	mu      sync.Mutex
	calls   map[string]int
	arrived chan string
	quick   chan struct{}
}

func (s *slowSteps) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.calls[r.URL.Path]++
	n := s.calls[r.URL.Path]
	s.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/hold/") && n == 1 {
		s.arrived <- r.URL.Path
		if strings.Contains(r.URL.Path, "quick") {
			select {
			case <-s.quick:
			case <-r.Context().Done():
				return
			}
		} else {
			<-r.Context().Done() // held until the worker gives up on it
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"call": %d}`, n)
}

func (s *slowSteps) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path]
}

// TestLongSIGTERMFinishesOrHandsBackInFlightSteps sends SIGTERM to a
// worker with two requests in the middle of a step: one step finishes
// within worker.shutdown_timeout and its request is ISSUED by that worker
// on its way out; the other outlasts the timeout, so the worker hands its
// task back to the queue and exits cleanly, leaving the request RUNNING
// (not FAILED) at that step. The next worker resumes it there and issues
// it: nothing stays RUNNING, no finished step runs twice.
func TestLongSIGTERMFinishesOrHandsBackInFlightSteps(t *testing.T) {
	t.Parallel()
	steps := &slowSteps{calls: map[string]int{}, arrived: make(chan string, 4), quick: make(chan struct{})}
	srv := httptest.NewServer(steps)
	defer srv.Close()
	defer close(steps.quick)
	r := newRig(t, rigOptions{
		Definition: fmt.Sprintf(`name: slow
trigger: enrollment
steps:
  - {id: pre, uses: http, with: {url: "%[1]s/pre/${{ csr.CommonName }}"}}
  - {id: slow, uses: http, with: {url: "%[1]s/hold/${{ csr.CommonName }}"}}
  - {id: issue, uses: issue}
`, srv.URL),
		// reconcile_after far beyond the test: only the hand-back can
		// bring the stuck request to the next worker in time.
		Worker: "  task_timeout: 60s\n  reconcile_after: 90s\n  shutdown_timeout: 3s",
	})
	r.api()
	victim, victimLogs := r.worker()
	quick := r.mustSubmitAsync("quick.example.com")
	stuck := r.mustSubmitAsync("stuck.example.com")
	for range 2 {
		select {
		case <-steps.arrived:
		case <-time.After(30 * time.Second):
			t.Fatalf("the worker did not reach the slow step of both requests\n%s", victimLogs.String())
		}
	}

	victim.Process.Signal(syscall.SIGTERM)
	// Give the worker a moment to stop fetching before the quick step
	// ends; whether it did or not, the step's task must finish.
	time.Sleep(200 * time.Millisecond)
	steps.quick <- struct{}{}
	if err := waitExit(t, victim, 30*time.Second); err != nil {
		t.Fatalf("the worker exited with %v after SIGTERM\n%s", err, victimLogs.String())
	}
	if !strings.Contains(victimLogs.String(), "certflow stopped") {
		t.Fatalf("the worker did not stop cleanly:\n%s", victimLogs.String())
	}
	if d, err := r.disposition(quick); err != nil || d != "ISSUED" {
		t.Fatalf("the request whose step finished during shutdown is %s (%v), want ISSUED", d, err)
	}
	if d, err := r.disposition(stuck); err != nil || d != "RUNNING" {
		t.Fatalf("the request whose step outlasted the shutdown is %s (%v), want RUNNING", d, err)
	}
	info, err := asynq.NewInspectorFromRedisClient(r.rdb).GetTaskInfo(r.prefix, fmt.Sprintf("run:%d:0", stuck))
	if err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("the stuck request's task after shutdown: %+v %v; want it handed back (pending)", info, err)
	}

	_, nextLogs := r.worker()
	r.waitIssued([]int64{quick, stuck}, 60*time.Second)
	r.checkOneCertificateEach([]int64{quick, stuck}, true, victimLogs, nextLogs)
	for path, want := range map[string]int{
		"/pre/quick.example.com": 1, "/hold/quick.example.com": 1,
		"/pre/stuck.example.com": 1, "/hold/stuck.example.com": 2,
	} {
		if got := steps.count(path); got != want {
			t.Errorf("%s called %d times, want %d", path, got, want)
		}
	}
}

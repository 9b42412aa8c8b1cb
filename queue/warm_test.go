package queue

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

func TestWarmRunsTasksOnGoroutinesItKeeps(t *testing.T) {
	p := newWarm(time.Minute)
	errBoom := errors.New("boom")
	h := p.handler(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		if task.Type() == "fail" {
			return errBoom
		}
		return nil
	}))
	before := runtime.NumGoroutine()
	for i := range 50 {
		typ := "ok"
		if i%2 == 1 {
			typ = "fail"
		}
		err := h.ProcessTask(context.Background(), asynq.NewTask(typ, nil))
		if want := map[string]error{"ok": nil, "fail": errBoom}[typ]; !errors.Is(err, want) || (want == nil && err != nil) {
			t.Fatalf("task %d (%s): error %v, want %v", i, typ, err, want)
		}
	}
	// One task at a time: one goroutine served them all.
	if n := runtime.NumGoroutine() - before; n > 1 {
		t.Errorf("%d goroutines more after 50 tasks in turn, want at most 1", n)
	}
}

func TestWarmNeverLimitsConcurrency(t *testing.T) {
	p := newWarm(time.Minute)
	const n = 20
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	h := p.handler(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		started.Done()
		<-release
		return nil
	}))
	var done sync.WaitGroup
	for range n {
		done.Add(1)
		go func() { defer done.Done(); h.ProcessTask(context.Background(), asynq.NewTask("t", nil)) }()
	}
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	select {
	case <-all: // every handler runs at once
	case <-time.After(10 * time.Second):
		t.Fatal("handlers wait for each other")
	}
	close(release)
	done.Wait()
}

func TestWarmGoroutinesLeaveWhenIdle(t *testing.T) {
	before := runtime.NumGoroutine()
	p := newWarm(20 * time.Millisecond)
	h := p.handler(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil }))
	if err := h.ProcessTask(context.Background(), asynq.NewTask("t", nil)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before: the idle one never left", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A panicking handler must not take the process down from a pool
// goroutine: the panic surfaces in the caller, where asynq recovers it,
// and says where it happened.
func TestWarmRaisesAHandlersPanicInTheCaller(t *testing.T) {
	p := newWarm(time.Minute)
	h := p.handler(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { panicHere(); return nil }))
	var got any
	func() {
		defer func() { got = recover() }()
		h.ProcessTask(context.Background(), asynq.NewTask("t", nil))
	}()
	msg, _ := got.(string)
	if !strings.Contains(msg, "handler exploded") || !strings.Contains(msg, "panicHere") {
		t.Fatalf("recovered %v, want the panic's value and the stack naming panicHere", got)
	}
	// The pool still works.
	h = p.handler(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil }))
	if err := h.ProcessTask(context.Background(), asynq.NewTask("t", nil)); err != nil {
		t.Fatal(err)
	}
}

func panicHere() { panic("handler exploded") }

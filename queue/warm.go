package queue

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
)

// warm runs task handlers on goroutines that outlive one task.
//
// asynq starts a fresh goroutine for every task. A fresh goroutine starts
// with a small stack, and a workflow run (CSR parse, expressions, signing,
// go-redis) needs tens of kilobytes of it: the runtime grows the stack by
// copying it, doubling it each time and walking every frame to do so
// (docs/design-notes.md has what that cost, measured with certflow bench).
// A goroutine kept for the next task keeps the stack it grew. gRPC's server does the same for its streams
// (NumStreamWorkers).
//
// A handler that finds no idle goroutine gets a new one, so the pool never
// limits concurrency (asynq does that). Idle goroutines wait in a stack,
// the last one used on top: its stack and caches are the warmest. One idle
// for warmIdle exits, so an idle worker holds no more than it needs.
type warm struct {
	idleFor time.Duration
	mu      sync.Mutex
	idle    []*warmG
}

// warmG is one of the pool's goroutines; it takes its next job from jobs.
type warmG struct{ jobs chan warmJob }

// warmJob is a handler call, and where to say it has returned.
type warmJob struct {
	run  func()
	done chan struct{}
}

// warmIdle is how long a warm goroutine waits for its next task.
const warmIdle = 30 * time.Second

func newWarm(idle time.Duration) *warm { return &warm{idleFor: idle} }

// handler wraps h to run on the pool. A panic in h is raised again in
// the calling goroutine, where asynq recovers it, with the stack where
// it happened.
func (p *warm) handler(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		var err error
		var panicked any
		done := donePool.Get().(chan struct{})
		p.run(warmJob{done: done, run: func() {
			defer func() {
				if v := recover(); v != nil {
					panicked = fmt.Sprintf("%v\n\nwhere it happened:\n%s", v, debug.Stack())
				}
			}()
			err = h.ProcessTask(ctx, t)
		}})
		<-done
		donePool.Put(done)
		if panicked != nil {
			panic(panicked)
		}
		return err
	})
}

// donePool recycles the channels handler waits on (each is drained
// before it goes back).
var donePool = sync.Pool{New: func() any { return make(chan struct{}, 1) }}

// run hands j to the idle goroutine on top of the stack, or starts one.
func (p *warm) run(j warmJob) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		g := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		g.jobs <- j // buffered: never blocks
		return
	}
	p.mu.Unlock()
	go p.loop(&warmG{jobs: make(chan warmJob, 1)}, j)
}

// loop runs jobs until it has been idle for idleFor. It goes back on the
// idle stack before it says a job is done, so a caller's next task finds
// it there.
func (p *warm) loop(g *warmG, j warmJob) {
	t := time.NewTimer(p.idleFor)
	defer t.Stop()
	for {
		j.run()
		p.mu.Lock()
		p.idle = append(p.idle, g)
		p.mu.Unlock()
		j.done <- struct{}{}
		t.Reset(p.idleFor)
		select {
		case j = <-g.jobs:
		case <-t.C:
			p.mu.Lock()
			if i := slices.Index(p.idle, g); i >= 0 {
				p.idle = slices.Delete(p.idle, i, i+1)
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
			j = <-g.jobs // taken off the stack as the timer fired: its job is on the way
		}
	}
}

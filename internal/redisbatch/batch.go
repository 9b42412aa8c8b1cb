// Package redisbatch sends the pipelines of concurrent callers to one
// Redis together.
package redisbatch

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Batcher sends the pipelines of concurrent callers to Redis together,
// as one pipeline: one write and one read for all of them, on each side,
// instead of one each (group commit, or what rueidis calls auto
// pipelining). It adds no waiting: the first caller's pipeline goes at
// once, and those that come while it is on its way go together right
// after it. Each caller's commands stay together and in its order, so
// what a pipeline relied on (lock, then read) still holds.
//
// A round trip costs this process and Redis CPU whatever its size, most of
// it the write system call; a worker run makes two of its own, which
// batches of a few runs share.
type Batcher struct {
	rdb *redis.Client

	mu      sync.Mutex
	pending []*batchEntry
	running bool // a goroutine is sending batches
}

type batchEntry struct {
	ctx   context.Context
	cmds  []redis.Cmder
	state atomic.Int32 // waiting, then sent or abandoned
	done  chan struct{}
}

const (
	waiting = iota
	sent
	abandoned
)

// maxBatch bounds the pipelines one batch carries.
const maxBatch = 64

// New returns a Batcher for rdb: one Redis, where a pipeline's commands
// run in order on one connection.
func New(rdb *redis.Client) *Batcher { return &Batcher{rdb: rdb} }

// Exec runs pipe's commands (pipe is not executed itself) and returns
// when each carries its outcome. If ctx ends while they still wait for a
// batch, they are not sent and Exec returns ctx's error: the caller must
// not read them. Once sent, Exec waits for their outcome, which a batch
// bounds by the latest deadline of its callers' (see send).
func (b *Batcher) Exec(ctx context.Context, pipe redis.Pipeliner) error {
	e := &batchEntry{ctx: ctx, cmds: pipe.Cmds(), done: make(chan struct{})}
	if len(e.cmds) == 0 {
		return nil
	}
	b.mu.Lock()
	b.pending = append(b.pending, e)
	if !b.running {
		b.running = true
		go b.run()
	}
	b.mu.Unlock()
	select {
	case <-e.done:
		if e.state.Load() == abandoned {
			return ctx.Err() // its deadline had passed when its turn came
		}
		return nil
	case <-ctx.Done():
		if e.state.CompareAndSwap(waiting, abandoned) {
			return ctx.Err()
		}
		<-e.done // on its way: its commands are being written to
		return nil
	}
}

// run sends batches until none is waiting.
func (b *Batcher) run() {
	for {
		b.mu.Lock()
		n := min(len(b.pending), maxBatch)
		if n == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		batch := b.pending[:n:n]
		b.pending = b.pending[n:]
		if len(b.pending) == 0 {
			b.pending = nil
		}
		b.mu.Unlock()
		b.send(batch)
	}
}

// send runs one batch: the commands of the callers still waiting whose
// context has not ended, with the latest of their deadlines (none if one
// has none), so that no caller's commands are cut short by another's
// deadline. Callers of one Batcher have deadlines of the same kind (a
// submit's Redis timeout; a task's), so a batch ends within moments of
// its earliest caller's.
func (b *Batcher) send(batch []*batchEntry) {
	var latest time.Time
	bounded := true
	pipe := b.rdb.Pipeline()
	for _, e := range batch {
		if e.ctx.Err() != nil {
			e.state.CompareAndSwap(waiting, abandoned)
		}
		if !e.state.CompareAndSwap(waiting, sent) {
			continue // its caller gave up, or its time is up: nothing of it is sent
		}
		if d, ok := e.ctx.Deadline(); !ok {
			bounded = false
		} else if d.After(latest) {
			latest = d
		}
		pipe.BatchProcess(e.ctx, e.cmds...)
	}
	ctx := context.Background()
	if bounded && !latest.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, latest)
		defer cancel()
	}
	if pipe.Len() > 0 {
		pipe.Exec(ctx) // each command carries its own outcome
	}
	for _, e := range batch {
		close(e.done)
	}
}

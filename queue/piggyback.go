package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/redisbatch"
)

// How EnqueueRunAfter sends a new request's writes (Client.mode).
const (
	// unprobed: the piggyback is on but Probe has not yet seen it work
	// (Redis did not answer at start); writes go first meanwhile, and
	// the next EnqueueRunAfter probes again.
	unprobed int32 = iota
	// riding: the writes ride with asynq's enqueue, in one round trip.
	riding
	// writesFirst: the writes go in a round trip of their own, then the
	// task is enqueued. For good: the piggyback is off (config), or asynq's
	// enqueue was not recognised.
	writesFirst
)

// EnqueueRunAfter queues the request's run as EnqueueRun does, with
// writes (store commands: a new request's record) applied before the task
// exists. With the piggyback they ride in the same round trip as asynq's
// enqueue: the hook sends them and asynq's enqueue script as one pipeline,
// writes first, and Redis runs a pipeline's commands in order. Otherwise
// (the piggyback off, or not recognising asynq's enqueue) the writes go
// first, in a round trip of their own. Never is the record written after
// its task, but once: should the hook miss an enqueue it had recognised
// at start, the writes follow the task and the process goes writes-first
// (see missed).
//
// The caller reads the outcome of its writes from the commands it queued;
// when EnqueueRunAfter returns an error, they may or may not have run.
func (c *Client) EnqueueRunAfter(ctx context.Context, requestID, generation int64, writes func(redis.Pipeliner)) error {
	if c.mode.Load() == unprobed {
		c.Probe(ctx) // a failure leaves it unprobed: writes first, below
	}
	id := runTaskID(requestID, generation)
	ride := &rider{taskKey: TaskKey(c.queue, id), writes: writes}
	// A task another call is enqueueing right now cannot carry a second
	// rider: this one goes writes-first.
	if c.mode.Load() != riding || !c.hook.register(ride) {
		if _, err := c.pipelined(ctx, writes); err != nil {
			return err
		}
		return c.enqueueRun(ctx, id, requestID, generation)
	}
	err := c.enqueueRun(ctx, id, requestID, generation)
	if c.hook.unregister(ride) && err == nil {
		return c.missed(ctx, writes)
	}
	return err
}

// missed handles an enqueue the hook did not recognise though the probe
// had: asynq queued the task without the writes. They are written now,
// and the process goes writes-first for good. A worker that dequeued the
// task in between found no record: it tries once more a few seconds later
// (worker.Worker.Run), by when the record is there.
func (c *Client) missed(ctx context.Context, writes func(redis.Pipeliner)) error {
	if c.mode.Swap(writesFirst) == riding {
		c.log.Error("queue: asynq enqueued a task in a way the piggyback did not recognise, though it did at start; new requests' records are written before their tasks from now on (one round trip more each); report this with the asynq version",
			"asynq", asynqVersion())
	}
	_, err := c.pipelined(ctx, writes)
	return err
}

// pipelined sends writes in a pipeline of their own (redisbatch groups it
// with others' unless group commit is off).
func (c *Client) pipelined(ctx context.Context, writes func(redis.Pipeliner)) ([]redis.Cmder, error) {
	if c.batch == nil {
		return c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { writes(p); return nil })
	}
	pipe := c.rdb.Pipeline()
	writes(pipe)
	if err := c.batch.Exec(ctx, pipe); err != nil {
		return nil, err
	}
	cmds := pipe.Cmds()
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return cmds, err
		}
	}
	return cmds, nil
}

// probeTimeout bounds the start-up probe.
const probeTimeout = 5 * time.Second

// probeCleanupTimeout bounds the removal of what the probe wrote.
const probeCleanupTimeout = 500 * time.Millisecond

// Probe checks that the piggyback recognises asynq's enqueue, once, before
// EnqueueRunAfter relies on it: it enqueues a probe task, to a queue of its
// own that no worker serves, with a write riding on it, as EnqueueRunAfter
// does. The write makes the task's key itself (a hash that expires), so
// when it rides ahead of asynq's enqueue, asynq finds the id taken and
// queues nothing: no probe task ever exists, and should the clean-up not
// get through, what the probe wrote expires. If asynq queued the task
// instead, the write did not ride, or not ahead: the task is removed and
// the client goes writes-first for the life of the process, with an error
// in the log naming the asynq version. An error means Redis failed: the
// probe is tried again by the next EnqueueRunAfter, which goes
// writes-first until one succeeds. Without the piggyback, Probe does
// nothing.
func (c *Client) Probe(ctx context.Context) error {
	if c.hook == nil || c.mode.Load() != unprobed || !c.probing.TryLock() {
		return nil
	}
	defer c.probing.Unlock()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	q, id := c.queue+":probe", "probe:"+randomHex()
	key := TaskKey(q, id)
	var placed *redis.BoolCmd
	ride := &rider{taskKey: key, writes: func(p redis.Pipeliner) {
		placed = p.HSetNX(ctx, key, "probe", 1)
		p.PExpire(ctx, key, probeKeyTTL)
	}}
	c.hook.register(ride) // the key is new: nobody else rides it
	_, err := c.enqueueTask(ctx, asynq.NewTask(typeProbe, nil),
		asynq.MaxRetry(c.retry), asynq.Timeout(c.timeout), asynq.Queue(q), asynq.TaskID(id))
	missed := c.hook.unregister(ride)
	refused := errors.Is(err, asynq.ErrTaskIDConflict)
	// Nothing of the probe stays: the key it made, or asynq's task and
	// pending list, and the queue's name. In one round trip, bounded on
	// its own: the probe's deadline may be spent (a hung Redis), and its
	// caller (the first submit, or the start) must not wait out a read
	// timeout per command.
	cleanup, stop := context.WithTimeout(context.WithoutCancel(ctx), probeCleanupTimeout)
	c.rdb.Pipelined(cleanup, func(p redis.Pipeliner) error {
		p.Del(cleanup, key, PendingKey(q))
		p.SRem(cleanup, AllQueuesKey, q)
		return nil
	})
	stop()
	if err != nil && !refused {
		return fmt.Errorf("queue: probe the piggyback: %w", err)
	}
	if missed || !refused || placed == nil || !placed.Val() {
		c.mode.Store(writesFirst)
		c.log.Error("queue: the piggyback does not recognise asynq's enqueue; new requests' records are written before their tasks (one round trip more each); report this with the asynq version",
			"asynq", asynqVersion())
		return nil
	}
	c.mode.Store(riding)
	return nil
}

// probeKeyTTL is how long the key the probe makes outlives a clean-up
// that did not get through.
const probeKeyTTL = time.Minute

// typeProbe is the probe's task type; no handler serves it, and its queue
// has no worker (a configured queue's name has no colon).
const typeProbe = "certflow:probe"

// Piggybacking reports whether EnqueueRunAfter sends a new request's
// writes with its task's enqueue (the piggyback is on, probed, and has
// not missed an enqueue since).
func (c *Client) Piggybacking() bool { return c.mode.Load() == riding }

// asynqVersion is the version of asynq built in, as the module says.
func asynqVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, m := range info.Deps {
			if m.Path == "github.com/hibiken/asynq" {
				return m.Version
			}
		}
	}
	return "unknown"
}

func randomHex() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// rider is writes waiting for the enqueue script of the task at taskKey.
type rider struct {
	taskKey string
	writes  func(redis.Pipeliner)
}

// isScript reports whether cmd runs a Lua script with at least one key:
// the only commands a rider may board.
func isScript(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) < 4 {
		return false
	}
	name, _ := args[0].(string)
	return name == "evalsha" || name == "eval"
}

// piggyback is the go-redis hook that sends a registered rider with the
// enqueue script it waits for (the script whose first key is the rider's
// task key), in one pipeline, writes first. EnqueueRunAfter registers the
// rider before asynq's enqueue and unregisters it after: the hook takes
// it off the register when it boards, so asynq's EVAL after EVALSHA's
// NOSCRIPT goes alone.
type piggyback struct {
	rdb *redis.Client
	// batch groups the pipeline with others' (nil: group commit off).
	batch *redisbatch.Batcher

	mu     sync.Mutex
	riders map[string]*rider // by task key
	n      atomic.Int32      // len(riders), read without the lock
}

func newPiggyback(rdb *redis.Client, batch *redisbatch.Batcher) *piggyback {
	return &piggyback{rdb: rdb, batch: batch, riders: map[string]*rider{}}
}

// register puts r on the register; false if another rider waits for the
// same task.
func (h *piggyback) register(r *rider) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.riders[r.taskKey]; ok {
		return false
	}
	h.riders[r.taskKey] = r
	h.n.Add(1)
	return true
}

// unregister takes r off the register, and reports whether it was still
// there: true means it never boarded.
func (h *piggyback) unregister(r *rider) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.riders[r.taskKey] != r {
		return false
	}
	delete(h.riders, r.taskKey)
	h.n.Add(-1)
	return true
}

// take returns the rider waiting for cmd (a script, see isScript), taking
// it off the register, or nil.
func (h *piggyback) take(cmd redis.Cmder) *rider {
	if h.n.Load() == 0 {
		return nil
	}
	key, _ := cmd.Args()[3].(string)
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.riders[key]
	if r != nil {
		delete(h.riders, key)
		h.n.Add(-1)
	}
	return r
}

func (*piggyback) DialHook(next redis.DialHook) redis.DialHook { return next }

func (*piggyback) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *piggyback) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !isScript(cmd) { // checked first: every command passes here
			return next(ctx, cmd)
		}
		ride := h.take(cmd)
		if ride == nil {
			return next(ctx, cmd)
		}
		pipe := h.rdb.Pipeline()
		ride.writes(pipe)
		pipe.Process(ctx, cmd)
		if h.batch == nil {
			pipe.Exec(ctx) // each command carries its own outcome
			return cmd.Err()
		}
		// Other submits' pipelines may go with it (redisbatch): each
		// command carries its own outcome.
		if err := h.batch.Exec(ctx, pipe); err != nil {
			return err
		}
		return cmd.Err()
	}
}

package queue

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/redisbatch"
)

// EnqueueRunAfter queues the request's run as EnqueueRun does, with
// writes (store commands: a new request's record) done first. On a single
// Redis (a *redis.Client, Sentinel included) they ride in the same round
// trip as asynq's enqueue: Redis runs a pipeline's commands in order, so
// the task is queued after the writes are applied. Otherwise (Cluster,
// Ring: a pipeline there is split by node, without order) the writes go
// first, in a round trip of their own.
//
// The caller reads the outcome of its writes from the commands it queued;
// when EnqueueRunAfter returns an error, they may or may not have run.
func (c *Client) EnqueueRunAfter(ctx context.Context, requestID, generation int64, writes func(redis.Pipeliner)) error {
	if !c.piggyback {
		if _, err := c.pipelined(ctx, writes); err != nil {
			return err
		}
		return c.EnqueueRun(ctx, requestID, generation)
	}
	id := runTaskID(requestID, generation)
	ride := &rider{taskKey: TaskKey(c.queue, id), writes: writes}
	if err := c.enqueueRun(context.WithValue(ctx, riderKey{}, ride), id, requestID, generation); err != nil {
		return err
	}
	if !ride.sent() {
		// asynq queued the task without the script the hook looks for (a
		// newer asynq?): write now. A worker quick enough to find no
		// record drops the task, and the reconciler runs the request
		// again; nothing is lost, only delayed.
		missedOnce.Do(func() {
			slog.Error("queue: asynq's enqueue was not recognised; a request's record is written after its task (one round trip more, and a rare delayed run); report this with the asynq version")
		})
		_, err := c.pipelined(ctx, writes)
		return err
	}
	return nil
}

var missedOnce sync.Once

func (c *Client) pipelined(ctx context.Context, writes func(redis.Pipeliner)) ([]redis.Cmder, error) {
	return c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { writes(p); return nil })
}

// riderKey carries a *rider in a context.
type riderKey struct{}

// rider is writes waiting for the enqueue script of the task at taskKey.
type rider struct {
	taskKey string
	writes  func(redis.Pipeliner)
	boarded atomic.Bool
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

// take reports whether cmd (a script, see isScript) is the enqueue the
// writes wait for, and marks them sent: asynq runs its script again (EVAL
// after EVALSHA's NOSCRIPT), and that one carries nothing.
func (r *rider) take(cmd redis.Cmder) bool {
	if key, _ := cmd.Args()[3].(string); key != r.taskKey {
		return false
	}
	return r.boarded.CompareAndSwap(false, true)
}

func (r *rider) sent() bool { return r.boarded.Load() }

// piggyback is the go-redis hook that sends a context's rider with the
// enqueue script it waits for, in one pipeline, writes first.
type piggyback struct {
	rdb   *redis.Client
	batch *redisbatch.Batcher
}

func (piggyback) DialHook(next redis.DialHook) redis.DialHook { return next }

func (piggyback) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h piggyback) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !isScript(cmd) { // checked first: every command passes here
			return next(ctx, cmd)
		}
		ride, ok := ctx.Value(riderKey{}).(*rider)
		if !ok || !ride.take(cmd) {
			return next(ctx, cmd)
		}
		pipe := h.rdb.Pipeline()
		ride.writes(pipe)
		pipe.Process(ctx, cmd)
		// Other submits' pipelines may go with it (redisbatch): each
		// command carries its own outcome.
		if err := h.batch.Exec(ctx, pipe); err != nil {
			return err
		}
		return cmd.Err()
	}
}

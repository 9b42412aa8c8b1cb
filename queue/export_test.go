package queue

import (
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// UnrecognisedEnqueue makes c's enqueues go through an asynq client on
// another connection to the same Redis, one without the piggyback hook:
// to the hook, that is an asynq whose enqueue it does not recognise. It
// returns that other client. The client must have enqueued run:1:0.
func UnrecognisedEnqueue(t testing.TB, c *Client) *redis.Client {
	other := redis.NewClient(c.rdb.Options())
	t.Cleanup(func() { other.Close() })
	ac := asynq.NewClientFromRedisClient(other)
	// asynq registers a queue on its first enqueue there, with a round
	// trip of its own: done now, so tests count submits' only.
	ac.Enqueue(asynq.NewTask(TypeRun, nil), asynq.Queue(c.queue), asynq.TaskID("run:1:0"))
	c.enqueueTask = ac.EnqueueContext
	return other
}

// Riders is how many riders wait on c's piggyback hook.
func Riders(c *Client) int { return int(c.hook.n.Load()) }

// TypeProbe is the probe task's type.
const TypeProbe = typeProbe

package queue

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// A rider boards only the enqueue script of its own task, and only once.
func TestRiderTakesOnlyItsTasksEnqueueOnce(t *testing.T) {
	ctx := context.Background()
	key := "asynq:{q}:t:run:7:0"
	r := &rider{taskKey: key}
	for _, cmd := range []redis.Cmder{
		redis.NewCmd(ctx, "sadd", "asynq:queues", "q"),
		redis.NewCmd(ctx, "evalsha", "sha", 2, "asynq:{q}:t:run:8:0", "asynq:{q}:pending"),
		redis.NewCmd(ctx, "hset", key, "state", "pending"),
		redis.NewCmd(ctx, "evalsha", "sha"),
	} {
		if r.take(cmd) {
			t.Errorf("took %v", cmd.Args())
		}
	}
	if r.sent() {
		t.Fatal("sent before its enqueue")
	}
	if !r.take(redis.NewCmd(ctx, "evalsha", "sha", 2, key, "asynq:{q}:pending")) || !r.sent() {
		t.Fatal("did not take its task's enqueue")
	}
	if r.take(redis.NewCmd(ctx, "eval", "script", 2, key, "asynq:{q}:pending")) {
		t.Error("took the EVAL that follows a NOSCRIPT: the writes would run twice")
	}
}

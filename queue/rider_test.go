package queue

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// A rider boards only the enqueue script of its own task, and only once.
func TestRiderTakesOnlyItsTasksEnqueueOnce(t *testing.T) {
	ctx := context.Background()
	key := TaskKey("q", "run:7:0")
	r := &rider{taskKey: key}
	for _, tt := range []struct {
		cmd    redis.Cmder
		script bool
	}{
		{redis.NewCmd(ctx, "sadd", AllQueuesKey, "q"), false},
		{redis.NewCmd(ctx, "hset", key, "state", "pending", "msg", "m"), false},
		{redis.NewCmd(ctx, "evalsha", "sha", 0), false},
		{redis.NewCmd(ctx, "evalsha", "sha", 2, TaskKey("q", "run:8:0"), PendingKey("q")), true},
	} {
		if got := isScript(tt.cmd); got != tt.script {
			t.Errorf("isScript(%v) = %v, want %v", tt.cmd.Args(), got, tt.script)
		}
		if tt.script && r.take(tt.cmd) {
			t.Errorf("took %v", tt.cmd.Args())
		}
	}
	if r.sent() {
		t.Fatal("sent before its enqueue")
	}
	if !r.take(redis.NewCmd(ctx, "evalsha", "sha", 2, key, PendingKey("q"))) || !r.sent() {
		t.Fatal("did not take its task's enqueue")
	}
	if r.take(redis.NewCmd(ctx, "eval", "script", 2, key, PendingKey("q"))) {
		t.Error("took the EVAL that follows a NOSCRIPT: the writes would run twice")
	}
}

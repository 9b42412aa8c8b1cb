package queue

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// A rider boards only the enqueue script of its own task, and only once;
// the register holds one rider per task.
func TestRiderTakesOnlyItsTasksEnqueueOnce(t *testing.T) {
	ctx := context.Background()
	key := TaskKey("q", "run:7:0")
	h := newPiggyback(nil, nil)
	r := &rider{taskKey: key}
	if !h.register(r) {
		t.Fatal("register refused the first rider of a task")
	}
	if h.register(&rider{taskKey: key}) {
		t.Fatal("register took a second rider for the same task")
	}
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
		if tt.script && h.take(tt.cmd) != nil {
			t.Errorf("took %v", tt.cmd.Args())
		}
	}
	if got := h.take(redis.NewCmd(ctx, "evalsha", "sha", 2, key, PendingKey("q"))); got != r {
		t.Fatal("did not take its task's enqueue")
	}
	if h.take(redis.NewCmd(ctx, "eval", "script", 2, key, PendingKey("q"))) != nil {
		t.Error("took the EVAL that follows a NOSCRIPT: the writes would run twice")
	}
	if h.unregister(r) {
		t.Error("a rider that boarded was still on the register")
	}
	// One that never boards is taken off by its caller.
	missed := &rider{taskKey: TaskKey("q", "run:9:0")}
	h.register(missed)
	if !h.unregister(missed) || h.n.Load() != 0 || len(h.riders) != 0 {
		t.Errorf("unregister left %d riders (%d counted)", len(h.riders), h.n.Load())
	}
}

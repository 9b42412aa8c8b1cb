package queue_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/queue"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// existsBefore is a write that records whether the task's key existed
// when it ran: 0 means the writes were done before the task was queued.
const existsBefore = "return redis.call('EXISTS', KEYS[1])"

// enqueueAfter runs EnqueueRunAfter for request id with writes that count
// themselves (INCR counter) and look for the task (existsBefore), and
// returns the round trips it took and the task's state.
func enqueueAfter(t *testing.T, c *queue.Client, rdb redis.UniversalClient, rt *testutil.RoundTrips, prefix string, id int64) (trips int64, existed *redis.Cmd) {
	t.Helper()
	ctx := context.Background()
	before := rt.N()
	err := c.EnqueueRunAfter(ctx, id, 0, func(p redis.Pipeliner) {
		p.Incr(ctx, prefix+":counter")
		existed = p.Eval(ctx, existsBefore, []string{queue.TaskKey(prefix, "run:"+strconv.FormatInt(id, 10)+":0")})
	})
	if err != nil {
		t.Fatalf("EnqueueRunAfter: %v", err)
	}
	if existed == nil {
		t.Fatal("EnqueueRunAfter returned without sending the writes")
	}
	return rt.N() - before, existed
}

func assertQueued(t *testing.T, rdb redis.UniversalClient, prefix, taskID string) {
	t.Helper()
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(prefix, taskID)
	if err != nil {
		t.Fatalf("task %s: %v", taskID, err)
	}
	if info.State != asynq.TaskStatePending || info.Type != queue.TypeRun {
		t.Errorf("task %s: %s %s, want a pending %s", taskID, info.State, info.Type, queue.TypeRun)
	}
}

// On a single Redis, a new request's writes and its task's enqueue take
// one round trip, writes first; enqueueing the same task again (a
// conflict, which is success) still sends the writes once.
func TestEnqueueRunAfterSendsTheWritesWithTheTaskInOneRoundTrip(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	c := queue.NewClient(rdb, prefix, 3, time.Minute, 3)
	rt := &testutil.RoundTrips{}
	rdb.(*redis.Client).AddHook(rt)
	ctx := context.Background()
	if err := c.EnqueueRun(ctx, 1, 0); err != nil { // asynq registers the queue once
		t.Fatal(err)
	}
	trips, existed := enqueueAfter(t, c, rdb, rt, prefix, 7)
	if trips != 1 {
		t.Errorf("%d round trips, want 1", trips)
	}
	if n, err := existed.Int64(); err != nil || n != 0 {
		t.Errorf("the task existed (%d, %v) when the writes ran, want them first", n, err)
	}
	assertQueued(t, rdb, prefix, "run:7:0")
	trips, existed = enqueueAfter(t, c, rdb, rt, prefix, 7)
	if n, _ := existed.Int64(); trips != 1 || n != 1 {
		t.Errorf("again: %d round trips, task existed %d; want 1 and 1", trips, n)
	}
	if n, _ := rdb.Get(ctx, prefix+":counter").Int64(); n != 2 {
		t.Errorf("the writes ran %d times in two enqueues, want 2", n)
	}
}

// When the script is not cached (a restarted Redis), asynq's EVALSHA gets
// NOSCRIPT and go-redis sends EVAL: the writes went with the first and are
// not sent again.
func TestEnqueueRunAfterSendsTheWritesOnceWhenTheScriptIsNotCached(t *testing.T) {
	t.Parallel()
	srv := testutil.StartRedisServer(t)
	opts, _ := redis.ParseURL(srv.URL())
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	prefix := testutil.Prefix(t)
	c := queue.NewClient(rdb, prefix, 3, time.Minute, 3)
	rt := &testutil.RoundTrips{}
	rdb.AddHook(rt)
	ctx := context.Background()
	if err := c.EnqueueRun(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	trips, existed := enqueueAfter(t, c, rdb, rt, prefix, 8)
	if n, err := existed.Int64(); err != nil || n != 0 {
		t.Errorf("the task existed (%d, %v) when the writes ran, want them first", n, err)
	}
	if n, _ := rdb.Get(ctx, prefix+":counter").Int64(); n != 1 {
		t.Errorf("the writes ran %d times, want once", n)
	}
	if trips != 2 {
		t.Errorf("%d round trips, want 2 (EVALSHA with the writes, then EVAL)", trips)
	}
	assertQueued(t, rdb, prefix, "run:8:0")
}

// On a client that is not a single Redis (Ring here; Cluster alike) the
// writes go first in a round trip of their own: a pipeline there is split
// by node, without order.
func TestEnqueueRunAfterWritesFirstOnAShardedClient(t *testing.T) {
	t.Parallel()
	_, prefix := testutil.Redis(t) // cleans prefix's keys up
	opts, _ := redis.ParseURL(testutil.RedisURL())
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"one": opts.Addr}, DB: opts.DB})
	t.Cleanup(func() { ring.Close() })
	c := queue.NewClient(ring, prefix, 3, time.Minute, 3)
	rt := &testutil.RoundTrips{}
	ring.AddHook(rt)
	if err := c.EnqueueRun(context.Background(), 1, 0); err != nil {
		t.Fatal(err)
	}
	trips, existed := enqueueAfter(t, c, ring, rt, prefix, 9)
	if n, err := existed.Int64(); err != nil || n != 0 {
		t.Errorf("the task existed (%d, %v) when the writes ran, want them first", n, err)
	}
	if trips != 2 {
		t.Errorf("%d round trips, want 2 (the writes, then the enqueue)", trips)
	}
	assertQueued(t, ring, prefix, "run:9:0")
}

// When the hook does not board asynq's enqueue (a newer asynq), the writes
// still happen, right after the task: a round trip more, nothing lost.
func TestEnqueueRunAfterWritesAfterAnEnqueueItDidNotRecognise(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	c := queue.UnhookedClient(rdb.(*redis.Client), prefix)
	rt := &testutil.RoundTrips{}
	rdb.(*redis.Client).AddHook(rt)
	if err := c.EnqueueRun(context.Background(), 1, 0); err != nil {
		t.Fatal(err)
	}
	trips, existed := enqueueAfter(t, c, rdb, rt, prefix, 10)
	if n, err := existed.Int64(); err != nil || n != 1 {
		t.Errorf("the task existed: %d, %v; want 1 (the writes follow it)", n, err)
	}
	if trips != 2 {
		t.Errorf("%d round trips, want 2 (the enqueue, then the writes)", trips)
	}
	if n, _ := rdb.Get(context.Background(), prefix+":counter").Int64(); n != 1 {
		t.Errorf("the writes ran %d times, want once", n)
	}
	assertQueued(t, rdb, prefix, "run:10:0")
}

package queue_test

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
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

// all is every speed shortcut on, as config's defaults are.
var all = queue.Options{Piggyback: true, GroupCommit: true}

// newClient is a client of the test Redis with opts, its log in logs, and
// a round-trip counter; asynq has registered the queue already (it does
// so once, with a round trip of its own).
func newClient(t *testing.T, rdb *redis.Client, prefix string, opts queue.Options) (*queue.Client, *testutil.RoundTrips, *bytes.Buffer) {
	t.Helper()
	logs := &bytes.Buffer{}
	opts.Log = slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, nil))
	c := queue.NewClient(rdb, prefix, 3, time.Minute, 3, opts)
	rt := &testutil.RoundTrips{}
	rdb.AddHook(rt)
	if err := c.EnqueueRun(context.Background(), 1, 0); err != nil {
		t.Fatal(err)
	}
	return c, rt, logs
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// enqueueAfter runs EnqueueRunAfter for request id with writes that count
// themselves (INCR counter) and look for the task (existsBefore), and
// returns the round trips it took and the task's state.
func enqueueAfter(t *testing.T, c *queue.Client, rt *testutil.RoundTrips, prefix string, id int64) (trips int64, existed *redis.Cmd) {
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

// assertWritesFirst checks one EnqueueRunAfter that must write first: two
// round trips, the task absent when the writes ran, the writes once.
func assertWritesFirst(t *testing.T, c *queue.Client, rdb *redis.Client, rt *testutil.RoundTrips, prefix string, id int64) {
	t.Helper()
	ctx := context.Background()
	count, _ := rdb.Get(ctx, prefix+":counter").Int64()
	trips, existed := enqueueAfter(t, c, rt, prefix, id)
	if n, err := existed.Int64(); err != nil || n != 0 {
		t.Errorf("the task existed (%d, %v) when the writes ran, want them first", n, err)
	}
	if trips != 2 {
		t.Errorf("%d round trips, want 2 (the writes, then the enqueue)", trips)
	}
	if n, _ := rdb.Get(ctx, prefix+":counter").Int64(); n != count+1 {
		t.Errorf("the writes ran %d times, want once", n-count)
	}
	assertQueued(t, rdb, prefix, "run:"+strconv.FormatInt(id, 10)+":0")
}

// assertNoProbeLeft checks that the start-up probe left nothing in Redis.
func assertNoProbeLeft(t *testing.T, rdb *redis.Client, prefix string) {
	t.Helper()
	ctx := context.Background()
	probe := prefix + ":probe"
	if keys, _ := rdb.Keys(ctx, queue.QueueKeyPrefix(probe)+"*").Result(); len(keys) != 0 {
		t.Errorf("the probe left %v", keys)
	}
	if in, _ := rdb.SIsMember(ctx, queue.AllQueuesKey, probe).Result(); in {
		t.Errorf("the probe left its queue %q in %s", probe, queue.AllQueuesKey)
	}
}

// With the piggyback, a new request's writes and its task's enqueue take
// one round trip, writes first; enqueueing the same task again (a
// conflict, which is success) still sends the writes once.
func TestEnqueueRunAfterSendsTheWritesWithTheTaskInOneRoundTrip(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	c, rt, logs := newClient(t, rdb, prefix, all)
	ctx := context.Background()
	if err := c.Probe(ctx); err != nil || !c.Piggybacking() {
		t.Fatalf("probe: %v, piggybacking %v; want it on", err, c.Piggybacking())
	}
	assertNoProbeLeft(t, rdb, prefix)
	trips, existed := enqueueAfter(t, c, rt, prefix, 7)
	if trips != 1 {
		t.Errorf("%d round trips, want 1", trips)
	}
	if n, err := existed.Int64(); err != nil || n != 0 {
		t.Errorf("the task existed (%d, %v) when the writes ran, want them first", n, err)
	}
	assertQueued(t, rdb, prefix, "run:7:0")
	trips, existed = enqueueAfter(t, c, rt, prefix, 7)
	if n, _ := existed.Int64(); trips != 1 || n != 1 {
		t.Errorf("again: %d round trips, task existed %d; want 1 and 1", trips, n)
	}
	if n, _ := rdb.Get(ctx, prefix+":counter").Int64(); n != 2 {
		t.Errorf("the writes ran %d times in two enqueues, want 2", n)
	}
	if queue.Riders(c) != 0 {
		t.Errorf("%d riders left on the register", queue.Riders(c))
	}
	if logs.Len() != 0 {
		t.Errorf("logged %s", logs)
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
	c, rt, _ := newClient(t, rdb, prefix, all)
	ctx := context.Background()
	if err := c.Probe(ctx); err != nil || !c.Piggybacking() {
		t.Fatalf("probe: %v, piggybacking %v; want it on", err, c.Piggybacking())
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	trips, existed := enqueueAfter(t, c, rt, prefix, 8)
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

// With the piggyback off (config speed.piggyback), the writes go first in
// a round trip of their own, then the task; nothing is probed.
func TestEnqueueRunAfterWritesFirstWithThePiggybackOff(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	c, rt, logs := newClient(t, rdb, prefix, queue.Options{GroupCommit: true})
	before := rt.N()
	if err := c.Probe(context.Background()); err != nil || c.Piggybacking() || rt.N() != before {
		t.Fatalf("probe with the piggyback off: %v, piggybacking %v, %d round trips; want nothing done", err, c.Piggybacking(), rt.N()-before)
	}
	assertWritesFirst(t, c, rdb, rt, prefix, 9)
	assertWritesFirst(t, c, rdb, rt, prefix, 10)
	if logs.Len() != 0 {
		t.Errorf("logged %s", logs)
	}
}

// A probe whose write does not ride with asynq's enqueue (a newer asynq)
// turns the piggyback off for the process, loudly, naming asynq's
// version, and leaves nothing in Redis; submits then write first.
func TestAProbeThatIsNotRecognisedGoesWritesFirst(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	c, rt, logs := newClient(t, rdb, prefix, all)
	queue.UnrecognisedEnqueue(t, c).AddHook(rt)
	if err := c.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.Piggybacking() {
		t.Fatal("piggybacking on an enqueue it did not recognise")
	}
	if out := logs.String(); strings.Count(out, "level=ERROR") != 1 || !strings.Contains(out, "asynq=") || !strings.Contains(out, "does not recognise") {
		t.Errorf("log %q, want one error naming the asynq version", out)
	}
	assertNoProbeLeft(t, rdb, prefix)
	assertWritesFirst(t, c, rdb, rt, prefix, 11)
	assertWritesFirst(t, c, rdb, rt, prefix, 12)
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d errors logged, want the one at start", n)
	}
}

// Should the hook miss an enqueue after the probe saw it work, the writes
// follow the task at once (never lost), the process goes writes-first,
// and says so once.
func TestAMissedEnqueueWritesAtOnceThenGoesWritesFirst(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	c, rt, logs := newClient(t, rdb, prefix, all)
	ctx := context.Background()
	if err := c.Probe(ctx); err != nil || !c.Piggybacking() {
		t.Fatalf("probe: %v, piggybacking %v; want it on", err, c.Piggybacking())
	}
	queue.UnrecognisedEnqueue(t, c).AddHook(rt)
	trips, existed := enqueueAfter(t, c, rt, prefix, 13)
	if n, err := existed.Int64(); err != nil || n != 1 {
		t.Errorf("the task existed: %d, %v; want 1 (the writes follow the missed enqueue)", n, err)
	}
	if trips != 2 {
		t.Errorf("%d round trips, want 2 (the enqueue, then the writes)", trips)
	}
	if n, _ := rdb.Get(ctx, prefix+":counter").Int64(); n != 1 {
		t.Errorf("the writes ran %d times, want once", n)
	}
	assertQueued(t, rdb, prefix, "run:13:0")
	if c.Piggybacking() {
		t.Error("still piggybacking after a missed enqueue")
	}
	if out := logs.String(); strings.Count(out, "level=ERROR") != 1 || !strings.Contains(out, "asynq=") {
		t.Errorf("log %q, want one error naming the asynq version", out)
	}
	if queue.Riders(c) != 0 {
		t.Errorf("%d riders left on the register", queue.Riders(c))
	}
	assertWritesFirst(t, c, rdb, rt, prefix, 14)
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d errors logged, want one", n)
	}
}

// A Redis that does not answer at start leaves the probe to the first
// submit; until a probe succeeds, submits write first.
func TestAProbeThatFailsIsTriedAgainByTheNextSubmit(t *testing.T) {
	t.Parallel()
	srv := testutil.StartRedisServer(t)
	opts, _ := redis.ParseURL(srv.URL())
	opts.MaxRetries = -1
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	prefix := testutil.Prefix(t)
	c, rt, _ := newClient(t, rdb, prefix, all)
	srv.Kill()
	if err := c.Probe(context.Background()); err == nil || c.Piggybacking() {
		t.Fatalf("probe with Redis down: %v, piggybacking %v; want an error, and not", err, c.Piggybacking())
	}
	srv.Start()
	_, existed := enqueueAfter(t, c, rt, prefix, 15)
	if n, err := existed.Int64(); err != nil || n != 0 {
		t.Errorf("the task existed (%d, %v) when the writes ran, want them first", n, err)
	}
	if !c.Piggybacking() {
		t.Error("the submit did not probe again")
	}
	if trips, _ := enqueueAfter(t, c, rt, prefix, 16); trips != 1 {
		t.Errorf("%d round trips once probed, want 1", trips)
	}
	assertNoProbeLeft(t, rdb, prefix)
}

// With group commit off (config speed.group_commit), every record-with-
// task pipeline is its own round trip, however many submits go at once.
func TestEnqueueRunAfterWithoutGroupCommit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opts queue.Options
	}{
		{"piggyback", queue.Options{Piggyback: true}},
		{"writes first", queue.Options{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rdb, prefix := testutil.Redis(t)
			c, rt, _ := newClient(t, rdb, prefix, tt.opts)
			ctx := context.Background()
			if err := c.Probe(ctx); err != nil || c.Piggybacking() != tt.opts.Piggyback {
				t.Fatalf("probe: %v, piggybacking %v", err, c.Piggybacking())
			}
			const n = 16
			before := rt.N()
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := c.EnqueueRunAfter(ctx, int64(100+i), 0, func(p redis.Pipeliner) { p.Incr(ctx, prefix+":counter") }); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			perSubmit := int64(1)
			if !tt.opts.Piggyback {
				perSubmit = 2
			}
			if trips := rt.N() - before; trips != n*perSubmit {
				t.Errorf("%d round trips for %d submits at once, want %d (none shared)", trips, n, n*perSubmit)
			}
			if got, _ := rdb.Get(ctx, prefix+":counter").Int64(); got != n {
				t.Errorf("the writes ran %d times, want %d", got, n)
			}
		})
	}
}

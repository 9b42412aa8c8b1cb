package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/queue"
)

// proxiedClient is a client of the shared test Redis through a freeze
// proxy, with the app's timeouts (internal/app connectRedis): a call's
// deadline binds its reads, ReadTimeout bounds one without a deadline.
func proxiedClient(t *testing.T) (*queue.Client, *redis.Client, *testutil.FreezeProxy, string) {
	t.Helper()
	shared, prefix := testutil.Redis(t)
	proxy := testutil.StartFreezeProxy(t, shared.Options().Addr)
	opts, _ := redis.ParseURL(proxy.URL())
	opts.DB = shared.Options().DB
	opts.ReadTimeout, opts.WriteTimeout = 3*time.Second, 3*time.Second
	opts.MaxRetries = 1
	opts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	c, _, _ := newClient(t, rdb, prefix, all)
	t.Cleanup(proxy.Close) // before rdb.Close: a swallowed command fails
	return c, shared, proxy, prefix
}

// A Redis that hangs during the probe holds its caller (the first submit,
// bound by api.redis_timeout, or the start) no longer than the caller's
// deadline and a moment of clean-up, not a read timeout per command.
func TestAProbeOnAHungRedisKeepsToItsDeadline(t *testing.T) {
	t.Parallel()
	c, _, proxy, _ := proxiedClient(t)
	proxy.FreezeAt("evalsha", ":probe}")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Probe(ctx)
	took := time.Since(start)
	if !proxy.Frozen() {
		t.Fatal("the probe's enqueue did not reach the proxy")
	}
	if err == nil || c.Piggybacking() {
		t.Errorf("probe on a hung Redis: %v, piggybacking %v; want an error, and not", err, c.Piggybacking())
	}
	if took > 1500*time.Millisecond {
		t.Errorf("the probe took %v with a deadline of 300ms", took)
	}
}

// A probe whose clean-up does not get through (Redis failed just then)
// leaves nothing in Redis for good: no task, pending or not, in its queue,
// and nothing there without an expiry.
func TestAProbeWhoseCleanUpFailsLeavesNothingForGood(t *testing.T) {
	t.Parallel()
	c, shared, proxy, prefix := proxiedClient(t)
	proxy.FreezeAt("del", ":probe}")
	if err := c.Probe(context.Background()); err != nil || !c.Piggybacking() {
		t.Fatalf("probe: %v, piggybacking %v; want it on", err, c.Piggybacking())
	}
	if !proxy.Frozen() {
		t.Fatal("the probe's clean-up did not reach the proxy")
	}
	proxy.Unfreeze()
	ctx := context.Background()
	probe := prefix + ":probe"
	if n, _ := shared.LLen(ctx, queue.PendingKey(probe)).Result(); n != 0 {
		t.Errorf("%d probe tasks pending in %s", n, probe)
	}
	keys, _ := shared.Keys(ctx, queue.QueueKeyPrefix(probe)+"*").Result()
	for _, k := range keys {
		if ttl, _ := shared.PTTL(ctx, k).Result(); ttl < 0 {
			t.Errorf("the probe left %s for good", k)
		}
		if task, _ := shared.HExists(ctx, k, "msg").Result(); task {
			t.Errorf("the probe left a task, %s", k)
		}
	}
}

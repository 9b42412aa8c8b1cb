package redisbatch_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/redisbatch"
	"github.com/certflow/certflow/internal/testutil"
)

func client(t *testing.T) (*redis.Client, string, *testutil.RoundTrips) {
	_, prefix := testutil.Redis(t) // cleans prefix's keys up
	opts, _ := redis.ParseURL(testutil.RedisURL())
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	count := &testutil.RoundTrips{}
	rdb.AddHook(count)
	return rdb, prefix, count
}

// Concurrent callers' pipelines share round trips, and each gets its own
// commands' outcomes, in its own order: an INCR and a GET of the same key
// in one pipeline see each other, whatever else rides along.
func TestConcurrentPipelinesShareRoundTripsAndKeepTheirOwnOrder(t *testing.T) {
	rdb, prefix, count := client(t)
	b := redisbatch.New(rdb)
	const callers, rounds = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, callers*rounds)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("%s:n:%d", prefix, c)
			for i := 1; i <= rounds; i++ {
				pipe := rdb.Pipeline()
				incr := pipe.Incr(context.Background(), key)
				get := pipe.Get(context.Background(), key)
				bad := pipe.HGet(context.Background(), key, "x") // WRONGTYPE: its own error only
				if err := b.Exec(context.Background(), pipe); err != nil {
					errs <- err
					return
				}
				if n, err := incr.Result(); err != nil || n != int64(i) {
					errs <- fmt.Errorf("caller %d round %d: INCR = %d, %v", c, i, n, err)
				}
				if v, err := get.Int64(); err != nil || v != int64(i) {
					errs <- fmt.Errorf("caller %d round %d: GET after its INCR = %d, %v", c, i, v, err)
				}
				if bad.Err() == nil {
					errs <- fmt.Errorf("caller %d: HGET of a string did not fail", c)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sent := count.N()
	t.Logf("%d pipelines of %d callers sent in %d round trips", callers*rounds, callers, sent)
	if sent >= callers*rounds {
		t.Errorf("%d round trips for %d pipelines: nothing was batched", sent, callers*rounds)
	}
}

// A caller whose context ends before its batch is sent gets the context's
// error and nothing of it runs; one whose batch is on its way waits for
// it, and a batch lasts no longer than the deadlines it carries.
func TestACallerThatGivesUpSendsNothingAndNobodyWaitsPastTheirDeadline(t *testing.T) {
	target, _ := redis.ParseURL(testutil.RedisURL())
	proxy := testutil.StartFreezeProxy(t, target.Addr)
	opts, _ := redis.ParseURL(proxy.URL())
	opts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	_, prefix := testutil.Redis(t)
	b := redisbatch.New(rdb)

	proxy.FreezeAt("SET", prefix+":first")
	first := make(chan error, 1)
	firstStart := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		pipe := rdb.Pipeline()
		set := pipe.Set(ctx, prefix+":first", 1, 0)
		if err := b.Exec(ctx, pipe); err != nil {
			first <- err
			return
		}
		first <- set.Err()
	}()
	for !proxy.Frozen() {
		time.Sleep(time.Millisecond)
	}
	// The first batch hangs: this one waits for its turn, and gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	pipe := rdb.Pipeline()
	pipe.Set(ctx, prefix+":second", 1, 0)
	start := time.Now()
	if err := b.Exec(ctx, pipe); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a caller that waited past its deadline got %v, want its context's error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("gave up after %v, not at its deadline", d)
	}
	err := <-first
	if err == nil {
		t.Fatal("the hung batch reported success")
	}
	if d := time.Since(firstStart); d > 2*time.Second {
		t.Errorf("the hung batch's caller waited %v, past its 300 ms deadline", d)
	}
	proxy.Unfreeze()
	// Redis answers again: new batches go through; the abandoned
	// pipeline was never sent.
	pipe = rdb.Pipeline()
	third := pipe.Set(context.Background(), prefix+":third", 1, 0)
	if err := b.Exec(context.Background(), pipe); err != nil || third.Err() != nil {
		t.Fatalf("after the hang: %v, %v", err, third.Err())
	}
	direct, _ := testutil.Redis(t)
	if n, _ := direct.Exists(context.Background(), prefix+":second").Result(); n != 0 {
		t.Error("the abandoned pipeline's SET ran")
	}
}

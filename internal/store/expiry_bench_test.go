package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
)

// benchInventory is the size of inventory the expiry benchmarks watch.
const benchInventory = 100_000

// BenchmarkExpiryPass measures one expiry-watch pass over a due set of
// 100,000 certificates: empty, nothing due (one read, whatever the
// inventory), and with 100 or 1,000 of them due (the cost of what is due).
// Entries not due are written into the due set directly (a pipeline of
// ZADDs), not issued; the due ones are real stored certificates.
//
//	go test ./internal/store -run '^$' -bench BenchmarkExpiryPass -benchtime 3s
func BenchmarkExpiryPass(b *testing.B) {
	rdb, prefix := testutil.Redis(b)
	s := store.New(rdb, prefix)
	s.ExpiryLead = store.ExpiryLeadOf(testThresholds)
	ctx := context.Background()
	now := time.Now()
	if _, err := s.PrepareExpiryWatch(ctx, now, testThresholds); err != nil {
		b.Fatal(err)
	}
	due, _, _ := store.ExpiryKeys(s)
	const idBase = 1 << 40 // no stored certificate's id
	for i := 0; i < benchInventory; i += 10_000 {
		pipe := rdb.Pipeline()
		for j := i; j < i+10_000; j++ {
			pipe.ZAdd(ctx, due, redis.Z{Score: float64(now.Add(time.Hour).Unix() + int64(j)), Member: idBase + j})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	counter := &commandCounter{}
	rdb.AddHook(counter)
	pass := func(b *testing.B, want store.ExpiryPassResult) {
		res, err := s.ExpiryPass(ctx, now, testThresholds)
		if err != nil || res != want {
			b.Fatalf("pass = %+v, %v; want %+v", res, err, want)
		}
	}

	b.Run("empty-100k", func(b *testing.B) {
		start := counter.n.Load()
		for b.Loop() {
			pass(b, store.ExpiryPassResult{})
		}
		b.ReportMetric(float64(counter.n.Load()-start)/float64(b.N), "redis-cmds/op")
	})

	var certs []*store.Certificate
	for range 1000 {
		certs = append(certs, issuedRenewing(b, s, now.Add(3*day), 0))
	}
	if _, err := s.ExpiryPass(ctx, now, testThresholds); err != nil { // their first warning: not due now
		b.Fatal(err)
	}
	for _, k := range []int{100, 1000} {
		b.Run("due-"+strconv.Itoa(k)+"-of-100k", func(b *testing.B) {
			var cmds int64
			for b.Loop() {
				b.StopTimer()
				pipe := rdb.Pipeline()
				for _, c := range certs[:k] { // due again, for its 7d threshold
					pipe.ZAdd(ctx, due, redis.Z{Score: float64(c.NotAfter.Add(-30 * day).Unix()), Member: strconv.FormatInt(c.ID, 10)})
				}
				pipe.Del(ctx, prefix+":eventlog")
				if _, err := pipe.Exec(ctx); err != nil {
					b.Fatal(err)
				}
				start := counter.n.Load()
				b.StartTimer()
				pass(b, store.ExpiryPassResult{Due: k, Expiring: k})
				cmds += counter.n.Load() - start
			}
			b.ReportMetric(float64(cmds)/float64(b.N), "redis-cmds/op")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*k), "ns/due-cert")
		})
	}
}

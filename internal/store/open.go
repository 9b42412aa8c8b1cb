package store

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// noDeadline, plus the submission time, scores a pending request whose
// wait has no timeout (exact in a float64 until the year 287000).
const noDeadline = 1 << 52

// PendingIDs returns the ids of requests waiting for approval, earliest
// deadline first (those without one last). The index is derived: callers
// re-check each record they load.
func (s *Store) PendingIDs(ctx context.Context, limit int64) ([]int64, error) {
	return s.pendingBefore(ctx, "+inf", limit)
}

// OverdueIDs returns the ids of pending requests whose wait's deadline
// passed before cutoff.
func (s *Store) OverdueIDs(ctx context.Context, cutoff time.Time, limit int64) ([]int64, error) {
	return s.pendingBefore(ctx, strconv.FormatInt(cutoff.UnixMilli(), 10), limit)
}

func (s *Store) pendingBefore(ctx context.Context, stop string, limit int64) ([]int64, error) {
	members, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.keys.pending(), Start: "-inf", Stop: stop, ByScore: true, Count: limit}).Result()
	if err != nil {
		return nil, fmt.Errorf("list pending requests: %w", err)
	}
	return parseIDs(members), nil
}

// Finally settled requests (ISSUED, DENIED, FAILED, CANCELLED) leave the
// open set in batches: one script for up to forgetBatch ids, sent by the
// Save that fills the batch or finds it older than forgetAge (and by
// Stale), instead of one round trip per request. The open set is only the
// reconciler's index, so an id that stays in it a little longer costs
// nothing; one left behind by a crash is found settled and dropped by the
// reconciler. An id whose score is newer than its settling was reopened
// meanwhile (an administrator's restart of a failed request) and stays.
const (
	forgetBatch = 64
	forgetAge   = 100 * time.Millisecond
)

type forgetQueue struct {
	mu    sync.Mutex
	args  []any // id, settled-at (unix ms), id, settled-at …
	since time.Time
}

// forgetScript removes each id whose score is no newer than its settling.
// KEYS: open set; ARGV: id, settled-at ms, … (one key: Cluster-safe).
var forgetScript = redis.NewScript(`
local n = 0
for i = 1, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) <= tonumber(ARGV[i + 1]) then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return n
`)

func (s *Store) forgetLater(ctx context.Context, id int64, settled time.Time) {
	q := &s.forget
	q.mu.Lock()
	if len(q.args) == 0 {
		q.since = time.Now()
	}
	q.args = append(q.args, id, settled.UnixMilli())
	if len(q.args) < 2*forgetBatch && time.Since(q.since) < forgetAge {
		q.mu.Unlock()
		return
	}
	args := q.args
	q.args = nil
	q.mu.Unlock()
	// Best effort (see above); the batch is not only this caller's.
	forgetScript.Run(context.WithoutCancel(ctx), s.rdb, []string{s.keys.open()}, args...)
}

// flushForgotten sends the pending open-set removals now.
func (s *Store) flushForgotten(ctx context.Context) error {
	q := &s.forget
	q.mu.Lock()
	args := q.args
	q.args = nil
	q.mu.Unlock()
	if len(args) == 0 {
		return nil
	}
	return forgetScript.Run(ctx, s.rdb, []string{s.keys.open()}, args...).Err()
}

// Stale returns ids of unsettled requests that made no progress since
// before cutoff: candidates for the reconciler to enqueue again.
func (s *Store) Stale(ctx context.Context, cutoff time.Time, limit int64) ([]int64, error) {
	if err := s.flushForgotten(ctx); err != nil {
		return nil, err
	}
	members, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.keys.open(), Start: "-inf", Stop: strconv.FormatInt(cutoff.UnixMilli(), 10),
		ByScore: true, Count: limit,
	}).Result()
	if err != nil {
		return nil, err
	}
	return parseIDs(members), nil
}

// Forget removes a request from the open set (the reconciler's view).
func (s *Store) Forget(ctx context.Context, id int64) error {
	return s.rdb.ZRem(ctx, s.keys.open(), id).Err()
}

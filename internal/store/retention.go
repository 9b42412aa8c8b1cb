package store

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sweep deletes settled request records (with their certificate) that
// nobody has read or written for longer than retention, and returns how
// many it deleted. It costs nothing on the enrollment path: it walks the
// keys with SCAN and asks Redis for each key's idle time (OBJECT
// IDLETIME, available under the noeviction policy certflow requires).
// Unsettled and pending requests are never swept.
func (s *Store) Sweep(ctx context.Context, retention time.Duration) (int, error) {
	if err := s.flushForgotten(ctx); err != nil { // settled here, still in the open set
		return 0, err
	}
	prefix := s.keys.prefix + ":request:{"
	iter := s.rdb.Scan(ctx, 0, prefix+"*}", 500).Iterator()
	deleted := 0
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		pipe := s.rdb.Pipeline()
		idle := make([]*redis.DurationCmd, len(batch))
		open := make([]*redis.FloatCmd, len(batch))
		pending := make([]*redis.FloatCmd, len(batch))
		for i, k := range batch {
			id := strings.TrimSuffix(strings.TrimPrefix(k, prefix), "}")
			idle[i] = pipe.ObjectIdleTime(ctx, k)
			open[i] = pipe.ZScore(ctx, s.keys.open(), id)
			pending[i] = pipe.ZScore(ctx, s.keys.pending(), id)
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return err
		}
		var old []string
		for i, k := range batch {
			_, isOpen := open[i].Result()
			_, isPending := pending[i].Result()
			if d, err := idle[i].Result(); err == nil && d > retention && isOpen == redis.Nil && isPending == redis.Nil {
				old = append(old, k)
			}
		}
		if len(old) > 0 {
			n, err := s.rdb.Unlink(ctx, old...).Result()
			if err != nil {
				return err
			}
			deleted += int(n)
		}
		batch = batch[:0]
		return nil
	}
	for iter.Next(ctx) {
		k := iter.Val()
		if _, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(k, prefix), "}"), 10, 64); err != nil {
			continue // not a request record
		}
		if batch = append(batch, k); len(batch) == 200 {
			if err := flush(); err != nil {
				return deleted, err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return deleted, err
	}
	return deleted, flush()
}

// ClaimSweep reports whether this process should sweep now: at most one
// process per interval does.
func (s *Store) ClaimSweep(ctx context.Context, interval time.Duration) (bool, error) {
	return s.rdb.SetNX(ctx, s.keys.sweepLock(), "1", interval).Result()
}

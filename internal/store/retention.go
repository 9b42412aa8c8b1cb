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
// Unsettled and pending requests are never swept, nor is a request whose
// certificate has not expired yet (the certificate expiry index tells,
// without touching the record). A deleted certificate leaves the
// inventory's indexes (id, thumbprint, expiry) and its CA's revocation
// list with it.
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
		now := time.Now()
		pipe := s.rdb.Pipeline()
		idle := make([]*redis.DurationCmd, len(batch))
		open := make([]*redis.FloatCmd, len(batch))
		pending := make([]*redis.FloatCmd, len(batch))
		issued := make([]*redis.FloatCmd, len(batch))
		expiry := make([]*redis.FloatCmd, len(batch))
		for i, k := range batch {
			id := strings.TrimSuffix(strings.TrimPrefix(k, prefix), "}")
			idle[i] = pipe.ObjectIdleTime(ctx, k)
			open[i] = pipe.ZScore(ctx, s.keys.open(), id)
			pending[i] = pipe.ZScore(ctx, s.keys.pending(), id)
			issued[i] = pipe.ZScore(ctx, s.keys.certificates(), id)
			expiry[i] = pipe.ZScore(ctx, s.keys.certExpiry(), id)
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return err
		}
		var old []string
		var withCert []int
		for i, k := range batch {
			_, isOpen := open[i].Result()
			_, isPending := pending[i].Result()
			d, err := idle[i].Result()
			if err != nil || d <= retention || isOpen != redis.Nil || isPending != redis.Nil {
				continue
			}
			if _, err := issued[i].Result(); err == nil {
				if notAfter, err := expiry[i].Result(); err == nil && int64(notAfter) > now.Unix() {
					continue // the certificate is still valid: keep its record
				}
				withCert = append(withCert, len(old))
			}
			old = append(old, k)
		}
		if len(old) == 0 {
			batch = batch[:0]
			return nil
		}
		// The certificates about to go are read (touching only records
		// that are deleted now, or kept for a certificate not expired
		// yet that the expiry index did not know).
		certs := map[int]*Certificate{}
		if len(withCert) > 0 {
			pipe = s.rdb.Pipeline()
			x := make([]*redis.StringCmd, len(withCert))
			for j, i := range withCert {
				x[j] = pipe.HGet(ctx, old[i], "x")
			}
			pipe.Exec(ctx) // each command's own error is read below
			for j, i := range withCert {
				data, err := x[j].Bytes()
				if err != nil {
					continue
				}
				id, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(old[i], prefix), "}"), 10, 64)
				if c, err := decodeCertificate(id, data); err == nil {
					certs[i] = c
				}
			}
		}
		var gone []string
		pipe = s.rdb.Pipeline()
		for i, k := range old {
			c := certs[i]
			if c != nil && c.NotAfter.After(now) {
				continue
			}
			gone = append(gone, k)
			if c == nil {
				continue
			}
			pipe.ZRem(ctx, s.keys.certificates(), c.ID)
			pipe.ZRem(ctx, s.keys.certExpiry(), c.ID)
			pipe.Del(ctx, s.keys.thumbprint(c.Thumbprint))
			if c.Revocation != nil {
				pipe.HDel(ctx, s.keys.caRevoked(c.CAName()), c.SerialNumber)
			}
		}
		if len(gone) > 0 {
			n, err := s.rdb.Unlink(ctx, gone...).Result()
			if err != nil {
				return err
			}
			deleted += int(n)
			if pipe.Len() > 0 {
				if _, err := pipe.Exec(ctx); err != nil {
					return err
				}
			}
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

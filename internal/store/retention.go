package store

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
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
// without touching the record). A deleted certificate leaves every index
// of the inventory and its CA's revocation list in the same script that
// deletes its record (deleteCertScript).
func (s *Store) Sweep(ctx context.Context, retention time.Duration) (int, error) {
	if err := s.flushForgotten(ctx); err != nil { // settled here, still in the open set
		return 0, err
	}
	prefix := s.keys.prefix + ":request:{"
	deleted := 0
	err := s.scanRequests(ctx, func(batch []string, _ []int64) error {
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
			return nil
		}
		// The certificates about to go are read with their records
		// (touching only records that are deleted now, or kept for a
		// certificate not expired yet that the expiry index did not know).
		withRecord := map[int]*Request{}
		if len(withCert) > 0 {
			pipe = s.rdb.Pipeline()
			get := make([]*redis.SliceCmd, len(withCert))
			for j, i := range withCert {
				get[j] = pipe.HMGet(ctx, old[i], "v", "d", "x")
			}
			pipe.Exec(ctx) // each command's own error is read below
			for j, i := range withCert {
				vals, err := get[j].Result()
				if err != nil {
					continue
				}
				id, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(old[i], prefix), "}"), 10, 64)
				if r, err := decodeRequest(id, vals); err == nil && r != nil {
					withRecord[i] = r
				}
			}
			rs := make([]*Request, 0, len(withRecord))
			for _, r := range withRecord {
				rs = append(rs, r)
			}
			if err := s.resolveChains(ctx, rs...); err != nil {
				return err
			}
		}
		var gone []string
		if len(withRecord) > 0 {
			// Loaded first, so that the pipeline can run it by its SHA.
			if err := deleteCertScript.Load(ctx, s.rdb).Err(); err != nil {
				return err
			}
		}
		pipe = s.rdb.Pipeline()
		var deletes []*redis.Cmd
		for i, k := range old {
			r := withRecord[i]
			if r == nil {
				gone = append(gone, k)
				continue
			}
			c, err := r.Certificate()
			if err != nil || c == nil || c.NotAfter.After(now) {
				continue
			}
			// The record and every index entry of its certificate go in
			// one script, if the record is still the one read.
			var ops indexOps
			ops.remove(s.keys.inventoryEntries(c, r.Metadata()))
			// It leaves the expiry watch (whose certificate.expired, if
			// still pending, is not written for a certificate no longer
			// kept) and the renewed certificates' links.
			member := strconv.FormatInt(c.ID, 10)
			ops.remove([]indexEntry{{key: s.keys.expiryDue(), member: member}, {key: s.keys.superseded(), member: member}, {key: s.keys.eventDepth(), member: member}})
			if c.Revocation != nil {
				ops.remove([]indexEntry{{key: s.keys.caRevoked(c.CAName()), member: c.SerialNumber, hash: true}})
			}
			sum := sha1.Sum(r.cert)
			keys, args := ops.encode([]string{k}, []any{r.version, hex.EncodeToString(sum[:])})
			deletes = append(deletes, deleteCertScript.EvalSha(ctx, pipe, keys, args...))
		}
		if len(deletes) > 0 {
			pipe.Exec(ctx) // each command's own error is read below
			for _, cmd := range deletes {
				n, err := cmd.Int64()
				if err != nil {
					return err
				}
				deleted += int(n)
			}
		}
		if len(gone) > 0 {
			n, err := s.rdb.Unlink(ctx, gone...).Result()
			if err != nil {
				return err
			}
			deleted += int(n)
		}
		return nil
	})
	return deleted, err
}

// scanRequests walks every request record with SCAN, passing their keys
// and ids to visit 200 at a time (a key that is no record's is passed
// over).
func (s *Store) scanRequests(ctx context.Context, visit func(keys []string, ids []int64) error) error {
	prefix := s.keys.prefix + ":request:{"
	iter := s.rdb.Scan(ctx, 0, prefix+"*}", 500).Iterator()
	var keys []string
	var ids []int64
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		err := visit(keys, ids)
		keys, ids = keys[:0], ids[:0]
		return err
	}
	for iter.Next(ctx) {
		id, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(iter.Val(), prefix), "}"), 10, 64)
		if err != nil {
			continue // not a request record
		}
		keys, ids = append(keys, iter.Val()), append(ids, id)
		if len(keys) == 200 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return flush()
}

// deleteCertScript deletes a request record with its certificate, if the
// record is still at the version read and its certificate as read (a
// revocation changes it without the version), and its index entries
// (indexOps). KEYS: request, the ops' keys; ARGV: version, the SHA-1 of
// the certificate's JSON, the ops. 1: deleted.
var deleteCertScript = redis.NewScript(applyOpsLua + `
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
if redis.sha1hex(redis.call('HGET', KEYS[1], 'x') or '') ~= ARGV[2] then return 0 end
redis.call('UNLINK', KEYS[1])
apply(2, 3, #KEYS - 1)
return 1
`)

// ClaimSweep reports whether this process should sweep now: at most one
// process per interval does.
func (s *Store) ClaimSweep(ctx context.Context, interval time.Duration) (bool, error) {
	return s.rdb.SetNX(ctx, s.keys.sweepLock(), "1", interval).Result()
}

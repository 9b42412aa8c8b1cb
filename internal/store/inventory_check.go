package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrBuildBusy: another process is building the inventory's indexes.
var ErrBuildBusy = errors.New("another process is building the inventory's indexes")

// InventoryReady reports whether the inventory's indexes hold every
// certificate: they were built (BuildInventory) for this layout. Once
// true it is not asked again.
func (s *Store) InventoryReady(ctx context.Context) (bool, error) {
	if s.inventoryReady.Load() {
		return true, nil
	}
	v, err := s.rdb.Get(ctx, s.keys.invVersion()).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the inventory's version: %w", err)
	}
	ready := v == indexVersion
	s.inventoryReady.Store(ready)
	return ready, nil
}

// BuildInventory writes the index entries of every certificate in the
// inventory, then marks the indexes ready (InventoryReady). A store
// written by a certflow from before the indexes needs it once; on a new
// store it finds nothing to do. One process builds at a time (the others
// return ErrBuildBusy at once); certificates stored meanwhile are indexed
// by their own writes. It returns how many certificates it indexed.
func (s *Store) BuildInventory(ctx context.Context) (int, error) {
	if ready, err := s.InventoryReady(ctx); ready || err != nil {
		return 0, err
	}
	token := randomToken()
	ok, err := s.rdb.SetNX(ctx, s.keys.invBuildLock(), token, time.Minute).Result()
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, ErrBuildBusy
	}
	defer releaseLock.Run(context.WithoutCancel(ctx), s.rdb, []string{s.keys.invBuildLock()}, token)
	built := 0
	for after := int64(0); ; {
		ids, err := s.CertificateIDs(ctx, after, 500)
		if err != nil || len(ids) == 0 {
			if err != nil {
				return built, err
			}
			break
		}
		after = ids[len(ids)-1]
		n, err := s.indexRecords(ctx, ids)
		if err != nil {
			return built, err
		}
		built += n
		s.rdb.Expire(ctx, s.keys.invBuildLock(), time.Minute)
	}
	if err := s.rdb.Set(ctx, s.keys.invVersion(), indexVersion, 0).Err(); err != nil {
		return built, err
	}
	s.inventoryReady.Store(true)
	return built, nil
}

// releaseLock deletes a lock if it holds the caller's token.
var releaseLock = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// repairScript adds a record's index entries if the record is still at
// the version read; its metadata is then indexed (m is dropped: see
// saveScript). KEYS: request, the ops' keys; ARGV: version, the ops.
var repairScript = redis.NewScript(applyOpsLua + `
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
apply(2, 2, #KEYS - 1)
redis.call('HDEL', KEYS[1], 'm')
return 1
`)

// indexRecords writes the index entries of the certificates of requests
// ids, each only if its record has not changed since it was read.
func (s *Store) indexRecords(ctx context.Context, ids []int64) (int, error) {
	rs, err := s.GetMany(ctx, ids)
	if err != nil {
		return 0, err
	}
	// Loaded first, so that the pipeline can run it by its SHA (a
	// pipeline cannot fall back to EVAL on a Redis that lacks it).
	if err := repairScript.Load(ctx, s.rdb).Err(); err != nil {
		return 0, fmt.Errorf("index certificates: %w", err)
	}
	pipe := s.rdb.Pipeline()
	n := 0
	for _, r := range rs {
		c, err := r.Certificate()
		if err != nil || c == nil {
			continue
		}
		var ops indexOps
		ops.add(s.keys.inventoryEntries(c, r.Metadata()))
		keys, args := ops.encode([]string{s.keys.request(r.ID)}, []any{r.version})
		repairScript.EvalSha(ctx, pipe, keys, args...)
		n++
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("index certificates: %w", err)
	}
	return n, nil
}

// InventoryReport is what CheckInventory found (and, repairing, put
// right).
type InventoryReport struct {
	// Certificates is how many stored certificates were checked.
	Certificates int
	// Missing are the index entries a certificate should have and does
	// not; Stale the entries that name no certificate, or one whose
	// values are others. Each is "key member" (a thumbprint key: "key").
	Missing, Stale []string
	// Unreadable are the requests whose certificate does not decode (a
	// chain key lost, a corrupt record): their entries are neither
	// checked nor removed, and the check is not consistent while any is.
	Unreadable []int64
	// Repaired is whether they were put right.
	Repaired bool
}

// CheckInventory compares the inventory's indexes with the records: every
// stored certificate must have each of its entries (inventoryEntries),
// and every entry must be one of its certificate's. With repair, missing
// entries are added and stale ones removed. It reads every record and
// every index entry: an operator's tool, not a request's.
func (s *Store) CheckInventory(ctx context.Context, repair bool) (*InventoryReport, error) {
	rep := &InventoryReport{Repaired: repair}
	// Every certificate's entries are there: the request records are
	// walked (not the certificates index, which could lack one).
	err := s.scanRequests(ctx, func(_ []string, batch []int64) error {
		rs, err := s.GetMany(ctx, batch)
		if err != nil {
			return err
		}
		var certs []*Request
		var wants [][]indexEntry
		for _, r := range rs {
			c, err := r.Certificate()
			if err != nil {
				rep.Unreadable = append(rep.Unreadable, r.ID)
				continue
			}
			if c == nil {
				continue
			}
			rep.Certificates++
			certs, wants = append(certs, r), append(wants, s.keys.inventoryEntries(c, r.Metadata()))
		}
		missings, err := s.missingEntries(ctx, wants)
		if err != nil {
			return err
		}
		for i, r := range certs {
			missing := missings[i]
			for _, e := range missing {
				rep.Missing = append(rep.Missing, e.String())
			}
			if repair && len(missing) > 0 {
				var ops indexOps
				ops.add(missing)
				keys, args := ops.encode([]string{s.keys.request(r.ID)}, []any{r.version})
				if err := repairScript.Run(ctx, s.rdb, keys, args...).Err(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Every entry is its certificate's.
	for _, pattern := range []string{s.keys.prefix + ":inv:*", s.keys.certificates(), s.keys.certExpiry(), s.keys.thumbprint("*")} {
		iter := s.rdb.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			if key == s.keys.invVersion() || key == s.keys.invBuildLock() {
				continue
			}
			stale, err := s.staleEntries(ctx, key)
			if err != nil {
				return nil, err
			}
			for _, e := range stale {
				rep.Stale = append(rep.Stale, e.String())
			}
			if repair && len(stale) > 0 {
				var ops indexOps
				ops.remove(stale)
				if err := s.applyOps(ctx, &ops); err != nil {
					return nil, err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

func (e indexEntry) String() string {
	if e.str {
		return e.key
	}
	return e.key + " " + strconv.Quote(e.member)
}

// missingEntries returns, for each list of wanted entries, those that
// are not in Redis, asking for all of them in one round trip.
func (s *Store) missingEntries(ctx context.Context, wants [][]indexEntry) ([][]indexEntry, error) {
	pipe := s.rdb.Pipeline()
	scores := make([][]*redis.FloatCmd, len(wants))
	strs := make([][]*redis.StringCmd, len(wants))
	for i, want := range wants {
		scores[i], strs[i] = make([]*redis.FloatCmd, len(want)), make([]*redis.StringCmd, len(want))
		for j, e := range want {
			if e.str {
				strs[i][j] = pipe.Get(ctx, e.key)
			} else {
				scores[i][j] = pipe.ZScore(ctx, e.key, e.member)
			}
		}
	}
	pipe.Exec(ctx) // each command's own error is read below
	out := make([][]indexEntry, len(wants))
	for i, want := range wants {
		for j, e := range want {
			if e.str {
				v, err := strs[i][j].Result()
				if err != nil && !errors.Is(err, redis.Nil) {
					return nil, err
				}
				if v != e.member {
					out[i] = append(out[i], e)
				}
				continue
			}
			score, err := scores[i][j].Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return nil, err
			}
			if err != nil || int64(score) != e.score {
				out[i] = append(out[i], e)
			}
		}
	}
	return out, nil
}

// staleEntries returns the entries of index key that are not entries of
// the certificate they name.
func (s *Store) staleEntries(ctx context.Context, key string) ([]indexEntry, error) {
	typ, err := s.rdb.Type(ctx, key).Result()
	if err != nil {
		return nil, err
	}
	if typ == "string" {
		v, err := s.rdb.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		e := indexEntry{key: key, member: v, str: true}
		id, _ := strconv.ParseInt(v, 10, 64)
		return s.notOwn(ctx, []indexEntry{e}, []int64{id})
	}
	var out []indexEntry
	for start := int64(0); ; start += 1000 {
		zs, err := s.rdb.ZRangeWithScores(ctx, key, start, start+999).Result()
		if err != nil {
			return nil, err
		}
		es := make([]indexEntry, len(zs))
		ids := make([]int64, len(zs))
		for i, z := range zs {
			m := z.Member.(string)
			es[i] = indexEntry{key: key, score: int64(z.Score), member: m}
			if _, id, ok := splitNameMember(m); ok {
				ids[i] = id
			} else {
				ids[i], _ = strconv.ParseInt(m, 10, 64)
			}
		}
		stale, err := s.notOwn(ctx, es, ids)
		if err != nil {
			return nil, err
		}
		out = append(out, stale...)
		if len(zs) < 1000 {
			return out, nil
		}
	}
}

// notOwn returns the entries es[i] that are not among the entries of
// certificate ids[i].
func (s *Store) notOwn(ctx context.Context, es []indexEntry, ids []int64) ([]indexEntry, error) {
	rs, err := s.GetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	own := map[int64][]indexEntry{}
	unreadable := map[int64]bool{}
	for _, r := range rs {
		switch c, err := r.Certificate(); {
		case err != nil:
			unreadable[r.ID] = true // neither its entries' nor another's: left alone
		case c != nil:
			own[r.ID] = s.keys.inventoryEntries(c, r.Metadata())
		}
	}
	var out []indexEntry
	for i, e := range es {
		if !unreadable[ids[i]] && !slices.Contains(own[ids[i]], e) {
			out = append(out, e)
		}
	}
	return out, nil
}

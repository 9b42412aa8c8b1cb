package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// PendingCSR is a certificate signing request certflow generated (POST
// /CSRGeneration/Generate) with its private key, kept until the CSR is
// enrolled with forceEnroll (the key then moves to the request) or
// deleted.
type PendingCSR struct {
	ID        int64               `json:"ID"`
	Requester string              `json:"Requester"`
	Template  string              `json:"Template,omitempty"`
	Subject   string              `json:"Subject"`
	SANs      map[string][]string `json:"SANs,omitempty"`
	KeyType   string              `json:"KeyType"` // "RSA 2048", "ECC P-256", "Ed25519"
	Created   time.Time           `json:"Created"`
	// CSR is the DER of the generated request.
	CSR []byte `json:"CSR"`
	// KeyID is the hex SHA-256 of the CSR's SubjectPublicKeyInfo.
	KeyID string `json:"KeyID"`
	// PrivateKey is the PKCS#8 key sealed under the KEK with
	// "certflow-csr/<id>" as associated data; never logged, never returned.
	PrivateKey []byte `json:"PrivateKey"`
}

// NewCSRID allocates a pending CSR id.
func (s *Store) NewCSRID(ctx context.Context) (int64, error) {
	id, err := s.rdb.Incr(ctx, s.keys.csrSeq()).Result()
	if err != nil {
		return 0, fmt.Errorf("allocate CSR id: %w", err)
	}
	return id, nil
}

// ErrTooMany: the requester holds as many pending CSRs as allowed.
var ErrTooMany = errors.New("too many pending CSRs")

// reserveCSRScript takes a place in a requester's set of pending CSRs,
// unless it is full. KEYS: the set (one key); ARGV: the bound, the id.
var reserveCSRScript = redis.NewScript(`
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[2])
return 1
`)

// PendingCSRRoom reports whether requester may keep one more pending CSR
// under the bound max, after dropping from its set the ids whose CSR is
// gone (a delete cut short). A cheap look before the key is generated;
// CreatePendingCSR enforces the bound.
func (s *Store) PendingCSRRoom(ctx context.Context, requester string, max int) (bool, error) {
	n, err := s.rdb.ZCard(ctx, s.keys.pendingCSRsOf(requester)).Result()
	if err != nil {
		return false, fmt.Errorf("count pending CSRs: %w", err)
	}
	if n < int64(max) {
		return true, nil
	}
	if n, err = s.prunePendingCSRsOf(ctx, requester); err != nil {
		return false, err
	}
	return n < int64(max), nil
}

// prunePendingCSRsOf drops the ids of deleted CSRs from requester's set
// and returns how many remain.
func (s *Store) prunePendingCSRsOf(ctx context.Context, requester string) (int64, error) {
	key := s.keys.pendingCSRsOf(requester)
	members, err := s.rdb.ZRange(ctx, key, 0, -1).Result()
	if err != nil {
		return 0, fmt.Errorf("list pending CSRs of %s: %w", requester, err)
	}
	ids := parseIDs(members)
	pipe := s.rdb.Pipeline()
	exists := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		exists[i] = pipe.Exists(ctx, s.keys.pendingCSR(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("check pending CSRs of %s: %w", requester, err)
	}
	var gone []any
	for i, c := range exists {
		if c.Val() == 0 {
			gone = append(gone, ids[i])
		}
	}
	if len(gone) > 0 {
		if err := s.rdb.ZRem(ctx, key, gone...).Err(); err != nil {
			return 0, fmt.Errorf("prune pending CSRs of %s: %w", requester, err)
		}
	}
	return int64(len(ids) - len(gone)), nil
}

// reservePendingCSR takes p's place in its requester's set, pruning the
// set once when it is full; ErrTooMany when it stays full.
func (s *Store) reservePendingCSR(ctx context.Context, p *PendingCSR, max int) error {
	key := s.keys.pendingCSRsOf(p.Requester)
	for pruned := false; ; pruned = true {
		ok, err := reserveCSRScript.Run(ctx, s.rdb, []string{key}, max, p.ID).Int()
		if err != nil {
			return fmt.Errorf("reserve a pending CSR: %w", err)
		}
		if ok == 1 {
			return nil
		}
		if pruned {
			return fmt.Errorf("%s holds %d: %w", p.Requester, max, ErrTooMany)
		}
		if _, err := s.prunePendingCSRsOf(ctx, p.Requester); err != nil {
			return err
		}
	}
}

// CreatePendingCSR stores p (its ID from NewCSRID) with its key index and
// listing entries, one key per command (Cluster-safe), if its requester
// holds fewer than max pending CSRs (ErrTooMany otherwise). Should a
// write fail, what was written is removed again.
func (s *Store) CreatePendingCSR(ctx context.Context, p *PendingCSR, max int) error {
	data, err := marshal(p)
	if err != nil {
		return err
	}
	if err := s.reservePendingCSR(ctx, p, max); err != nil {
		return err
	}
	pipe := s.rdb.Pipeline()
	pipe.Set(ctx, s.keys.pendingCSR(p.ID), data, 0)
	pipe.Set(ctx, s.keys.csrByKey(p.KeyID), p.ID, 0)
	pipe.ZAdd(ctx, s.keys.pendingCSRs(), redis.Z{Score: float64(p.ID), Member: p.ID})
	if _, err := pipe.Exec(ctx); err != nil {
		s.DeletePendingCSR(context.WithoutCancel(ctx), p)
		return fmt.Errorf("store pending CSR: %w", err)
	}
	return nil
}

// PendingCSR loads a pending CSR.
func (s *Store) PendingCSR(ctx context.Context, id int64) (*PendingCSR, error) {
	data, err := s.rdb.Get(ctx, s.keys.pendingCSR(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("pending CSR %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load pending CSR %d: %w", id, err)
	}
	p := &PendingCSR{}
	if err := unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("decode pending CSR %d: %w", id, err)
	}
	return p, nil
}

// PendingCSRs loads the pending CSRs with the given ids in one round trip
// (one GET per key: Cluster-safe); missing ones are skipped.
func (s *Store) PendingCSRs(ctx context.Context, ids []int64) ([]*PendingCSR, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.Get(ctx, s.keys.pendingCSR(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load pending CSRs: %w", err)
	}
	out := make([]*PendingCSR, 0, len(ids))
	for i, c := range cmds {
		data, err := c.Bytes()
		if err != nil {
			continue
		}
		p := &PendingCSR{}
		if err := unmarshal(data, p); err != nil {
			return nil, fmt.Errorf("decode pending CSR %d: %w", ids[i], err)
		}
		out = append(out, p)
	}
	return out, nil
}

// PendingCSRByKey finds the pending CSR whose public key has the given id
// (PendingCSR.KeyID); ErrNotFound when certflow generated none.
func (s *Store) PendingCSRByKey(ctx context.Context, keyID string) (*PendingCSR, error) {
	return s.pendingCSRIndexed(ctx, keyID, s.rdb.Get(ctx, s.keys.csrByKey(keyID)))
}

// pendingCSRIndexed loads the pending CSR a csrByKey look-up found.
func (s *Store) pendingCSRIndexed(ctx context.Context, keyID string, byKey *redis.StringCmd) (*PendingCSR, error) {
	id, err := byKey.Int64()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("pending CSR for key %s: %w", keyID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("look up pending CSR by key: %w", err)
	}
	p, err := s.PendingCSR(ctx, id)
	if err == nil && p.KeyID != keyID {
		// A stale index entry (its CSR deleted half-way): not this key's.
		return nil, fmt.Errorf("pending CSR for key %s: %w", keyID, ErrNotFound)
	}
	return p, err
}

// PendingCSRIDs returns up to limit pending CSR ids, oldest first, after
// id after (0: from the first).
func (s *Store) PendingCSRIDs(ctx context.Context, after, limit int64) ([]int64, error) {
	members, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.keys.pendingCSRs(), Start: "(" + strconv.FormatInt(after, 10), Stop: "+inf", ByScore: true, Count: limit,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("list pending CSRs: %w", err)
	}
	return parseIDs(members), nil
}

// DeletePendingCSR removes a pending CSR, its key index and its listing
// entry. The record goes first: an index entry left behind by a failure
// names nothing (PendingCSRByKey checks) and the listing skips ids whose
// record is gone.
func (s *Store) DeletePendingCSR(ctx context.Context, p *PendingCSR) error {
	return s.DeletePendingCSRs(ctx, []*PendingCSR{p})
}

// DeletePendingCSRs deletes several pending CSRs (as DeletePendingCSR) in
// one round trip.
func (s *Store) DeletePendingCSRs(ctx context.Context, ps []*PendingCSR) error {
	ctx, cancel := context.WithTimeout(ctx, deleteTimeout)
	defer cancel()
	pipe := s.rdb.Pipeline()
	for _, p := range ps {
		pipe.Del(ctx, s.keys.pendingCSR(p.ID))
		pipe.Del(ctx, s.keys.pendingCSRClaim(p.ID))
		pipe.Del(ctx, s.keys.csrByKey(p.KeyID))
		pipe.ZRem(ctx, s.keys.pendingCSRs(), p.ID)
		pipe.ZRem(ctx, s.keys.pendingCSRsOf(p.Requester), p.ID)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// ClaimPendingCSR claims a pending CSR for one enrollment for ttl: false
// when another holds the claim, ErrNotFound when it was deleted meanwhile. The claim ends with DeletePendingCSR (the
// enrollment was accepted), ReleasePendingCSR (it was not), or its TTL
// (the process died in between).
func (s *Store) ClaimPendingCSR(ctx context.Context, p *PendingCSR, ttl time.Duration) (bool, error) {
	res, err := claimCSRScript.Run(ctx, s.rdb, []string{s.keys.pendingCSR(p.ID), s.keys.pendingCSRClaim(p.ID)}, ttl.Milliseconds()).Int64()
	switch {
	case err != nil:
		return false, fmt.Errorf("claim pending CSR %d: %w", p.ID, err)
	case res == -1:
		return false, fmt.Errorf("claim pending CSR %d: %w", p.ID, ErrNotFound)
	}
	return res == 1, nil
}

// claimCSRScript claims a pending CSR that still exists: a submit that read
// it before another enrollment deleted it must not claim it afterwards.
// KEYS: the pending CSR, its claim (one hash tag); ARGV: TTL in ms.
var claimCSRScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('SET', KEYS[2], 1, 'NX', 'PX', ARGV[1]) then return 1 end
return 0
`)

// ReleasePendingCSR ends a claim whose enrollment was not accepted.
func (s *Store) ReleasePendingCSR(ctx context.Context, p *PendingCSR) error {
	ctx, cancel := context.WithTimeout(ctx, deleteTimeout)
	defer cancel()
	return s.rdb.Del(ctx, s.keys.pendingCSRClaim(p.ID)).Err()
}

// setCSRScript stores a request's generated CSR with its record, once:
// the compare-and-set of Save, refused when the record already has a CSR.
// KEYS: request; ARGV: expected version, json, CSR DER.
// Returns 1 stored, 0 version changed, 2 a CSR exists, -1 no record.
var setCSRScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
local c = redis.call('HGET', KEYS[1], 'c')
if c and c ~= '' then return 2 end
if v ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', tonumber(v) + 1, 'd', ARGV[2], 'c', ARGV[3])
return 1
`)

// ErrHasCSR: SetCSR found the request's CSR already stored.
var ErrHasCSR = errors.New("request already has a CSR")

// SetCSR stores a CSR made for a request after it was created (PFX
// enrollment generates the key in the worker) together with the record
// (its sealed PrivateKey, Subject), in one compare-and-set. It fails with
// ErrHasCSR when another worker stored one first (the caller reloads and
// uses that one) and ErrConflict when the record changed meanwhile.
func (s *Store) SetCSR(ctx context.Context, r *Request, csr []byte) error {
	r.CSR = csr
	data, err := marshal(r)
	if err != nil {
		return err
	}
	res, err := setCSRScript.Run(ctx, s.rdb, []string{s.keys.request(r.ID)}, r.version, data, csr).Int64()
	switch {
	case err != nil:
		return fmt.Errorf("store CSR of request %d: %w", r.ID, err)
	case res == -1:
		return fmt.Errorf("store CSR of request %d: %w", r.ID, ErrNotFound)
	case res == 0:
		return fmt.Errorf("store CSR of request %d: %w", r.ID, ErrConflict)
	case res == 2:
		return fmt.Errorf("store CSR of request %d: %w", r.ID, ErrHasCSR)
	}
	r.version++
	return nil
}

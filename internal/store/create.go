package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Create stores r as a new request under r.ID (from NewID). With an
// idempotency key it first claims the key for r.ID: if another request
// holds it, nothing is written and that request's id is returned with
// existing = true. Every command touches one key (or one request's hash
// tag) but the create script (see CreateQueued); the open set and the
// instance index are derived and written after the record.
func (s *Store) Create(ctx context.Context, r *Request, idemTTL time.Duration) (id int64, existing bool, err error) {
	return s.CreateQueued(ctx, r, idemTTL, nil, KeyChecks{})
}

// Enqueue queues a new request's first run, with writes done before the
// task can be dequeued (queue.Client.EnqueueRunAfter, which sends them in
// the same round trip when it can). When it returns nil, writes were sent.
type Enqueue func(ctx context.Context, writes func(redis.Pipeliner)) error

// CreateQueued is Create, then enqueue (when not nil) of the request's
// first run, the record riding with the task. If either fails, what was
// written is removed (Delete) and the error returned: a submit refused
// leaves nothing behind (a task queued for a record removed finds no
// request and is dropped). A repeated idempotency key enqueues nothing.
//
// checks are what is asked of the CSR's key. With checks.Barred, a key a
// certificate was revoked for with reason keyCompromise is refused:
// ErrKeyCompromised, looked up before anything is written, so that the
// refusal leaves nothing behind (not even a withdrawn id). With
// checks.UnlessGenerated, the request is created only if no pending CSR
// certflow generated has that key: else ErrGeneratedKey, and the caller
// marries the key to a request of its own (new id). That check rides in
// the script that writes the record, so an ordinary enrollment pays no
// round trip for it; the task, already queued then, finds the id
// withdrawn (ErrWithdrawn) and is dropped.
//
// The script also refuses an id that is already a request's (ErrIDTaken,
// see NewID): nothing is written over it.
func (s *Store) CreateQueued(ctx context.Context, r *Request, idemTTL time.Duration, enqueue Enqueue, checks KeyChecks) (id int64, existing bool, err error) {
	id = r.ID
	if id <= 0 {
		return 0, false, errors.New("create request: no id (call NewID)")
	}
	unlessKey := checks.UnlessGenerated
	if checks.Barred != "" {
		barred, err := s.KeyCompromised(ctx, checks.Barred)
		if err != nil {
			return 0, false, err
		}
		if barred {
			return 0, false, ErrKeyCompromised
		}
	}
	r.Input.ID, r.version, r.Progress, r.loaded = id, 1, r.Updated, r.Disposition
	data, err := marshal(r)
	if err != nil {
		return 0, false, err
	}
	idemKey := ""
	if r.IdempotencyKey != "" {
		idemKey = s.keys.idempotency(r.Requester.Name, r.IdempotencyKey)
		claimed, err := s.rdb.SetNX(ctx, idemKey, id, idemTTL).Result()
		if err != nil {
			return 0, false, fmt.Errorf("claim idempotency key: %w", err)
		}
		if !claimed {
			prev, err := s.rdb.Get(ctx, idemKey).Int64()
			if err == nil {
				return prev, true, nil
			}
			if !errors.Is(err, redis.Nil) {
				return 0, false, fmt.Errorf("read idempotency key: %w", err)
			}
			// Expired between the two calls: claim it again.
			return s.CreateQueued(ctx, r, idemTTL, enqueue, checks)
		}
	}
	// What the script knows its own write by, once a checkpoint has
	// changed the record.
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:8])
	var created *redis.Cmd
	writes := func(p redis.Pipeliner) {
		keys := []string{s.keys.request(id), s.keys.open()}
		if unlessKey != "" {
			keys = append(keys, s.keys.csrByKey(unlessKey))
		}
		// EVAL, not EVALSHA: a NOSCRIPT here would leave the task that
		// follows in the pipeline without its record.
		created = createScript.Eval(ctx, p, keys, data, r.CSR, r.Updated.UnixMilli(), id, withdrawnTTL.Milliseconds(), digest)
	}
	if enqueue == nil {
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { writes(p); return nil })
	} else if err = enqueue(ctx, writes); err == nil {
		if created == nil {
			err = errors.New("the enqueue did not send the record's writes")
		} else {
			err = created.Err()
		}
	}
	if err == nil && created != nil {
		switch res, _ := created.Int64(); res {
		case 0:
			err = ErrGeneratedKey
		case -1:
			s.dropIDs()
			err = ErrIDTaken
		}
		if err != nil {
			// Nothing of ours was written but the idempotency key.
			if idemKey != "" {
				s.rdb.Del(context.WithoutCancel(ctx), idemKey)
			}
			return 0, false, err
		}
	}
	if err != nil {
		if derr := s.Delete(context.WithoutCancel(ctx), r); derr != nil {
			err = fmt.Errorf("%w (the record could not be removed: %v; the reconciler will run it)", err, derr)
		}
		return 0, false, fmt.Errorf("store request %d: %w", id, err)
	}
	return id, false, nil
}

// KeyChecks are what CreateQueued asks of a new request's CSR key, each a
// pki.PublicKeyID ("": not asked).
type KeyChecks struct {
	// Barred refuses a key a certificate was revoked for with reason
	// keyCompromise (ErrKeyCompromised).
	Barred string
	// UnlessGenerated refuses the key of a pending CSR certflow generated
	// (ErrGeneratedKey): the caller marries it to a request of its own.
	UnlessGenerated string
}

// createScript writes a new request's record and open-set entry, unless
// its id is taken (-1) or its CSR's key is a pending generated CSR's (0:
// the hash gets only the withdrawn marker v=0, for withdrawnTTL). 1: made.
// Run again on what it wrote itself, it answers the same (a request id is
// never any other request's: NewID's blocks do not overlap, and a
// withdrawn id's marker can only be its own), also once the record has
// changed: the task that rode with the write may have run and
// checkpointed before the write is sent again, so the record keeps the
// digest of its first version (n), which no checkpoint changes.
// KEYS: the request's hash, the open set[, the CSR-key index entry];
// ARGV: record, CSR, open-set score, id, marker TTL (ms), record digest.
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
	-- Our own write, sent again (go-redis re-sends a pipeline whose
	-- answer it lost): the same outcome again, not a taken id.
	local v, d, n = unpack(redis.call('HMGET', KEYS[1], 'v', 'd', 'n'))
	if d == ARGV[1] or n == ARGV[6] then return 1 end
	if v == '0' and not d then return 0 end
	return -1
end
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then
	redis.call('HSET', KEYS[1], 'v', '0')
	redis.call('PEXPIRE', KEYS[1], ARGV[5])
	return 0
end
redis.call('HSET', KEYS[1], 'v', '1', 'd', ARGV[1], 'c', ARGV[2], 'n', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
`)

// withdrawnTTL is how long a withdrawn id's marker stays: long enough for
// a backlog to reach its task, which then drops it quietly.
const withdrawnTTL = time.Hour

// deleteTimeout bounds Delete: it runs after the submit's own deadline
// was spent on the failure it cleans up after, and the refusal must not
// wait on a Redis that does not answer.
const deleteTimeout = 500 * time.Millisecond

// Delete removes a request that was never accepted (its enqueue failed),
// with its idempotency key, so a rejected submit leaves nothing behind.
// It gives up after deleteTimeout; a record left behind has no task and
// is run by the reconciler.
func (s *Store) Delete(ctx context.Context, r *Request) error {
	ctx, cancel := context.WithTimeout(ctx, deleteTimeout)
	defer cancel()
	ks := []string{s.keys.request(r.ID)}
	if r.IdempotencyKey != "" {
		ks = append(ks, s.keys.idempotency(r.Requester.Name, r.IdempotencyKey))
	}
	pipe := s.rdb.Pipeline() // one key per command: Cluster-safe
	for _, k := range ks {
		pipe.Del(ctx, k)
	}
	pipe.ZRem(ctx, s.keys.open(), r.ID)
	_, err := pipe.Exec(ctx)
	return err
}

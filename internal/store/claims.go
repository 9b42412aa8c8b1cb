package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// releaseScript deletes a lock only if we still hold it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// issueLockTTL bounds how long a crashed worker's issue lock blocks others.
const issueLockTTL = time.Minute

// IssueLockTTL is how long an issue claim lasts once taken or extended:
// work under a claim is bounded well below it.
const IssueLockTTL = issueLockTTL

// IssueClaim is a held issue lock (see ClaimIssue).
type IssueClaim struct {
	s          *Store
	key, token string
	requestID  int64
	taken      time.Time
	// done: signed under it, or released.
	done bool
}

// Release gives the lock up, unless another holds it by now. Call it when
// no certificate will be stored under the claim; once one is, the lock is
// left to expire (every later claim finds the certificate first). A nil
// claim is a no-op.
func (c *IssueClaim) Release(ctx context.Context) {
	if c != nil {
		c.done = true
		releaseScript.Run(ctx, c.s.rdb, []string{c.key}, c.token)
	}
}

// ReleaseUnused releases a claim nothing was signed under (GetForRun's,
// when the run did not issue).
func (c *IssueClaim) ReleaseUnused(ctx context.Context) {
	if c != nil && !c.done {
		c.Release(ctx)
	}
}

// Signed readies a certificate made under the claim for storing: its id
// is the request's, and a failed save releases the claim.
func (c *IssueClaim) Signed(cert *Certificate, requestID int64) *Certificate {
	c.done = true
	cert.ID, cert.RequestID, cert.claim = requestID, requestID, c
	return cert
}

// newClaim queues the taking of a request's issue lock on pipe.
func (s *Store) newClaim(ctx context.Context, pipe redis.Pipeliner, requestID int64) (*IssueClaim, *redis.BoolCmd) {
	c := &IssueClaim{s: s, key: s.keys.issueLock(requestID), token: randomToken(), requestID: requestID, taken: time.Now()}
	return c, pipe.SetNX(ctx, c.key, c.token, issueLockTTL)
}

// GetForRun loads a request for a workflow run and, in the same round
// trip, claims its issuance in advance: the lock, then the record (whose
// certificate field is ClaimIssue's check), in that order. The claim is
// nil when the lock is held elsewhere or a certificate is stored (then the
// lock, if taken, is left to expire, as ClaimIssue leaves it). Hand the
// claim to the issue step's ClaimIssue (its pre), and ReleaseUnused it when
// the run ends: a run that issues saves ClaimIssue's round trip, and one
// that does not (a denial, a wait for approval, a revocation) pays one to
// release it.
func (s *Store) GetForRun(ctx context.Context, id int64) (*Request, *IssueClaim, error) {
	pipe := s.rdb.Pipeline()
	claim, lock := s.newClaim(ctx, pipe, id)
	get := pipe.HMGet(ctx, s.keys.request(id), "v", "d", "x", "c")
	if err := s.execBatched(ctx, pipe); err != nil {
		return nil, nil, fmt.Errorf("load request %d: %w", id, err)
	}
	r, err := s.loaded(ctx, id, get)
	switch locked, lockErr := lock.Result(); {
	case errors.Is(err, ErrWithdrawn):
		// This is the withdrawn id's one task: nobody will run it, so
		// its marker and the lock just taken go now.
		bg := context.WithoutCancel(ctx)
		if lockErr == nil && locked {
			claim.Release(bg)
		}
		s.rdb.Del(bg, s.keys.request(id))
		claim = nil
	case lockErr != nil || !locked:
		claim = nil
	case err != nil:
		// Unread (Redis failed, or the record does not decode), or not
		// there yet (a record may follow its task: the worker tries its
		// task again, see queue.Client.EnqueueRunAfter): the retry must
		// not find its own lock in the way.
		claim.Release(context.WithoutCancel(ctx))
		claim = nil
	case len(r.cert) > 0:
		// A lock taken for a request that has its certificate is left to
		// expire: nobody will issue for it.
		claim = nil
	}
	return r, claim, err
}

// ClaimIssue starts an issuance for a request: it returns the request's
// certificate if one is stored, else takes the request's issue lock, so
// that one worker at a time signs for it (ErrBusy: another holds it). The
// lock and the check after it go in one pipeline: Redis runs them in that
// order, which is all that lock-then-check needs, in one round trip.
//
// A certificate made under the claim is stored with set-if-absent
// (HSETNX on the request's own hash): by IssueOnce at once, or by the
// checkpoint after the issue step (Save, Instance.Unsaved). Even two
// workers running the same task at once (a lease lost during a Redis
// stall) end with one certificate.
//
// A claim taken in advance by the run's GetForRun (pre; nil if none) is
// used as it is, with no round trip, while it is young: nobody else can
// have stored a certificate since its check, as that needs the lock.
func (s *Store) ClaimIssue(ctx context.Context, requestID int64, pre *IssueClaim) (existing *Certificate, claim *IssueClaim, err error) {
	if pre != nil && pre.requestID == requestID && !pre.done {
		if time.Since(pre.taken) < issueLockTTL/2 {
			return nil, pre, nil
		}
		pre.Release(context.WithoutCancel(ctx)) // too old to trust: claim afresh
	}
	pipe := s.rdb.Pipeline()
	claim, lock := s.newClaim(ctx, pipe, requestID)
	check := pipe.HGet(ctx, s.keys.request(requestID), "x")
	pipe.Exec(ctx) // each command's own error is read below
	ok, err := lock.Result()
	if err != nil {
		return nil, nil, fmt.Errorf("issue lock: %w", err)
	}
	data, checkErr := check.Bytes()
	if checkErr == nil {
		// Issued already (the lock, if we just took it, expires: every
		// later call finds the certificate first); its index entries
		// were written by the script that stored it.
		c, err := s.decodeStored(ctx, requestID, data)
		if err != nil {
			return nil, nil, err
		}
		return c, nil, nil
	}
	if !ok {
		// Held by another worker, or left to expire by a finished
		// issuance whose certificate we could not read.
		return nil, nil, ErrBusy
	}
	if !errors.Is(checkErr, redis.Nil) {
		claim.Release(context.WithoutCancel(ctx))
		return nil, nil, fmt.Errorf("load certificate of request %d: %w", requestID, checkErr)
	}
	return nil, claim, nil
}

// IssueOnce returns the certificate of a request, calling sign to make one
// only if none exists (see ClaimIssue), and stores it at once.
func (s *Store) IssueOnce(ctx context.Context, requestID int64, sign func(ctx context.Context) (*Certificate, error)) (cert *Certificate, fresh bool, err error) {
	existing, claim, err := s.ClaimIssue(ctx, requestID, nil)
	if err != nil || existing != nil {
		return existing, false, err
	}
	stored := false
	defer func() {
		if !stored {
			claim.Release(context.WithoutCancel(ctx))
		}
	}()
	c, err := sign(ctx)
	if err != nil {
		return nil, false, err
	}
	claim.Signed(c, requestID)
	enc, err := s.encodeCertificate(c)
	if err != nil {
		return nil, false, err
	}
	// The certificate's index entries are written by the script that
	// stores it (not its metadata's: IssueOnce knows no record), and so
	// is its chain.
	var ops indexOps
	ops.add(enc.chainOps)
	ops.add(s.keys.certEntries(c))
	keys, args := ops.encode([]string{s.keys.request(requestID)}, []any{enc.data})
	won, err := storeCertScript.Run(ctx, s.rdb, keys, args...).Bool()
	if err != nil {
		return nil, false, fmt.Errorf("store certificate: %w", err)
	}
	stored = true
	if !won {
		// Lost a race despite the lock (it expired under us): ours was
		// never stored or returned, so it never existed outside this
		// process.
		c, err := s.CertificateOf(ctx, requestID)
		return c, false, err
	}
	s.chainStored(enc)
	return c, true, nil
}

// storeCertScript stores a certificate if the request has none, with its
// index entries. KEYS: request, the ops' keys; ARGV: certificate JSON,
// the ops. 1: stored; 0: the request had one.
var storeCertScript = redis.NewScript(applyOpsLua + `
if redis.call('HEXISTS', KEYS[1], 'x') == 1 then return 0 end
apply(2, 2, #KEYS - 1)
redis.call('HSET', KEYS[1], 'x', ARGV[1])
return 1
`)

func randomToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// extendScript renews a lock's TTL only if we still hold it.
var extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)

// Extend gives the claim a full lifetime again, before an exchange with
// a CA that may take a while (placing an order): ErrBusy if the lock is
// no longer ours.
func (c *IssueClaim) Extend(ctx context.Context) error {
	ok, err := extendScript.Run(ctx, c.s.rdb, []string{c.key}, c.token, issueLockTTL.Milliseconds()).Int()
	switch {
	case err != nil:
		return fmt.Errorf("extend issue lock: %w", err)
	case ok == 0:
		return ErrBusy
	}
	c.taken = time.Now()
	return nil
}

// recordOrderScript writes a request's order (field o) only while the
// issue lock is ours; the first record (ARGV[3] = 1) only if none is
// there, a later one only if one is (a restart may have retired it:
// Request.RetireOrder). Returns 1 when written, 0 when the lock is not
// ours, -1 when an order was recorded first, -2 when the record is gone.
var recordOrderScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '1' then
  if redis.call('HSETNX', KEYS[2], 'o', ARGV[2]) == 0 then return -1 end
  return 1
end
if redis.call('HEXISTS', KEYS[2], 'o') == 0 then return -2 end
redis.call('HSET', KEYS[2], 'o', ARGV[2])
return 1
`)

// ErrOrderRecorded: another run recorded an order for the request first.
var ErrOrderRecorded = errors.New("an order is recorded for the request already")

// ErrOrderRetired: the order being updated is no longer the request's
// (a restart retired it).
var ErrOrderRetired = errors.New("the request's order is no longer recorded")

// RecordOrder stores the request's order with an external CA (an opaque
// record the issue step writes) under the claim: first is the record of a
// new order, written only if none is (ErrOrderRecorded otherwise), before
// anything acts on it; later ones update it. ErrBusy: the lock is no
// longer ours, and nothing was written.
func (c *IssueClaim) RecordOrder(ctx context.Context, data []byte, first bool) error {
	flag := "0"
	if first {
		flag = "1"
	}
	res, err := recordOrderScript.Run(ctx, c.s.rdb, []string{c.key, c.s.keys.request(c.requestID)}, c.token, data, flag).Int()
	switch {
	case err != nil:
		return fmt.Errorf("record order of request %d: %w", c.requestID, err)
	case res == 0:
		return ErrBusy
	case res == -1:
		return ErrOrderRecorded
	case res == -2:
		return ErrOrderRetired
	}
	return nil
}

// RetireOrder has r's next Save move the order recorded for it
// (RecordOrder) aside, with the record and only if the record is written:
// a restarted request's issue step gives that order up (the one that
// failed it; the CA may even have issued it) and places a new one, rather
// than look again at it; once the order is given up, DropRetiredOrder.
func (r *Request) RetireOrder() { r.retireOrder = true }

// dropRetiredScript drops a request's retired order while the issue lock
// is ours: 1 when the lock is ours, 0 otherwise.
var dropRetiredScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[2], 'o:retired')
return 1
`)

// DropRetiredOrder forgets the request's retired order (RetireOrder),
// once the issue step gave it up, under the claim: ErrBusy if the lock is
// no longer ours (then a restart may have retired another since).
func (c *IssueClaim) DropRetiredOrder(ctx context.Context) error {
	ok, err := dropRetiredScript.Run(ctx, c.s.rdb, []string{c.key, c.s.keys.request(c.requestID)}, c.token).Int()
	switch {
	case err != nil:
		return fmt.Errorf("drop retired order of request %d: %w", c.requestID, err)
	case ok == 0:
		return ErrBusy
	}
	return nil
}

// OrderOf returns the order recorded for a request (RecordOrder) and the
// one a restart retired (RetireOrder), each nil if none is, in one round
// trip.
func (s *Store) OrderOf(ctx context.Context, requestID int64) (current, retired []byte, err error) {
	vals, err := s.rdb.HMGet(ctx, s.keys.request(requestID), "o", "o:retired").Result()
	if err != nil {
		return nil, nil, fmt.Errorf("load order of request %d: %w", requestID, err)
	}
	field := func(v any) []byte {
		if str, ok := v.(string); ok {
			return []byte(str)
		}
		return nil
	}
	return field(vals[0]), field(vals[1]), nil
}

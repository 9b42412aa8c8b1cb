// Package store keeps certflow's records in Redis: requests with their
// workflow instance, issued certificates, idempotency keys, and the
// announcements that wake clients waiting for a result. The store is the
// source of truth; the queue only delivers work.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/certflow/certflow/internal/redisbatch"
	"github.com/certflow/certflow/workflow"
	"github.com/redis/go-redis/v9"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: the record changed since it was read (compare-and-set lost).
	ErrConflict = errors.New("record changed concurrently")
	// ErrBusy: another worker holds the request's issue lock.
	ErrBusy = errors.New("another worker is issuing for this request")
	// ErrUnindexed: a save stored the record and its certificate, but the
	// inventory's index entries could not be written; the request's next
	// run writes them (Store.IndexStored). It wraps workflow.ErrSaved.
	ErrUnindexed = fmt.Errorf("certificate not indexed (%w)", workflow.ErrSaved)
	// ErrGeneratedKey: CreateQueued was asked to create a request unless
	// its CSR's key is one certflow generated (a pending CSR's), and it
	// is; nothing was created (see CreateQueued).
	ErrGeneratedKey = errors.New("the CSR's key is one certflow generated")
	// ErrKeyCompromised: CreateQueued was asked to refuse a CSR key that a
	// certificate was revoked for with reason keyCompromise
	// (KeyCompromised), and it is one; nothing was created.
	ErrKeyCompromised = errors.New("the CSR's key was revoked for key compromise")
	// ErrIDTaken: the id NewID gave is already a request's (Redis lost
	// its id counter while this process held a block of ids): nothing was
	// written; ask NewID for another.
	ErrIDTaken = errors.New("request id already taken")
	// ErrWithdrawn is what reading a request id whose creation was
	// withdrawn (ErrGeneratedKey) gives, while its marker lasts: its
	// first run's task was queued, and finds nothing to run.
	ErrWithdrawn = fmt.Errorf("%w (withdrawn before its first run)", ErrNotFound)
)

// Store is certflow's Redis persistence.
type Store struct {
	rdb  redis.UniversalClient
	keys keys
	// ProgressEvery is how stale a request's progress score may get
	// before a checkpoint refreshes it: checkpoints within it cost no
	// open-set write. Keep it well under the reconciler's bound.
	ProgressEvery time.Duration
	// forget batches settled ids' removal from the open set.
	forget forgetQueue
	// ordered: rdb is one Redis (a *redis.Client, Sentinel included),
	// where a script may span keys of different slots and a pipeline's
	// commands run in order. Only there do ids come in blocks and does
	// creating a request check its id and CSR key in the same script.
	ordered bool
	ids     idBlock
	// batch sends the worker's pipelines (a run's read, its checkpoints)
	// together with other runs' (one Redis only).
	batch *redisbatch.Batcher
}

// idBlock is the rest of a block of request ids this process reserved.
type idBlock struct {
	mu         sync.Mutex
	next, last int64 // next > last: none left
}

// requestIDBlock is how many request ids NewID reserves at a time. A
// process that stops leaves the rest of its block unused: request ids
// have gaps, and ids from different processes interleave out of time
// order (they were never in order across concurrent submits anyway).
const requestIDBlock = 32

// DefaultProgressEvery is Store.ProgressEvery's default.
const DefaultProgressEvery = time.Minute

// New returns a store whose keys start with prefix.
func New(rdb redis.UniversalClient, prefix string) *Store {
	s := &Store{rdb: rdb, keys: keys{prefix: prefix}, ProgressEvery: DefaultProgressEvery}
	if single, ok := rdb.(*redis.Client); ok {
		s.ordered, s.batch = true, redisbatch.New(single)
	}
	return s
}

// execBatched runs pipe's commands, sent together with other goroutines'
// pipelines where it can (see redisbatch). A non-nil error means ctx ended
// before their outcome was known: the caller must not read them. Else
// each command carries its own outcome.
func (s *Store) execBatched(ctx context.Context, pipe redis.Pipeliner) error {
	if s.batch == nil {
		pipe.Exec(ctx) // each command carries its own outcome
		return nil
	}
	return s.batch.Exec(ctx, pipe)
}

// Redis returns the client the store uses (shared with asynq).
func (s *Store) Redis() redis.UniversalClient { return s.rdb }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

// Unavailable reports whether err means Redis could not be reached (as
// opposed to a bad request or a bug): the API answers 503 for it.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout):
		return true
	}
	// asynq flattens its errors to text ("redis eval error: …"), so the
	// network causes are also recognised by their words.
	msg := err.Error()
	for _, s := range []string{"connection refused", "i/o timeout", "deadline exceeded", "connection reset", "broken pipe", "EOF", "use of closed network connection", "LOADING", "MASTERDOWN", "CLUSTERDOWN"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// NewID allocates a request id. On one Redis (see Store.ordered) it
// reserves requestIDBlock ids at a time and hands them out without a
// round trip; a request created under an id Redis forgot it gave (its
// data lost) is refused with ErrIDTaken rather than written over another.
// Elsewhere (Cluster, Ring), each id is its own INCR.
func (s *Store) NewID(ctx context.Context) (int64, error) {
	if !s.ordered {
		id, err := s.rdb.Incr(ctx, s.keys.requestSeq()).Result()
		if err != nil {
			return 0, fmt.Errorf("allocate request id: %w", err)
		}
		return id, nil
	}
	b := &s.ids
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.next == 0 || b.next > b.last {
		last, err := s.rdb.IncrBy(ctx, s.keys.requestSeq(), requestIDBlock).Result()
		if err != nil {
			return 0, fmt.Errorf("allocate request id: %w", err)
		}
		b.next, b.last = last-requestIDBlock+1, last
	}
	b.next++
	return b.next - 1, nil
}

// dropIDs forgets the rest of the current block of ids (one was taken).
func (s *Store) dropIDs() {
	s.ids.mu.Lock()
	s.ids.next = 0
	s.ids.mu.Unlock()
}

// Create stores r as a new request under r.ID (from NewID). With an
// idempotency key it first claims the key for r.ID: if another request
// holds it, nothing is written and that request's id is returned with
// existing = true. Every command touches one key (or one request's hash
// tag), so the same code runs on Redis Cluster; the open set and the
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
// marries the key to a request of its own (new id). On one Redis that
// check rides in the script that writes the record, so an ordinary
// enrollment pays no round trip for it; the task, already queued then,
// finds the id withdrawn (ErrWithdrawn) and is dropped. Elsewhere the
// look-up goes first.
//
// On one Redis the script also refuses an id that is already a request's
// (ErrIDTaken, see NewID): nothing is written over it.
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
	if unlessKey != "" && !s.ordered {
		n, err := s.rdb.Exists(ctx, s.keys.csrByKey(unlessKey)).Result()
		if err != nil {
			return 0, false, fmt.Errorf("look up pending CSR by key: %w", err)
		}
		if n > 0 {
			return 0, false, ErrGeneratedKey
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
	var written []redis.Cmder
	var created *redis.Cmd
	writes := func(p redis.Pipeliner) {
		if !s.ordered {
			written = append(written,
				p.HSet(ctx, s.keys.request(id), "v", 1, "d", data, "c", r.CSR),
				p.ZAdd(ctx, s.keys.open(), redis.Z{Score: float64(r.Updated.UnixMilli()), Member: id}))
			return
		}
		keys := []string{s.keys.request(id), s.keys.open()}
		if unlessKey != "" {
			keys = append(keys, s.keys.csrByKey(unlessKey))
		}
		// EVAL, not EVALSHA: a NOSCRIPT here would leave the task that
		// follows in the pipeline without its record.
		created = createScript.Eval(ctx, p, keys, data, r.CSR, r.Updated.UnixMilli(), id, withdrawnTTL.Milliseconds())
		written = append(written, created)
	}
	if enqueue == nil {
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { writes(p); return nil })
	} else if err = enqueue(ctx, writes); err == nil {
		if len(written) == 0 {
			err = errors.New("the enqueue did not send the record's writes")
		}
		for _, c := range written {
			if err == nil {
				err = c.Err()
			}
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
// withdrawn id's marker can only be its own).
// KEYS: the request's hash, the open set[, the CSR-key index entry];
// ARGV: record, CSR, open-set score, id, marker TTL (ms).
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
	-- Our own write, sent again (go-redis re-sends a pipeline whose
	-- answer it lost): the same outcome again, not a taken id.
	local v, d = unpack(redis.call('HMGET', KEYS[1], 'v', 'd'))
	if d == ARGV[1] then return 1 end
	if v == '0' and not d then return 0 end
	return -1
end
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then
	redis.call('HSET', KEYS[1], 'v', '0')
	redis.call('PEXPIRE', KEYS[1], ARGV[5])
	return 0
end
redis.call('HSET', KEYS[1], 'v', '1', 'd', ARGV[1], 'c', ARGV[2])
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

// Get loads a request.
func (s *Store) Get(ctx context.Context, id int64) (*Request, error) {
	return loaded(id, s.rdb.HMGet(ctx, s.keys.request(id), "v", "d", "x", "c"))
}

// loaded makes a request of the answer to an HMGET of its v, d, x and c.
func loaded(id int64, get *redis.SliceCmd) (*Request, error) {
	vals, err := get.Result()
	if err != nil {
		return nil, fmt.Errorf("load request %d: %w", id, err)
	}
	r, err := decodeRequest(id, vals)
	if r == nil && err == nil {
		return nil, fmt.Errorf("request %d: %w", id, ErrNotFound)
	}
	return r, err
}

// decodeRequest makes a request of an HMGET of its hash's v, d, x and,
// when asked for, c; nil (and no error) when there is no such record.
func decodeRequest(id int64, vals []any) (*Request, error) {
	str := func(i int) string {
		if i >= len(vals) {
			return ""
		}
		v, _ := vals[i].(string)
		return v
	}
	v, d := str(0), str(1)
	if v == "0" && d == "" {
		return nil, fmt.Errorf("request %d: %w", id, ErrWithdrawn)
	}
	if v == "" || d == "" {
		return nil, nil
	}
	r := &Request{}
	if err := unmarshal(bytesOf(d), r); err != nil {
		return nil, fmt.Errorf("decode request %d: %w", id, err)
	}
	r.version, _ = strconv.ParseInt(v, 10, 64)
	r.cert, r.loaded = bytesOf(str(2)), r.Disposition // read only by decodeCertificate
	if c := str(3); c != "" {
		r.CSR = []byte(c)
	}
	return r, nil
}

// saveScript is the compare-and-set update of a request record; a
// settled one is announced in the same call (PUBLISH names no key, so
// this stays a one-slot script on Redis Cluster). The announcement
// carries the record as saved (see announcement), so a client waiting
// for it needs no read of its own. A certificate issued since the last
// checkpoint (Instance.Unsaved) is stored with the record, only if the
// request has none yet: -2 when it has, and nothing is written. It is
// stored even when the record changed meanwhile (0): the signature is
// made, and the next run must find it rather than sign again.
// KEYS: request; ARGV: expected version, json, channel ("" for none),
// "id disposition", certificate json ("" for none).
var saveScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if ARGV[5] ~= '' and redis.call('HSETNX', KEYS[1], 'x', ARGV[5]) == 0 then return -2 end
if v ~= ARGV[1] then return 0 end
local nv = tonumber(v) + 1
redis.call('HSET', KEYS[1], 'v', nv, 'd', ARGV[2])
if ARGV[3] ~= '' then
  local f = redis.call('HMGET', KEYS[1], 'x', 'c')
  local x, c = f[1] or '', f[2] or ''
  redis.call('PUBLISH', ARGV[3], ARGV[4] .. '\n' .. nv .. ' ' .. #ARGV[2] .. ' ' .. #x .. ' ' .. #c .. '\n' .. ARGV[2] .. x .. c)
end
return 1
`)

// Save writes r if nobody else has since it was read; otherwise it returns
// ErrConflict and r is stale. On success r's version advances; a settled
// request is announced to waiting clients in the same round trip and
// leaves the open set (a final one with the next batch, see forgetLater),
// while an unsettled one has its progress time refreshed, and one that was
// settled (a decided PENDING request, a restarted FAILED one) rejoins the
// open set at once. A request entering or leaving PENDING joins or leaves
// the pending index. All of that is derived state: a settled id left in
// the open set is dropped by the reconciler, waiters re-read once a
// second, and pending listings re-check each record.
//
// A certificate in r.Instance.Unsaved (the issue step's Result.Record) is
// stored in the same script, with its inventory index entries in the same
// round trip. If the record changed since it was read, the certificate is
// stored all the same (a re-run finds it instead of signing again: one
// signature per request, whoever checkpoints) and Save returns
// ErrConflict. If the request has a certificate already (another
// worker's, after this one's issue lock expired), nothing is written, the
// lock is released and Save returns ErrConflict.
func (s *Store) Save(ctx context.Context, r *Request) error {
	cert, err := unsavedCertificate(r)
	if err != nil {
		return err
	}
	r.Updated = time.Now().UTC()
	settled := r.Disposition.Settled()
	reopened := !settled && r.loaded.Settled()
	refresh := !settled && (reopened || r.Updated.Sub(r.Progress) >= s.ProgressEvery)
	if refresh {
		r.Progress = r.Updated
	}
	data, err := marshal(r)
	if err != nil {
		return err
	}
	channel, message := "", ""
	announce := strconv.FormatInt(r.ID, 10) + " " + string(r.Disposition)
	if settled && r.Disposition != Pending {
		// A PENDING request is announced after it joined the pending
		// index (below), so whoever it wakes finds it listed.
		channel, message = s.keys.events(), announce
	}
	res, certData, indexErr, err := s.runSave(ctx, r, data, channel, message, cert)
	if cert != nil && (err != nil || res == -1 || res == -2) {
		// Not stored, and never will be (a later save must not try
		// again): the next run may sign.
		cert.claim.Release(context.WithoutCancel(ctx))
		if res < 0 {
			r.Instance.Unsaved = nil
		}
	}
	switch {
	case err != nil:
		return fmt.Errorf("save request %d: %w", r.ID, err)
	case res == -1:
		return fmt.Errorf("save request %d: %w", r.ID, ErrNotFound)
	case res == 0:
		return fmt.Errorf("save request %d: %w", r.ID, ErrConflict)
	case res == -2:
		return fmt.Errorf("save request %d: a certificate is stored for it already: %w", r.ID, ErrConflict)
	}
	r.version++
	if cert != nil {
		r.cert, r.Instance.Unsaved = certData, nil
	}
	was := r.loaded
	r.loaded = r.Disposition
	// The follow-ups, best effort (see above), in one round trip.
	pipe := s.rdb.Pipeline()
	switch {
	case settled && r.Disposition.Final():
		s.forgetLater(ctx, r.ID, r.Updated)
	case settled:
		// PENDING runs again later: leave the open set now (the re-adding
		// comes with its decision).
		pipe.ZRem(ctx, s.keys.open(), r.ID)
	case refresh: // a reopened request too
		pipe.ZAdd(ctx, s.keys.open(), redis.Z{Score: float64(r.Progress.UnixMilli()), Member: r.ID})
	}
	switch {
	case r.Disposition == Pending:
		// Scored by deadline (escalation moves it), so the overdue are
		// found without reading the others; waits without a deadline
		// come last, oldest first.
		score := float64(noDeadline + r.Submitted.UnixMilli())
		if w := r.Instance.Wait; w != nil && !w.Deadline.IsZero() {
			score = float64(w.Deadline.UnixMilli())
		}
		pipe.ZAdd(ctx, s.keys.pending(), redis.Z{Score: score, Member: r.ID})
		pipe.Publish(ctx, s.keys.events(), announce)
	case was == Pending:
		pipe.ZRem(ctx, s.keys.pending(), r.ID)
	}
	if pipe.Len() > 0 {
		pipe.Exec(ctx)
	}
	// Saved, but the inventory lacks the certificate: the error sends the
	// task back to the queue, whose next run indexes it (Worker.Run).
	return indexErr
}

// unsavedCertificate is the certificate in r.Instance.Unsaved, if any: the
// only record of an effect a checkpoint knows how to write.
func unsavedCertificate(r *Request) (*Certificate, error) {
	var cert *Certificate
	for _, u := range r.Instance.Unsaved {
		c, ok := u.(*Certificate)
		if !ok || cert != nil {
			return nil, fmt.Errorf("save request %d: cannot record %T with a checkpoint (one *store.Certificate at most)", r.ID, u)
		}
		cert = c
	}
	return cert, nil
}

// runSave runs saveScript. With a certificate, its inventory index
// entries go in the same round trip, before the script: Redis runs a
// pipeline in order, so a stored certificate implies they were written.
// When the script does not store it, they are put right: for the
// certificate stored before (-2), or removed (-1, no record). indexErr
// reports a certificate stored whose index entries failed, even on a
// second try.
func (s *Store) runSave(ctx context.Context, r *Request, data []byte, channel, message string, cert *Certificate) (res int64, certData []byte, indexErr, err error) {
	keys := []string{s.keys.request(r.ID)}
	if cert == nil {
		res, err = saveScript.Run(ctx, s.rdb, keys, r.version, data, channel, message, "").Int64()
		return res, nil, nil, err
	}
	if cert.ID != r.ID || cert.RequestID != r.ID {
		return 0, nil, nil, fmt.Errorf("its unsaved certificate is request %d's", cert.RequestID)
	}
	if certData, err = marshal(cert); err != nil {
		return 0, nil, nil, err
	}
	exec := func(script func(context.Context, redis.Scripter, []string, ...any) *redis.Cmd) (*redis.Cmd, []redis.Cmder, error) {
		pipe := s.rdb.Pipeline()
		index := certIndexCmds(ctx, s.keys, pipe, cert)
		cmd := script(ctx, pipe, keys, r.version, data, channel, message, certData)
		return cmd, index, s.execBatched(ctx, pipe)
	}
	cmd, index, err := exec(saveScript.EvalSha)
	if err == nil && redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		cmd, index, err = exec(saveScript.Eval)
	}
	if err != nil {
		return 0, nil, nil, err
	}
	res, err = cmd.Int64()
	switch {
	case err != nil:
		return res, nil, nil, err
	case res == -2:
		// Ours lost to a stored one: index that one (best effort; a
		// later ClaimIssue does it again).
		if c, err := s.CertificateOf(ctx, r.ID); err == nil {
			s.indexCertificate(ctx, c)
		}
		return res, nil, nil, nil
	case res == -1:
		s.unindexCertificate(ctx, cert)
		return res, nil, nil, nil
	}
	for _, c := range index {
		if c.Err() != nil {
			// Stored but not indexed: once more.
			if err := s.indexCertificate(ctx, cert); err != nil {
				return res, certData, fmt.Errorf("stored certificate %d but could not index it: %w: %w", cert.ID, ErrUnindexed, err), nil
			}
			break
		}
	}
	return res, certData, nil, nil
}

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

// GetMany loads the requests with the given ids in one round trip;
// missing ones are skipped.
func (s *Store) GetMany(ctx context.Context, ids []int64) ([]*Request, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, s.keys.request(id), "v", "d", "x")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load requests: %w", err)
	}
	out := make([]*Request, 0, len(ids))
	for i, c := range cmds {
		vals, err := c.Result()
		if err != nil {
			continue
		}
		r, err := decodeRequest(ids[i], vals)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// Visit loads the requests with the given ids, a hundred per round trip,
// and calls visit for each that exists, in order, until it returns false.
func (s *Store) Visit(ctx context.Context, ids []int64, visit func(*Request) bool) error {
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 100)]
		ids = ids[len(batch):]
		rs, err := s.GetMany(ctx, batch)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if !visit(r) {
				return nil
			}
		}
	}
	return nil
}

// Newest walks requests from the newest down, before request id before (0:
// from the newest), calling visit for each until it returns false or scan
// records were read. It returns the id to continue from (0: no more).
// Listings use it; the CSR is not loaded.
func (s *Store) Newest(ctx context.Context, before int64, scan int, visit func(*Request) bool) (next int64, err error) {
	if before <= 0 {
		top, err := s.rdb.Get(ctx, s.keys.requestSeq()).Int64()
		if errors.Is(err, redis.Nil) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read request counter: %w", err)
		}
		before = top + 1
	}
	const batch = 100
	for read := 0; before > 1 && read < scan; {
		n := min(int64(batch), before-1, int64(scan-read))
		ids := make([]int64, n)
		for i := range ids {
			ids[i] = before - 1 - int64(i)
		}
		rs, err := s.GetMany(ctx, ids)
		if err != nil {
			return 0, err
		}
		before -= n
		read += int(n)
		for _, r := range rs {
			if !visit(r) {
				return r.ID, nil
			}
		}
	}
	if before <= 1 {
		return 0, nil
	}
	return before, nil
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

// Update loads request id, applies change and saves it, retrying when
// another writer got there first. change must be safe to run again on
// the fresh record.
func (s *Store) Update(ctx context.Context, id int64, change func(*Request) error) (*Request, error) {
	for attempt := 0; ; attempt++ {
		r, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := change(r); err != nil {
			return r, err
		}
		err = s.Save(ctx, r)
		if !errors.Is(err, ErrConflict) || attempt == 9 {
			return r, err
		}
	}
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

func parseIDs(members []string) []int64 {
	ids := make([]int64, 0, len(members))
	for _, m := range members {
		if id, err := strconv.ParseInt(m, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// Forget removes a request from the open set (the reconciler's view).
func (s *Store) Forget(ctx context.Context, id int64) error {
	return s.rdb.ZRem(ctx, s.keys.open(), id).Err()
}

// CertificateOf returns the certificate issued for a request.
func (s *Store) CertificateOf(ctx context.Context, requestID int64) (*Certificate, error) {
	data, err := s.rdb.HGet(ctx, s.keys.request(requestID), "x").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("certificate of request %d: %w", requestID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load certificate of request %d: %w", requestID, err)
	}
	return decodeCertificate(requestID, data)
}

func decodeCertificate(requestID int64, data []byte) (*Certificate, error) {
	c := &Certificate{}
	if err := unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("decode certificate of request %d: %w", requestID, err)
	}
	return c, nil
}

// Certificate returns the certificate a Get found with the request: nil
// (and no error) when none was issued.
func (r *Request) Certificate() (*Certificate, error) {
	if len(r.cert) == 0 {
		return nil, nil
	}
	return decodeCertificate(r.ID, r.cert)
}

// Certificate loads a certificate by its id, which is the id of the
// request that issued it.
func (s *Store) Certificate(ctx context.Context, id int64) (*Certificate, error) {
	return s.CertificateOf(ctx, id)
}

// CertificateByThumbprint loads a certificate by its SHA-1 thumbprint
// (hex, any case).
func (s *Store) CertificateByThumbprint(ctx context.Context, thumbprint string) (*Certificate, error) {
	tp := strings.ToUpper(thumbprint)
	id, err := s.rdb.Get(ctx, s.keys.thumbprint(tp)).Int64()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("certificate with thumbprint %s: %w", tp, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("look up thumbprint %s: %w", tp, err)
	}
	c, err := s.CertificateOf(ctx, id)
	if err == nil && c.Thumbprint != tp {
		// The index entry of a certificate that lost the race to be
		// stored (see IssueOnce).
		return nil, fmt.Errorf("certificate with thumbprint %s: %w", tp, ErrNotFound)
	}
	return c, err
}

// CertificateIDs returns up to limit certificate ids from the inventory,
// oldest first, starting after id after (0: from the first).
func (s *Store) CertificateIDs(ctx context.Context, after int64, limit int64) ([]int64, error) {
	members, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.keys.certificates(), Start: "(" + strconv.FormatInt(after, 10), Stop: "+inf", ByScore: true, Count: limit,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	return parseIDs(members), nil
}

// releaseScript deletes a lock only if we still hold it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// issueLockTTL bounds how long a crashed worker's issue lock blocks others.
const issueLockTTL = time.Minute

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
	r, err := loaded(id, get)
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
	case err != nil && !errors.Is(err, ErrNotFound):
		// Unread (Redis failed, or the record does not decode): the
		// retry must not find its own lock in the way.
		claim.Release(context.WithoutCancel(ctx))
		claim = nil
	case err != nil || len(r.cert) > 0:
		// A lock taken for a request that is gone or has its certificate
		// is left to expire: nobody will issue for it.
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
		// later call finds the certificate first). A re-run writes the
		// inventory's index entries again: the round trip that stored
		// the certificate may have lost them (its reply unread).
		c, err := decodeCertificate(requestID, data)
		if err != nil {
			return nil, nil, err
		}
		if err := s.indexCertificate(ctx, c); err != nil {
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
	data, err := marshal(c)
	if err != nil {
		return nil, false, err
	}
	// The inventory's index entries go in the same round trip. Should the
	// set-if-absent lose, they name a certificate that never existed: the
	// id is in the set already, a thumbprint lookup checks the record it
	// lands on (CertificateByThumbprint), and the expiry is rewritten
	// from the winner's certificate below (or by the next ClaimIssue).
	pipe := s.rdb.Pipeline()
	set := pipe.HSetNX(ctx, s.keys.request(requestID), "x", data)
	index := certIndexCmds(ctx, s.keys, pipe, c)
	pipe.Exec(ctx) // each command's own error is read below
	won, err := set.Result()
	if err != nil {
		return nil, false, fmt.Errorf("store certificate: %w", err)
	}
	stored = true
	if !won {
		// Lost a race despite the lock (it expired under us): ours was
		// never stored or returned, so it never existed outside this
		// process. Our index entries are put right for the winner's.
		c, err := s.CertificateOf(ctx, requestID)
		if err == nil {
			err = s.indexCertificate(ctx, c)
		}
		return c, false, err
	}
	for _, cmd := range index {
		if err := cmd.Err(); err != nil {
			// Stored but not indexed: once more, else the step's retry
			// (which finds the certificate stored) indexes it.
			if err := s.indexCertificate(ctx, c); err != nil {
				return nil, false, err
			}
			break
		}
	}
	return c, true, nil
}

// IndexStored writes the inventory's index entries of r's certificate
// again, if it has one (they are idempotent).
func (s *Store) IndexStored(ctx context.Context, r *Request) error {
	c, err := r.Certificate()
	if c == nil || err != nil {
		return err
	}
	return s.indexCertificate(ctx, c)
}

// certIndexCmds queues the inventory's index entries of a stored
// certificate on pipe: its id, its expiry and its thumbprint. Each is
// idempotent.
func certIndexCmds(ctx context.Context, k keys, pipe redis.Pipeliner, c *Certificate) []redis.Cmder {
	return []redis.Cmder{
		pipe.ZAdd(ctx, k.certificates(), redis.Z{Score: float64(c.ID), Member: c.ID}),
		pipe.ZAdd(ctx, k.certExpiry(), redis.Z{Score: float64(c.NotAfter.Unix()), Member: c.ID}),
		pipe.Set(ctx, k.thumbprint(c.Thumbprint), c.ID, 0),
	}
}

// unindexCertificate removes the index entries written for a certificate
// that was not stored (best effort: listings check the record anyway).
func (s *Store) unindexCertificate(ctx context.Context, c *Certificate) {
	pipe := s.rdb.Pipeline()
	pipe.ZRem(ctx, s.keys.certificates(), c.ID)
	pipe.ZRem(ctx, s.keys.certExpiry(), c.ID)
	pipe.Del(ctx, s.keys.thumbprint(c.Thumbprint))
	pipe.Exec(ctx)
}

// indexCertificate writes a stored certificate's index entries.
func (s *Store) indexCertificate(ctx context.Context, c *Certificate) error {
	pipe := s.rdb.Pipeline()
	certIndexCmds(ctx, s.keys, pipe, c)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("index certificate %d: %w", c.ID, err)
	}
	return nil
}

func randomToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

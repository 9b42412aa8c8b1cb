// Package store keeps certflow's records in Redis: requests with their
// workflow instance, issued certificates and their inventory, revocations
// and CRLs, generated CSRs awaiting enrollment, idempotency keys, and the
// announcements that wake clients waiting for a result. The store is the
// source of truth; the queue only delivers work. It runs on one Redis
// (docs/design-notes.md says what Redis Cluster would need); each concern
// has its file, and every key is built in keys.go.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/certflow/certflow/internal/redisbatch"
	"github.com/redis/go-redis/v9"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: the record changed since it was read (compare-and-set lost).
	ErrConflict = errors.New("record changed concurrently")
	// ErrBusy: another worker holds the request's issue lock.
	ErrBusy = errors.New("another worker is issuing for this request")
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
	// ErrCorrupt: a record read from Redis does not decode. Redis
	// answered, so it is not Unavailable: retrying will not help.
	ErrCorrupt = errors.New("record does not decode")
)

// Store is certflow's Redis persistence.
type Store struct {
	rdb  *redis.Client
	keys keys
	// ProgressEvery is how stale a request's progress score may get
	// before a checkpoint refreshes it: checkpoints within it cost no
	// open-set write. Keep it well under the reconciler's bound.
	ProgressEvery time.Duration
	// forget batches settled ids' removal from the open set.
	forget forgetQueue
	ids    idBlock
	// GroupCommit sends the worker's pipelines (a run's read, its
	// checkpoints) together with other runs' (redisbatch); off, each is
	// its own round trip. New turns it on; set it before the store is
	// used (config.Speed.GroupCommit).
	GroupCommit bool
	batch       *redisbatch.Batcher
	// inventoryReady caches InventoryReady's true.
	inventoryReady atomic.Bool
	// chains caches the certificate chains read and written (certcodec.go).
	chains chainCache
	// EventRetention is how long the event log keeps an event (0: for
	// ever); New sets DefaultEventRetention.
	EventRetention time.Duration
	// ExpiryLead is how long before its NotAfter a certificate's first
	// expiry event may be due: the largest expiry-watch threshold. A
	// stored certificate joins the expiry watch's due set scored by
	// NotAfter minus it (expiry.go).
	ExpiryLead time.Duration
	// expiryLockFor overrides the expiry watch's lock TTL (tests).
	expiryLockFor time.Duration
	// expiryBatchHook is called after each batch of an expiry pass
	// (tests: a crash between batches).
	expiryBatchHook func(batch int)
}

// DefaultProgressEvery is Store.ProgressEvery's default.
const DefaultProgressEvery = time.Minute

// New returns a store whose keys start with prefix, on one Redis: rdb is
// a *redis.Client (a Sentinel failover client is one too), never a
// Cluster or Ring client. The store counts on what only one Redis gives:
// a script may touch keys of different hash slots (creating a request
// checks its id and CSR key in the script that writes it; a revocation
// for keyCompromise bars the key in the same script), and a pipeline's
// commands run in order on one connection (ids come in blocks; a new
// request's record rides ahead of its task, queue.Client.EnqueueRunAfter).
func New(rdb *redis.Client, prefix string) *Store {
	return &Store{rdb: rdb, keys: keys{prefix: prefix}, ProgressEvery: DefaultProgressEvery, GroupCommit: true, batch: redisbatch.New(rdb), EventRetention: DefaultEventRetention}
}

// execBatched runs pipe's commands, sent together with other goroutines'
// pipelines where it can (see redisbatch). A non-nil error means ctx ended
// before their outcome was known: the caller must not read them. Else
// each command carries its own outcome.
func (s *Store) execBatched(ctx context.Context, pipe redis.Pipeliner) error {
	if !s.GroupCommit {
		pipe.Exec(ctx) // each command carries its own outcome
		return nil
	}
	return s.batch.Exec(ctx, pipe)
}

// Redis returns the client the store uses (shared with asynq).
func (s *Store) Redis() *redis.Client { return s.rdb }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

// Unavailable reports whether err means Redis could not be reached (as
// opposed to a bad request, a corrupt record or a bug): the API answers
// 503 for it. A record that does not decode (ErrCorrupt) is never
// Unavailable, even when its decoder's error reads like a cut connection
// (io.ErrUnexpectedEOF, "EOF"): Redis answered.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, ErrCorrupt) {
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

func parseIDs(members []string) []int64 {
	ids := make([]int64, 0, len(members))
	for _, m := range members {
		if id, err := strconv.ParseInt(m, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// Package enroll is what certflow does with a request, without HTTP:
// checking a submit (CSR or PFX enrollment, renewal, revocation) against
// the configuration, the caller's rights and the policy; picking that a
// workflow takes it; storing and enqueuing it once (idempotency, ids, the
// generated CSR a forceEnroll marries, keys barred for compromise);
// generating CSRs and keeping their keys; recovering retained keys; and
// recording approvers' and administrators' decisions on waiting instances.
// Each operation is a method of Service taking the Caller and the decoded
// Keyfactor body (internal/keyfactor) or plain Go values, and answers
// stored requests, Keyfactor-shaped results, or an *Error saying what kind
// of refusal it is, with its Keyfactor error code and the field at fault.
//
// What does not belong here: anything of HTTP (reading bodies, headers
// such as Prefer and x-certificateformat, status codes, waiting for a
// request to settle, routing, authentication, rate limits: internal/api),
// the JSON shapes themselves (internal/keyfactor), and running the
// workflow (internal/worker, workflow).
package enroll

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
	"github.com/redis/go-redis/v9"
)

// Enqueuer is what enrollment needs of the queue.
type Enqueuer interface {
	EnqueueRun(ctx context.Context, requestID, generation int64) error
	// EnqueueRunAfter queues a new request's first run with writes (its
	// record) done first, in the same round trip when it can.
	EnqueueRunAfter(ctx context.Context, requestID, generation int64, writes func(redis.Pipeliner)) error
	EnqueueResume(ctx context.Context, requestID int64, instanceID, step string, stage int, generation int64) error
}

// Options wire a Service.
type Options struct {
	Config *config.Config
	Store  *store.Store
	Queue  Enqueuer
	KEK    *pki.KEK
	Log    *slog.Logger
	// Definitions are the loaded workflow definitions (swapped on reload).
	Definitions *atomic.Pointer[workflow.Set]
	// CASubjects are the CAs' subjects, which no issued certificate may
	// carry (nil: none known).
	CASubjects *ca.Subjects
	// KeyPool bounds server-side key generation (nil: a pool of
	// api.key_generation_concurrency slots of the service's own).
	KeyPool *pki.KeyPool
}

// Service runs the enrollment operations.
type Service struct {
	cfg   *config.Config
	store *store.Store
	queue Enqueuer
	kek   *pki.KEK
	log   *slog.Logger
	defs  *atomic.Pointer[workflow.Set]
	// casubjects: see Options.CASubjects.
	casubjects *ca.Subjects
	// keyPool bounds the keys generated at once (CSR generation).
	keyPool *pki.KeyPool
	// inventoryBuild is when this process last started building the
	// inventory's indexes (unix ns; see buildInventoryLater).
	inventoryBuild atomic.Int64
}

// New builds the service.
func New(o Options) *Service {
	s := &Service{
		cfg: o.Config, store: o.Store, queue: o.Queue, kek: o.KEK, log: o.Log,
		defs: o.Definitions, casubjects: o.CASubjects, keyPool: o.KeyPool,
	}
	if s.keyPool == nil {
		s.keyPool = pki.NewKeyPool(o.Config.API.KeyGenerationConcurrency)
	}
	return s
}

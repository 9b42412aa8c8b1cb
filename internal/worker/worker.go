// Package worker is what asynq runs: it loads a request from the store,
// runs or resumes its workflow with checkpoints, settles it, and delivers
// the result to its callback URL. Every handler tolerates being run twice.
// Beside the task handlers it runs six loops: the reconciler (a request
// that made no progress is run again), the retention sweep, the CRL
// refresh, the expiry watch, the event dispatcher and the scheduler.
package worker

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/redact"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/queue"
	"github.com/certflow/certflow/workflow"
)

// Worker implements queue.Handlers.
type Worker struct {
	Config *config.Config
	Store  *store.Store
	Queue  *queue.Client
	Defs   *atomic.Pointer[workflow.Set]
	// Catalog parses pinned definition versions no longer loaded.
	Catalog   workflow.Catalog
	Engine    *workflow.Engine
	Callbacks *callback.Sender
	Log       *slog.Logger
	// CAs are the loaded authorities (for the CRL refresh loop).
	CAs *ca.Registry
	// KEK seals the keys the worker generates (PFX enrollment).
	KEK *pki.KEK
	// KeyPool bounds the keys generated at once (nil: unbounded but for
	// the worker's concurrency); a PFX key waits for a slot.
	KeyPool *pki.KeyPool
	// pinned caches definition versions fetched from the store.
	pinned sync.Map // name@version → *workflow.Definition
	// adviceQuiet: CAs whose renewal information failed lately are not
	// asked again until then (renewalAdvice).
	adviceQuiet sync.Map // CA name → time.Time
}

var (
	_ queue.Handlers      = (*Worker)(nil)
	_ workflow.IssueClaim = (*store.IssueClaim)(nil)
)

// definition returns the pinned version of a definition: the loaded one if
// it is still current, else the source stored when it was loaded (by any
// process), parsed once.
func (w *Worker) definition(ctx context.Context, name, version string) (*workflow.Definition, error) {
	if d, ok := w.Defs.Load().Get(name, version); ok {
		return d, nil
	}
	key := name + "@" + version
	if d, ok := w.pinned.Load(key); ok {
		return d.(*workflow.Definition), nil
	}
	src, err := w.Store.Definition(ctx, name, version)
	if err != nil {
		return nil, err
	}
	d, err := workflow.Parse(key+".yaml", src, w.Catalog)
	if err != nil {
		return nil, fmt.Errorf("stored definition %s no longer loads: %w", key, err)
	}
	if d.Version != version {
		return nil, fmt.Errorf("stored definition %s hashes to version %s", key, d.Version)
	}
	w.pinned.Store(key, d)
	return d, nil
}

// errNotSettled makes asynq retry a callback whose request is still running.
var errNotSettled = errors.New("request has not settled yet")

// Run runs (or resumes) the workflow of request id, if generation is still
// the request's (the reconciler may have moved it on).
func (w *Worker) Run(ctx context.Context, id, generation int64) error {
	log := w.Log.With("request", id)
	r, claim, err := w.Store.GetForRun(ctx, id)
	if claim != nil {
		// The engine hands it to the issue step (Input.IssueClaim); a run
		// that does not issue gives it up.
		defer claim.ReleaseUnused(context.WithoutCancel(ctx))
	}
	if errors.Is(err, store.ErrWithdrawn) {
		// Its CSR's key was one certflow generated: the submit made the
		// request again under another id, with the key (store.CreateQueued).
		log.Debug("task for a request id its submit withdrew; dropping it")
		return nil
	}
	if errors.Is(err, store.ErrNotFound) {
		if attempt, _ := queue.RetryInfo(ctx); attempt == 0 {
			// Its record may be on its way: should the queue's piggyback
			// miss an enqueue, the record follows the task at once
			// (queue.Client.EnqueueRunAfter). The retry, seconds later,
			// finds it.
			log.Info("task for a request not stored (yet); trying once more")
			return err
		}
		log.Warn("task for a request that does not exist; dropping it")
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	if err != nil {
		return err // Redis trouble: asynq retries; if it gives up, the reconciler will not
	}
	if r.Generation != generation {
		log.Info("stale task of an earlier generation; the current one runs the request", "task", generation, "current", r.Generation)
		return nil
	}
	log = log.With("instance", r.Instance.ID)
	if r.Disposition.Settled() {
		// A re-delivery after the request settled (we crashed before the
		// task was acknowledged): make sure the callback went out, or the
		// approval timeout is scheduled.
		return w.afterSettle(ctx, r)
	}
	if r.Input.PFX != nil && len(r.CSR) == 0 {
		var cause error
		if r, cause, err = w.generatePFXKey(ctx, r); err != nil {
			return err
		}
		if cause != nil {
			return w.failRequest(ctx, r, nil, cause)
		}
	}
	in, err := w.input(ctx, r)
	if err != nil && store.Unavailable(err) {
		return err
	}
	if err != nil {
		return w.failRequest(ctx, r, nil, err)
	}
	if claim != nil {
		in.IssueClaim = claim // not a nil *store.IssueClaim in the interface
	}
	defs := w.Defs.Load()
	var def *workflow.Definition
	if r.Instance.Definition == "" {
		if def, err = defs.Select(r.Trigger, in.Env(&r.Instance, time.Now())); err != nil {
			return w.failRequest(ctx, r, nil, err)
		}
	} else {
		// Pinned: a resumed instance, or an event run the dispatcher
		// pinned to the version whose match it evaluated.
		def, err = w.definition(ctx, r.Instance.Definition, r.Instance.Version)
		if errors.Is(err, store.ErrNotFound) || (err != nil && !store.Unavailable(err)) {
			return w.failRequest(ctx, r, nil, fmt.Errorf("definition %s version %s: %w", r.Instance.Definition, r.Instance.Version, err))
		}
		if err != nil {
			return err
		}
	}
	if r.Instance.Status == "" {
		if err := w.Engine.Start(&r.Instance, def); err != nil {
			return w.failRequest(ctx, r, nil, err)
		}
		// Not saved on its own: the first checkpoint persists the pinned
		// version with its outcome. A crash before it selects again, which
		// is right, as nothing with effects finished on the version chosen
		// (pure steps are not checkpointed, see workflow.Pure); an event
		// run starts again on the version it was pinned to.
		r.Disposition = store.Running
		if r.Event != nil {
			log = log.With("event", r.Event.ID, "event_name", r.Event.Name)
		}
		log.Info("workflow started", "definition", def.Name, "version", def.Version)
	} else {
		log.Info("workflow resumed", "definition", def.Name, "version", def.Version, "step", r.Instance.Next)
	}
	save := func(ctx context.Context, inst *workflow.Instance) error {
		settle(r)
		return w.Store.Save(ctx, r)
	}
	engine := *w.Engine
	engine.Log = log
	if err := engine.Run(ctx, def, in, &r.Instance, save); err != nil {
		if _, last := queue.RetryInfo(ctx); last || errors.Is(err, workflow.ErrTransition) {
			return w.failRequest(ctx, r, def, fmt.Errorf("retries exhausted: %w", err))
		}
		return err
	}
	return w.afterSettle(ctx, r)
}

// input prepares the request for the engine.
func (w *Worker) input(ctx context.Context, r *store.Request) (*workflow.Input, error) {
	in, err := w.requestInput(ctx, r)
	if in != nil {
		in.EventDepth = r.EventDepth
	}
	return in, err
}

// requestInput is input but for what every kind of request shares.
func (w *Worker) requestInput(ctx context.Context, r *store.Request) (*workflow.Input, error) {
	if r.Trigger == store.EventRunTrigger {
		if r.Event == nil {
			return nil, errors.New("event run without its event")
		}
		return w.eventInput(ctx, r.Event, r.ID)
	}
	if r.CSR == nil && r.Trigger == workflow.TriggerRevocation {
		return w.revocationInput(ctx, r)
	}
	csr, err := pki.ParseCSR(r.CSR)
	if err != nil {
		return nil, fmt.Errorf("stored CSR does not parse: %w", err)
	}
	addCN := false
	if t, ok := w.Config.Template(r.Input.Template); ok {
		addCN = t.RFCEnforcement
	}
	return workflow.NewInput(r.Trigger, r.Input, csr, r.Requester, addCN), nil
}

// settle derives the request's disposition from its instance.
func settle(r *store.Request) {
	inst := &r.Instance
	switch inst.Status {
	case workflow.StatusRunning:
		r.Disposition = store.Running
	case workflow.StatusSuspended:
		r.Disposition = store.Pending
		if w := inst.Wait; w.ForAuthority() {
			r.Message = fmt.Sprintf("waiting for certificate authority %s: order %s; next look at %s", w.Authority, w.Status, w.Deadline.UTC().Format(time.RFC3339))
		}
	case workflow.StatusComplete:
		if r.Trigger == workflow.TriggerRevocation {
			settleRevocation(r)
		} else if r.Trigger == store.EventRunTrigger {
			settleEventRun(r)
		} else if inst.Certificate != nil {
			r.Disposition, r.Message = store.Issued, "Issued by "+inst.Certificate.Authority
		} else {
			r.Disposition, r.Message = store.Failed, "the workflow completed without issuing a certificate"
		}
	case workflow.StatusRejected:
		r.Disposition, r.Message = store.Denied, inst.Message
	case workflow.StatusFailed:
		r.Disposition, r.Message = store.Failed, inst.Message
	}
}

func (w *Worker) failRequest(ctx context.Context, r *store.Request, def *workflow.Definition, cause error) error {
	if r.Instance.Status == "" {
		r.Instance.Status = workflow.StatusRunning // never started: fail from Running
	}
	// The task's own deadline may be what ended it: settle regardless.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := w.Engine.Fail(ctx, &r.Instance, def, cause, func(ctx context.Context, _ *workflow.Instance) error {
		settle(r)
		return w.Store.Save(ctx, r)
	})
	if err != nil {
		return err
	}
	return w.afterSettle(ctx, r)
}

// afterSettle enqueues the callback of a request with a final result, or
// schedules the timeout of a request waiting for approval (both
// deduplicated by task id, so a re-delivery does neither twice).
func (w *Worker) afterSettle(ctx context.Context, r *store.Request) error {
	if wait := r.Instance.Wait; r.Disposition == store.Pending && wait != nil && !wait.Deadline.IsZero() {
		at := wait.Deadline
		if !wait.ForAuthority() {
			// An approval's timeout never fires before its deadline: a
			// decision until then counts. (A look at the CA may come a
			// little early; it costs nothing and saves a second a look.)
			at = queue.NotBefore(at)
		}
		return w.Queue.EnqueueTimeout(ctx, r.ID, r.Instance.ID, wait.Step, wait.Stage, r.Generation, at)
	}
	if r.Input.CallbackUrl == "" || !r.Disposition.Final() {
		return nil
	}
	return w.Queue.EnqueueCallback(ctx, r.ID, string(r.Disposition))
}

// Timeout fires an approval wait's timeout: escalate (and schedule the
// next stage's timeout) or settle the wait as timed out and resume the
// request, which rejects it. A decision that came first wins: then the
// wait is no longer open at that stage and nothing happens. Both race
// through the request record's compare-and-set.
func (w *Worker) Timeout(ctx context.Context, id, generation int64, step string, stage int) error {
	log := w.Log.With("request", id, "step", step, "stage", stage)
	var escalated, settled bool
	r, err := w.Store.Update(ctx, id, func(r *store.Request) error {
		if r.Generation != generation {
			return errStale
		}
		escalated, settled = r.Instance.TimeOut(step, stage, time.Now().UTC())
		switch {
		case settled:
			r.Disposition = store.Running // decided: the run below applies it
		case !escalated:
			return errStale
		default:
			wt := r.Instance.Wait
			data := map[string]any{"Step": wt.Step, "Stage": wt.Stage, "Roles": wt.Roles, "Template": r.Input.Template, "CommonName": r.CommonName}
			if !wt.Deadline.IsZero() {
				data["Deadline"] = wt.Deadline.UTC().Format(time.RFC3339)
			}
			r.Emit(workflow.Event{Name: workflow.EventApprovalEscalated, RequestID: id, Depth: r.EventDepth, Data: data})
		}
		return nil
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	case errors.Is(err, errStale):
		// Decided or escalated first. A retry of this task after its
		// escalation was stored lands here too: make sure the current
		// stage's timeout is scheduled (a no-op when it is).
		log.Info("approval timeout: the wait was decided or moved on first")
		switch {
		case r == nil || r.Generation != generation:
		case r.Disposition == store.Pending:
			return w.afterSettle(ctx, r)
		case r.Instance.Status == workflow.StatusSuspended && r.Instance.Wait != nil && r.Instance.Wait.Verdict != "":
			// Decided, not yet applied: this task's own earlier try may
			// have settled it and failed to run it. Make sure the resume
			// is queued; its id makes this a no-op beside the decider's.
			wt := r.Instance.Wait
			return w.Queue.EnqueueResume(ctx, id, r.Instance.ID, wt.Step, wt.Stage, generation)
		case r.Disposition == store.Running && retried(ctx) && postponedLook(r, step):
			// This task's earlier try settled a look at an external CA's
			// order and ran the request, whose issue step asked to be run
			// again (its issue lock busy, Redis trouble): run it again, as
			// a run task's retry would, and fail it when retries run out.
			// Without this the request would sit RUNNING until the
			// reconciler's reconcile_after.
			log.Info("running the request again, as this look's earlier try left it")
			return w.Run(ctx, id, generation)
		}
		return nil
	case err != nil:
		return err
	case escalated:
		log.Warn("approval timed out; escalated", "roles", r.Instance.Wait.Roles, "deadline", r.Instance.Wait.Deadline)
		w.tellEscalated(ctx, r, log)
		return w.afterSettle(ctx, r)
	}
	if r.Instance.Wait.ForAuthority() {
		log.Debug("looking at the certificate authority's order again")
	} else {
		log.Warn("approval timed out; the request will be denied")
	}
	return w.Run(ctx, id, generation)
}

var errStale = errors.New("stale")

// retried reports whether the task running is a retry.
func retried(ctx context.Context) bool {
	n, _ := queue.RetryInfo(ctx)
	return n > 0
}

// postponedLook reports whether the last thing r's instance ran is step,
// not an approval (an authority wait's step: issue), and it was postponed:
// what a look's run leaves when it asks to be run again. An approval's
// timeout never leaves that (it denies or escalates), and neither does a
// run that moved past the step, such as an approver's resume.
func postponedLook(r *store.Request, step string) bool {
	h := r.Instance.History
	if len(h) == 0 {
		return false
	}
	last := h[len(h)-1]
	return last.ID == step && last.Uses != workflow.ApprovalStep && last.Outcome == workflow.OutcomeError
}

// tellEscalated lets the approval step tell its channels that the
// decision passed to other roles. Like every notification it is best
// effort: the escalation stands whatever becomes of it.
func (w *Worker) tellEscalated(ctx context.Context, r *store.Request, log *slog.Logger) {
	def, err := w.definition(ctx, r.Instance.Definition, r.Instance.Version)
	if err == nil {
		var in *workflow.Input
		if in, err = w.input(ctx, r); err == nil {
			engine := *w.Engine
			engine.Log = log
			engine.Escalated(ctx, def, in, &r.Instance)
			return
		}
	}
	log.Warn("approval escalated, but its notification could not be prepared", "err", err)
}

// DeliverCallback POSTs the settled request to its CallbackUrl and records
// the attempt. A non-2xx answer is retried on the configured schedule; 410
// Gone stops delivery.
func (w *Worker) DeliverCallback(ctx context.Context, id int64) error {
	r, err := w.Store.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	if r.Input.CallbackUrl == "" {
		return nil
	}
	if !r.Disposition.Final() {
		return errNotSettled
	}
	cert, err := r.Certificate()
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	resp, err := keyfactor.NewEnrollmentResponse(r, cert, "", nil)
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	body, _ := json.Marshal(resp)
	msgID := "certflow-" + strconv.FormatInt(id, 10) + "-" + string(r.Disposition)
	attempt, last := queue.RetryInfo(ctx)
	res := w.Callbacks.Post(ctx, r.Input.CallbackUrl, msgID, body)
	rec := store.CallbackAttempt{Attempt: attempt + 1, At: time.Now().UTC(), MessageID: msgID, Status: res.Status, Delivered: res.OK()}
	if res.Err != nil {
		rec.Error = res.Err.Error()
	}
	if _, err := w.Store.Update(ctx, id, func(r *store.Request) error {
		r.Callbacks = append(r.Callbacks, rec)
		if last && !res.OK() && !res.Gone() {
			// The last attempt: the event goes with its record.
			r.Emit(workflow.Event{Name: workflow.EventCallbackFailed, RequestID: id, Depth: r.EventDepth, Data: map[string]any{
				"Attempts": attempt + 1, "Status": res.Status, "Error": rec.Error, "Disposition": string(r.Disposition),
				"CallbackUrl": redact.URL(r.Input.CallbackUrl),
			}})
		}
		return nil
	}); err != nil {
		w.Log.Warn("record callback attempt", "request", id, "err", err)
	}
	switch {
	case res.OK():
		w.Log.Info("callback delivered", "request", id, "status", res.Status)
		return nil
	case res.Gone():
		w.Log.Warn("callback endpoint answered 410 Gone; not retrying", "request", id)
		return nil
	default:
		w.Log.Warn("callback failed; will retry", "request", id, "attempt", attempt+1, "err", res.Err)
		return fmt.Errorf("callback to request %d's URL: %w", id, res.Err)
	}
}

// Reconcile moves every unsettled request that made no progress for longer
// than the configured bound to a new generation and enqueues its task:
// asynq can lose a task (orphaned active, hibiken/asynq#1144) or archive it
// after a crash on its last attempt (#1015); the store cannot. It runs
// until ctx ends.
func (w *Worker) Reconcile(ctx context.Context) {
	every := min(w.Config.Worker.ReconcileAfter/2, time.Minute)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if n, err := w.ReconcileOnce(ctx); err != nil {
			w.Log.Warn("reconcile", "err", err)
		} else if n > 0 {
			w.Log.Info("reconcile: re-enqueued requests that made no progress", "count", n, "after", w.Config.Worker.ReconcileAfter)
		}
	}
}

// ReconcileOnce does one reconciler pass and returns how many requests it
// enqueued again.
func (w *Worker) ReconcileOnce(ctx context.Context) (int, error) {
	ids, err := w.Store.Stale(ctx, time.Now().Add(-w.Config.Worker.ReconcileAfter), 500)
	if err != nil {
		return 0, err
	}
	n, err := w.reconcileTimeouts(ctx)
	if err != nil {
		return n, err
	}
	for _, id := range ids {
		r, err := w.Store.Update(ctx, id, func(r *store.Request) error {
			if r.Disposition.Settled() {
				return errSettled
			}
			r.Generation++
			return nil
		})
		switch {
		case errors.Is(err, errSettled), errors.Is(err, store.ErrNotFound):
			w.Store.Forget(ctx, id) // not open any more: drop it from the open set
			continue
		case errors.Is(err, store.ErrCorrupt):
			// Left for a human, and said so each pass. It never makes
			// progress, so it heads the stale list for good: stopping
			// at it would leave every request after it stuck.
			w.Log.Error("reconcile: request record does not decode; skipped", "request", id, "err", err)
			continue
		case err != nil:
			return n, err
		}
		if err := w.Queue.EnqueueRun(ctx, id, r.Generation); err != nil {
			return n, err
		}
		w.Log.Warn("reconcile: request made no progress; enqueued again", "request", id, "generation", r.Generation)
		n++
	}
	return n, nil
}

var errSettled = errors.New("settled")

// reconcileTimeouts schedules again the timeout of every request still
// waiting for approval well past its deadline: the scheduled task is
// asynq's to keep, and asynq can lose tasks (see Reconcile). The task id
// makes this a no-op while the task exists.
func (w *Worker) reconcileTimeouts(ctx context.Context) (int, error) {
	overdue := time.Now().Add(-w.Config.Worker.ReconcileAfter)
	ids, err := w.Store.OverdueIDs(ctx, overdue, 500)
	if err != nil {
		return 0, err
	}
	n := 0
	var enqueueErr error
	err = w.Store.Visit(ctx, ids, func(r *store.Request) bool {
		wt := r.Instance.Wait
		if r.Disposition != store.Pending || wt == nil || wt.Deadline.IsZero() || wt.Deadline.After(overdue) {
			return true
		}
		if enqueueErr = w.Queue.EnqueueTimeout(ctx, r.ID, r.Instance.ID, wt.Step, wt.Stage, r.Generation, time.Now()); enqueueErr != nil {
			return false
		}
		w.Log.Warn("reconcile: approval wait overdue; its timeout scheduled again", "request", r.ID, "step", wt.Step, "deadline", wt.Deadline)
		n++
		return true
	})
	return n, errors.Join(err, enqueueErr)
}

// sweepEvery is how often one worker process sweeps expired requests.
const sweepEvery = time.Hour

// Sweep deletes requests past worker.retention, once an hour across all
// worker processes, until ctx ends.
func (w *Worker) Sweep(ctx context.Context) {
	tick := time.NewTicker(sweepEvery / 6)
	defer tick.Stop()
	for {
		if ok, err := w.Store.ClaimSweep(ctx, sweepEvery); err == nil && ok {
			n, err := w.Store.Sweep(ctx, w.Config.Worker.Retention)
			if err != nil {
				w.Log.Warn("retention sweep", "err", err)
			} else if n > 0 {
				w.Log.Info("retention sweep: deleted requests past retention", "count", n, "retention", w.Config.Worker.Retention)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// generatePFXKey makes a PFX enrollment's key and CSR, before the workflow
// runs, so that the CSR goes through the same steps (policy, approvals,
// issue) as a client's. The key is sealed onto the request under its id
// (pki.RequestKeyAAD) and stored with the CSR in one compare-and-set: if
// two workers race, one key wins and the other worker reloads and uses
// it. A spec that cannot be honoured (the API checked it) fails the
// request.
func (w *Worker) generatePFXKey(ctx context.Context, r *store.Request) (_ *store.Request, cause, err error) {
	spec := r.Input.PFX
	keySpec := pki.KeySpec(spec.Key)
	if w.KEK == nil {
		return r, nil, errors.New("PFX enrollment: this worker has no key-encryption key to seal the key with")
	}
	for attempt := 0; ; attempt++ {
		subject, err := pki.ParseSubject(spec.Subject)
		if err != nil {
			return r, fmt.Errorf("PFX subject: %w", err), nil
		}
		key, err := w.generateKey(ctx, keySpec)
		if err != nil && ctx.Err() != nil {
			return r, nil, err // no slot before the run's deadline: run again
		}
		if err != nil {
			return r, fmt.Errorf("generate %s key: %w", keySpec, err), nil
		}
		csr, err := pki.NewCSR(key, pki.CSRRequest{Subject: subject, SANs: r.Input.SANs})
		if err != nil {
			return r, fmt.Errorf("PFX CSR: %w", err), nil
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return r, nil, err
		}
		r.PrivateKey = w.KEK.Seal(der, pki.RequestKeyAAD(r.ID))
		r.Input.HasPrivateKey = true
		r.Subject, r.CommonName = subject.String(), subject.CommonName
		err = w.Store.SetCSR(ctx, r, csr)
		if err == nil {
			w.Log.Info("PFX key generated", "request", r.ID, "key", keySpec.String())
			return r, nil, nil
		}
		if !errors.Is(err, store.ErrHasCSR) && !errors.Is(err, store.ErrConflict) || attempt == 9 {
			return r, nil, err
		}
		// Another worker stored a key first, or the record moved on:
		// read it again and use what is there.
		fresh, err := w.Store.Get(ctx, r.ID)
		if err != nil {
			return r, nil, err
		}
		if r = fresh; len(r.CSR) > 0 {
			return r, nil, nil
		}
	}
}

// generateKey makes a key of spec in a slot of the key pool, waiting for
// one while ctx lasts.
func (w *Worker) generateKey(ctx context.Context, spec pki.KeySpec) (crypto.Signer, error) {
	if w.KeyPool == nil {
		return spec.Generate()
	}
	slot, err := w.KeyPool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer slot.Release()
	return slot.Generate(spec)
}

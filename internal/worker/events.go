package worker

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/certflow/certflow/internal/ca"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// AutomationUser is the requester of event-triggered runs and of the
// requests their steps make: definitions are an administrator's, and so
// is what they do.
const AutomationUser = "certflow:automation"

// Dispatch tuning.
const (
	dispatchBatch = 64
	dispatchBlock = 2 * time.Second
	// claimIdle is how long an event may stay read and unacknowledged
	// before another dispatcher takes it over (its reader crashed).
	claimIdle = 30 * time.Second
	// dispatchGather is how long a dispatcher lets events gather after a
	// read that did not fill its batch: under load it reads them in
	// batches, a read and an acknowledgement per batch rather than per
	// few events, for a delay automation does not notice.
	dispatchGather = 50 * time.Millisecond
)

// Dispatch reads the event log as one consumer of the dispatchers' group
// and starts, for each event, a run of every definition it triggers whose
// match holds (fan-out), until ctx ends. Any number of worker processes
// dispatch at once: each event is read by one of them; one that crashes
// leaves its events pending, and another claims them after claimIdle.
// Whoever dispatches, Store.CreateEventRun makes each (event, definition)
// run once.
func (w *Worker) Dispatch(ctx context.Context) {
	consumer := consumerName()
	log := w.Log.With("dispatcher", consumer)
	for ctx.Err() == nil {
		if err := w.Store.EnsureEventGroup(ctx); err != nil {
			log.Warn("event dispatch: cannot create the consumer group; retrying", "err", err)
			sleep(ctx, 5*time.Second)
			continue
		}
		break
	}
	lastClaim := time.Time{}
	for ctx.Err() == nil {
		var evs []*workflow.Event
		var err error
		if time.Since(lastClaim) >= claimIdle/2 {
			lastClaim = time.Now()
			evs, err = w.Store.ClaimEvents(ctx, consumer, claimIdle, dispatchBatch)
		}
		if err == nil && len(evs) == 0 {
			evs, err = w.Store.ReadEvents(ctx, consumer, dispatchBatch, dispatchBlock)
		}
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("event dispatch: cannot read the event log; retrying", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		w.DispatchEvents(ctx, evs, log)
		if n := len(evs); n > 0 && n < dispatchBatch {
			sleep(ctx, dispatchGather)
		}
	}
}

// DispatchEvents starts the runs of evs and acknowledges those done; an
// event whose dispatch failed (Redis trouble) stays pending, to be
// claimed again.
func (w *Worker) DispatchEvents(ctx context.Context, evs []*workflow.Event, log *slog.Logger) {
	var done []string
	for _, ev := range evs {
		if err := w.dispatch(ctx, ev, log); err != nil {
			log.Warn("event dispatch failed; it will be tried again", "event", ev.ID, "name", ev.Name, "err", err)
			continue
		}
		done = append(done, ev.ID)
	}
	if err := w.Store.AckEvents(context.WithoutCancel(ctx), done...); err != nil {
		log.Warn("event dispatch: acknowledge failed; the events will be dispatched again (their runs are not repeated)", "err", err)
	}
}

// dispatch starts the runs of one event.
func (w *Worker) dispatch(ctx context.Context, ev *workflow.Event, log *slog.Logger) error {
	if ev.Name == "" {
		log.Warn("event log entry does not decode; skipped", "event", ev.ID)
		return nil
	}
	defs := w.Defs.Load().ForEvent(ev)
	if len(defs) == 0 {
		return nil
	}
	if ev.Depth > workflow.MaxEventDepth {
		log.Warn("event is too deep in a chain of automation to start runs (definitions that trigger one another?)",
			"event", ev.ID, "name", ev.Name, "depth", ev.Depth, "max", workflow.MaxEventDepth)
		return nil
	}
	in, err := w.eventInput(ctx, ev, 0)
	if err != nil {
		return err
	}
	env := in.Env(&workflow.Instance{}, time.Now())
	for _, def := range defs {
		ok, merr := def.Matches(env)
		if merr != nil {
			log.Warn("definition's match failed on the event; not run", "definition", def.Name, "event", ev.ID, "err", merr)
			ok = false
		}
		var r *store.Request
		if ok {
			if r, err = w.newEventRun(ctx, ev, def); err != nil {
				return err
			}
		}
		id, created, err := w.Store.CreateEventRun(ctx, ev, def.Name, r)
		if err != nil {
			return err
		}
		if id == 0 {
			continue
		}
		if created {
			log.Info("event starts a workflow", "event", ev.ID, "name", ev.Name, "definition", def.Name, "request", id)
		}
		// Again after a crash too: the task id makes it one task, and a
		// record whose task is lost is the reconciler's.
		if err := w.Queue.EnqueueRun(ctx, id, 0); err != nil {
			return fmt.Errorf("enqueue run %d: %w", id, err)
		}
	}
	return nil
}

// newEventRun is the record of def's run for ev, under a new id.
func (w *Worker) newEventRun(ctx context.Context, ev *workflow.Event, def *workflow.Definition) (*store.Request, error) {
	id, err := w.Store.NewID(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	return &store.Request{
		ID: id, Disposition: store.Queued, Submitted: now, Updated: now, Trigger: store.EventRunTrigger,
		Input:     workflow.Request{ID: id, Timestamp: now},
		Requester: workflow.Requester{Name: AutomationUser, Roles: []string{config.RoleAdmin}},
		Event:     ev,
		Instance:  workflow.Instance{ID: w.Store.InstanceID(id), Definition: def.Name, Version: def.Version},
	}, nil
}

// eventInput prepares what an event's expressions see: event, and where
// the event concerns them, the certificate (with its template, metadata,
// revocation and renewal, read now), the request it was issued for (or
// the request the event is about) with its requester, and csr and sans
// from the certificate as a revocation's are. runID is the run's own
// request id (0 when only matching).
func (w *Worker) eventInput(ctx context.Context, ev *workflow.Event, runID int64) (*workflow.Input, error) {
	var rec *store.Request
	var certRef *workflow.Certificate
	var csr *x509.CertificateRequest
	if id := ev.CertificateID; id != 0 || ev.RequestID != 0 {
		if id == 0 {
			id = ev.RequestID
		}
		r, err := w.Store.Get(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// Deleted since (retention): the event stands on its own.
		case err != nil:
			return nil, err
		default:
			rec = r
		}
	}
	if rec != nil && ev.CertificateID != 0 {
		c, err := rec.Certificate()
		if err != nil {
			return nil, err
		}
		if c != nil {
			certRef = c.Ref()
			certRef.Template, certRef.Metadata, certRef.Revoked = c.Template, rec.Metadata(), c.Revocation != nil
			if certRef.SupersededBy, err = w.Store.SupersededBy(ctx, c.ID); err != nil {
				return nil, err
			}
			if len(c.Chain) > 0 {
				if leaf, err := x509.ParseCertificate(c.Chain[0]); err == nil {
					csr = pki.CertificateAsCSR(leaf)
					certRef.Renewal = w.renewalAdvice(ctx, c, leaf)
				}
			}
		}
	}
	var req workflow.Request
	var requester workflow.Requester
	if rec != nil {
		req, requester = rec.Input, rec.Requester
		if csr == nil && len(rec.CSR) > 0 {
			csr, _ = pki.ParseCSR(rec.CSR)
		}
	}
	in := workflow.NewInput(store.EventRunTrigger, req, csr, requester, false)
	in.Event, in.Certificate, in.RunID = *ev, certRef, runID
	return in, nil
}

// adviceQuietFor is how long a CA whose renewal information failed (it
// stalled, answered 5xx, could not be reached) is not asked again by this
// process: every event for one of its certificates would otherwise wait
// for it, up to adviceTimeout each.
const (
	adviceQuietFor = time.Minute
	adviceTimeout  = 5 * time.Second
)

// renewalAdvice is the certificate's CA's advice on when to renew it
// (ARI), cached in Redis for as long as the CA says (between a minute and
// a day). A CA that offers none, or cannot be asked now, gives none: the
// event is not held up by it, and a CA that failed is left alone for
// adviceQuietFor.
func (w *Worker) renewalAdvice(ctx context.Context, c *store.Certificate, leaf *x509.Certificate) workflow.RenewalAdvice {
	var none workflow.RenewalAdvice
	if w.CAs == nil || c.Revocation != nil {
		return none
	}
	auth, ok := w.CAs.Get(c.CAName())
	if !ok {
		return none
	}
	advisor, ok := auth.(ca.RenewalAdvisor)
	if !ok {
		return none
	}
	if data, err := w.Store.RenewalAdvice(ctx, c.ID); err == nil && data != nil {
		var cached workflow.RenewalAdvice
		if json.Unmarshal(data, &cached) == nil {
			return cached
		}
	}
	if until, ok := w.adviceQuiet.Load(auth.Name()); ok && time.Now().Before(until.(time.Time)) {
		return none
	}
	actx, cancel := context.WithTimeout(ctx, adviceTimeout)
	defer cancel()
	info, err := advisor.RenewalInfo(actx, leaf)
	ttl := time.Hour
	advice := none
	switch {
	case errors.Is(err, ca.ErrNoRenewalInfo):
		ttl = 24 * time.Hour
	case err != nil:
		// A CA that stalls, fails or limits the rate is left alone (a
		// rate limit for as long as it says); a problem about this
		// certificate, or this process stopping, says nothing of it.
		later, limited := errors.AsType[*ca.RetryAfterError](err)
		_, problem := errors.AsType[*ca.Problem](err)
		switch {
		case limited:
			w.adviceQuiet.Store(auth.Name(), time.Now().Add(max(later.After, adviceQuietFor)))
		case !problem && ctx.Err() == nil:
			w.adviceQuiet.Store(auth.Name(), time.Now().Add(adviceQuietFor))
		}
		w.Log.Warn("renewal information unavailable", "certificate", c.ID, "authority", c.CAName(), "err", err)
		return none
	default:
		advice = workflow.RenewalAdvice{Offered: true, Start: info.Start, End: info.End, ExplanationURL: info.ExplanationURL}
		ttl = min(max(info.RetryAfter, time.Minute), 24*time.Hour)
	}
	if data, err := json.Marshal(advice); err == nil {
		w.Store.SetRenewalAdvice(ctx, c.ID, data, ttl)
	}
	return advice
}

// settleEventRun derives a completed event run's disposition.
func settleEventRun(r *store.Request) {
	r.Disposition, r.Message = store.Completed, "completed"
}

// consumerName names this process among the dispatchers: host, pid and
// a random part, so that a restarted process is a new consumer.
func consumerName() string {
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

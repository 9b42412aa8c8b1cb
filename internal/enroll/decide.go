package enroll

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// Instance is GET /Workflow/Instances/{id}: the request behind instance
// id for viewer.
func (s *Service) Instance(ctx context.Context, viewer *Caller, instanceID string) (*store.Request, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	defer cancel()
	return s.loadInstance(ctx, instanceID, viewer)
}

// loadInstance loads the request behind instance id for viewer: NotFound
// when it does not exist or viewer may not see it, the same answer for
// both (ids are derived from sequential request ids: a difference would
// tell what others requested).
func (s *Service) loadInstance(ctx context.Context, instanceID string, viewer *Caller) (*store.Request, error) {
	id, err := s.store.RequestIDOfInstance(instanceID)
	var r *store.Request
	if err == nil {
		r, err = s.store.Get(ctx, id)
	}
	if err == nil && !Visible(r, viewer) {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, newError(NotFound, keyfactor.CodeNotFound, "workflow instance %s: not found", instanceID)
	}
	return r, err
}

// decodeApproval reads a signal's Data: Approved (true/false, or Keyfactor's
// "True"/"False") and Comment.
func decodeApproval(data map[string]any) (approved bool, comment string, err error) {
	var rawApproved, rawComment any
	for k, v := range data {
		switch strings.ToLower(k) {
		case "approved":
			rawApproved = v
		case "comment":
			rawComment = v
		}
	}
	switch v := rawApproved.(type) {
	case bool:
		approved = v
	case string:
		if approved, err = strconv.ParseBool(v); err != nil {
			return false, "", badField("Data.Approved", "want true or false, got %q", v)
		}
	case nil:
		return false, "", badField("Data.Approved", "required: true to approve, false to deny")
	default:
		return false, "", badField("Data.Approved", "want true or false")
	}
	switch v := rawComment.(type) {
	case string:
		comment = strings.TrimSpace(v)
	case nil:
	default:
		return false, "", badField("Data.Comment", "want a string")
	}
	if len(comment) > maxComment {
		return false, "", badField("Data.Comment", "longer than %d characters", maxComment)
	}
	if !approved && comment == "" {
		return false, "", badField("Data.Comment", "required to deny: say why")
	}
	return approved, comment, nil
}

// errUnchanged ends an update that has nothing to write.
var errUnchanged = errors.New("unchanged")

// decide records who's decision on request id's wait at step. The record's
// compare-and-set is the arbiter: of deciders (or a timeout) racing, each
// sees the others' effect, and only the one that settles the wait
// enqueues its resume, whose task id collapses any duplicate.
func (s *Service) decide(ctx context.Context, id int64, who *Caller, step, signal string, approved bool, comment string) (*store.Request, error) {
	var settled bool
	req, err := s.store.Update(ctx, id, func(r *store.Request) error {
		recorded, done, err := r.Instance.Decide(step, signal, who.Decider(), r.Requester.Name, approved, comment, time.Now().UTC())
		settled = done
		switch {
		case err != nil:
			return err
		case !recorded:
			return errUnchanged // the same approver again: counted once
		case settled:
			r.Disposition = store.Running // decided: the resume applies it
		}
		return nil
	})
	switch {
	case errors.Is(err, errUnchanged):
		return req, nil
	case errors.Is(err, workflow.ErrNotWaiting):
		return nil, newError(Conflict, keyfactor.CodeConflict, "workflow instance %s is not waiting for a decision at step %s (it is %s)", s.store.InstanceID(id), step, instanceStatusOf(req))
	case errors.Is(err, workflow.ErrNotApproval):
		return nil, newError(Conflict, keyfactor.CodeConflict, "workflow instance %s is not waiting for a decision at step %s: it is %v", s.store.InstanceID(id), step, err)
	case errors.Is(err, workflow.ErrNotApprover), errors.Is(err, workflow.ErrSelfApproval):
		return nil, newError(Forbidden, keyfactor.CodeForbidden, "%s may not decide request %d: %v", who.Name, id, err)
	case errors.Is(err, workflow.ErrNoComment):
		return nil, badField("Data.Comment", "required to deny: say why")
	case errors.Is(err, store.ErrNotFound):
		return nil, newError(NotFound, keyfactor.CodeNotFound, "request %d: not found", id)
	case err != nil:
		return nil, err
	}
	verb := "approved"
	if !approved {
		verb = "denied"
	}
	s.log.Info("approval decision recorded", "request", id, "instance", req.Instance.ID, "step", step, "by", who.Name, "decision", verb, "settled", settled)
	if settled {
		s.resume(ctx, req, step)
	}
	return req, nil
}

// resume enqueues the run that applies a decided wait. The decision is
// stored already: if the enqueue fails, the reconciler runs the request
// (it is RUNNING again, in the open set), so the answer is still success.
func (s *Service) resume(ctx context.Context, req *store.Request, step string) {
	stage := 0
	if n := len(req.Instance.Decisions); n > 0 {
		stage = req.Instance.Decisions[n-1].Stage
	}
	if err := s.queue.EnqueueResume(context.WithoutCancel(ctx), req.ID, req.Instance.ID, step, stage, req.Generation); err != nil {
		s.log.Warn("decision stored but its resume could not be enqueued; the reconciler will run the request", "request", req.ID, "err", err)
	}
}

// instanceStatusOf says, for refusals, what state r's instance is in.
func instanceStatusOf(r *store.Request) string {
	if r == nil {
		return "unknown"
	}
	if r.Instance.Status == workflow.StatusSuspended && r.Instance.Wait != nil {
		if r.Instance.Wait.Verdict != "" {
			return "decided already (" + strings.ToLower(string(r.Instance.Wait.Verdict)) + ")"
		}
		return "suspended at step " + r.Instance.Wait.Step
	}
	return keyfactor.InstanceStatus(r)
}

// Signal is POST /Workflow/Instances/{id}/Signals: an approver's decision
// on the step the instance is suspended at.
func (s *Service) Signal(ctx context.Context, caller *Caller, instanceID string, body *keyfactor.SignalRequest) error {
	step, ok := strings.CutSuffix(body.SignalKey, workflow.SignalSuffix)
	if !ok || step == "" {
		return badField("SignalKey", "%q is not a signal certflow takes: want \"<stepId>%s\"", body.SignalKey, workflow.SignalSuffix)
	}
	approved, comment, err := decodeApproval(body.Data)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	defer cancel()
	req, err := s.loadInstance(ctx, instanceID, caller)
	// A key the pinned definition does not take is a client's mistake. An
	// instance whose definition is not known here (not picked yet, or a
	// version no longer loaded) cannot be judged so: it answers as not
	// waiting at that step.
	if def := s.definitionOf(req); err == nil && def != nil && !slices.Contains(ApprovalSteps(req, def), step) {
		err = badField("SignalKey", "the instance's workflow has no approval step %q", step)
	}
	if err == nil {
		_, err = s.decide(ctx, req.ID, caller, step, body.SignalKey, approved, comment)
	}
	return err
}

// definitionOf returns the loaded definition a request is pinned to, or
// nil.
func (s *Service) definitionOf(r *store.Request) *workflow.Definition {
	if r == nil {
		return nil
	}
	d, _ := s.defs.Load().Get(r.Instance.Definition, r.Instance.Version)
	return d
}

// ApprovalSteps are the ids of the approval steps of r's definition (def,
// when loaded), else those r met so far.
func ApprovalSteps(r *store.Request, def *workflow.Definition) []string {
	var ids []string
	if def != nil {
		for _, s := range def.Steps {
			if s.Uses == workflow.ApprovalStep {
				ids = append(ids, s.ID)
			}
		}
		return ids
	}
	for _, h := range r.Instance.History {
		if h.Uses == workflow.ApprovalStep && !slices.Contains(ids, h.ID) {
			ids = append(ids, h.ID)
		}
	}
	if w := r.Instance.Wait; w != nil && !slices.Contains(ids, w.Step) {
		ids = append(ids, w.Step)
	}
	return ids
}

// Stop is POST /Workflow/Instances/{id}/Stop (admin): reject a suspended
// instance. A running one is refused (Conflict): a step in flight (the
// CA's, say) may already have acted.
func (s *Service) Stop(ctx context.Context, caller *Caller, instanceID string, body *keyfactor.StopRequest) error {
	if len(body.Comment) > maxComment {
		return badField("Comment", "longer than %d characters", maxComment)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	defer cancel()
	var step string
	req, err := s.changeInstance(ctx, caller, instanceID, func(q *store.Request) error {
		if q.Instance.Wait != nil {
			step = q.Instance.Wait.Step
		}
		if err := q.Instance.Stop(caller.Name, strings.TrimSpace(body.Comment), time.Now().UTC()); err != nil {
			return err
		}
		q.Disposition = store.Running // decided: the resume rejects it
		return nil
	}, workflow.ErrNotWaiting, "only a suspended instance can be stopped")
	if err != nil {
		return err
	}
	s.log.Warn("workflow instance stopped by an administrator", "request", req.ID, "instance", req.Instance.ID, "by", caller.Name)
	s.resume(ctx, req, step)
	return nil
}

// Restart is POST /Workflow/Instances/{id}/Restart (admin): run a failed
// instance again from the step that failed.
func (s *Service) Restart(ctx context.Context, caller *Caller, instanceID string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	defer cancel()
	req, err := s.changeInstance(ctx, caller, instanceID, func(q *store.Request) error {
		if err := q.Instance.Restart(); err != nil {
			return err
		}
		q.Disposition, q.Message = store.Queued, ""
		q.Generation++ // a fresh task, whatever asynq keeps of the failed one
		// An order with an external CA that failed the request (invalid,
		// timed out, refused at finalize) is not looked at again: the
		// issue step gives it up and places a new one.
		q.RetireOrder()
		return nil
	}, workflow.ErrTransition, "only a failed instance can be restarted")
	if err != nil {
		return err
	}
	if err := s.queue.EnqueueRun(context.WithoutCancel(ctx), req.ID, req.Generation); err != nil {
		s.log.Warn("restarted, but the run could not be enqueued; the reconciler will run it", "request", req.ID, "err", err)
	}
	s.log.Warn("failed workflow instance restarted by an administrator", "request", req.ID, "instance", req.Instance.ID, "by", caller.Name)
	return nil
}

// changeInstance applies change to the request of instance instanceID:
// a change refused with refused is a Conflict, saying why.
func (s *Service) changeInstance(ctx context.Context, caller *Caller, instanceID string, change func(*store.Request) error, refused error, why string) (*store.Request, error) {
	req, err := s.loadInstance(ctx, instanceID, caller)
	if err == nil {
		req, err = s.store.Update(ctx, req.ID, change)
	}
	if errors.Is(err, refused) {
		err = newError(Conflict, keyfactor.CodeConflict, "workflow instance %s is %s: %s", instanceID, instanceStatusOf(req), why)
	}
	if err != nil {
		return nil, err
	}
	return req, nil
}

// maxBatch bounds the ids one call on requests or certificates in bulk
// takes (approve, deny, revoke, a metadata edit).
const maxBatch = 500

// caNames splits a request's CA into Keyfactor's host and logical name.
func (s *Service) caNames(name string) (host, logical string) {
	if name == "" {
		return "", ""
	}
	if ca, ok := s.cfg.CA(name); ok {
		return ca.Host, ca.Name
	}
	return "", name
}

// maxComment bounds a decision's comment.
const maxComment = 4096

// Approve is POST /Workflow/Certificates/Approve: caller approves each
// request's current approval wait (decideBatch).
func (s *Service) Approve(ctx context.Context, caller *Caller, ids []int64) (*keyfactor.ApproveDenyResult, error) {
	return s.decideBatch(ctx, caller, ids, true, "")
}

// Deny is POST /Workflow/Certificates/Deny: caller denies each request's
// current approval wait, saying why (decideBatch).
func (s *Service) Deny(ctx context.Context, caller *Caller, body *keyfactor.DenialRequest) (*keyfactor.ApproveDenyResult, error) {
	comment := strings.TrimSpace(body.Comment)
	switch {
	case comment == "":
		return nil, badField("Comment", "required to deny: say why")
	case len(comment) > maxComment:
		return nil, badField("Comment", "longer than %d characters", maxComment)
	}
	return s.decideBatch(ctx, caller, body.CertificateRequestIds, false, comment)
}

// decideBatch decides each request's current approval wait. A refusal for
// one id is reported among the Failures, not as the call's error: the
// others' decisions stand. Only the store failing ends the call.
func (s *Service) decideBatch(ctx context.Context, who *Caller, ids []int64, approved bool, comment string) (*keyfactor.ApproveDenyResult, error) {
	field := "CertificateRequestIds"
	if approved {
		field = "request body"
	}
	switch {
	case len(ids) == 0:
		return nil, badField(field, "required: at least one certificate request id")
	case len(ids) > maxBatch:
		return nil, badField(field, "more than %d ids", maxBatch)
	}
	for i, id := range ids {
		if id <= 0 {
			return nil, badField(fmt.Sprintf("%s[%d]", field, i), "want a positive request id, got %d", id)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*s.cfg.API.RedisTimeout)
	defer cancel()
	res := &keyfactor.ApproveDenyResult{Successes: []keyfactor.ProcessedCertificateRequest{}, Failures: []keyfactor.ProcessedCertificateRequest{}, Denials: []keyfactor.ProcessedCertificateRequest{}}
	for _, id := range slices.Compact(slices.Sorted(slices.Values(ids))) {
		entry := keyfactor.ProcessedCertificateRequest{KeyfactorRequestId: id, CARequestId: strconv.FormatInt(id, 10), Comment: comment}
		req, err := s.store.Get(ctx, id)
		if err == nil && !Visible(req, who) {
			// Reported as an id that does not exist: nothing of the
			// request (its CA, its state) reaches who.
			err = store.ErrNotFound
		}
		step := ""
		if err == nil {
			if wt := req.Instance.Wait; wt != nil {
				step = wt.Step
			}
			entry.CAHost, entry.CALogicalName = s.caNames(req.Input.CertificateAuthority)
		}
		if err == nil {
			_, err = s.decide(ctx, id, who, step, step+workflow.SignalSuffix, approved, comment)
		}
		var ee *Error
		switch {
		case err == nil && approved:
			res.Successes = append(res.Successes, entry)
			continue
		case err == nil:
			res.Denials = append(res.Denials, entry)
			continue
		case errors.Is(err, store.ErrNotFound):
			entry.Comment = fmt.Sprintf("request %d: not found", id)
		case errors.As(err, &ee):
			entry.Comment = ee.Message
		case store.Unavailable(err):
			return nil, err
		default:
			s.log.Error("approval decision failed", "request", id, "err", err)
			entry.Comment = "internal error"
		}
		res.Failures = append(res.Failures, entry)
	}
	return res, nil
}

package api

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// instanceStatus is the instance's status in Keyfactor's names; a request
// still queued counts as running.
func instanceStatus(r *store.Request) string {
	if r.Instance.Status == "" {
		return string(workflow.StatusRunning)
	}
	return string(r.Instance.Status)
}

// newInstance renders a request's workflow instance for viewer.
func newInstance(r *store.Request, defs *workflow.Set, viewer *Identity) keyfactor.Instance {
	inst := &r.Instance
	out := keyfactor.Instance{
		Id: inst.ID, Status: instanceStatus(r), StatusMessage: keyfactor.DispositionMessage(r, roles(viewer)),
		Definition:   keyfactor.InstanceDefinition{DefinitionId: inst.Definition, DisplayName: inst.Definition, Version: inst.Version, WorkflowType: r.Trigger},
		Title:        fmt.Sprintf("%s request %d", strings.ToUpper(r.Trigger[:1])+r.Trigger[1:], r.ID),
		LastModified: r.Updated, StartDate: r.Submitted, ReferenceId: r.ID,
		RequestDisposition: string(r.Disposition), InitiatingUser: r.Requester.Name,
		Wait: inst.Wait, Decisions: inst.Decisions, Signals: []keyfactor.Signal{},
		InitialData: map[string]any{
			"Template": r.Input.Template, "CertificateAuthority": r.Input.CertificateAuthority,
			"SANs": r.Input.SANs, "Metadata": r.Input.Metadata, "Requester": r.Requester.Name,
			"Timestamp": r.Input.Timestamp, "AdditionalEnrollmentFields": r.Input.AdditionalEnrollmentFields,
		},
	}
	if out.Decisions == nil {
		out.Decisions = []workflow.Decision{}
	}
	var def *workflow.Definition
	if defs != nil {
		def, _ = defs.Get(inst.Definition, inst.Version)
	}
	out.CurrentStateData = currentState(r, def, viewer)
	if !inst.Status.Terminal() && inst.Definition != "" {
		if def != nil && inst.Next < len(def.Steps) {
			out.CurrentStepUniqueName = def.Steps[inst.Next].ID
		} else if inst.Wait != nil {
			out.CurrentStepUniqueName = inst.Wait.Step
		}
		out.CurrentStepId, out.CurrentStepDisplayName = out.CurrentStepUniqueName, out.CurrentStepUniqueName
	}
	for _, step := range approvalSteps(r, def) {
		received := slices.ContainsFunc(inst.Decisions, func(d workflow.Decision) bool {
			return d.Step == step && d.Kind == workflow.DecisionSignal
		})
		out.Signals = append(out.Signals, keyfactor.Signal{SignalName: "ApprovalStatus", StepSignalId: step + workflow.SignalSuffix, SignalReceived: received})
	}
	return out
}

// approvalSteps are the ids of the approval steps of r's definition (def,
// when loaded), else those r met so far.
func approvalSteps(r *store.Request, def *workflow.Definition) []string {
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

// decider is the caller as the workflow judges decisions.
func decider(id *Identity) workflow.Decider {
	return workflow.Decider{Name: id.Name, Has: id.Has}
}

// visible reports whether viewer may see request r: its requester,
// approvers (who read every request), and whoever may decide it now.
func visible(r *store.Request, viewer *Identity) bool {
	if certificateVisible(r, viewer) {
		return true
	}
	w := r.Instance.Wait
	return w != nil && r.Instance.MayDecide(w.Step, decider(viewer), r.Requester.Name) == nil
}

// assignedTo reports whether viewer may decide r now and has not yet.
func assignedTo(r *store.Request, viewer *Identity) bool {
	w := r.Instance.Wait
	return w != nil && r.Instance.MayDecide(w.Step, decider(viewer), r.Requester.Name) == nil && !slices.Contains(w.Approvers, viewer.Name)
}

// loadInstance loads the request behind instance id for viewer: 404 when
// it does not exist or viewer may not see it, the same answer for both
// (ids are derived from sequential request ids: a difference would tell
// what others requested).
func (s *Server) loadInstance(ctx context.Context, instanceID string, viewer *Identity) (*store.Request, error) {
	id, err := s.store.RequestIDOfInstance(instanceID)
	var r *store.Request
	if err == nil {
		r, err = s.store.Get(ctx, id)
	}
	if err == nil && !visible(r, viewer) {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, newError(http.StatusNotFound, keyfactor.CodeNotFound, "workflow instance %s: not found", instanceID)
	}
	return r, err
}

// handleGetInstance is GET /Workflow/Instances/{id}.
func (s *Server) handleGetInstance(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	req, err := s.loadInstance(ctx, r.PathValue("id"), identity(r))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, newInstance(req, s.defs.Load(), identity(r)))
}

// instanceFields are what GET /Workflow/Instances' queryString filters on.
var instanceFields = []string{"status", "definition", "initiatinguser", "referenceid", "currentstepuniquename", "requestdisposition"}

func instanceField(in *keyfactor.Instance) func(string) string {
	return func(f string) string {
		switch f {
		case "status":
			return in.Status
		case "definition":
			return in.Definition.DefinitionId
		case "initiatinguser":
			return in.InitiatingUser
		case "referenceid":
			return strconv.FormatInt(in.ReferenceId, 10)
		case "currentstepuniquename":
			return in.CurrentStepUniqueName
		case "requestdisposition":
			return in.RequestDisposition
		}
		return ""
	}
}

// list answers one page of a listing, newest first (or, from the pending
// index, earliest deadline first): keep picks the requests viewer may see
// in it, render makes each a row, and field reads a row's values for the
// queryString's terms.
func list[T any](s *Server, w http.ResponseWriter, r *http.Request, fromPending bool, fields []string,
	keep func(*store.Request, *Identity) bool, render func(*store.Request, *Identity) T, field func(*T) func(string) string) {
	p, err := parsePage(r, fields...)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*s.cfg.API.RedisTimeout)
	defer cancel()
	viewer := identity(r)
	writePage(s, w, r, p, field, func(offer func(T) bool) error {
		visit := func(req *store.Request) bool {
			return !keep(req, viewer) || offer(render(req, viewer))
		}
		if fromPending {
			return s.walkPending(ctx, visit)
		}
		_, err := s.store.Newest(ctx, 0, listScan, visit)
		return err
	})
}

// listInstances answers a listing of the instances keep picks.
func (s *Server) listInstances(w http.ResponseWriter, r *http.Request, fromPending bool, keep func(*store.Request, *Identity) bool) {
	defs := s.defs.Load()
	list(s, w, r, fromPending, instanceFields, keep,
		func(req *store.Request, viewer *Identity) keyfactor.Instance { return newInstance(req, defs, viewer) }, instanceField)
}

// walkPending visits the requests waiting for approval, the earliest
// deadline first.
func (s *Server) walkPending(ctx context.Context, visit func(*store.Request) bool) error {
	ids, err := s.store.PendingIDs(ctx, listScan)
	if err != nil {
		return err
	}
	return s.store.Visit(ctx, ids, func(req *store.Request) bool {
		return req.Disposition != store.Pending || visit(req) // the index may lag the record
	})
}

// handleListInstances is GET /Workflow/Instances: every instance the caller
// may see.
func (s *Server) handleListInstances(w http.ResponseWriter, r *http.Request) {
	s.listInstances(w, r, false, visible)
}

// handleAssignedToMe is GET /Workflow/Instances/AssignedToMe: the
// instances the caller may decide now.
func (s *Server) handleAssignedToMe(w http.ResponseWriter, r *http.Request) {
	s.listInstances(w, r, true, assignedTo)
}

// handleMyInstances is GET /Workflow/Instances/My: the caller's own.
func (s *Server) handleMyInstances(w http.ResponseWriter, r *http.Request) {
	s.listInstances(w, r, false, func(req *store.Request, viewer *Identity) bool { return req.Requester.Name == viewer.Name })
}

// maxComment bounds a decision's comment.
const maxComment = 4096

// handleSignal is POST /Workflow/Instances/{id}/Signals: an approver's
// decision on the step the instance is suspended at.
func (s *Server) handleSignal(w http.ResponseWriter, r *http.Request) {
	var body keyfactor.SignalRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	step, ok := strings.CutSuffix(body.SignalKey, workflow.SignalSuffix)
	if !ok || step == "" {
		writeError(w, r, s.log, badField("SignalKey", "%q is not a signal certflow takes: want \"<stepId>%s\"", body.SignalKey, workflow.SignalSuffix))
		return
	}
	approved, comment, err := decodeApproval(body.Data)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	req, err := s.loadInstance(ctx, r.PathValue("id"), identity(r))
	// A key the pinned definition does not take is a client's mistake. An
	// instance whose definition is not known here (not picked yet, or a
	// version no longer loaded) cannot be judged so: it answers as not
	// waiting at that step.
	if def := s.definitionOfRequest(req); err == nil && def != nil && !slices.Contains(approvalSteps(req, def), step) {
		err = badField("SignalKey", "the instance's workflow has no approval step %q", step)
	}
	if err == nil {
		_, err = s.decide(ctx, req.ID, identity(r), step, body.SignalKey, approved, comment)
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// definitionOfRequest returns the loaded definition a request is pinned
// to, or nil.
func (s *Server) definitionOfRequest(r *store.Request) *workflow.Definition {
	if r == nil {
		return nil
	}
	d, _ := s.defs.Load().Get(r.Instance.Definition, r.Instance.Version)
	return d
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
func (s *Server) decide(ctx context.Context, id int64, who *Identity, step, signal string, approved bool, comment string) (*store.Request, error) {
	var settled bool
	req, err := s.store.Update(ctx, id, func(r *store.Request) error {
		recorded, done, err := r.Instance.Decide(step, signal, decider(who), r.Requester.Name, approved, comment, time.Now().UTC())
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
		return nil, newError(http.StatusConflict, keyfactor.CodeConflict, "workflow instance %s is not waiting for a decision at step %s (it is %s)", s.store.InstanceID(id), step, instanceStatusOf(req))
	case errors.Is(err, workflow.ErrNotApprover), errors.Is(err, workflow.ErrSelfApproval):
		return nil, newError(http.StatusForbidden, keyfactor.CodeForbidden, "%s may not decide request %d: %v", who.Name, id, err)
	case errors.Is(err, workflow.ErrNoComment):
		return nil, badField("Data.Comment", "required to deny: say why")
	case errors.Is(err, store.ErrNotFound):
		return nil, newError(http.StatusNotFound, keyfactor.CodeNotFound, "request %d: not found", id)
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
func (s *Server) resume(ctx context.Context, req *store.Request, step string) {
	stage := 0
	if n := len(req.Instance.Decisions); n > 0 {
		stage = req.Instance.Decisions[n-1].Stage
	}
	if err := s.queue.EnqueueResume(context.WithoutCancel(ctx), req.ID, req.Instance.ID, step, stage, req.Generation); err != nil {
		s.log.Warn("decision stored but its resume could not be enqueued; the reconciler will run the request", "request", req.ID, "err", err)
	}
}

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
	return instanceStatus(r)
}

// handleStop is POST /Workflow/Instances/{id}/Stop (admin): reject a
// suspended instance. A running one is refused with 409: a step in flight
// (the CA's, say) may already have acted.
func (s *Server) handleStop(w http.ResponseWriter, r *http.Request) {
	var body keyfactor.StopRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &body); err != nil && !isEmptyBody(err) {
			writeError(w, r, s.log, err)
			return
		}
	}
	if len(body.Comment) > maxComment {
		writeError(w, r, s.log, badField("Comment", "longer than %d characters", maxComment))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	who := identity(r)
	var step string
	req, ok := s.changeInstance(ctx, w, r, func(q *store.Request) error {
		if q.Instance.Wait != nil {
			step = q.Instance.Wait.Step
		}
		if err := q.Instance.Stop(who.Name, strings.TrimSpace(body.Comment), time.Now().UTC()); err != nil {
			return err
		}
		q.Disposition = store.Running // decided: the resume rejects it
		return nil
	}, workflow.ErrNotWaiting, "only a suspended instance can be stopped")
	if !ok {
		return
	}
	s.log.Warn("workflow instance stopped by an administrator", "request", req.ID, "instance", req.Instance.ID, "by", who.Name)
	s.resume(ctx, req, step)
	w.WriteHeader(http.StatusNoContent)
}

// handleRestart is POST /Workflow/Instances/{id}/Restart (admin): run a
// failed instance again from the step that failed.
func (s *Server) handleRestart(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	req, ok := s.changeInstance(ctx, w, r, func(q *store.Request) error {
		if err := q.Instance.Restart(); err != nil {
			return err
		}
		q.Disposition, q.Message = store.Queued, ""
		q.Generation++ // a fresh task, whatever asynq keeps of the failed one
		return nil
	}, workflow.ErrTransition, "only a failed instance can be restarted")
	if !ok {
		return
	}
	if err := s.queue.EnqueueRun(context.WithoutCancel(ctx), req.ID, req.Generation); err != nil {
		s.log.Warn("restarted, but the run could not be enqueued; the reconciler will run it", "request", req.ID, "err", err)
	}
	s.log.Warn("failed workflow instance restarted by an administrator", "request", req.ID, "instance", req.Instance.ID, "by", identity(r).Name)
	w.WriteHeader(http.StatusNoContent)
}

// changeInstance applies change to the request of the instance the path
// names, and answers the errors: a change refused with refused is 409,
// saying why. It reports whether the change was stored.
func (s *Server) changeInstance(ctx context.Context, w http.ResponseWriter, r *http.Request, change func(*store.Request) error, refused error, why string) (*store.Request, bool) {
	req, err := s.loadInstance(ctx, r.PathValue("id"), identity(r))
	if err == nil {
		req, err = s.store.Update(ctx, req.ID, change)
	}
	if errors.Is(err, refused) {
		err = newError(http.StatusConflict, keyfactor.CodeConflict, "workflow instance %s is %s: %s", r.PathValue("id"), instanceStatusOf(req), why)
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return nil, false
	}
	return req, true
}

func isEmptyBody(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && strings.HasPrefix(ae.msg, "request body: empty")
}

// Keyfactor's certificate states used by the approval queue.
const (
	stateDenied  = 3
	statePending = 5
)

func (s *Server) newCertificateRequest(r *store.Request) keyfactor.CertificateRequest {
	out := keyfactor.CertificateRequest{
		Id: r.ID, CARequestId: strconv.FormatInt(r.ID, 10), SubmissionDate: r.Submitted,
		CertificateAuthority: r.Input.CertificateAuthority, Template: r.Input.Template, Requester: r.Requester.Name,
		Metadata: maps.Clone(r.Input.Metadata),
	}
	if out.Metadata == nil {
		out.Metadata = map[string]string{}
	}
	out.CommonName, out.DistinguishedName = r.CommonName, r.Subject
	switch r.Disposition {
	case store.Pending:
		out.State, out.StateString = statePending, "Pending"
	case store.Denied:
		out.State, out.StateString = stateDenied, "Denied"
	}
	return out
}

var certificateRequestFields = []string{"id", "commonname", "requester", "template", "certificateauthority"}

func certificateRequestField(c *keyfactor.CertificateRequest) func(string) string {
	return func(f string) string {
		switch f {
		case "id":
			return strconv.FormatInt(c.Id, 10)
		case "commonname":
			return c.CommonName
		case "requester":
			return c.Requester
		case "template":
			return c.Template
		case "certificateauthority":
			return c.CertificateAuthority
		}
		return ""
	}
}

func (s *Server) listCertificateRequests(w http.ResponseWriter, r *http.Request, disposition store.Disposition) {
	keep := func(req *store.Request, viewer *Identity) bool {
		return req.Disposition == disposition && visible(req, viewer)
	}
	render := func(req *store.Request, _ *Identity) keyfactor.CertificateRequest {
		return s.newCertificateRequest(req)
	}
	list(s, w, r, disposition == store.Pending, certificateRequestFields, keep, render, certificateRequestField)
}

// handlePendingCertificates is GET /Workflow/Certificates/Pending.
func (s *Server) handlePendingCertificates(w http.ResponseWriter, r *http.Request) {
	s.listCertificateRequests(w, r, store.Pending)
}

// handleDeniedCertificates is GET /Workflow/Certificates/Denied.
func (s *Server) handleDeniedCertificates(w http.ResponseWriter, r *http.Request) {
	s.listCertificateRequests(w, r, store.Denied)
}

// maxBatch bounds the ids one approve or deny call takes.
const maxBatch = 500

// handleApproveCertificates is POST /Workflow/Certificates/Approve with a
// JSON array of request ids.
func (s *Server) handleApproveCertificates(w http.ResponseWriter, r *http.Request) {
	var ids []int64
	if err := decodeJSON(r, &ids); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	s.decideBatch(w, r, ids, true, "")
}

// handleDenyCertificates is POST /Workflow/Certificates/Deny.
func (s *Server) handleDenyCertificates(w http.ResponseWriter, r *http.Request) {
	var body keyfactor.DenialRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	comment := strings.TrimSpace(body.Comment)
	switch {
	case comment == "":
		writeError(w, r, s.log, badField("Comment", "required to deny: say why"))
		return
	case len(comment) > maxComment:
		writeError(w, r, s.log, badField("Comment", "longer than %d characters", maxComment))
		return
	}
	s.decideBatch(w, r, body.CertificateRequestIds, false, comment)
}

// decideBatch decides each request's current approval wait. A refusal for
// one id is reported among the Failures, not as the call's status: the
// others' decisions stand.
func (s *Server) decideBatch(w http.ResponseWriter, r *http.Request, ids []int64, approved bool, comment string) {
	field := "CertificateRequestIds"
	if approved {
		field = "request body"
	}
	switch {
	case len(ids) == 0:
		writeError(w, r, s.log, badField(field, "required: at least one certificate request id"))
		return
	case len(ids) > maxBatch:
		writeError(w, r, s.log, badField(field, "more than %d ids", maxBatch))
		return
	}
	for i, id := range ids {
		if id <= 0 {
			writeError(w, r, s.log, badField(fmt.Sprintf("%s[%d]", field, i), "want a positive request id, got %d", id))
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*s.cfg.API.RedisTimeout)
	defer cancel()
	who := identity(r)
	res := keyfactor.ApproveDenyResult{Successes: []keyfactor.ProcessedCertificateRequest{}, Failures: []keyfactor.ProcessedCertificateRequest{}, Denials: []keyfactor.ProcessedCertificateRequest{}}
	for _, id := range slices.Compact(slices.Sorted(slices.Values(ids))) {
		entry := keyfactor.ProcessedCertificateRequest{KeyfactorRequestId: id, CARequestId: strconv.FormatInt(id, 10), Comment: comment}
		req, err := s.store.Get(ctx, id)
		if err == nil && !visible(req, who) {
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
		var ae *apiError
		switch {
		case err == nil && approved:
			res.Successes = append(res.Successes, entry)
			continue
		case err == nil:
			res.Denials = append(res.Denials, entry)
			continue
		case errors.Is(err, store.ErrNotFound):
			entry.Comment = fmt.Sprintf("request %d: not found", id)
		case errors.As(err, &ae):
			entry.Comment = ae.msg
		case store.Unavailable(err):
			writeError(w, r, s.log, err)
			return
		default:
			s.log.Error("approval decision failed", "request", id, "err", err)
			entry.Comment = "internal error"
		}
		res.Failures = append(res.Failures, entry)
	}
	writeJSON(w, http.StatusOK, res)
}

// caNames splits a request's CA into Keyfactor's host and logical name.
func (s *Server) caNames(name string) (host, logical string) {
	if name == "" {
		return "", ""
	}
	if ca, ok := s.cfg.CA(name); ok {
		return ca.Host, ca.Name
	}
	return "", name
}

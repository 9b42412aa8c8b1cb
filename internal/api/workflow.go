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

	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// newInstance renders a request's workflow instance for viewer.
func newInstance(r *store.Request, defs *workflow.Set, viewer *enroll.Caller) keyfactor.Instance {
	inst := &r.Instance
	out := keyfactor.Instance{
		Id: inst.ID, Status: keyfactor.InstanceStatus(r), StatusMessage: keyfactor.DispositionMessage(r, viewer.RoleNames()),
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
	out.CurrentStateData = enroll.CurrentState(r, def, viewer)
	if !inst.Status.Terminal() && inst.Definition != "" {
		if def != nil && inst.Next < len(def.Steps) {
			out.CurrentStepUniqueName = def.Steps[inst.Next].ID
		} else if inst.Wait != nil {
			out.CurrentStepUniqueName = inst.Wait.Step
		}
		out.CurrentStepId, out.CurrentStepDisplayName = out.CurrentStepUniqueName, out.CurrentStepUniqueName
	}
	for _, step := range enroll.ApprovalSteps(r, def) {
		received := slices.ContainsFunc(inst.Decisions, func(d workflow.Decision) bool {
			return d.Step == step && d.Kind == workflow.DecisionSignal
		})
		out.Signals = append(out.Signals, keyfactor.Signal{SignalName: "ApprovalStatus", StepSignalId: step + workflow.SignalSuffix, SignalReceived: received})
	}
	return out
}

// assignedTo reports whether viewer may decide r now and has not yet.
func assignedTo(r *store.Request, viewer *enroll.Caller) bool {
	w := r.Instance.Wait
	return w != nil && r.Instance.MayDecide(w.Step, viewer.Decider(), r.Requester.Name) == nil && !slices.Contains(w.Approvers, viewer.Name)
}

// handleGetInstance is GET /Workflow/Instances/{id}.
func (s *Server) handleGetInstance(w http.ResponseWriter, r *http.Request) {
	req, err := s.enroll.Instance(r.Context(), identity(r), r.PathValue("id"))
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
	keep func(*store.Request, *enroll.Caller) bool, render func(*store.Request, *enroll.Caller) T, field func(*T) func(string) string) {
	p, err := parsePage(r, fields...)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*s.cfg.API.RedisTimeout)
	defer cancel()
	viewer := identity(r)
	scan := s.cfg.API.MaxScan
	writePage(s, w, r, p, field, func(offer func(T) bool) error {
		full := false
		visit := func(req *store.Request) bool {
			full = keep(req, viewer) && !offer(render(req, viewer))
			return !full
		}
		if fromPending {
			return s.walkPending(ctx, scan, visit)
		}
		next, err := s.store.Newest(ctx, 0, scan, visit)
		if err == nil && next != 0 && !full {
			err = enroll.TooBroad(scan)
		}
		return err
	})
}

// listInstances answers a listing of the instances keep picks.
func (s *Server) listInstances(w http.ResponseWriter, r *http.Request, fromPending bool, keep func(*store.Request, *enroll.Caller) bool) {
	defs := s.defs.Load()
	list(s, w, r, fromPending, instanceFields, keep,
		func(req *store.Request, viewer *enroll.Caller) keyfactor.Instance {
			return newInstance(req, defs, viewer)
		}, instanceField)
}

// walkPending visits the requests waiting for approval, the earliest
// deadline first, at most scan of them (then TooBroad, if visit still
// wants more and more wait).
func (s *Server) walkPending(ctx context.Context, scan int, visit func(*store.Request) bool) error {
	ids, err := s.store.PendingIDs(ctx, int64(scan)+1)
	if err != nil {
		return err
	}
	more := len(ids) > scan
	stopped := false
	err = s.store.Visit(ctx, ids[:min(len(ids), scan)], func(req *store.Request) bool {
		stopped = req.Disposition == store.Pending && !visit(req) // the index may lag the record
		return !stopped
	})
	if err == nil && more && !stopped {
		err = enroll.TooBroad(scan)
	}
	return err
}

// handleListInstances is GET /Workflow/Instances: every instance the caller
// may see.
func (s *Server) handleListInstances(w http.ResponseWriter, r *http.Request) {
	s.listInstances(w, r, false, enroll.Visible)
}

// handleAssignedToMe is GET /Workflow/Instances/AssignedToMe: the
// instances the caller may decide now.
func (s *Server) handleAssignedToMe(w http.ResponseWriter, r *http.Request) {
	s.listInstances(w, r, true, assignedTo)
}

// handleMyInstances is GET /Workflow/Instances/My: the caller's own.
func (s *Server) handleMyInstances(w http.ResponseWriter, r *http.Request) {
	s.listInstances(w, r, false, func(req *store.Request, viewer *enroll.Caller) bool { return req.Requester.Name == viewer.Name })
}

// handleSignal is POST /Workflow/Instances/{id}/Signals: an approver's
// decision on the step the instance is suspended at.
func (s *Server) handleSignal(w http.ResponseWriter, r *http.Request) {
	var body keyfactor.SignalRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if err := s.enroll.Signal(r.Context(), identity(r), r.PathValue("id"), &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
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
	if err := s.enroll.Stop(r.Context(), identity(r), r.PathValue("id"), &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleRestart is POST /Workflow/Instances/{id}/Restart (admin): run a
// failed instance again from the step that failed.
func (s *Server) handleRestart(w http.ResponseWriter, r *http.Request) {
	if err := s.enroll.Restart(r.Context(), identity(r), r.PathValue("id")); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
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
	keep := func(req *store.Request, viewer *enroll.Caller) bool {
		return req.Disposition == disposition && enroll.Visible(req, viewer)
	}
	render := func(req *store.Request, _ *enroll.Caller) keyfactor.CertificateRequest {
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

// handleApproveCertificates is POST /Workflow/Certificates/Approve with a
// JSON array of request ids.
func (s *Server) handleApproveCertificates(w http.ResponseWriter, r *http.Request) {
	var ids []int64
	if err := decodeJSON(r, &ids); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	res, err := s.enroll.Approve(r.Context(), identity(r), ids)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// handleDenyCertificates is POST /Workflow/Certificates/Deny.
func (s *Server) handleDenyCertificates(w http.ResponseWriter, r *http.Request) {
	var body keyfactor.DenialRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	res, err := s.enroll.Deny(r.Context(), identity(r), &body)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

package steps

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// Approval is the approval step type: it suspends the request until people
// decide. While it waits the instance is Suspended and the request PENDING,
// and no worker is held. Decisions arrive as signals (POST
// /Workflow/Instances/{id}/Signals, or Keyfactor's
// /Workflow/Certificates/Approve and /Deny); one denial ends the request
// DENIED, quorum distinct approvals let it go on. The requester may never
// decide their own request unless allow_self_approval is set (four-eyes).
//
//	uses: approval
//	if: any(sans.DNS, {# startsWith "*."})
//	with:
//	  roles: [pki-approvers]   # who may decide (admin always may); default [approver]
//	  quorum: 2                # distinct approvers needed; default 1
//	  timeout: 72h             # default: wait for ever
//	  on_timeout: escalate     # deny (default) | escalate
//	  escalate: {roles: [pki-leads], timeout: 24h}
//	  allow_self_approval: false
//	  notify: {log: "…", webhook: "https://…", email: {…}}  # told on waiting and on decision
//
// Outputs: approved (bool), approvers (list), verdict, and notify's
// outcome fields of the decision's notification.
type Approval struct {
	// Notify tells the channels of the step's `notify:`.
	Notify Notify
}

type approvalWith struct {
	Roles             []string        `yaml:"roles"`
	Quorum            int             `yaml:"quorum"`
	Timeout           string          `yaml:"timeout"`
	OnTimeout         string          `yaml:"on_timeout"`
	Escalate          *escalationWith `yaml:"escalate"`
	AllowSelfApproval bool            `yaml:"allow_self_approval"`
	Notify            *notifyWith     `yaml:"notify"`
}

type escalationWith struct {
	Roles   []string `yaml:"roles"`
	Timeout string   `yaml:"timeout"`
}

// Approval bounds.
const (
	maxQuorum          = 20
	minApprovalTimeout = time.Second
)

var roleRE = regexp.MustCompile(config.RolePattern)

// approvalStep is a compiled approval step.
type approvalStep struct {
	roles     []string
	quorum    int
	timeout   time.Duration
	onTimeout string
	escalate  *workflow.Escalation
	self      bool
	notify    *notifier
	now       func() time.Time
}

var (
	_ workflow.Step      = (*approvalStep)(nil)
	_ workflow.Resumer   = (*approvalStep)(nil)
	_ workflow.Escalator = (*approvalStep)(nil)
)

// Build implements workflow.Builder.
func (a Approval) Build(spec *workflow.Spec) (workflow.Step, error) {
	var w approvalWith
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	at := func(key string) *yaml.Node {
		if n := workflow.MapValue(spec.With, key); n != nil {
			return n
		}
		return spec.With
	}
	s := &approvalStep{roles: w.Roles, quorum: w.Quorum, onTimeout: w.OnTimeout, self: w.AllowSelfApproval, now: time.Now}
	if len(s.roles) == 0 {
		s.roles = []string{config.RoleApprover}
	}
	// Every problem is reported, not only the first: lint shows them all.
	var errs []error
	if err := checkRoles(spec, at("roles"), "roles", s.roles); err != nil {
		errs = append(errs, err)
	}
	switch {
	case w.Quorum == 0:
		s.quorum = 1
	case w.Quorum < 1 || w.Quorum > maxQuorum:
		errs = append(errs, spec.Errorf(at("quorum"), "quorum: %d is outside 1–%d", w.Quorum, maxQuorum))
	}
	var err error
	timeoutErr := false
	if s.timeout, err = approvalTimeout(spec, at("timeout"), "timeout", w.Timeout); err != nil {
		errs, timeoutErr = append(errs, err), true
	}
	switch w.OnTimeout {
	case "":
		s.onTimeout = workflow.OnTimeoutDeny
	case workflow.OnTimeoutDeny, workflow.OnTimeoutEscalate:
	default:
		errs = append(errs, spec.Errorf(at("on_timeout"), "on_timeout: %q (want deny or escalate)", w.OnTimeout))
	}
	if (w.OnTimeout == workflow.OnTimeoutDeny || w.OnTimeout == workflow.OnTimeoutEscalate) && s.timeout == 0 && !timeoutErr {
		errs = append(errs, spec.Errorf(at("on_timeout"), "on_timeout needs a timeout"))
	}
	switch {
	case s.onTimeout == workflow.OnTimeoutEscalate && w.Escalate == nil:
		errs = append(errs, spec.Errorf(at("on_timeout"), "on_timeout: escalate needs escalate: {roles: […], timeout: …}"))
	case s.onTimeout != workflow.OnTimeoutEscalate && w.Escalate != nil:
		errs = append(errs, spec.Errorf(at("escalate"), "escalate: only used with on_timeout: escalate"))
	case w.Escalate != nil:
		node := at("escalate")
		if len(w.Escalate.Roles) == 0 {
			errs = append(errs, spec.Errorf(node, "escalate.roles: required: who decides after the timeout"))
		} else if err := checkRoles(spec, node, "escalate.roles", w.Escalate.Roles); err != nil {
			errs = append(errs, err)
		}
		t, err := approvalTimeout(spec, node, "escalate.timeout", w.Escalate.Timeout)
		switch {
		case err != nil:
			errs = append(errs, err)
		case t == 0:
			errs = append(errs, spec.Errorf(node, "escalate.timeout: required (e.g. 24h)"))
		}
		s.escalate = &workflow.Escalation{Roles: w.Escalate.Roles, Timeout: t}
	}
	if w.Notify != nil {
		node := at("notify")
		if w.Notify.Event != "" {
			errs = append(errs, spec.Errorf(node, "notify.event: an approval's events are approval.pending and approval.decided; leave event out"))
		} else if s.notify, err = a.Notify.compile(spec, node, w.Notify); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

func checkRoles(spec *workflow.Spec, node *yaml.Node, field string, roles []string) error {
	for _, r := range roles {
		if !roleRE.MatchString(r) {
			return spec.Errorf(node, "%s: %q is not a role name (letters, digits, -, _ and .)", field, r)
		}
	}
	return nil
}

func approvalTimeout(spec *workflow.Spec, node *yaml.Node, field, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < minApprovalTimeout {
		return 0, spec.Errorf(node, "%s: %q is not a duration of at least 1s (e.g. 72h)", field, v)
	}
	return d, nil
}

// Run suspends the request: the wait's rules are copied onto the instance,
// and the channels are told that it waits.
func (s *approvalStep) Run(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
	now := s.now()
	w := &workflow.Wait{
		Roles: slices.Clone(s.roles), Quorum: s.quorum, AllowSelfApproval: s.self,
		Since: now, OnTimeout: s.onTimeout, Escalation: s.escalate,
	}
	if s.timeout > 0 {
		w.Deadline = now.Add(s.timeout)
	}
	run.Log.Info("request waits for approval", "roles", w.Roles, "quorum", w.Quorum, "deadline", w.Deadline)
	if s.notify != nil {
		w.Step = run.StepID
		if _, err := s.notify.send(ctx, run, "approval.pending", approvalEvent(w)); err != nil {
			run.Log.Warn("approval notification", "event", "approval.pending", "err", err)
		}
	}
	return workflow.Result{Suspend: w}, nil
}

// Resume tells the channels how the wait was decided and gives the step's
// outputs.
func (s *approvalStep) Resume(ctx context.Context, run *workflow.Run, w *workflow.Wait) workflow.Result {
	out := map[string]any{
		"approved":  w.Verdict == workflow.VerdictApproved,
		"approvers": slices.Clone(w.Approvers),
		"verdict":   string(w.Verdict),
	}
	if s.notify != nil {
		sent, err := s.notify.send(ctx, run, "approval.decided", approvalEvent(w))
		if err != nil {
			run.Log.Warn("approval notification", "event", "approval.decided", "err", err)
		}
		for k, v := range sent {
			out[k] = v
		}
	}
	return workflow.Result{Outputs: out}
}

// Escalated tells the channels that the decision passed to other roles.
func (s *approvalStep) Escalated(ctx context.Context, run *workflow.Run, w *workflow.Wait) {
	if s.notify == nil {
		return
	}
	if _, err := s.notify.send(ctx, run, "approval.escalated", approvalEvent(w)); err != nil {
		run.Log.Warn("approval notification", "event", "approval.escalated", "err", err)
	}
}

func approvalEvent(w *workflow.Wait) *ApprovalEvent {
	return &ApprovalEvent{
		Step: w.Step, Roles: w.Roles, Quorum: w.Quorum, Deadline: w.Deadline,
		Verdict: string(w.Verdict), Approvers: w.Approvers, Message: w.Message,
	}
}

package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/notify"
	"github.com/certflow/certflow/internal/redact"
	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// Notify is the notify step type: it tells people and systems. `log` writes
// a line to certflow's log; `webhook` POSTs a signed (Standard Webhooks)
// JSON event; `email` sends a plain-text mail through the configured SMTP
// server. A failed webhook or email does not fail the request: the outcome
// is recorded in the step's outputs (steps.<id>.delivered, steps.<id>.error;
// steps.<id>.email_sent, steps.<id>.email_error).
//
// The webhook's URL may embed ${{ }} in path segments only (each value
// escaped as one segment), or be one ${{ }} that yields a whole URL (the
// request's own CallbackUrl, say), checked when sent like any other.
// Email headers (to, subject) holding a line break fail the step: nothing
// is sent.
//
//	uses: notify
//	with:
//	  log: "issued ${{ certificate.SerialNumber }} for ${{ csr.CommonName }}"
//	  webhook: https://hooks.example.com/pki
//	  event: certificate.issued
//	  email:
//	    to: [pki-team@example.com, "${{ steps.owner.body.email }}"]
//	    subject: "certificate for ${{ csr.CommonName }}"
//	    body: "serial ${{ certificate.SerialNumber }}, valid until ${{ certificate.NotAfter }}"
//
// An approval step's `notify:` channels are Notify's too (Approval).
type Notify struct {
	// Webhooks signs and posts webhook events (a *callback.Sender).
	Webhooks WebhookSender
	// Mailer sends email (a *notify.Mailer). Without one (linting, or no
	// smtp.addr) an email is recorded as not sent.
	Mailer MailSender
	// AllowPrivate is callbacks.allow_private: webhooks may go to
	// private addresses.
	AllowPrivate bool
	// SMTPAddr is smtp.addr: without it a definition may not send email.
	SMTPAddr string
}

// WebhookSender posts a signed webhook event: a *callback.Sender, or
// what records it instead (`certflow test`, internal/dryrun).
type WebhookSender interface {
	Post(ctx context.Context, target, id string, body []byte) callback.Delivery
}

// MailSender sends an email: a *notify.Mailer, or what records it
// instead (`certflow test`, internal/dryrun).
type MailSender interface {
	Send(ctx context.Context, to []string, subject, body, messageID string) error
}

type notifyWith struct {
	Log     yaml.Node  `yaml:"log"`
	Webhook yaml.Node  `yaml:"webhook"`
	Event   string     `yaml:"event"`
	Email   *emailWith `yaml:"email"`
}

// emailWith is notify's `email:`. to is one address or a list; each may
// embed ${{ }}, and one that is a single expression may also yield a list
// of addresses.
type emailWith struct {
	To      yaml.Node `yaml:"to"`
	Subject yaml.Node `yaml:"subject"`
	Body    yaml.Node `yaml:"body"`
}

// email is a compiled emailWith.
type email struct {
	to            []*workflow.Template
	subject, body *workflow.Template
}

// Event is the body of a notify webhook.
type Event struct {
	Type        string                `json:"type"`
	RequestID   int64                 `json:"request_id"`
	InstanceID  string                `json:"instance_id"`
	Template    string                `json:"template,omitempty"`
	CommonName  string                `json:"common_name,omitempty"`
	Requester   string                `json:"requester"`
	Certificate *workflow.Certificate `json:"certificate,omitempty"`
	// Approval is set on an approval step's events.
	Approval *ApprovalEvent `json:"approval,omitempty"`
}

// ApprovalEvent describes an approval step's wait or its decision.
type ApprovalEvent struct {
	Step      string    `json:"step"`
	Roles     []string  `json:"roles"`
	Quorum    int       `json:"quorum"`
	Deadline  time.Time `json:"deadline,omitzero"`
	Verdict   string    `json:"verdict,omitempty"`
	Approvers []string  `json:"approvers,omitempty"`
	Message   string    `json:"message,omitempty"`
}

// messageID is a notification's id, stable per request, step and event:
// a re-send after a crash carries the same id (webhook-id, Message-ID), so
// receivers can de-duplicate.
func messageID(run *workflow.Run, event string) string {
	id := "certflow-" + strconv.FormatInt(run.RequestID, 10) + "-" + run.StepID
	if strings.HasPrefix(event, "approval.") {
		id += "-" + event
	}
	return id
}

// Build implements workflow.Builder.
func (nt Notify) Build(spec *workflow.Spec) (workflow.Step, error) {
	var w notifyWith
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	n, err := nt.compile(spec, spec.With, &w)
	if err != nil {
		return nil, err
	}
	event := w.Event
	if event == "" {
		event = "certificate." + spec.Trigger
	}
	if n.hook == nil && n.email == nil {
		// A log line only: rendered now, written once the checkpoint that
		// carries the step is (workflow.Result.AfterSave). So the step is
		// pure and shares that checkpoint, and the log never tells of a
		// certificate that a crash then loses.
		return pureFunc(func(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
			msg, err := n.logLine(run)
			if err != nil {
				return workflow.Result{}, workflow.Permanent(err)
			}
			log := run.Log
			return workflow.Result{
				Outputs:   map[string]any{"logged": msg},
				AfterSave: func() { log.Info(msg, "event", event) },
			}, nil
		}), nil
	}
	return stepFunc(func(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
		out, err := n.send(ctx, run, event, nil)
		if err != nil {
			return workflow.Result{}, workflow.Permanent(err)
		}
		return workflow.Result{Outputs: out}, nil
	}), nil
}

// notifier is a compiled set of notify channels: the notify step's, and
// an approval step's `notify:`.
type notifier struct {
	via   Notify
	log   *workflow.Template
	hook  *urlTemplate
	email *email
}

// compile compiles the channels of w, found at node.
func (nt Notify) compile(spec *workflow.Spec, node *yaml.Node, w *notifyWith) (*notifier, error) {
	n := &notifier{via: nt}
	// Every channel is compiled, so lint reports every mistake at once.
	var errs []error
	var err error
	if w.Log.Kind != 0 {
		if n.log, err = spec.Template(w.Log.Value, &w.Log); err != nil {
			errs = append(errs, err)
		}
	}
	if w.Webhook.Kind != 0 {
		if n.hook, err = compileURL(spec, &w.Webhook, "webhook", true); err != nil {
			errs = append(errs, err)
		}
	}
	if w.Email != nil {
		if n.email, err = nt.buildEmail(spec, node, w.Email); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if n.log == nil && n.hook == nil && n.email == nil {
		return nil, spec.Errorf(node, "notify needs at least one of log and webhook, or email")
	}
	return n, nil
}

// send tells every channel about event. A failed webhook or email is
// recorded in the outputs, not returned; an error means a template could
// not be evaluated, or gave an email header that is not fit to send (a
// line break): every channel is rendered before any is told, so then
// none is.
func (n *notifier) send(ctx context.Context, run *workflow.Run, event string, approval *ApprovalEvent) (map[string]any, error) {
	var msg, target, subject, body string
	var to []string
	var err error
	if n.log != nil {
		if msg, err = n.logLine(run); err != nil {
			return nil, err
		}
	}
	if n.hook != nil {
		if target, err = n.hook.render(run.Env); err != nil {
			return nil, fmt.Errorf("webhook: %w", err)
		}
	}
	if n.email != nil {
		if to, subject, body, err = n.email.render(run.Env); err != nil {
			return nil, fmt.Errorf("email: %w", err)
		}
	}
	out := map[string]any{}
	if n.log != nil {
		run.Log.Info(msg, "event", event)
		out["logged"] = msg
	}
	if n.hook != nil {
		out["delivered"], out["status"], out["error"] = n.via.postEvent(ctx, run, target, event, approval)
	}
	if n.email != nil {
		out["email_sent"], out["email_error"] = n.via.sendEmail(ctx, run, to, subject, body, event)
	}
	return out, nil
}

// logLine renders the log channel's message.
func (n *notifier) logLine(run *workflow.Run) (string, error) {
	msg, err := n.log.String(run.Env)
	if err != nil {
		return "", fmt.Errorf("log: %w", err)
	}
	return msg, nil
}

func (nt Notify) buildEmail(spec *workflow.Spec, parent *yaml.Node, w *emailWith) (*email, error) {
	node := workflow.MapValue(parent, "email")
	if nt.SMTPAddr == "" {
		return nil, spec.Errorf(node, "email: no SMTP server is configured (smtp.addr)")
	}
	var m email
	var toNodes []*yaml.Node
	switch w.To.Kind {
	case yaml.ScalarNode:
		toNodes = []*yaml.Node{&w.To}
	case yaml.SequenceNode:
		toNodes = w.To.Content
	}
	var errs []error
	if len(toNodes) == 0 {
		errs = append(errs, spec.Errorf(node, "email.to: required (an address or a list of them)"))
	}
	for _, n := range toNodes {
		if n.Kind != yaml.ScalarNode || n.Value == "" {
			errs = append(errs, spec.Errorf(n, "email.to: want an address (may embed ${{ }})"))
			continue
		}
		t, err := spec.Template(n.Value, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if t.IsLiteral() {
			if err := notify.CheckAddress(t.Source); err != nil {
				errs = append(errs, spec.Errorf(n, "email.to: %v", err))
				continue
			}
		}
		m.to = append(m.to, t)
	}
	for _, f := range []struct {
		name string
		node *yaml.Node
		dst  **workflow.Template
	}{{"subject", &w.Subject, &m.subject}, {"body", &w.Body, &m.body}} {
		if f.node.Kind != yaml.ScalarNode || f.node.Value == "" {
			errs = append(errs, spec.Errorf(node, "email.%s: required (a string, may embed ${{ }})", f.name))
			continue
		}
		t, err := spec.Template(f.node.Value, f.node)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		*f.dst = t
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &m, nil
}

// render evaluates the templates. A recipient or subject holding a line
// break (or another control character) is an error — header injection,
// so the step fails and nothing is sent —, not a failed delivery; other
// faults of a recipient are left to the mailer, which records them.
func (m *email) render(env *workflow.Env) (to []string, subject, body string, err error) {
	for _, t := range m.to {
		v, err := t.Value(env)
		if err != nil {
			return nil, "", "", fmt.Errorf("to: %w", err)
		}
		switch v := v.(type) {
		case string:
			to = append(to, v)
		case []string:
			to = append(to, v...)
		case []any:
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					return nil, "", "", fmt.Errorf("to: %q gave a list holding %T, want strings", t.Source, e)
				}
				to = append(to, s)
			}
		default:
			return nil, "", "", fmt.Errorf("to: %q gave %T, want an address or a list of them", t.Source, v)
		}
	}
	for _, a := range to {
		if err := notify.CheckHeaderText(a); err != nil {
			return nil, "", "", fmt.Errorf("to: %q %w", a, err)
		}
	}
	if subject, err = m.subject.String(env); err != nil {
		return nil, "", "", fmt.Errorf("subject: %w", err)
	}
	if err := notify.CheckHeaderText(subject); err != nil {
		return nil, "", "", fmt.Errorf("subject: %q %w", subject, err)
	}
	if body, err = m.body.String(env); err != nil {
		return nil, "", "", fmt.Errorf("body: %w", err)
	}
	return to, subject, body, nil
}

func (nt Notify) postEvent(ctx context.Context, run *workflow.Run, target, event string, approval *ApprovalEvent) (bool, int, string) {
	if err := callback.CheckURL(target, nt.AllowPrivate); err != nil {
		run.Log.Warn("notify webhook refused", "url", redact.URL(target), "err", err)
		return false, 0, err.Error()
	}
	ev := Event{
		Type: event, RequestID: run.RequestID, InstanceID: run.InstanceID,
		Template: run.Env.Request.Template, CommonName: run.Env.CSR.CommonName,
		Requester: run.Env.Requester.Name, Approval: approval,
	}
	if run.Env.Certificate.ID != 0 {
		c := run.Env.Certificate
		ev.Certificate = &c
	}
	body, _ := json.Marshal(ev)
	res := nt.Webhooks.Post(ctx, target, messageID(run, event), body)
	if !res.OK() {
		run.Log.Warn("notify webhook failed", "url", redact.URL(target), "status", res.Status, "err", res.Err)
		return false, res.Status, res.Err.Error()
	}
	return true, res.Status, ""
}

// sendEmail sends and reports the outcome as outputs; a failure is logged,
// never returned. Send checks the evaluated recipients and subject (a line
// break is refused: header injection), and its errors hold no password.
func (nt Notify) sendEmail(ctx context.Context, run *workflow.Run, to []string, subject, body, event string) (bool, string) {
	err := errors.New("email: no SMTP server is configured (smtp.addr)")
	if nt.Mailer != nil {
		err = nt.Mailer.Send(ctx, to, subject, body, messageID(run, event)+"@certflow")
	}
	if err != nil {
		run.Log.Warn("notify email failed", "recipients", len(to), "err", err)
		return false, err.Error()
	}
	run.Log.Info("notify email sent", "recipients", len(to))
	return true, ""
}

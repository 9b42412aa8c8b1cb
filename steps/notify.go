package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// notify tells people and systems. `log` writes a line to certflow's log;
// `webhook` POSTs a signed (Standard Webhooks) JSON event. A failed webhook
// does not fail the request: the outcome is recorded in the step's outputs
// (steps.<id>.delivered, steps.<id>.error).
//
//	uses: notify
//	with:
//	  log: "issued ${{ certificate.SerialNumber }} for ${{ csr.CommonName }}"
//	  webhook: https://hooks.example.com/pki
//	  event: certificate.issued
type notifyWith struct {
	Log     yaml.Node `yaml:"log"`
	Webhook yaml.Node `yaml:"webhook"`
	Event   string    `yaml:"event"`
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
}

func (d *Deps) buildNotify(spec *workflow.Spec) (workflow.Step, error) {
	var w notifyWith
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	var logT, hookT *workflow.Template
	var err error
	if w.Log.Kind != 0 {
		if logT, err = spec.Template(w.Log.Value, &w.Log); err != nil {
			return nil, err
		}
	}
	if w.Webhook.Kind != 0 {
		if hookT, err = spec.Template(w.Webhook.Value, &w.Webhook); err != nil {
			return nil, err
		}
		if hookT.IsLiteral() {
			if err := callback.CheckURL(hookT.Source, true); err != nil {
				return nil, spec.Errorf(&w.Webhook, "webhook: %v", err)
			}
		}
	}
	if logT == nil && hookT == nil {
		return nil, spec.Errorf(spec.With, "notify needs at least one of log and webhook")
	}
	event := w.Event
	if event == "" {
		event = "certificate." + spec.Trigger
	}
	return stepFunc(func(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
		out := map[string]any{}
		if logT != nil {
			msg, err := logT.String(run.Env)
			if err != nil {
				return workflow.Result{}, workflow.Permanent(fmt.Errorf("log: %w", err))
			}
			run.Log.Info(msg, "event", event)
			out["logged"] = msg
		}
		if hookT != nil {
			target, err := hookT.String(run.Env)
			if err != nil {
				return workflow.Result{}, workflow.Permanent(fmt.Errorf("webhook: %w", err))
			}
			out["delivered"], out["status"], out["error"] = d.postEvent(ctx, run, target, event)
		}
		return workflow.Result{Outputs: out}, nil
	}), nil
}

func (d *Deps) postEvent(ctx context.Context, run *workflow.Run, target, event string) (bool, int, string) {
	if err := callback.CheckURL(target, d.Config.Callbacks.AllowPrivate); err != nil {
		run.Log.Warn("notify webhook refused", "err", err)
		return false, 0, err.Error()
	}
	ev := Event{
		Type: event, RequestID: run.RequestID, InstanceID: run.InstanceID,
		Template: run.Env.Request.Template, CommonName: run.Env.CSR.CommonName,
		Requester: run.Env.Requester.Name,
	}
	if run.Env.Certificate.ID != 0 {
		c := run.Env.Certificate
		ev.Certificate = &c
	}
	body, _ := json.Marshal(ev)
	// Stable per request and step: a re-run after a crash re-sends with the
	// same id, so receivers can de-duplicate.
	id := "certflow-" + strconv.FormatInt(run.RequestID, 10) + "-" + run.StepID
	res := d.Webhooks.Post(ctx, target, id, body)
	if !res.OK() {
		run.Log.Warn("notify webhook failed", "status", res.Status, "err", res.Err)
		return false, res.Status, res.Err.Error()
	}
	return true, res.Status, ""
}

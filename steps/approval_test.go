package steps_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/workflow"
)

func TestApprovalStepLoads(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		with []string
		err  string // "" means it loads
		line int
	}{
		{name: "all defaults", with: []string{`      quorum: 1`}},
		{name: "the full form", with: []string{`      roles: [pki-approvers, secops]`, `      quorum: 2`, `      timeout: 72h`, `      on_timeout: escalate`,
			`      escalate: {roles: [pki-leads], timeout: 24h}`, `      allow_self_approval: true`, `      notify: {log: "waiting: ${{ csr.CommonName }}"}`}},
		{name: "a quorum of zero is the default", with: []string{`      quorum: 0`}},
		{name: "a negative quorum", with: []string{`      quorum: -1`}, err: "quorum: -1 is outside 1–20", line: 7},
		{name: "a quorum too large", with: []string{`      quorum: 21`}, err: "quorum: 21 is outside", line: 7},
		{name: "a role name with a space", with: []string{`      roles: ["pki approvers"]`}, err: `roles: "pki approvers" is not a role name`, line: 7},
		{name: "a timeout that is not a duration", with: []string{`      timeout: 3 days`}, err: `timeout: "3 days" is not a duration`, line: 7},
		{name: "a timeout under a second", with: []string{`      timeout: 10ms`}, err: "at least 1s", line: 7},
		{name: "an unknown on_timeout", with: []string{`      timeout: 1h`, `      on_timeout: approve`}, err: `on_timeout: "approve" (want deny or escalate)`, line: 8},
		{name: "on_timeout without a timeout", with: []string{`      on_timeout: deny`}, err: "on_timeout needs a timeout", line: 7},
		{name: "escalate without escalate:", with: []string{`      timeout: 1h`, `      on_timeout: escalate`}, err: "on_timeout: escalate needs escalate:", line: 8},
		{name: "escalate: without on_timeout: escalate", with: []string{`      timeout: 1h`, `      escalate: {roles: [x], timeout: 1h}`}, err: "escalate: only used with on_timeout: escalate", line: 8},
		{name: "escalate without roles", with: []string{`      timeout: 1h`, `      on_timeout: escalate`, `      escalate: {timeout: 1h}`}, err: "escalate.roles: required", line: 9},
		{name: "escalate without a timeout", with: []string{`      timeout: 1h`, `      on_timeout: escalate`, `      escalate: {roles: [x]}`}, err: "escalate.timeout: required", line: 9},
		{name: "notify with an event of its own", with: []string{`      notify: {log: hi, event: x}`}, err: "notify.event", line: 7},
		{name: "notify with no channel", with: []string{`      notify: {}`}, err: "notify needs at least one of log and webhook", line: 7},
		{name: "a misspelt field in notify", with: []string{`      notify: {log: "${{ csr.CN }}"}`}, err: "CN", line: 7},
		{name: "an unknown key", with: []string{`      approvers: [bob]`}, err: `unknown key "approvers"`, line: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lines := append([]string{`  - id: gate`, `    uses: approval`, `    with:`}, tt.with...)
			_, err := parse(defaultConfig(), oneStep(lines...)...)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			wantLoadError(t, err, tt.line, "gate", tt.err)
		})
	}
}

func TestApprovalStepSuspendsWithItsRulesAndTellsOnDecision(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	def := mustParse(t, cfg, oneStep(`  - id: gate`, `    uses: approval`, `    with:`,
		`      roles: [pki-approvers]`, `      quorum: 2`, `      timeout: 2h`, `      on_timeout: escalate`,
		`      escalate: {roles: [pki-leads], timeout: 30m}`,
		`      notify: {log: "approval for ${{ csr.CommonName }}"}`)...)
	env := envFor(t, cfg, workflow.Request{ID: 7, Template: "WebServer"}, newCSR(t, "P-256", "www.example.com"), nil)
	var log bytes.Buffer
	before := time.Now()
	res, err := runStep(t, def, "gate", env, &log)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	w := res.Suspend
	if w == nil {
		t.Fatalf("result %+v does not suspend", res)
	}
	if !slices.Equal(w.Roles, []string{"pki-approvers"}) || w.Quorum != 2 || w.AllowSelfApproval || w.OnTimeout != "escalate" {
		t.Errorf("wait %+v does not carry the step's rules", w)
	}
	if d := w.Deadline.Sub(w.Since); d != 2*time.Hour || w.Since.Before(before) {
		t.Errorf("deadline %s after %s, want 2h after the suspension", w.Deadline, w.Since)
	}
	if e := w.Escalation; e == nil || !slices.Equal(e.Roles, []string{"pki-leads"}) || e.Timeout != 30*time.Minute {
		t.Errorf("escalation %+v", e)
	}
	if !strings.Contains(log.String(), "approval for www.example.com") || !strings.Contains(log.String(), "event=approval.pending") {
		t.Errorf("log %q: want the notify line for approval.pending", log.String())
	}
	// The decision: Resume gives the outputs and tells the channels.
	log.Reset()
	w.Step, w.Verdict, w.Approvers = "gate", workflow.VerdictApproved, []string{"bob", "dave"}
	var step workflow.Resumer
	for _, sd := range def.Steps {
		if sd.ID == "gate" {
			step = sd.Step.(workflow.Resumer)
		}
	}
	out := step.Resume(context.Background(), &workflow.Run{RequestID: 7, StepID: "gate", Env: env, Log: slog.New(slog.NewTextHandler(&log, nil))}, w)
	if out.Outputs["approved"] != true || !slices.Equal(out.Outputs["approvers"].([]string), []string{"bob", "dave"}) || out.Outputs["verdict"] != "Approved" {
		t.Errorf("outputs %v", out.Outputs)
	}
	if !strings.Contains(log.String(), "event=approval.decided") {
		t.Errorf("log %q: want the notify line for approval.decided", log.String())
	}
}

func TestApprovalStepDefaultsToTheApproverRoleAndAQuorumOfOne(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	def := mustParse(t, cfg, oneStep(`  - id: gate`, `    uses: approval`)...)
	res, err := runStep(t, def, "gate", envFor(t, cfg, workflow.Request{ID: 7}, newCSR(t, "P-256", "x.example.com"), nil), nil)
	if err != nil || res.Suspend == nil {
		t.Fatalf("Run = %+v, %v", res, err)
	}
	if w := res.Suspend; !slices.Equal(w.Roles, []string{"approver"}) || w.Quorum != 1 || !w.Deadline.IsZero() || w.OnTimeout != "deny" {
		t.Errorf("wait %+v, want approver, quorum 1, no deadline", w)
	}
}

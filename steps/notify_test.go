package steps_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/certflow/certflow/workflow"
)

func TestNotifyStepLogOnly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		trigger   string
		with      []string
		wantLog   string
		wantEvent string
	}{
		{
			name:    "renders the log template and names the trigger's event",
			trigger: "enrollment",
			with: []string{
				`      log: "issued for ${{ csr.CommonName }} to ${{ requester.Name }}"`,
			},
			wantLog:   "issued for www.example.com to alice",
			wantEvent: "certificate.enrollment",
		},
		{
			name:    "a literal log line and an explicit event",
			trigger: "event:expiring",
			with: []string{
				`      log: certificate expiring`,
				`      event: certificate.expiring`,
			},
			wantLog:   "certificate expiring",
			wantEvent: "certificate.expiring",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := defaultConfig()
			lines := append([]string{"name: t", "trigger: " + tt.trigger, "steps:", `  - id: tell`, `    uses: notify`, `    with:`}, tt.with...)
			if tt.trigger == "enrollment" {
				lines = append(lines, `  - id: issue`, `    uses: issue`)
			}
			def := mustParse(t, cfg, lines...)
			var log bytes.Buffer
			res, err := runStep(t, def, "tell", envFor(t, cfg, workflow.Request{ID: 7, Template: "WebServer"}, newCSR(t, "P-256", "www.example.com"), nil), &log)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := res.Outputs["logged"]; got != tt.wantLog {
				t.Errorf("steps.tell.logged = %q, want %q", got, tt.wantLog)
			}
			if _, ok := res.Outputs["delivered"]; ok {
				t.Errorf("outputs %v report a delivery without a webhook", res.Outputs)
			}
			if len(res.Outputs) != 1 || len(res.Metadata) != 0 || res.Certificate != nil {
				t.Errorf("result = %+v, want only outputs.logged", res)
			}
			// The line waits for the checkpoint that carries the step.
			if log.Len() != 0 {
				t.Errorf("logged %q before the checkpoint", log.String())
			}
			if res.AfterSave == nil {
				t.Fatal("Result.AfterSave = nil, want the log line held back for the checkpoint")
			}
			res.AfterSave()
			line := log.String()
			if !strings.Contains(line, `msg="`+tt.wantLog+`"`) && !strings.Contains(line, "msg="+tt.wantLog) {
				t.Errorf("log = %q, want the message %q", line, tt.wantLog)
			}
			if !strings.Contains(line, "event="+tt.wantEvent) {
				t.Errorf("log = %q, want event=%s", line, tt.wantEvent)
			}
		})
	}
}

func TestNotifyStepLoads(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		with []string
		err  string // "" means it loads
		line int
	}{
		{name: "a templated webhook is checked only at run time", with: []string{`      webhook: "${{ request.CallbackUrl }}"`}},
		{name: "an https webhook", with: []string{`      webhook: https://hooks.example.com/pki`}},
		{name: "a private webhook is left to the run-time check", with: []string{`      webhook: http://127.0.0.1:8080/hook`}},
		{name: "log and webhook", with: []string{`      log: hi`, `      webhook: https://hooks.example.com/pki`}},
		{name: "neither log nor webhook", with: []string{`      event: certificate.issued`}, err: "notify needs at least one of log and webhook", line: 7},
		{name: "a webhook with a bad scheme", with: []string{`      webhook: ftp://hooks.example.com/pki`}, err: `webhook: scheme "ftp"`, line: 7},
		{name: "a webhook without a scheme", with: []string{`      webhook: hooks.example.com/pki`}, err: "webhook: scheme", line: 7},
		{name: "a webhook with user info", with: []string{`      webhook: https://user:pw@hooks.example.com/pki`}, err: "user info", line: 7},
		{name: "a webhook without a host", with: []string{`      webhook: "https:///pki"`}, err: "no host", line: 7},
		{name: "a misspelt field in the log", with: []string{`      log: "for ${{ csr.CN }}"`}, err: "CN", line: 7},
		{name: "an unterminated template in the webhook", with: []string{`      log: ok`, `      webhook: "https://${{ vars.host"`}, err: "unterminated ${{", line: 8},
		{name: "an unknown key", with: []string{`      log: hi`, `      url: https://hooks.example.com`}, err: `unknown key "url"`, line: 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lines := append([]string{`  - id: tell`, `    uses: notify`, `    with:`}, tt.with...)
			_, err := parse(defaultConfig(), oneStep(lines...)...)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			wantLoadError(t, err, tt.line, "tell", tt.err)
		})
	}
}

func TestNotifyStepWithoutWithIsALoadError(t *testing.T) {
	t.Parallel()
	_, err := parse(defaultConfig(), oneStep(`  - id: tell`, `    uses: notify`)...)
	wantLoadError(t, err, 4, "tell", "notify needs at least one of log and webhook")
}

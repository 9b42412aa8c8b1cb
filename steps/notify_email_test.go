package steps_test

import (
	"bytes"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"slices"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/notify"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

const smtpPassword = testutil.SMTPPassword

// parseWithMailer loads a definition with a mailer for smtp.
func parseWithMailer(t *testing.T, smtp config.SMTP, lines ...string) *workflow.Definition {
	t.Helper()
	cfg := defaultConfig()
	cfg.SMTP = smtp
	m, err := notify.NewMailer(smtp)
	if err != nil {
		t.Fatalf("NewMailer: %v", err)
	}
	types := steps.ForLint(cfg)
	types.Notify.Mailer = m
	def, err := workflow.Parse("def.yaml", []byte(strings.Join(lines, "\n")+"\n"), types.Catalog())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return def
}

func TestNotifyEmailSendsTheRenderedTemplates(t *testing.T) {
	t.Parallel()
	server := testutil.StartSMTPServer(t, testutil.SMTPOptions{})
	smtp := server.Config()
	def := parseWithMailer(t, smtp, afterLookup(
		`  - id: tell`,
		`    uses: notify`,
		`    with:`,
		`      email:`,
		`        to: ["${{ requester.Name }}@example.com", "${{ steps.lookup.owners }}", pki@example.com]`,
		`        subject: "certificate for ${{ csr.CommonName }}"`,
		`        body: |`,
		`          Template ${{ request.Template }}, requested by ${{ requester.Name }}.`,
		`          Grüße`,
	)...)
	env := envFor(t, defaultConfig(), workflow.Request{ID: 7, Template: "WebServer"}, newCSR(t, "P-256", "www.example.com"),
		map[string]map[string]any{"lookup": {"owners": []any{"web@example.com", "Ops <ops@example.com>"}}})
	res, err := runStep(t, def, "tell", env, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Outputs["email_sent"] != true || res.Outputs["email_error"] != "" {
		t.Fatalf("outputs %v, want email_sent and no email_error", res.Outputs)
	}
	msgs := server.Messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages delivered, want 1", len(msgs))
	}
	want := []string{"alice@example.com", "web@example.com", "ops@example.com", "pki@example.com"}
	if !slices.Equal(msgs[0].To, want) || msgs[0].From != "pki@example.com" {
		t.Errorf("envelope from %q to %q, want pki@example.com to %q", msgs[0].From, msgs[0].To, want)
	}
	msg, err := mail.ReadMessage(strings.NewReader(msgs[0].Data))
	if err != nil {
		t.Fatalf("received message does not parse: %v", err)
	}
	if got := msg.Header.Get("Subject"); got != "certificate for www.example.com" {
		t.Errorf("Subject = %q", got)
	}
	// runStep runs request 7's step "tell".
	if got := msg.Header.Get("Message-Id"); got != "<certflow-7-tell@certflow>" {
		t.Errorf("Message-ID = %q, want <certflow-7-tell@certflow>", got)
	}
	body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if got, want := strings.ReplaceAll(string(body), "\r\n", "\n"), "Template WebServer, requested by alice.\nGrüße\n"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
}

func TestNotifyEmailFailureIsRecordedNotFatal(t *testing.T) {
	t.Parallel()
	server := testutil.StartSMTPServer(t, testutil.SMTPOptions{})
	smtp := server.Config()
	wrong := smtp
	wrong.Password = smtpPassword + "-wrong"
	tests := []struct {
		name    string
		smtp    config.SMTP
		to      string
		wantErr string
	}{
		{name: "a refused password", smtp: wrong, to: "pki@example.com", wantErr: "auth"},
		{name: "a rendered recipient that is not an address", smtp: smtp, to: "${{ requester.Name }}", wantErr: `address "alice"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			def := parseWithMailer(t, tt.smtp, afterLookup(
				`  - id: tell`,
				`    uses: notify`,
				`    with:`,
				`      log: told`,
				`      email: {to: "`+tt.to+`", subject: hi, body: hello}`,
			)...)
			env := envFor(t, defaultConfig(), workflow.Request{ID: 7, Template: "WebServer"}, newCSR(t, "P-256", "www.example.com"), nil)
			var log bytes.Buffer
			res, err := runStep(t, def, "tell", env, &log)
			if err != nil {
				t.Fatalf("Run: %v, want the failure recorded, not returned", err)
			}
			errText, _ := res.Outputs["email_error"].(string)
			if res.Outputs["email_sent"] != false || !strings.Contains(errText, tt.wantErr) {
				t.Errorf("outputs %v, want email_sent false and an email_error containing %q", res.Outputs, tt.wantErr)
			}
			if res.Outputs["logged"] != "told" {
				t.Errorf("outputs %v: the log part did not run", res.Outputs)
			}
			if !strings.Contains(log.String(), "notify email failed") {
				t.Errorf("log = %q, want a warning", log.String())
			}
			if strings.Contains(errText+log.String(), smtpPassword) {
				t.Errorf("the password shows in the outputs or the log:\n%s\n%s", errText, log.String())
			}
		})
	}
	if msgs := server.Messages(t); len(msgs) != 0 {
		t.Errorf("%d messages delivered, want none", len(msgs))
	}
}

func TestNotifyEmailWithoutAMailerIsRecorded(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	cfg.SMTP.Addr, cfg.SMTP.From = "127.0.0.1:25", "pki@example.com"
	// Steps as for linting: no Mailer, as when smtp.ca_file could not be read.
	def := mustParse(t, cfg, oneStep(`  - id: tell`, `    uses: notify`, `    with: {email: {to: pki@example.com, subject: hi, body: hello}}`)...)
	res, err := runStep(t, def, "tell", envFor(t, cfg, workflow.Request{ID: 7}, newCSR(t, "P-256", "www.example.com"), nil), nil)
	if err != nil || res.Outputs["email_sent"] != false || !strings.Contains(res.Outputs["email_error"].(string), "smtp.addr") {
		t.Fatalf("Run: %v, outputs %v", err, res.Outputs)
	}
}

func TestNotifyEmailLoads(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		noSMTP bool
		email  []string // lines under `email:`
		err    string   // "" means it loads
		line   int
	}{
		{name: "literal and templated recipients", email: []string{`to: [pki@example.com, "Ops <ops@example.com>", "${{ requester.Name }}@example.com"]`, `subject: hi`, `body: hello`}},
		{name: "one recipient, not a list", email: []string{`to: pki@example.com`, `subject: hi`, `body: hello`}},
		{name: "no smtp.addr configured", noSMTP: true, email: []string{`to: pki@example.com`, `subject: hi`, `body: hello`}, err: "no SMTP server is configured (smtp.addr)", line: 8},
		{name: "a literal recipient that is not an address", email: []string{`to: [pki@example.com, pki]`, `subject: hi`, `body: hello`}, err: `email.to: address "pki"`, line: 8},
		{name: "no recipients", email: []string{`to: []`, `subject: hi`, `body: hello`}, err: "email.to: required", line: 8},
		{name: "a missing subject", email: []string{`to: pki@example.com`, `body: hello`}, err: "email.subject: required", line: 8},
		{name: "an empty body", email: []string{`to: pki@example.com`, `subject: hi`, `body: ""`}, err: "email.body: required", line: 8},
		{name: "a misspelt field in the subject", email: []string{`to: pki@example.com`, `subject: "for ${{ csr.CN }}"`, `body: hello`}, err: "CN", line: 9},
		{name: "an unknown key", email: []string{`to: pki@example.com`, `cc: ops@example.com`, `subject: hi`, `body: hello`}, err: `unknown key "cc"`, line: 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := defaultConfig()
			if !tt.noSMTP {
				cfg.SMTP.Addr, cfg.SMTP.From = "smtp.example.com:587", "pki@example.com"
			}
			lines := []string{`  - id: tell`, `    uses: notify`, `    with:`, `      email:`}
			for _, l := range tt.email {
				lines = append(lines, `        `+l)
			}
			_, err := parse(cfg, oneStep(lines...)...)
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

// TestNotifyAndIssueReportEveryError: a notify step with a bad log
// template, a bad recipient and no subject reports all three, and an
// issue step both its unknown authority and its bad validity, so lint
// shows every mistake at once rather than one per run.
func TestNotifyAndIssueReportEveryError(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	cfg.SMTP.Addr, cfg.SMTP.From = "smtp.example.com:587", "pki@example.com"
	_, err := parse(cfg, oneStep(`  - id: tell`, `    uses: notify`, `    with:`,
		`      log: "for ${{ csr.CN }}"`,
		`      email:`,
		`        to: [pki]`,
		`        body: hello`)...)
	if err == nil {
		t.Fatal("a notify step with three mistakes loaded")
	}
	for _, want := range []string{"def.yaml:7:", "CN", `def.yaml:9:`, `email.to: address "pki"`, "email.subject: required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the errors lack %q:\n%v", want, err)
		}
	}
	_, err = parse(cfg, "name: t", "trigger: enrollment", "steps:", `  - id: sign`, `    uses: issue`, `    with: {authority: Nope, validity: soon}`)
	if err == nil {
		t.Fatal("an issue step with two mistakes loaded")
	}
	for _, want := range []string{`authority: unknown certificate authority "Nope"`, `validity: "soon" is not a positive duration`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the errors lack %q:\n%v", want, err)
		}
	}
}

package steps_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/notify"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

const smtpPassword = "pw-Zq81xv0Lk" // distinctive: tests look for it in outputs and logs

// smtpServer starts internal/notify/testdata/smtpd (STARTTLS with a
// certificate from a fresh CA, AUTH PLAIN for certflow/smtpPassword) on a
// free port, and returns the SMTP configuration that reaches it and a
// function listing what it received. It is killed when the test ends.
func smtpServer(t *testing.T) (config.SMTP, func() []receivedMail) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "smtpd")
	if out, err := exec.Command("go", "build", "-o", bin, "../internal/notify/testdata/smtpd").CombinedOutput(); err != nil {
		t.Fatalf("build smtpd: %v\n%s", err, out)
	}
	caFile, certFile, keyFile := smtpCerts(t, dir)
	mailDir := filepath.Join(dir, "mail")
	if err := os.Mkdir(mailDir, 0o700); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t)))
	cmd := exec.Command(bin, "-addr", addr, "-dir", mailDir, "-cert", certFile, "-key", keyFile,
		"-tls", "starttls", "-user", "certflow", "-pass", smtpPassword)
	var stderr testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("smtpd output:\n%s", stderr.String())
		}
	})
	for deadline := time.Now().Add(3 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("smtpd exited: %s", stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtpd does not accept connections on %s: %v", addr, err)
		}
	}
	cfg := config.SMTP{
		Addr: addr, From: "certflow <pki@example.com>", Username: "certflow", Password: smtpPassword,
		TLS: "starttls", Timeout: 5 * time.Second, CAFile: caFile,
	}
	return cfg, func() []receivedMail {
		files, _ := filepath.Glob(filepath.Join(mailDir, "msg-*.json"))
		slices.Sort(files)
		var out []receivedMail
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var m receivedMail
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out = append(out, m)
		}
		return out
	}
}

// receivedMail is what smtpd wrote for one message.
type receivedMail struct {
	From string   `json:"from"`
	To   []string `json:"to"`
	Data string   `json:"data"`
}

// smtpCerts writes a CA and a server certificate for 127.0.0.1 signed by
// it to dir.
func smtpCerts(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtpd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for file, block := range map[string]*pem.Block{
		caFile: {Type: "CERTIFICATE", Bytes: caDER}, certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: pkcs8},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// parseWithMailer loads a definition with a mailer for smtp.
func parseWithMailer(t *testing.T, smtp config.SMTP, lines ...string) *workflow.Definition {
	t.Helper()
	cfg := defaultConfig()
	cfg.SMTP = smtp
	m, err := notify.NewMailer(smtp)
	if err != nil {
		t.Fatalf("NewMailer: %v", err)
	}
	def, err := workflow.Parse("def.yaml", []byte(strings.Join(lines, "\n")+"\n"), steps.Catalog(&steps.Deps{Config: cfg, Mailer: m}))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return def
}

func TestNotifyEmailSendsTheRenderedTemplates(t *testing.T) {
	t.Parallel()
	smtp, received := smtpServer(t)
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
	msgs := received()
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
	smtp, received := smtpServer(t)
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
		{name: "a rendered recipient that injects a header", smtp: smtp, to: "${{ steps.lookup.to }}", wantErr: "line break"},
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
			env := envFor(t, defaultConfig(), workflow.Request{ID: 7, Template: "WebServer"}, newCSR(t, "P-256", "www.example.com"),
				map[string]map[string]any{"lookup": {"to": "a@example.com\r\nBcc: victim@example.com"}})
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
	if msgs := received(); len(msgs) != 0 {
		t.Errorf("%d messages delivered, want none", len(msgs))
	}
}

func TestNotifyEmailWithoutAMailerIsRecorded(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	cfg.SMTP.Addr, cfg.SMTP.From = "127.0.0.1:25", "pki@example.com"
	// Deps as for linting: no Mailer, as when smtp.ca_file could not be read.
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

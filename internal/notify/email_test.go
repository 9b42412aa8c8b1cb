package notify_test

import (
	"cmp"
	"context"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	// Only testdata/smtpd uses go-smtp, and `go mod tidy` does not look
	// into testdata: this import keeps the module in go.mod.
	_ "github.com/emersion/go-smtp"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/notify"
	"github.com/certflow/certflow/internal/testutil"
)

const (
	testUser     = testutil.SMTPUser
	testPassword = testutil.SMTPPassword
)

// startSMTPD starts testdata/smtpd in -tls mode (or -stall); see
// testutil.StartSMTPServer.
func startSMTPD(t *testing.T, mode string, stall bool) *testutil.SMTPServer {
	t.Helper()
	return testutil.StartSMTPServer(t, testutil.SMTPOptions{TLS: mode, Stall: stall})
}

func newMailer(t *testing.T, cfg config.SMTP) *notify.Mailer {
	t.Helper()
	m, err := notify.NewMailer(cfg)
	if err != nil {
		t.Fatalf("NewMailer: %v", err)
	}
	return m
}

// parse reads a received message and decodes its quoted-printable body.
func parse(t *testing.T, m testutil.SMTPMessage) (*mail.Message, string) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(m.Data))
	if err != nil {
		t.Fatalf("received message does not parse: %v\n%s", err, m.Data)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatalf("body is not quoted-printable: %v\n%s", err, m.Data)
	}
	return msg, strings.ReplaceAll(string(body), "\r\n", "\n")
}

func TestSendDelivers(t *testing.T) {
	t.Parallel()
	// A line with a lone dot would end DATA early without dot-stuffing; the
	// long line needs quoted-printable soft breaks.
	body := "Your certificate for www.example.com is ready.\n.\n..leading dots\n" +
		strings.Repeat("0123456789", 12) + "\nGrüße, certflow\n"
	for _, mode := range []string{"starttls", "implicit", "none"} {
		t.Run("over "+mode+", with AUTH PLAIN", func(t *testing.T) {
			t.Parallel()
			s := startSMTPD(t, mode, false)
			m := newMailer(t, s.Config())
			err := m.Send(context.Background(), []string{"Alice <alice@example.com>", "bob@example.com"},
				"certificate issued", body, "certflow-7-tell@certflow")
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			msgs := s.Messages(t)
			if len(msgs) != 1 {
				t.Fatalf("%d messages delivered, want 1", len(msgs))
			}
			got := msgs[0]
			if got.From != "pki@example.com" || !slices.Equal(got.To, []string{"alice@example.com", "bob@example.com"}) {
				t.Errorf("envelope from %q to %q", got.From, got.To)
			}
			if wantTLS := mode != "none"; got.TLS != wantTLS || got.User != testUser {
				t.Errorf("message came with tls=%v user=%q, want tls=%v user=%q", got.TLS, got.User, wantTLS, testUser)
			}
			auths := s.Auths(t)
			if len(auths) != 1 || !auths[0].OK || auths[0].Mechanism != "PLAIN" || auths[0].TLS != (mode != "none") {
				t.Errorf("AUTH attempts %+v, want one PLAIN that succeeded (over TLS unless tls=none)", auths)
			}
			msg, text := parse(t, got)
			h := msg.Header
			for name, want := range map[string]string{
				"From":                      `"certflow" <pki@example.com>`,
				"Subject":                   "certificate issued",
				"Message-Id":                "<certflow-7-tell@certflow>",
				"Mime-Version":              "1.0",
				"Content-Type":              "text/plain; charset=utf-8",
				"Content-Transfer-Encoding": "quoted-printable",
			} {
				if h.Get(name) != want {
					t.Errorf("header %s = %q, want %q", name, h.Get(name), want)
				}
			}
			to, err := h.AddressList("To")
			if err != nil || len(to) != 2 || to[0].Name != "Alice" || to[0].Address != "alice@example.com" || to[1].Address != "bob@example.com" {
				t.Errorf("To = %q (%v)", h.Get("To"), err)
			}
			if d, err := h.Date(); err != nil || time.Since(d).Abs() > time.Minute {
				t.Errorf("Date = %q (%v)", h.Get("Date"), err)
			}
			if text != body {
				t.Errorf("body decodes to\n%q\nwant\n%q", text, body)
			}
			for line := range strings.Lines(got.Data) {
				if len(line) > 78 {
					t.Errorf("line of %d bytes on the wire: %q", len(line), line)
				}
			}
		})
	}
}

func TestSendEncodesNonASCIIHeaders(t *testing.T) {
	t.Parallel()
	s := startSMTPD(t, "starttls", false)
	m := newMailer(t, s.Config())
	subject := "Zertifikat für www.bücher.example läuft ab – bitte erneuern ✓ " + strings.Repeat("é", 40)
	if err := m.Send(context.Background(), []string{"Jürgen Müller <j@example.com>"}, subject, "Grüße", "id-1@certflow"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs := s.Messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages delivered, want 1", len(msgs))
	}
	for i, c := range []byte(msgs[0].Data) {
		if c >= 0x80 {
			t.Fatalf("byte %d of the message is not ASCII:\n%s", i, msgs[0].Data)
		}
	}
	msg, text := parse(t, msgs[0])
	dec := new(mime.WordDecoder)
	if got, err := dec.DecodeHeader(msg.Header.Get("Subject")); err != nil || got != subject {
		t.Errorf("Subject decodes to %q (%v), want %q", got, err, subject)
	}
	if to, err := msg.Header.AddressList("To"); err != nil || len(to) != 1 || to[0].Name != "Jürgen Müller" {
		t.Errorf("To = %q decodes to %v (%v)", msg.Header.Get("To"), to, err)
	}
	if text != "Grüße\n" { // a line break ends the data in any case
		t.Errorf("body decodes to %q", text)
	}
}

// TestSendKeepsAnEncodedNameOnItsLine: a display name written as an
// encoded word that decodes to a line break and a header is sent encoded
// again, so the header it holds never becomes one.
func TestSendKeepsAnEncodedNameOnItsLine(t *testing.T) {
	t.Parallel()
	s := startSMTPD(t, "starttls", false)
	m := newMailer(t, s.Config())
	if err := m.Send(context.Background(), []string{"=?utf-8?q?x=0D=0ABcc=3A_victim=40example=2Ecom?= <a@example.com>"}, "hi", "body", "id-1@certflow"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs := s.Messages(t)
	if len(msgs) != 1 || !slices.Equal(msgs[0].To, []string{"a@example.com"}) {
		t.Fatalf("messages %+v, want one to a@example.com", msgs)
	}
	msg, _ := parse(t, msgs[0])
	if len(msg.Header["Bcc"]) != 0 || len(msg.Header["To"]) != 1 {
		t.Fatalf("headers %v: the name became a header", msg.Header)
	}
	if to, err := msg.Header.AddressList("To"); err != nil || len(to) != 1 || to[0].Name != "x\r\nBcc: victim@example.com" || to[0].Address != "a@example.com" {
		t.Fatalf("To = %q parses as %v (%v)", msg.Header.Get("To"), to, err)
	}
}

func TestSendFailsSafely(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		server   string // smtpd -tls
		mutate   func(*config.SMTP)
		wantErr  string
		wantAuth []testutil.SMTPAuthEvent // attempts the server saw
	}{
		{
			name: "a wrong password is refused, and the error does not hold it", server: "starttls",
			mutate:   func(c *config.SMTP) { c.Password = testPassword + "-wrong" },
			wantErr:  "auth",
			wantAuth: []testutil.SMTPAuthEvent{{Mechanism: "PLAIN", TLS: true, User: testUser, OK: false}},
		},
		{
			name: "a server without STARTTLS gets neither credentials nor mail", server: "none",
			wantErr: "does not offer STARTTLS",
		},
		{
			name: "a server whose certificate is not trusted gets neither credentials nor mail", server: "starttls",
			mutate:  func(c *config.SMTP) { c.CAFile = "" },
			wantErr: "certificate",
		},
		{
			name: "an implicit-TLS client does not talk to a plain server", server: "none",
			mutate:  func(c *config.SMTP) { c.TLS = "implicit" },
			wantErr: "smtp 127.0.0.1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSMTPD(t, tt.server, false)
			cfg := s.Config()
			cfg.TLS = "starttls" // whatever the server does
			if tt.mutate != nil {
				tt.mutate(&cfg)
			}
			err := newMailer(t, cfg).Send(context.Background(), []string{"alice@example.com"}, "hi", "body", "id-1@certflow")
			if err == nil {
				t.Fatal("Send succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("error %q holds the password", err)
			}
			if msgs := s.Messages(t); len(msgs) != 0 {
				t.Errorf("%d messages delivered, want none", len(msgs))
			}
			if auths := s.Auths(t); !slices.Equal(auths, tt.wantAuth) {
				t.Errorf("AUTH attempts %+v, want %+v", auths, tt.wantAuth)
			}
		})
	}
}

func TestSendRefusesHeaderInjection(t *testing.T) {
	t.Parallel()
	s := startSMTPD(t, "starttls", false)
	m := newMailer(t, s.Config())
	tests := []struct {
		name           string
		to             []string
		subject, msgID string
		wantErr        string
	}{
		{name: "CR LF in the subject", subject: "hi\r\nBcc: victim@example.com", wantErr: "subject contains a line break"},
		{name: "a bare LF in the subject", subject: "hi\nBcc: victim@example.com", wantErr: "subject contains a line break"},
		{name: "CR LF in a recipient", to: []string{"alice@example.com\r\nBcc: victim@example.com"}, wantErr: "line break"},
		{name: "a recipient that is not an address", to: []string{"alice"}, wantErr: `address "alice"`},
		{name: "two addresses in one recipient", to: []string{"alice@example.com, victim@example.com"}, wantErr: "address"},
		{name: "no recipients", to: []string{}, wantErr: "no recipients"},
		{name: "a line break in the message id", msgID: "a@b\r\nBcc: victim@example.com", wantErr: "message id"},
		{name: "a NUL in the subject", subject: "hi\x00there", wantErr: "subject contains a control character"},
		{name: "a C1 control in the subject", subject: "hi\u0085Bcc: victim@example.com", wantErr: "subject contains a control character"},
		{name: "a non-ASCII address", to: []string{"jörg@example.com"}, wantErr: "not ASCII"},
		{name: "an encoded word in the name that decodes to a line break, then a bare LF", to: []string{"=?utf-8?q?x=0D=0A?= <a@example.com>\nBcc: victim@example.com"}, wantErr: "line break"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			to := tt.to
			if to == nil {
				to = []string{"alice@example.com"}
			}
			subject := cmp.Or(tt.subject, "hi")
			err := m.Send(context.Background(), to, subject, "body", cmp.Or(tt.msgID, "id-1@certflow"))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Send: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	if msgs, auths := s.Messages(t), s.Auths(t); len(msgs) != 0 || len(auths) != 0 {
		t.Errorf("the server saw %d messages and %d AUTH attempts, want none: nothing is sent", len(msgs), len(auths))
	}
}

func TestSendHonoursContextAndTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		timeout time.Duration
		ctx     func() (context.Context, context.CancelFunc)
		want    error // nil: any error
	}{
		{
			name: "ctx's deadline ends a stalled session", timeout: time.Minute,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 300*time.Millisecond)
			},
			want: context.DeadlineExceeded,
		},
		{
			name: "cancelling ctx ends a stalled session", timeout: time.Minute,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(300*time.Millisecond, cancel)
				return ctx, cancel
			},
			want: context.Canceled,
		},
		{
			name: "smtp.timeout ends a stalled session", timeout: 300 * time.Millisecond,
			ctx: func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSMTPD(t, "starttls", true)
			cfg := s.Config()
			cfg.Timeout = tt.timeout
			m := newMailer(t, cfg)
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			err := m.Send(ctx, []string{"alice@example.com"}, "hi", "body", "id-1@certflow")
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Send returned after %v", took)
			}
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("Send: %v, want an error (matching %v)", err, tt.want)
			}
		})
	}
}

func TestNewMailerRefusesACAFileWithoutCertificates(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := notify.NewMailer(config.SMTP{Addr: "127.0.0.1:25", From: "pki@example.com", TLS: "starttls", Timeout: time.Second, CAFile: file})
	if err == nil || !strings.Contains(err.Error(), "smtp.ca_file") {
		t.Fatalf("NewMailer: %v, want an smtp.ca_file error", err)
	}
}

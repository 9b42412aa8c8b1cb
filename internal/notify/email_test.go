package notify_test

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
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

	// Only testdata/smtpd uses go-smtp, and `go mod tidy` does not look
	// into testdata: this import keeps the module in go.mod.
	_ "github.com/emersion/go-smtp"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/notify"
	"github.com/certflow/certflow/internal/testutil"
)

// smtpdBin is testdata/smtpd, built once by TestMain.
var smtpdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "certflow-smtpd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	smtpdBin = filepath.Join(dir, "smtpd")
	if out, err := exec.Command("go", "build", "-o", smtpdBin, "./testdata/smtpd").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build testdata/smtpd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// smtpd is a running testdata/smtpd process.
type smtpd struct {
	addr, dir, caFile string
}

const (
	testUser     = "certflow"
	testPassword = "pw-Zq81xv0Lk" // distinctive: tests look for it in errors
	testFrom     = "certflow <pki@example.com>"
)

// startSMTPD starts testdata/smtpd on a free port with -tls mode (or
// -stall), a certificate for 127.0.0.1 from a fresh CA, and AUTH PLAIN
// for testUser/testPassword. It is killed when the test ends.
func startSMTPD(t *testing.T, mode string, stall bool) *smtpd {
	t.Helper()
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCerts(t, dir)
	s := &smtpd{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t))), dir: filepath.Join(dir, "mail"), caFile: caFile}
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(smtpdBin, "-addr", s.addr, "-dir", s.dir, "-cert", certFile, "-key", keyFile,
		"-tls", mode, "-user", testUser, "-pass", testPassword, "-stall="+strconv.FormatBool(stall))
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
		c, err := net.DialTimeout("tcp", s.addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return s
		}
		select {
		case <-exited:
			t.Fatalf("smtpd exited: %s", stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtpd does not accept connections on %s: %v", s.addr, err)
		}
	}
}

// writeCerts makes a CA and a server certificate for 127.0.0.1 and
// localhost signed by it, as PEM files in dir.
func writeCerts(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
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
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
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

// config is the client side of s, in mode.
func (s *smtpd) config(mode string) config.SMTP {
	return config.SMTP{
		Addr: s.addr, From: testFrom, Username: testUser, Password: testPassword,
		TLS: mode, Timeout: 5 * time.Second, CAFile: s.caFile,
	}
}

func (s *smtpd) mailer(t *testing.T, cfg config.SMTP) *notify.Mailer {
	t.Helper()
	m, err := notify.NewMailer(cfg)
	if err != nil {
		t.Fatalf("NewMailer: %v", err)
	}
	return m
}

// received is what smtpd wrote for one message.
type received struct {
	From string   `json:"from"`
	To   []string `json:"to"`
	TLS  bool     `json:"tls"`
	User string   `json:"user"`
	Data string   `json:"data"`
}

type authEvent struct {
	Mechanism string `json:"mechanism"`
	TLS       bool   `json:"tls"`
	User      string `json:"user"`
	OK        bool   `json:"ok"`
}

func (s *smtpd) messages(t *testing.T) []received {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(s.dir, "msg-*.json"))
	slices.Sort(files)
	var out []received
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m received
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, m)
	}
	return out
}

func (s *smtpd) auths(t *testing.T) []authEvent {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "auth.jsonl"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []authEvent
	for line := range strings.Lines(string(b)) {
		var ev authEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("auth.jsonl: %v", err)
		}
		out = append(out, ev)
	}
	return out
}

// parse reads a received message and decodes its quoted-printable body.
func parse(t *testing.T, m received) (*mail.Message, string) {
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
			m := s.mailer(t, s.config(mode))
			err := m.Send(context.Background(), []string{"Alice <alice@example.com>", "bob@example.com"},
				"certificate issued", body, "certflow-7-tell@certflow")
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			msgs := s.messages(t)
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
			auths := s.auths(t)
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
	m := s.mailer(t, s.config("starttls"))
	subject := "Zertifikat für www.bücher.example läuft ab – bitte erneuern ✓ " + strings.Repeat("é", 40)
	if err := m.Send(context.Background(), []string{"Jürgen Müller <j@example.com>"}, subject, "Grüße", "id-1@certflow"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs := s.messages(t)
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

func TestSendFailsSafely(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		server   string // smtpd -tls
		mutate   func(*config.SMTP)
		wantErr  string
		wantAuth []authEvent // attempts the server saw
	}{
		{
			name: "a wrong password is refused, and the error does not hold it", server: "starttls",
			mutate:   func(c *config.SMTP) { c.Password = testPassword + "-wrong" },
			wantErr:  "auth",
			wantAuth: []authEvent{{Mechanism: "PLAIN", TLS: true, User: testUser, OK: false}},
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
			cfg := s.config("starttls")
			if tt.mutate != nil {
				tt.mutate(&cfg)
			}
			err := s.mailer(t, cfg).Send(context.Background(), []string{"alice@example.com"}, "hi", "body", "id-1@certflow")
			if err == nil {
				t.Fatal("Send succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Errorf("error %q holds the password", err)
			}
			if msgs := s.messages(t); len(msgs) != 0 {
				t.Errorf("%d messages delivered, want none", len(msgs))
			}
			if auths := s.auths(t); !slices.Equal(auths, tt.wantAuth) {
				t.Errorf("AUTH attempts %+v, want %+v", auths, tt.wantAuth)
			}
		})
	}
}

func TestSendRefusesHeaderInjection(t *testing.T) {
	t.Parallel()
	s := startSMTPD(t, "starttls", false)
	m := s.mailer(t, s.config("starttls"))
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
	if msgs, auths := s.messages(t), s.auths(t); len(msgs) != 0 || len(auths) != 0 {
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
			cfg := s.config("starttls")
			cfg.Timeout = tt.timeout
			m := s.mailer(t, cfg)
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

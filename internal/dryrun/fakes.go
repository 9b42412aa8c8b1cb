package dryrun

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/pki"
)

// keySpec reads a case's key: "ECC P-256" (default), "RSA 2048", "Ed25519".
func keySpec(s string) (pki.KeySpec, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = "ECC P-256"
	}
	typ, arg, _ := strings.Cut(s, " ")
	arg = strings.TrimSpace(arg)
	bits, curve := 0, ""
	if n, err := strconv.Atoi(arg); err == nil {
		bits = n
	} else {
		curve = arg
	}
	spec, err := pki.ParseKeySpec(typ, bits, curve)
	if err != nil {
		return pki.KeySpec{}, fmt.Errorf("%q: %v (want e.g. \"ECC P-256\", \"RSA 2048\", \"Ed25519\")", s, err)
	}
	if spec.Type == "RSA" && spec.Bits > maxRSABits {
		// Generating one takes seconds: a dry run has no use for it.
		return pki.KeySpec{}, fmt.Errorf("%q: a test key has at most %d bits", s, maxRSABits)
	}
	return spec, nil
}

// maxRSABits bounds a test CSR's RSA key.
const maxRSABits = 4096

// keys caches one throwaway key per key spec: generating RSA 4096 keys
// for every case would be slow, and nothing depends on their being new.
var keys sync.Map // pki.KeySpec.String() → crypto.Signer

func throwawayKey(spec pki.KeySpec) (crypto.Signer, error) {
	if k, ok := keys.Load(spec.String()); ok {
		return k.(crypto.Signer), nil
	}
	k, err := spec.Generate()
	if err != nil {
		return nil, err
	}
	actual, _ := keys.LoadOrStore(spec.String(), k)
	return actual.(crypto.Signer), nil
}

// subjectName reads a case's subject (default CN=test.example.com).
func subjectName(s string) (pkix.Name, error) {
	if strings.TrimSpace(s) == "" {
		s = "CN=test.example.com"
	}
	return pki.ParseSubject(s)
}

// parseTime reads an RFC 3339 time ("" is the zero time).
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", s)
	}
	return t, nil
}

// memCA is a throwaway certificate authority held in memory: the issue
// step of a dry run signs with it, honouring the CSR and the template's
// profile as the configured CA would, and nothing is written anywhere.
type memCA struct {
	name string
	key  crypto.Signer
	cert *x509.Certificate
}

var memCAs sync.Map // name → *memCA

func newMemCA(name string) (*memCA, error) {
	if c, ok := memCAs.Load(name); ok {
		return c.(*memCA), nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name + " (dry run)", Organization: []string{"certflow test"}},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(100 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c, _ := memCAs.LoadOrStore(name, &memCA{name: name, key: key, cert: cert})
	return c.(*memCA), nil
}

func (c *memCA) Name() string { return c.name }

// Issue implements ca.Authority.
func (c *memCA) Issue(ctx context.Context, req *ca.Request) (*ca.Issued, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      req.Subject, RawSubject: req.RawSubject,
		NotBefore: now, NotAfter: now.Add(req.Validity),
		DNSNames: req.DNSNames, IPAddresses: req.IPAddresses, EmailAddresses: req.Emails, URIs: req.URIs,
		KeyUsage: req.KeyUsage, ExtKeyUsage: req.ExtKeyUsage, CRLDistributionPoints: req.CRLDistributionPoints,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, req.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("dry-run CA %s: %w", c.name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &ca.Issued{Leaf: leaf, Chain: [][]byte{der, c.cert.Raw}}, nil
}

// TestNotification is one message a run sends, as it would be sent.
type TestNotification struct {
	Step    string   `json:"step"`
	Channel string   `json:"channel"` // email, webhook or log
	Event   string   `json:"event,omitempty"`
	To      []string `json:"to,omitempty"`
	Subject string   `json:"subject,omitempty"`
	Body    string   `json:"body,omitempty"`
	URL     string   `json:"url,omitempty"`
	// Payload is a webhook's JSON body.
	Payload any `json:"payload,omitempty"`
	// Message is a log line.
	Message string `json:"message,omitempty"`
}

// TestHTTPCall is one call an http step makes, and the stubbed answer.
type TestHTTPCall struct {
	Step    string            `json:"step"`
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
	Status  int               `json:"status,omitempty"`
	Error   string            `json:"error,omitempty"`
}

// session is what one run records, reached through the context: the
// step types' services are shared by every run of a catalogue.
type session struct {
	c       *TestCase
	mu      sync.Mutex
	notes   []TestNotification
	calls   []TestHTTPCall
	actions []TestAction
	// problems are faults of the case, not of the definition (an http
	// step with no stubbed answer): each fails the case.
	problems []string
	// refused are decisions an approval refused.
	refused []string
	steps   int
}

type sessionKey struct{}
type stepKey struct{}

func sessionOf(ctx context.Context) *session {
	s, _ := ctx.Value(sessionKey{}).(*session)
	return s
}

func stepOf(ctx context.Context) string {
	s, _ := ctx.Value(stepKey{}).(string)
	return s
}

func (s *session) add(n TestNotification) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes = append(s.notes, n)
}

func (s *session) problem(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

func (s *session) refuse(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused = append(s.refused, fmt.Sprintf(format, args...))
}

// recorder stands in for the webhook sender, the mailer and the http
// step's transport: it records and answers, and sends nothing.
type recorder struct{}

var errNoSession = errors.New("dry run: no session (a bug)")

// Post implements steps.WebhookSender.
func (recorder) Post(ctx context.Context, target, id string, body []byte) callback.Delivery {
	s := sessionOf(ctx)
	if s == nil {
		return callback.Delivery{Err: errNoSession}
	}
	var payload map[string]any
	json.Unmarshal(body, &payload)
	event, _ := payload["type"].(string)
	s.add(TestNotification{Step: stepOf(ctx), Channel: "webhook", Event: event, URL: target, Payload: payload})
	return callback.Delivery{Status: http.StatusOK}
}

// Send implements steps.MailSender.
func (recorder) Send(ctx context.Context, to []string, subject, body, messageID string) error {
	s := sessionOf(ctx)
	if s == nil {
		return errNoSession
	}
	event := ""
	if i := strings.Index(messageID, "-approval."); i >= 0 {
		event = strings.TrimSuffix(messageID[i+1:], "@certflow")
	}
	s.add(TestNotification{Step: stepOf(ctx), Channel: "email", Event: event, To: slices.Clone(to), Subject: subject, Body: body})
	return nil
}

// RoundTrip answers an http step with its stub.
func (recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	s := sessionOf(ctx)
	if s == nil {
		return nil, errNoSession
	}
	step := stepOf(ctx)
	call := TestHTTPCall{Step: step, Method: req.Method, URL: req.URL.String()}
	for name := range req.Header {
		if call.Headers == nil {
			call.Headers = map[string]string{}
		}
		v := req.Header.Get(name)
		if strings.EqualFold(name, "Authorization") || strings.Contains(strings.ToLower(name), "token") || strings.Contains(strings.ToLower(name), "key") {
			v = "(redacted)"
		}
		call.Headers[name] = v
	}
	if req.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(req.Body, 64<<10))
		call.Body = string(b)
	}
	stub := s.c.HTTP[step]
	defer func() {
		s.mu.Lock()
		s.calls = append(s.calls, call)
		s.mu.Unlock()
	}()
	if stub.Error != "" {
		call.Error = stub.Error
		return nil, errors.New(stub.Error)
	}
	status := stub.Status
	if status == 0 {
		status = http.StatusOK
	}
	call.Status = status
	resp := &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Header: http.Header{}, Request: req, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	var body []byte
	switch b := stub.Body.(type) {
	case nil:
	case string:
		body = []byte(b)
		resp.Header.Set("Content-Type", "text/plain")
	default:
		var err error
		if body, err = json.Marshal(b); err != nil {
			s.problem("step %s: the stubbed answer's body is not JSON: %v", step, err)
			return nil, fmt.Errorf("dry run: the stubbed body is not JSON: %w", err)
		}
		resp.Header.Set("Content-Type", "application/json")
	}
	for k, v := range stub.Headers {
		resp.Header.Set(k, v)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

// logRecorder is the engine's logger in a dry run: it keeps the lines
// notify channels log (those with an "event" attribute) as
// notifications, and drops the rest.
type logRecorder struct {
	s     *session
	attrs []slog.Attr
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	n := TestNotification{Channel: "log", Message: r.Message}
	take := func(a slog.Attr) bool {
		switch a.Key {
		case "event":
			n.Event = a.Value.String()
		case "step":
			n.Step = a.Value.String()
		}
		return true
	}
	for _, a := range h.attrs {
		take(a)
	}
	r.Attrs(take)
	if n.Event != "" {
		h.s.add(n)
	}
	return nil
}

func (h *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logRecorder{s: h.s, attrs: append(slices.Clone(h.attrs), attrs...)}
}

func (h *logRecorder) WithGroup(string) slog.Handler { return h }

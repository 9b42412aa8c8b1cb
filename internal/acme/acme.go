// Package acme is certflow's ACME client (RFC 8555): a certificate
// authority of type acme, whose orders an external CA (Let's Encrypt,
// step-ca, a CA with external account binding) validates and signs. It
// implements ca.Orderer (place an order once, advance it on later runs,
// from any process), ca.RemoteRevoker and ca.RenewalAdvisor. JWS and
// nonces are lego's (github.com/go-acme/lego/v5/acme/api); the account
// key is sealed under the KEK in Redis, one account per CA and directory
// for all processes; http-01 answers come from Redis (HTTP01Handler), so
// whichever process the CA reaches answers; dns-01 records go through a
// lego DNS provider or an HTTP hook (Presenter).
package acme

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/acme/api"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/redact"
	"github.com/certflow/certflow/internal/store"
)

// Deps are what an ACME authority needs from the process.
type Deps struct {
	Store  *store.Store
	KEK    *pki.KEK
	Logger *slog.Logger
	// Version is certflow's version, for the user agent
	// ("certflow/<version>"); empty: "dev".
	Version string
	// Roots, when set, replaces the trust of the directory's TLS (the
	// CA's ca_bundle, else the system's roots).
	Roots *x509.CertPool
	// Presenter, when set, answers dns-01 challenges instead of the
	// configured provider or hook.
	Presenter Presenter
}

// Authority is one ACME CA: a ca.Orderer, ca.RemoteRevoker and
// ca.RenewalAdvisor. It is safe for concurrent use.
type Authority struct {
	name      string
	cfg       config.ACME
	st        *store.Store
	kek       *pki.KEK
	log       *slog.Logger
	ua        string
	transport *retryAfterTransport
	presenter Presenter

	mu   sync.Mutex
	core *api.Core // once the account is known
}

var (
	_ ca.Orderer        = (*Authority)(nil)
	_ ca.RemoteRevoker  = (*Authority)(nil)
	_ ca.RenewalAdvisor = (*Authority)(nil)
)

// Open prepares the ACME CA cfg (type acme). It reads the CA bundle and
// the EAB key file, and builds the dns-01 presenter, but does not reach
// the CA: the account is registered on first use.
func Open(cfg *config.CA, deps Deps) (*Authority, error) {
	if cfg == nil || !cfg.IsACME() || cfg.ACME == nil {
		return nil, errors.New("acme: not a CA of type acme")
	}
	if deps.Store == nil || deps.KEK == nil {
		return nil, fmt.Errorf("certificate_authorities %s: acme needs the store and the key-encryption key", cfg.Name)
	}
	if u, err := url.Parse(cfg.ACME.Directory); err != nil || u.Scheme != "https" {
		// lego's client speaks https only (RFC 8555 §6.1).
		return nil, fmt.Errorf("certificate_authorities %s: acme.directory: %q is not an https URL", cfg.Name, redact.URL(cfg.ACME.Directory))
	}
	a := &Authority{
		name: cfg.Name, cfg: *cfg.ACME, st: deps.Store, kek: deps.KEK,
		log: cmp.Or(deps.Logger, slog.Default()).With("ca", cfg.Name),
		ua:  "certflow/" + cmp.Or(deps.Version, "dev"),
	}
	roots := deps.Roots
	if roots == nil && a.cfg.CABundle != "" {
		pem, err := os.ReadFile(a.cfg.CABundle)
		if err != nil {
			return nil, fmt.Errorf("certificate_authorities %s: acme.ca_bundle: %w", cfg.Name, err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("certificate_authorities %s: acme.ca_bundle: %s holds no PEM certificate", cfg.Name, a.cfg.CABundle)
		}
	}
	dirURL, _ := url.Parse(cfg.ACME.Directory)
	a.transport = &retryAfterTransport{origin: strings.ToLower(dirURL.Host), base: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   a.cfg.Timeout,
		ResponseHeaderTimeout: a.cfg.Timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
	}}
	if a.cfg.EAB != nil {
		// Read now, so that a bad key is a start-up error naming the
		// field rather than every registration's.
		if _, err := a.eabKey(); err != nil {
			return nil, fmt.Errorf("certificate_authorities %s: %w", cfg.Name, err)
		}
	}
	if a.cfg.Challenge == config.ChallengeDNS01 {
		a.presenter = deps.Presenter
		if a.presenter == nil {
			p, err := NewPresenter(a.cfg.DNS, a.cfg.Timeout)
			if err != nil {
				return nil, fmt.Errorf("certificate_authorities %s: acme.dns: %w", cfg.Name, err)
			}
			a.presenter = p
		}
	}
	return a, nil
}

// Name is the CA's name.
func (a *Authority) Name() string { return a.name }

// ErrIssuesByOrder is Issue's answer: an ACME CA issues through Place and
// Advance (ca.Orderer), never in one blocking call.
var ErrIssuesByOrder = errors.New("acme: this certificate authority issues by order (Place, Advance), not synchronously")

// Issue refuses at once: the issue step uses the Orderer methods.
func (a *Authority) Issue(context.Context, *ca.Request) (*ca.Issued, error) {
	return nil, ErrIssuesByOrder
}

// httpClient is a client for one api.Core (lego wraps its transport, so
// each Core gets its own): each exchange bounded by acme.timeout, no
// redirect to another host.
func (a *Authority) httpClient() *http.Client {
	return &http.Client{
		Transport: a.transport,
		Timeout:   a.cfg.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("acme: too many redirects")
			}
			if !strings.EqualFold(req.URL.Host, via[0].URL.Host) {
				return fmt.Errorf("acme: redirect to another host (%s) refused", redact.URL(req.URL.String()))
			}
			return nil
		},
	}
}

// The Retry-After slot: a request's context may carry one; the transport
// stores the Retry-After of each response to a request made with it, so
// that after a lego call the caller reads what the CA last asked for.

type retryAfterKey struct{}

type retryAfterSlot struct {
	mu    sync.Mutex
	after time.Duration
}

func (s *retryAfterSlot) set(d time.Duration) {
	s.mu.Lock()
	s.after = d
	s.mu.Unlock()
}

func (s *retryAfterSlot) get() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.after
}

// withRetryAfter gives ctx a fresh slot.
func withRetryAfter(ctx context.Context) (context.Context, *retryAfterSlot) {
	s := &retryAfterSlot{}
	return context.WithValue(ctx, retryAfterKey{}, s), s
}

// retryAfterTransport fills the request's slot, or, for a request
// without one (lego fetches the directory with a context of its own),
// the transport's: the account setup, which alone makes such requests,
// reads it under the Authority's lock.
type retryAfterTransport struct {
	base      http.RoundTripper
	directory retryAfterSlot
	// origin is the directory's host: every URL the CA names (orders,
	// authorizations, challenges, certificates) must be on it, so that a
	// CA cannot point certflow's account-signed requests, and their
	// answers, at another host (an internal service, a metadata address).
	origin string
}

func (t *retryAfterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.origin != "" && (req.URL.Scheme != "https" || !strings.EqualFold(req.URL.Host, t.origin)) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("acme: the CA named %s, not on its directory's host %s: refused", redact.URL(req.URL.String()), t.origin)
	}
	resp, err := t.base.RoundTrip(req)
	if err == nil {
		s, ok := req.Context().Value(retryAfterKey{}).(*retryAfterSlot)
		if !ok {
			s = &t.directory
		}
		s.set(parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()))
		resp.Body = &boundedBody{r: io.LimitReader(resp.Body, maxResponse+1), c: resp.Body}
	}
	return resp, err
}

// maxResponse bounds what certflow reads of one CA response (a problem,
// an order, a certificate chain).
const maxResponse = 1 << 20

// boundedBody fails a read past maxResponse.
type boundedBody struct {
	r io.Reader
	c io.Closer
	n int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if b.n += int64(n); b.n > maxResponse {
		return n, fmt.Errorf("acme: the CA's response is larger than %d bytes", maxResponse)
	}
	return n, err
}

func (b *boundedBody) Close() error { return b.c.Close() }

// maxRetryAfter bounds what a CA may ask for: a day.
const maxRetryAfter = 24 * time.Hour

// parseRetryAfter reads a Retry-After value (delay-seconds or an
// HTTP-date; RFC 9110 §10.2.3): zero when absent or unreadable, at most
// maxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// problem converts lego's problem document.
func problem(p *legoacme.ProblemDetails) *ca.Problem {
	out := &ca.Problem{Type: p.Type, Detail: p.Detail, Status: p.HTTPStatus}
	for _, s := range p.SubProblems {
		out.Subproblems = append(out.Subproblems, ca.Subproblem{Type: s.Type, Detail: s.Detail, Identifier: s.Identifier.Value})
	}
	return out
}

// mapErr turns what lego returned into the Orderer's three kinds of
// error: a *ca.RetryAfterError for a rate limit (or any failure the CA
// named a Retry-After for), a *ca.Problem for the CA's 4xx problem
// document, anything else (unreachable, 5xx, a nonce rejected past lego's
// retries) plain. what says what was being done.
func (a *Authority) mapErr(what string, err error, slot *retryAfterSlot) error {
	if err == nil {
		return nil
	}
	after := time.Duration(0)
	if slot != nil {
		after = slot.get()
	}
	if rl, ok := errors.AsType[*legoacme.RateLimitedError](err); ok {
		return &ca.RetryAfterError{After: cmp.Or(rl.RetryAfter, after, a.cfg.MaxPollInterval), Err: problem(rl.ProblemDetails)}
	}
	if _, ok := errors.AsType[*legoacme.NonceError](err); !ok {
		if p, ok := errors.AsType[*legoacme.ProblemDetails](err); ok && p.HTTPStatus >= 400 && p.HTTPStatus < 500 &&
			p.Type != legoacme.ServerInternalErrorType && p.HTTPStatus != http.StatusTooManyRequests {
			return problem(p)
		}
	}
	plain := fmt.Errorf("acme %s: %s: %w", a.name, what, redact.Error(err))
	if after > 0 {
		return &ca.RetryAfterError{After: after, Err: plain}
	}
	return plain
}

package acme

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-acme/lego/v5/providers/dns/cloudflare"
	"github.com/go-acme/lego/v5/providers/dns/dnsupdate"
	"github.com/go-acme/lego/v5/providers/dns/exec"
	"github.com/go-acme/lego/v5/providers/dns/httpreq"
	"github.com/go-acme/lego/v5/providers/dns/route53"

	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/redact"
	"github.com/certflow/certflow/internal/secretfile"
)

// Presenter puts up and takes down dns-01 TXT records: domain is the name
// being validated ("*.example.com" for a wildcard), keyAuth the
// challenge's key authorization (the record's value is the base64url
// SHA-256 of it). It is lego's challenge.Provider, so lego's DNS
// providers are Presenters.
type Presenter interface {
	Present(ctx context.Context, domain, token, keyAuth string) error
	CleanUp(ctx context.Context, domain, token, keyAuth string) error
}

// Providers are the lego DNS providers certflow includes, by the name
// acme.dns.provider gives; each reads its credentials from its own
// environment variables (or their _FILE forms), as lego documents.
var Providers = map[string]func() (Presenter, error){
	"dnsupdate":  func() (Presenter, error) { return dnsupdate.NewDNSProvider() },
	"rfc2136":    func() (Presenter, error) { return dnsupdate.NewDNSProvider() },
	"httpreq":    func() (Presenter, error) { return httpreq.NewDNSProvider() },
	"exec":       func() (Presenter, error) { return exec.NewDNSProvider() },
	"cloudflare": func() (Presenter, error) { return cloudflare.NewDNSProvider() },
	"route53":    func() (Presenter, error) { return route53.NewDNSProvider() },
}

// NewPresenter builds the presenter acme.dns configures: a lego provider
// by name, or the HTTP hook (each call bounded by timeout).
func NewPresenter(cfg config.ACMEDNS, timeout time.Duration) (Presenter, error) {
	if cfg.Hook != nil {
		return NewHook(*cfg.Hook, timeout)
	}
	newProvider, ok := Providers[cfg.Provider]
	if !ok {
		names := make([]string, 0, len(Providers))
		for n := range Providers {
			names = append(names, n)
		}
		return nil, fmt.Errorf("provider %q is not one certflow includes (%s)", cfg.Provider, strings.Join(sorted(names), ", "))
	}
	p, err := newProvider()
	if err != nil {
		// lego names the missing variables, never their values.
		return nil, fmt.Errorf("provider %s: %w", cfg.Provider, err)
	}
	return p, nil
}

// TXTRecord is the dns-01 record answering keyAuth for domain: its name
// (with the final dot) and value.
func TXTRecord(domain, keyAuth string) (fqdn, value string) {
	sum := sha256.Sum256([]byte(keyAuth))
	return "_acme-challenge." + strings.TrimPrefix(domain, "*.") + ".", base64.RawURLEncoding.EncodeToString(sum[:])
}

// Hook presents dns-01 records with HTTP calls (config.DNSHook): a POST
// of the call's body with {fqdn}, {value} and {domain} replaced, each
// JSON-string escaped. It reaches private addresses only when
// allow_private says so (checked when dialled, after resolution).
type Hook struct {
	cfg     config.DNSHook
	headers http.Header
	client  *http.Client
}

// NewHook checks the hook's URLs and reads its header files.
func NewHook(cfg config.DNSHook, timeout time.Duration) (*Hook, error) {
	for name, c := range map[string]config.DNSHookCall{"present": cfg.Present, "cleanup": cfg.Cleanup} {
		if err := callback.CheckURL(c.URL, cfg.AllowPrivate); err != nil {
			return nil, fmt.Errorf("hook.%s.url: %s: %w", name, redact.URL(c.URL), err)
		}
	}
	h := &Hook{cfg: cfg, headers: http.Header{}, client: callback.NewClient(cfg.AllowPrivate, timeout)}
	for k, v := range cfg.Headers {
		h.headers.Set(k, v)
	}
	for k, path := range cfg.HeaderFiles {
		b, err := secretfile.Read(path)
		if err != nil {
			return nil, fmt.Errorf("hook.header_files.%s: %w", k, err)
		}
		h.headers.Set(k, strings.TrimSpace(string(b)))
	}
	return h, nil
}

// Present calls the present URL.
func (h *Hook) Present(ctx context.Context, domain, _, keyAuth string) error {
	return h.call(ctx, "present", h.cfg.Present, domain, keyAuth)
}

// CleanUp calls the cleanup URL.
func (h *Hook) CleanUp(ctx context.Context, domain, _, keyAuth string) error {
	return h.call(ctx, "cleanup", h.cfg.Cleanup, domain, keyAuth)
}

func (h *Hook) call(ctx context.Context, what string, c config.DNSHookCall, domain, keyAuth string) error {
	fqdn, value := TXTRecord(domain, keyAuth)
	body := strings.NewReplacer(
		"{fqdn}", jsonEscape(fqdn),
		"{value}", jsonEscape(value),
		"{domain}", jsonEscape(strings.TrimPrefix(domain, "*.")),
	).Replace(c.Body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewBufferString(body))
	if err != nil {
		return fmt.Errorf("dns hook %s: %w", what, redact.Error(err))
	}
	for k, v := range h.headers {
		req.Header[k] = v
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("dns hook %s: %w", what, redact.Error(err))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("dns hook %s: %s answered %d", what, redact.URL(c.URL), resp.StatusCode)
	}
	return nil
}

// jsonEscape is s as the inside of a JSON string.
func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

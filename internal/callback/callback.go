// Package callback delivers results and notifications to HTTP endpoints the
// way Standard Webhooks specifies (webhook-id, webhook-timestamp,
// webhook-signature), through a client that refuses private addresses unless
// configured to allow them.
package callback

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/certflow/certflow/internal/redact"
	"github.com/certflow/certflow/internal/secretfile"
)

// Secret is a Standard Webhooks signing secret. The key sits behind a
// pointer so that no fmt verb (%v, %+v, %#v, nor a Secret inside another
// struct) prints it.
type Secret struct{ key *[]byte }

// String keeps the secret out of logs.
func (Secret) String() string { return "webhook-secret(redacted)" }

// GoString keeps the secret out of %#v.
func (Secret) GoString() string { return "callback.Secret(redacted)" }

// ParseSecret accepts "whsec_<base64>" or bare base64.
func ParseSecret(s string) (Secret, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "whsec_"))
	if err != nil || len(key) < 16 {
		return Secret{}, errors.New("webhook signing secret: want whsec_ followed by base64 of at least 16 bytes")
	}
	return Secret{key: &key}, nil
}

// LoadOrCreateSecret reads the secret file at path, creating it (mode
// 0600) with 32 random bytes when it does not exist.
func LoadOrCreateSecret(path string) (Secret, bool, error) {
	text, created, err := secretfile.LoadOrCreate(path, func() ([]byte, error) {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		return []byte("whsec_" + base64.StdEncoding.EncodeToString(raw) + "\n"), nil
	})
	if err != nil {
		return Secret{}, false, fmt.Errorf("webhook signing secret: %w", err)
	}
	s, err := ParseSecret(string(text))
	return s, created, err
}

// Sign returns the webhook-signature header value for one delivery:
// "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)).
func (s Secret) Sign(id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, *s.key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Verify reports whether header, a webhook-signature value (one or more
// space-separated "v1,<base64>" signatures, as a sender rotating its key
// sends), holds the signature of this delivery under s: the same
// computation as Sign, compared in constant time. Signatures of other
// versions are ignored. A zero Secret verifies nothing.
func (s Secret) Verify(id string, timestamp int64, body []byte, header string) bool {
	if s.key == nil {
		return false
	}
	want := []byte(s.Sign(id, timestamp, body))
	ok := false
	for i, sig := range strings.Fields(header) {
		if i >= maxSignatures {
			break
		}
		if !strings.HasPrefix(sig, "v1,") {
			continue
		}
		// No early exit: every candidate costs one comparison.
		ok = subtle.ConstantTimeCompare([]byte(sig), want) == 1 || ok
	}
	return ok
}

// maxSignatures bounds how many signatures of one header Verify looks at.
const maxSignatures = 8

// ErrForbiddenAddress is returned for targets in ranges not allowed.
var ErrForbiddenAddress = errors.New("address is in a private or reserved range")

// CheckURL validates a callback URL's shape: absolute http(s), a host, no
// user info; an IP-literal host must be public unless allowPrivate. Host
// names are checked again when dialled (a name may resolve anywhere).
func CheckURL(raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("no host")
	}
	if u.User != nil {
		return fmt.Errorf("user info is not allowed in the URL")
	}
	if len(raw) > 2048 {
		return fmt.Errorf("longer than 2048 characters")
	}
	// "localhost." resolves like "localhost": compare without the root dot.
	host := strings.TrimSuffix(u.Hostname(), ".")
	if allowPrivate {
		return nil
	}
	if addr, err := netip.ParseAddr(host); err == nil && !publicAddr(addr) {
		return fmt.Errorf("%s: %w", host, ErrForbiddenAddress)
	}
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return fmt.Errorf("%s: %w", host, ErrForbiddenAddress)
	}
	return nil
}

// publicAddr reports whether addr is a globally routable unicast address.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() {
		return false
	}
	for _, p := range reserved {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

var reserved = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 can reach private IPv4
	netip.MustParsePrefix("2001:db8::/32"),
}

// Sender posts signed messages.
type Sender struct {
	secret Secret
	client *http.Client
}

// NewSender returns a sender whose connections are checked at dial time,
// after name resolution, so a DNS answer cannot smuggle in a private address.
func NewSender(secret Secret, allowPrivate bool, timeout time.Duration) *Sender {
	return &Sender{secret: secret, client: NewClient(allowPrivate, timeout)}
}

// NewClient returns an HTTP client for calls to addresses that come from
// configuration or requests: it refuses non-public addresses at dial time
// (unless allowPrivate), uses no proxy, and does not follow redirects.
func NewClient(allowPrivate bool, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: timeout}
	if !allowPrivate {
		dialer.Control = func(network, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			addr, err := netip.ParseAddr(host)
			if err != nil || !publicAddr(addr) {
				return fmt.Errorf("dial %s: %w", host, ErrForbiddenAddress)
			}
			return nil
		}
	}
	transport := &http.Transport{
		Proxy:                 nil, // a proxy would bypass the address check
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   4,
	}
	return &http.Client{
		Transport: transport,
		Timeout:   timeout,
		// 3xx counts as failure (Standard Webhooks); a redirect could also
		// lead to an address the dialer would refuse. Never follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Delivery is the outcome of one POST.
type Delivery struct {
	Status int
	// Err names the target only as redact.URL renders it: it is logged
	// and recorded on the request.
	Err error
}

// OK reports a 2xx answer.
func (d Delivery) OK() bool { return d.Err == nil && d.Status >= 200 && d.Status < 300 }

// Gone reports 410, which Standard Webhooks reads as "stop sending".
func (d Delivery) Gone() bool { return d.Status == http.StatusGone }

// Post signs body with message id and POSTs it as JSON to target.
func (s *Sender) Post(ctx context.Context, target, id string, body []byte) Delivery {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return Delivery{Err: redact.Error(err)}
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "certflow")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", s.secret.Sign(id, ts, body))
	resp, err := s.client.Do(req)
	if err != nil {
		return Delivery{Err: redact.Error(err)}
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	d := Delivery{Status: resp.StatusCode}
	if !d.OK() {
		d.Err = fmt.Errorf("answered %d", resp.StatusCode)
	}
	return d
}

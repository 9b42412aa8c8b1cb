package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/redact"
)

// oidcVerifier checks JWT access tokens against auth.oidc's issuer:
// go-oidc reads the issuer's discovery document and checks iss, aud, exp,
// nbf and the signature, with one of the allowed (asymmetric) algorithms,
// by a key of the issuer's JWKS (keySet, which follows key rotation).
//
// Discovery is lazy: certflow starts whether or not the issuer answers.
// Until it has answered once, a JWT is answered 503, and the discovery is
// tried again at most every discoveryRetry, so an identity provider that
// is briefly down delays token logins without stopping certflow or being
// flooded by it.
type oidcVerifier struct {
	cfg    config.OIDC
	client *http.Client
	log    *slog.Logger
	now    func() time.Time // the Authenticator's clock, for the retry pacing

	verifier  atomic.Pointer[oidc.IDTokenVerifier] // set once discovery succeeds
	discovery flight                               // its lock guards retryAt
	retryAt   time.Time                            // no discovery before this, after a failed one
}

const (
	// maxJWTBytes bounds a bearer JWT before anything parses it; providers'
	// access tokens are a few KiB even with many groups.
	maxJWTBytes = 16 << 10
	// maxIdPBody bounds what certflow reads of a discovery document or JWKS.
	maxIdPBody = 1 << 20
	// idpTimeout bounds one call to the identity provider.
	idpTimeout = 10 * time.Second
	// discoveryRetry is how often a failing discovery is tried again.
	discoveryRetry = 10 * time.Second
	// maxIdPRedirects bounds the redirects followed for one request.
	maxIdPRedirects = 3
	// maxTokenUserName bounds the user name a token's claim gives.
	maxTokenUserName = 128
)

// errIdPUnavailable is a JWT that could not be checked because the
// identity provider did not answer (discovery or a JWKS refetch failed).
var errIdPUnavailable = errors.New("the identity provider is unreachable; retry later")

var roleNameRE = regexp.MustCompile(config.RolePattern)

// newOIDCVerifier prepares cfg's verifier; the issuer is first asked in
// the background, so that the log says early whether it answers.
func newOIDCVerifier(cfg config.OIDC, now func() time.Time, log *slog.Logger) (*oidcVerifier, error) {
	roots, err := pki.RootsWith(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("auth.oidc.ca_file: %w", err)
	}
	o := &oidcVerifier{cfg: cfg, now: now, log: log, client: idpClient(roots)}
	go o.discover(context.Background())
	return o, nil
}

// idpClient is the HTTP client for the identity provider: its answers
// bounded in time and size, its redirects held to the rule its URLs are
// (https, or http to a loopback host), at most maxIdPRedirects of them: a
// redirect must not take the discovery document or the keys over plain
// HTTP, where whoever changes them in transit could sign tokens.
func idpClient(roots *x509.CertPool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return &http.Client{
		Timeout: idpTimeout, Transport: boundedBodies{tr},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxIdPRedirects {
				return fmt.Errorf("stopped after %d redirects", maxIdPRedirects)
			}
			return protectedURL(req.URL, "redirect to")
		},
	}
}

// boundedBodies fails the reading of a response body past maxIdPBody: go-oidc
// reads discovery documents and key sets whole.
type boundedBodies struct{ next http.RoundTripper }

func (b boundedBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := b.next.RoundTrip(r)
	if err == nil {
		resp.Body = &boundedBody{ReadCloser: resp.Body, left: maxIdPBody}
	}
	return resp, err
}

type boundedBody struct {
	io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("identity provider's answer is larger than %d bytes", maxIdPBody)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// discover returns the verifier, asking the issuer for its discovery
// document when it has not answered yet (at most every discoveryRetry).
// Once it has, nothing waits; before, concurrent callers wait for the one
// discovery under way (or their own request's end), with no lock held
// through it.
func (o *oidcVerifier) discover(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	if v := o.verifier.Load(); v != nil {
		return v, nil
	}
	o.discovery.do(ctx, func() bool {
		if o.now().Before(o.retryAt) {
			return false
		}
		o.retryAt = o.now().Add(discoveryRetry) // and again from its end, if it fails
		return true
	}, func() { o.discoverNow(ctx) })
	if v := o.verifier.Load(); v != nil {
		return v, nil
	}
	return nil, errIdPUnavailable
}

// discoverNow reads the issuer's discovery document and makes the
// verifier of its keys.
func (o *oidcVerifier) discoverNow(ctx context.Context) {
	ctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(ctx), o.client), idpTimeout)
	defer cancel()
	var doc struct {
		JWKSURL string `json:"jwks_uri"`
	}
	p, err := oidc.NewProvider(ctx, o.cfg.Issuer)
	if err == nil {
		err = p.Claims(&doc)
	}
	if err == nil {
		err = checkJWKSURL(doc.JWKSURL)
	}
	if err != nil {
		o.discovery.mu.Lock()
		o.retryAt = o.now().Add(discoveryRetry)
		o.discovery.mu.Unlock()
		o.log.Warn("identity provider: discovery failed; bearer JWTs are answered 503 until it succeeds (tried again on demand, at most every 10s)",
			"issuer", o.cfg.Issuer, "err", truncate(err.Error(), 300))
		return
	}
	keys := &keySet{url: doc.JWKSURL, client: o.client, algs: o.algs(), now: o.now, log: o.log, maxAge: o.cfg.MaxKeyAge}
	skew := o.cfg.ClockSkew
	o.verifier.Store(oidc.NewVerifier(o.cfg.Issuer, keys, &oidc.Config{
		ClientID:             o.cfg.Audience,
		SupportedSigningAlgs: o.cfg.AllowedAlgs,
		// exp is judged skew later than now.
		Now: func() time.Time { return time.Now().Add(-skew) },
	}))
	o.log.Info("identity provider discovered: bearer JWTs are checked against it", "issuer", o.cfg.Issuer, "audience", o.cfg.Audience)
}

// checkJWKSURL refuses a discovery document's jwks_uri that is missing or
// would fetch the keys unprotected.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return errors.New("the discovery document has no jwks_uri")
	case err != nil:
		return fmt.Errorf("jwks_uri %q is not an absolute URL", redact.URL(raw))
	}
	return protectedURL(u, "jwks_uri")
}

// protectedURL refuses a URL to the identity provider that is not
// absolute or would carry its answer unprotected (http, but to a loopback
// host): whoever could change the keys in transit could sign tokens. what
// names the URL in the error.
func protectedURL(u *url.URL, what string) error {
	switch {
	case u.Host == "":
		return fmt.Errorf("%s %q is not an absolute URL", what, redact.URL(u.String()))
	case u.Scheme != "https" && !(u.Scheme == "http" && config.IsLoopbackHost(u.Hostname())):
		return fmt.Errorf("%s %s: want https (http only for a loopback host)", what, redact.URL(u.String()))
	}
	return nil
}

// check verifies raw, a JWT-shaped bearer token. A token refused comes
// with why, said in general terms for the client (never echoing the
// token); errIdPUnavailable is a token that could not be checked.
//
// Why is never read from go-oidc's or go-jose's error text, which quotes
// parts of the token (its alg header, for one): it comes from checks of
// certflow's own, and only the key set's own note that its keys could not
// be fetched makes a token "could not be checked" (503, not counted as a
// failed login).
func (o *oidcVerifier) check(ctx context.Context, raw string) (id *enroll.Caller, why string, err error) {
	if len(raw) > maxJWTBytes {
		return nil, fmt.Sprintf("bearer token: longer than %d bytes", maxJWTBytes), nil
	}
	if !o.algAllowed(raw) {
		return nil, "bearer token: signature algorithm not accepted", nil
	}
	jws, err := jose.ParseSigned(raw, o.algs())
	if err != nil || len(jws.Signatures) != 1 {
		return nil, "bearer token: malformed", nil
	}
	v, err := o.discover(ctx)
	if err != nil {
		return nil, "", err
	}
	note := &verifyNote{}
	tok, err := v.Verify(context.WithValue(ctx, verifyNoteKey{}, note), raw)
	if err != nil {
		if note.keysUnavailable {
			return nil, "", errIdPUnavailable
		}
		return nil, "bearer token: " + o.refusalOf(err, note, jws), nil
	}
	if tok.IssuedAt.After(time.Now().Add(o.cfg.ClockSkew)) {
		return nil, "bearer token: issued in the future (iat)", nil
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, "bearer token: malformed claims", nil
	}
	if why := o.notAnAccessToken(jws.Signatures[0].Header, claims); why != "" {
		return nil, "bearer token: " + why, nil
	}
	name, ok := claims[o.cfg.UsernameClaim].(string)
	if !ok || name == "" || len(name) > maxTokenUserName || strings.ContainsFunc(name, unicode.IsControl) {
		return nil, fmt.Sprintf("bearer token: claim %q is not a user name (a string of 1 to %d bytes)", o.cfg.UsernameClaim, maxTokenUserName), nil
	}
	return &enroll.Caller{Name: o.cfg.UsernamePrefix + name, Roles: o.roles(claims)}, "", nil
}

// notAnAccessToken says why a token the issuer signed for certflow's
// audience is still not one certflow takes, or "": an ID token (a web
// front end's, for the same audience, must not be replayable against the
// API: RFC 9068 section 2.1, RFC 8725 section 3.11) shows by a header typ
// other than at+jwt or JWT, a nonce or at_hash claim, or Keycloak's claim
// typ "ID"; with auth.oidc.allowed_clients, the client it was issued to
// (azp, else client_id) must be listed.
func (o *oidcVerifier) notAnAccessToken(h jose.Header, claims map[string]any) string {
	if typ, ok := h.ExtraHeaders[jose.HeaderType]; ok {
		s, _ := typ.(string)
		if s = strings.TrimPrefix(strings.ToLower(s), "application/"); s != "at+jwt" && s != "jwt" {
			return "not an access token (header typ)"
		}
	}
	for _, c := range []string{"nonce", "at_hash"} {
		if _, ok := claims[c]; ok {
			return fmt.Sprintf("an ID token, not an access token (claim %s)", c)
		}
	}
	if typ, _ := claims["typ"].(string); strings.EqualFold(typ, "ID") {
		return "an ID token, not an access token (claim typ)"
	}
	if len(o.cfg.AllowedClients) > 0 {
		client, _ := claims["azp"].(string)
		if client == "" {
			client, _ = claims["client_id"].(string)
		}
		if !slices.Contains(o.cfg.AllowedClients, client) {
			return "issued to a client not allowed (azp or client_id)"
		}
	}
	return ""
}

// algs are auth.oidc.allowed_algs as go-jose names them.
func (o *oidcVerifier) algs() []jose.SignatureAlgorithm {
	algs := make([]jose.SignatureAlgorithm, len(o.cfg.AllowedAlgs))
	for i, a := range o.cfg.AllowedAlgs {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	return algs
}

// algAllowed reports whether raw's header names an allowed algorithm; a
// header that does not parse passes, for go-jose to refuse as malformed.
func (o *oidcVerifier) algAllowed(raw string) bool {
	head, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	var h struct {
		Alg string `json:"alg"`
	}
	if err != nil || json.Unmarshal(b, &h) != nil {
		return true
	}
	return slices.Contains(o.cfg.AllowedAlgs, h.Alg)
}

// refusalOf says why go-oidc refused jws, a token whose algorithm is
// allowed and that parses: a signature no key verifies, or, signed, which
// of certflow's own readings of its claims fails (go-oidc checks the
// signature before the claims). The claims only choose the message.
func (o *oidcVerifier) refusalOf(err error, note *verifyNote, jws *jose.JSONWebSignature) string {
	if !note.signed {
		return "signed by an unknown key, or the signature does not verify"
	}
	var expired *oidc.TokenExpiredError
	if errors.As(err, &expired) {
		return "expired"
	}
	var c struct {
		Iss string          `json:"iss"`
		Aud json.RawMessage `json:"aud"`
		Nbf *float64        `json:"nbf"`
	}
	if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c) != nil {
		return "malformed"
	}
	var auds []string
	if json.Unmarshal(c.Aud, &auds) != nil {
		var one string
		json.Unmarshal(c.Aud, &one)
		auds = []string{one}
	}
	switch {
	case c.Iss != o.cfg.Issuer:
		return "issued by another issuer"
	case !slices.Contains(auds, o.cfg.Audience):
		return "not issued for this audience"
	case c.Nbf != nil && time.Unix(int64(*c.Nbf), 0).After(time.Now()):
		return "not valid yet (nbf)"
	}
	return "not valid"
}

// roles are the certflow roles claims give: the values of the roles claim
// (a string of space-separated values, or a list of strings) through
// role_map, or as they are without one, but for admin (in any case): a
// provider role that happens to be named admin (a realm's own
// administrators, say) must not make its holders certflow's admin unless
// role_map says so.
func (o *oidcVerifier) roles(claims map[string]any) []string {
	var values []string
	switch v := claimAt(claims, o.cfg.RolesClaim).(type) {
	case string:
		values = strings.Fields(v)
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				values = append(values, s)
			}
		}
	}
	var roles []string
	for _, v := range values {
		role := v
		if len(o.cfg.RoleMap) > 0 {
			role = o.cfg.RoleMap[v]
		} else if strings.EqualFold(role, config.RoleAdmin) {
			continue // admin only through role_map: see roles' comment
		}
		if roleNameRE.MatchString(role) && !slices.Contains(roles, role) {
			roles = append(roles, role)
		}
	}
	return roles
}

// claimAt is the claim named path: a top-level claim of that very name
// (names may hold dots, as URL-named claims do), else the dotted path
// through nested objects.
func claimAt(claims map[string]any, path string) any {
	if v, ok := claims[path]; ok {
		return v
	}
	var v any = claims
	for _, part := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

// truncate shortens s to at most n bytes for a log line.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/certflow/certflow/internal/metadata"
	"golang.org/x/crypto/bcrypt"

	"github.com/certflow/certflow/internal/pki"
)

// sourceNameRE is an event source's name (events.sources).
var sourceNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks the whole configuration; its errors name the setting.
// Each section checks its own settings; what a setting must be against
// another section's is checked here, in the order the messages have
// always come in.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	c.validateTopLevel(bad)
	// A renewal needs the expired certificate's record, which
	// worker.retention keeps: it bounds api.renewal_grace.
	c.API.validate(c.Worker.Retention, bad)
	if c.Worker.ReconcileAfter <= c.Worker.TaskTimeout {
		bad("worker.reconcile_after: must be longer than worker.task_timeout (%s), or a running task would be started again", c.Worker.TaskTimeout)
	}
	c.Worker.validate(bad)
	c.Callbacks.validate(bad)
	c.Events.validate(bad)
	c.Events.validateAccess(bad)
	for _, d := range slices.Concat(c.API.durations(), c.Worker.durations(), c.Callbacks.durations(), c.SMTP.durations(), c.Events.durations()) {
		if d.value <= 0 {
			bad("%s: must be positive", d.name)
		}
	}
	c.SMTP.validate(bad)
	c.TLS.validate(bad)
	c.Auth.validate(bad)
	c.ACMEClient.validate(bad)
	caNames := map[string]bool{}
	for i := range c.CAs {
		field := fmt.Sprintf("certificate_authorities[%d]", i)
		checkName(field, c.CAs[i].Name, caNames, bad)
		c.CAs[i].validate(field, bad)
	}
	tmplNames := map[string]bool{}
	for i := range c.Templates {
		t := &c.Templates[i]
		field := fmt.Sprintf("templates[%d]", i)
		checkName(field, t.Name, tmplNames, bad)
		c.validateTemplateCAs(field, t, caNames, bad)
		t.validate(field, bad)
	}
	c.validateMetadataFields(bad)
	c.validateSecurityRoles(bad)
	// Templates override metadata_fields, so their overrides are checked
	// once the fields are.
	for i := range c.Templates {
		c.validateTemplateFields(fmt.Sprintf("templates[%d]", i), &c.Templates[i], bad)
	}
	return errors.Join(errs...)
}

// durationSetting is a duration setting and its name in the file.
type durationSetting struct {
	name  string
	value time.Duration
}

// validateTopLevel checks the settings outside every section.
func (c *Config) validateTopLevel(bad func(format string, args ...any)) {
	if c.RedisURL != "" {
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			bad("redis_url: want redis://host:port/db or rediss://…")
		}
	}
	if c.CRLBaseURL != "" {
		if u, err := url.Parse(c.CRLBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			bad("crl_base_url: want an absolute http:// or https:// URL without query, e.g. http://pki.example.com")
		}
	}
	if !nameRE.MatchString(c.KeyPrefix) {
		bad("key_prefix: %q is not a valid name", c.KeyPrefix)
	}
	if !nameRE.MatchString(c.Queue) {
		bad("queue: %q is not a valid name", c.Queue)
	}
}

// validate checks the api section but for its durations (durations);
// maxRenewalGrace is worker.retention.
func (a *API) validate(maxRenewalGrace time.Duration, bad func(format string, args ...any)) {
	if a.MaxBodyBytes < 1024 {
		bad("api.max_body_bytes: must be at least 1024")
	}
	if a.RateLimit < 0 || (a.RateLimit > 0 && a.RateBurst < 1) {
		bad("api.rate_limit: must be 0 (off) or positive, with api.rate_burst at least 1")
	}
	for i, p := range a.TrustedProxies {
		if _, err := ParseProxy(p); err != nil {
			bad("api.trusted_proxies[%d]: %q is not an IP address or a CIDR prefix (e.g. 10.0.0.0/8)", i, p)
		}
	}
	if a.MaxSANs < 1 || a.MaxSANs > 10000 {
		bad("api.max_sans: must be between 1 and 10000")
	}
	if a.MaxScan < 1 || a.MaxScan > 1000000 {
		bad("api.max_scan: must be between 1 and 1000000")
	}
	if a.MaxIndexRead < 1000 || a.MaxIndexRead > 100000000 {
		bad("api.max_index_read: must be between 1000 and 100000000")
	}
	if a.MaxPendingCSRs < 1 {
		bad("api.max_pending_csrs: must be at least 1")
	}
	if a.KeyGenerationConcurrency < 1 {
		bad("api.key_generation_concurrency: must be at least 1")
	}
	if a.RenewalGrace < 0 || a.RenewalGrace > maxRenewalGrace {
		bad("api.renewal_grace: must be between 0 and worker.retention (%s)", maxRenewalGrace)
	}
	if a.AuthFailuresPerMinute < 1 {
		bad("api.auth_failures_per_minute: must be at least 1")
	}
	if a.AuthFailuresPerUserPerHour < 1 {
		bad("api.auth_failures_per_user_per_hour: must be at least 1")
	}
	if a.AuthMaxLockout < time.Second {
		bad("api.auth_max_lockout: must be at least 1s")
	}
	if a.SyncWait < 0 || a.MaxSyncWait < a.SyncWait {
		bad("api.sync_wait: must be between 0 and api.max_sync_wait")
	}
}

// durations are the api section's durations that must be positive.
func (a *API) durations() []durationSetting {
	return []durationSetting{
		{"api.idempotency_ttl", a.IdempotencyTTL},
		{"api.redis_timeout", a.RedisTimeout},
	}
}

// validate checks the worker section but for its durations (durations).
func (w *Worker) validate(bad func(format string, args ...any)) {
	if w.Concurrency < 1 {
		bad("worker.concurrency: must be at least 1")
	}
	if w.Servers < 1 {
		bad("worker.servers: must be at least 1")
	}
	if w.MaxRetry < 1 {
		bad("worker.max_retry: must be at least 1 (a crashed worker counts as a retry)")
	}
}

// durations are the worker section's durations that must be positive.
func (w *Worker) durations() []durationSetting {
	return []durationSetting{
		{"worker.task_timeout", w.TaskTimeout},
		{"worker.shutdown_timeout", w.ShutdownTimeout},
		{"worker.reconcile_after", w.ReconcileAfter},
		{"worker.poll_interval", w.PollInterval},
		{"worker.scheduled_interval", w.ScheduledInterval},
		{"worker.retention", w.Retention},
	}
}

// validate checks the callbacks section but for its timeout (durations).
func (cb *Callbacks) validate(bad func(format string, args ...any)) {
	if len(cb.Schedule) == 0 {
		bad("callbacks.schedule: must list at least one retry delay")
	}
	for i, d := range cb.Schedule {
		if d <= 0 {
			bad("callbacks.schedule[%d]: must be positive", i)
		}
	}
}

// validateAccess checks the events section's roles and sources (the
// event names a source may post are checked against certflow's reserved
// names where the sources are loaded, internal/api: this package cannot
// know them).
func (e *Events) validateAccess(bad func(format string, args ...any)) {
	for i, r := range e.PublisherRoles {
		checkRole(fmt.Sprintf("events.publisher_roles[%d]", i), r, bad)
	}
	for i, r := range e.ReaderRoles {
		checkRole(fmt.Sprintf("events.reader_roles[%d]", i), r, bad)
	}
	for _, name := range slices.Sorted(maps.Keys(e.Sources)) {
		src, field := e.Sources[name], "events.sources."+name
		if !sourceNameRE.MatchString(name) {
			bad("events.sources: %q is not a source name (1-64 lower-case letters, digits, ., _ and -, starting with a letter or digit: it is a path segment, and paths match without regard to case)", name)
		}
		switch {
		case src.Secret == "" && src.SecretFile == "":
			bad("%s: secret or secret_file is required", field)
		case src.Secret != "" && src.SecretFile != "":
			bad("%s: give secret or secret_file, not both", field)
		}
		if len(src.Names) == 0 {
			bad("%s.names: required: the events this source may post (a name, or prefix.*)", field)
		}
		for j, n := range src.Names {
			if strings.TrimSpace(n) == "" {
				bad("%s.names[%d]: empty", field, j)
			}
		}
		if src.Tolerance < 0 || src.Tolerance > MaxEventSourceTolerance {
			bad("%s.tolerance: want a positive duration up to %s, got %s", field, MaxEventSourceTolerance, src.Tolerance)
		}
	}
}

// durations are the events section's durations that must be positive.
func (e *Events) durations() []durationSetting {
	return []durationSetting{{"events.retention", e.Retention}, {"events.expiry_watch.interval", e.ExpiryWatch.Interval}}
}

// validate checks the events section but for its durations: the expiry
// watch's thresholds are durations or whole days, positive, distinct
// and few (each is a step of every certificate's way to expiry).
func (e *Events) validate(bad func(format string, args ...any)) {
	const field = "events.expiry_watch.thresholds"
	ts := e.ExpiryWatch.Thresholds
	if len(ts) > MaxExpiryThresholds {
		bad("%s: %d thresholds, at most %d", field, len(ts), MaxExpiryThresholds)
	}
	seen := map[time.Duration]int{}
	for i, s := range ts {
		d, err := ParseExpiryThreshold(s)
		switch {
		case err != nil:
			bad("%s[%d]: %v", field, i, err)
		case d <= 0:
			bad("%s[%d]: %q must be positive", field, i, s)
		case d < time.Second:
			bad("%s[%d]: %q is under a second (the watch counts whole seconds)", field, i, s)
		default:
			if j, dup := seen[d]; dup {
				bad("%s[%d]: %q is the same as %s[%d] (%q)", field, i, s, field, j, ts[j])
			} else {
				seen[d] = i
			}
		}
	}
}

// durations are the callbacks section's durations that must be positive.
func (cb *Callbacks) durations() []durationSetting {
	return []durationSetting{{"callbacks.timeout", cb.Timeout}}
}

// validate checks the smtp section but for its timeout (durations).
func (s *SMTP) validate(bad func(format string, args ...any)) {
	if !slices.Contains([]string{"starttls", "implicit", "none"}, s.TLS) {
		bad("smtp.tls: %q (want starttls, implicit or none)", s.TLS)
	}
	if s.Addr != "" {
		host, port, err := net.SplitHostPort(s.Addr)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			bad("smtp.addr: %q is not host:port", s.Addr)
		} else if s.TLS == "none" && !IsLoopbackHost(host) {
			bad("smtp.tls: none is only allowed for a loopback smtp.addr, not %q", host)
		}
		if _, err := mail.ParseAddress(s.From); err != nil {
			bad("smtp.from: %q is not a mail address", s.From)
		}
	}
}

// durations are the smtp section's durations that must be positive.
func (s *SMTP) durations() []durationSetting {
	return []durationSetting{{"smtp.timeout", s.Timeout}}
}

// validate checks the auth section's users: named once each (and not
// as the admin token's identity), one credential each, roles well-formed.
func (a *Auth) validate(bad func(format string, args ...any)) {
	seenUser := map[string]bool{}
	for i, u := range a.Users {
		field := fmt.Sprintf("auth.users[%d]", i)
		switch {
		case u.Name == "":
			bad("%s.name: required", field)
		case u.Name == AdminName:
			bad("%s.name: %q is reserved for CERTFLOW_ADMIN_TOKEN's identity", field, u.Name)
		case strings.HasPrefix(u.Name, SystemNamePrefix):
			bad("%s.name: %q: names starting %q are certflow's own callers' (certflow:automation makes the requests of event-triggered definitions)", field, u.Name, SystemNamePrefix)
		case strings.HasPrefix(u.Name, EventSourceNamePrefix):
			bad("%s.name: %q: names starting %q are the signed event sources' (events.sources)", field, u.Name, EventSourceNamePrefix)
		case seenUser[u.Name]:
			bad("%s.name: %q appears twice", field, u.Name)
		}
		seenUser[u.Name] = true
		if (u.Token == "") == (u.PasswordHash == "") {
			bad("%s: set exactly one of token and password_hash", field)
		}
		if u.PasswordHash != "" && u.Token == "" {
			if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
				bad("%s.password_hash: not a bcrypt hash ($2a$, $2b$ or $2y$)", field)
			}
		}
		if sum, ok := strings.CutPrefix(u.Token, "sha256:"); ok {
			if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
				bad("%s.token: sha256: must be followed by 64 hex characters", field)
			}
		}
		for _, r := range u.Roles {
			checkRole(field+".roles", r, bad)
		}
		if a.OIDC.Enabled() {
			if strings.HasPrefix(u.Name, a.OIDC.UsernamePrefix) && a.OIDC.UsernamePrefix != "" {
				bad("%s.name: %q starts with auth.oidc.username_prefix %q, which only token users' names do", field, u.Name, a.OIDC.UsernamePrefix)
			}
			if LooksLikeJWT(u.Token) {
				bad("%s.token: looks like a JWT; with auth.oidc on, a JWT-shaped bearer token is only ever checked against the issuer", field)
			}
		}
	}
	a.OIDC.validate(bad)
}

// checkRole checks a role name given at field.
func checkRole(field, r string, bad func(format string, args ...any)) {
	builtin := slices.ContainsFunc([]string{RoleRequester, RoleApprover, RoleAdmin}, func(b string) bool { return strings.EqualFold(b, r) })
	switch {
	case !roleRE.MatchString(r):
		bad("%s: %q is not a role name (letters, digits, -, _ and .; built in: requester, approver, admin)", field, r)
	case builtin && r != strings.ToLower(r):
		bad("%s: %q: the built-in roles are spelt requester, approver and admin", field, r)
	}
}

// LooksLikeJWT reports whether a bearer token has a JWS compact
// serialization's shape: three base64url parts, the first a JSON object.
// With auth.oidc on, such a token is only checked against the issuer.
func LooksLikeJWT(token string) bool {
	header, rest, ok := strings.Cut(token, ".")
	if !ok || strings.Count(rest, ".") != 1 || !strings.HasPrefix(header, "eyJ") {
		return false // "eyJ": base64url of `{"`
	}
	return true
}

// maxOIDCClockSkew bounds auth.oidc.clock_skew: more would keep an
// expired token good for long.
const maxOIDCClockSkew = 5 * time.Minute

// MinOIDCMaxKeyAge bounds auth.oidc.max_key_age from below: the key set is
// fetched anew every 10 minutes, so a shorter age would drop keys a
// working provider still serves.
const MinOIDCMaxKeyAge = 10 * time.Minute

// validate checks auth.oidc: an https issuer (http only on loopback), an
// audience, claims to read, a prefix that sets token users apart, roles
// that are role names, and only asymmetric algorithms.
func (o *OIDC) validate(bad func(format string, args ...any)) {
	if !o.Enabled() {
		if o.Audience != "" || o.CAFile != "" || len(o.RoleMap) > 0 || len(o.AllowedClients) > 0 {
			bad("auth.oidc.issuer: required when auth.oidc sets audience, ca_file, role_map or allowed_clients")
		}
		return
	}
	u, err := url.Parse(o.Issuer)
	switch {
	case err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
		bad("auth.oidc.issuer: want an absolute URL without credentials, query or fragment (https://idp.example.com/realms/pki), got %q", o.Issuer)
	case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()):
		bad("auth.oidc.issuer: http only for a loopback host (its keys would travel unprotected); use https")
	case u.Scheme != "https" && u.Scheme != "http":
		bad("auth.oidc.issuer: want https, got %q", u.Scheme)
	}
	if o.Audience == "" {
		bad("auth.oidc.audience: required with auth.oidc.issuer (the aud value the provider puts in certflow's tokens)")
	}
	if o.UsernameClaim == "" {
		bad("auth.oidc.username_claim: required (default sub)")
	}
	if o.RolesClaim == "" || slices.Contains(strings.Split(o.RolesClaim, "."), "") {
		bad("auth.oidc.roles_claim: want a claim name or a dotted path (realm_access.roles), got %q", o.RolesClaim)
	}
	if o.UsernamePrefix == "" || len(o.UsernamePrefix) > 32 || strings.ContainsFunc(o.UsernamePrefix, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		bad("auth.oidc.username_prefix: want 1 to 32 characters without spaces (default %q): it keeps token users apart from configured users and admin", DefaultOIDCUsernamePrefix)
	} else if strings.HasPrefix(SystemNamePrefix, o.UsernamePrefix) || strings.HasPrefix(o.UsernamePrefix, SystemNamePrefix) {
		bad("auth.oidc.username_prefix: %q would let a token user be named like certflow's own callers (%q…)", o.UsernamePrefix, SystemNamePrefix)
	} else if strings.HasPrefix(EventSourceNamePrefix, o.UsernamePrefix) || strings.HasPrefix(o.UsernamePrefix, EventSourceNamePrefix) {
		bad("auth.oidc.username_prefix: %q would let a token user be named like the signed event sources (%q…)", o.UsernamePrefix, EventSourceNamePrefix)
	}
	for _, k := range slices.Sorted(maps.Keys(o.RoleMap)) {
		if k == "" {
			bad("auth.oidc.role_map: an empty provider role")
		}
		checkRole(fmt.Sprintf("auth.oidc.role_map[%q]", k), o.RoleMap[k], bad)
	}
	for i, c := range o.AllowedClients {
		if c == "" || len(c) > 255 || strings.ContainsFunc(c, unicode.IsControl) {
			bad("auth.oidc.allowed_clients[%d]: want a client id (1 to 255 bytes, no control characters)", i)
		}
	}
	if len(o.AllowedAlgs) == 0 {
		bad("auth.oidc.allowed_algs: at least one is required")
	}
	for _, alg := range o.AllowedAlgs {
		if !slices.Contains(DefaultOIDCAlgs, alg) {
			bad("auth.oidc.allowed_algs: %q is not accepted (asymmetric only: %s)", alg, strings.Join(DefaultOIDCAlgs, ", "))
		}
	}
	if o.ClockSkew < 0 || o.ClockSkew > maxOIDCClockSkew {
		bad("auth.oidc.clock_skew: want 0 to %s, got %s", maxOIDCClockSkew, o.ClockSkew)
	}
	if o.MaxKeyAge < MinOIDCMaxKeyAge {
		bad("auth.oidc.max_key_age: want at least %s (the key set is fetched anew every 10m), got %s", MinOIDCMaxKeyAge, o.MaxKeyAge)
	}
}

// IsLoopbackHost reports whether host is localhost or a loopback address.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validate checks one of certificate_authorities (field) but for its
// name, which Validate checks against the others'.
func (ca *CA) validate(field string, bad func(format string, args ...any)) {
	if !nameRE.MatchString(ca.Host) {
		bad("%s.host: %q is not a valid host name", field, ca.Host)
	}
	switch ca.Type {
	case CATypeBuiltin:
		if ca.ACME != nil {
			bad("%s.acme: only a CA of type acme takes acme settings", field)
		}
	case CATypeACME:
		if ca.ACME == nil {
			bad("%s.acme: a CA of type acme needs its acme settings (directory, …)", field)
		} else {
			ca.ACME.validate(field, bad)
		}
	default:
		bad("%s.type: %q is not supported (want builtin or acme)", field, ca.Type)
	}
	if !slices.Contains([]string{"ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"}, ca.KeyType) {
		bad("%s.key_type: %q (want ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096)", field, ca.KeyType)
	}
	if ca.MaxValidity <= 0 {
		bad("%s.max_validity: must be positive", field)
	}
	validatePolicy(field, &ca.Policy, bad)
}

// validateTemplateCAs checks the CAs a template (field) names: at least
// one, each configured (caNames, lower case) and none standalone.
func (c *Config) validateTemplateCAs(field string, t *Template, caNames map[string]bool, bad func(format string, args ...any)) {
	if len(t.CAs) == 0 {
		bad("%s.certificate_authorities: at least one is required", field)
	}
	for _, n := range t.CAs {
		if !caNames[strings.ToLower(n)] {
			bad("%s.certificate_authorities: unknown authority %q", field, n)
		} else if ca, _ := c.CA(n); ca.Standalone {
			// A request without CertificateAuthority gets one of the
			// template's CAs; a standalone CA must be named.
			bad("%s.certificate_authorities: %s is standalone: it serves requests that name it, without a template", field, n)
		}
	}
}

// validate checks one of templates (field) but for its name and CAs
// (Validate checks them against the others') and its metadata and
// enrollment fields (validateTemplateFields).
func (t *Template) validate(field string, bad func(format string, args ...any)) {
	validatePolicy(field, &t.Policy, bad)
	if t.Validity <= 0 {
		bad("%s.validity: must be positive", field)
	}
	for _, u := range t.KeyUsages {
		if _, ok := pki.KeyUsages[u]; !ok {
			bad("%s.key_usages: unknown key usage %q (known: %s)", field, u, strings.Join(slices.Sorted(maps.Keys(pki.KeyUsages)), ", "))
		}
	}
	for _, u := range t.ExtKeyUsages {
		if _, ok := pki.ExtKeyUsages[u]; !ok {
			bad("%s.extended_key_usages: unknown extended key usage %q (known: %s)", field, u, strings.Join(slices.Sorted(maps.Keys(pki.ExtKeyUsages)), ", "))
		}
	}
}

// validatePolicy checks the key and name policy a template or a CA
// (field) sets, and the roles it lets enroll.
func validatePolicy(field string, p *Policy, bad func(format string, args ...any)) {
	for _, bits := range p.RSAKeySizes {
		if bits < pki.MinRSABits || bits > pki.MaxRSABits {
			bad("%s.rsa_key_sizes: %d is outside %d–%d", field, bits, pki.MinRSABits, pki.MaxRSABits)
		}
	}
	for _, curve := range p.ECCCurves {
		if !slices.Contains([]string{"P-256", "P-384", "P-521"}, curve) {
			bad("%s.ecc_curves: unknown curve %q (want P-256, P-384 or P-521)", field, curve)
		}
	}
	for _, t := range p.SANTypes {
		if !slices.Contains(SANTypes, t) {
			bad("%s.san_types: unknown type %q (want %s)", field, t, strings.Join(SANTypes, ", "))
		}
	}
	for _, r := range p.AllowedRequesters {
		if !roleRE.MatchString(r) {
			bad("%s.allowed_requesters: %q is not a role name", field, r)
		}
	}
}

// validateSecurityRoles checks security_roles: ids from MinSecurityRoleID,
// names well-formed, neither repeated nor a built-in role's.
func (c *Config) validateSecurityRoles(bad func(format string, args ...any)) {
	ids, names := map[int64]bool{}, map[string]bool{}
	for _, b := range BuiltinRoles {
		names[b.Name] = true
	}
	for i, r := range c.SecurityRoles {
		field := fmt.Sprintf("security_roles[%d]", i)
		switch {
		case r.ID < MinSecurityRoleID:
			bad("%s.id: %d; configured roles' ids start at %d (smaller ones are the built-in roles')", field, r.ID, MinSecurityRoleID)
		case ids[r.ID]:
			bad("%s.id: %d appears twice", field, r.ID)
		}
		ids[r.ID] = true
		switch {
		case !roleRE.MatchString(r.Name):
			bad("%s.name: %q is not a role name (letters, digits, -, _ and .)", field, r.Name)
		case slices.ContainsFunc(BuiltinRoles, func(b SecurityRole) bool { return strings.EqualFold(b.Name, r.Name) }):
			bad("%s.name: %q is a built-in role; it has id %d already", field, r.Name, c.roleByName(r.Name).ID)
		case names[strings.ToLower(r.Name)]:
			bad("%s.name: %q appears twice", field, r.Name)
		}
		names[strings.ToLower(r.Name)] = true
	}
}

// validateTemplateFields checks a template's metadata field overrides and enrollment fields, normalizing their spelling.
func (c *Config) validateTemplateFields(field string, t *Template, bad func(format string, args ...any)) {
	seen := map[string]bool{}
	for j := range t.MetadataFields {
		o := &t.MetadataFields[j]
		f := fmt.Sprintf("%s.metadata_fields[%d]", field, j)
		mf := c.MetaField(o.Name)
		if mf == nil {
			bad("%s.name: %q is not one of metadata_fields", f, o.Name)
			continue
		}
		o.Name = mf.Name
		if seen[mf.Name] {
			bad("%s.name: %q appears twice", f, o.Name)
		}
		seen[mf.Name] = true
		if o.Enrollment != "" {
			if k := slices.IndexFunc(metadata.Enrollments, func(e string) bool { return strings.EqualFold(e, o.Enrollment) }); k >= 0 {
				o.Enrollment = metadata.Enrollments[k]
			} else {
				bad("%s.enrollment: %q (want %s)", f, o.Enrollment, strings.Join(metadata.Enrollments, ", "))
			}
		}
		checkable := true
		if o.Validation != "" || o.Message != "" {
			if mf.Type != metadata.String {
				bad("%s.validation: only String fields have a validation pattern (%s is %s)", f, mf.Name, mf.Type)
				checkable = false
			} else if _, err := regexp.Compile(o.Validation); err != nil {
				bad("%s.validation: %v", f, err)
				checkable = false
			}
		}
		if o.DefaultValue != "" && checkable {
			eff := t.MetaField(mf)
			v, err := metadata.Check(metadata.Field{Type: eff.Type, Validation: eff.Validation, Message: eff.Message, Options: eff.Options}, o.DefaultValue)
			if err != nil {
				bad("%s.default_value: %v", f, err)
			} else {
				o.DefaultValue = v
			}
		}
	}
	seen = map[string]bool{}
	for j := range t.EnrollmentFields {
		e := &t.EnrollmentFields[j]
		f := fmt.Sprintf("%s.enrollment_fields[%d]", field, j)
		checkName(f, e.Name, seen, bad)
		switch {
		case e.Type == "" || strings.EqualFold(e.Type, EnrollmentFieldString):
			e.Type = EnrollmentFieldString
			if len(e.Options) > 0 {
				bad("%s.options: only MultipleChoice fields have options", f)
			}
		case strings.EqualFold(e.Type, EnrollmentFieldMultipleChoice):
			e.Type = EnrollmentFieldMultipleChoice
			if len(e.Options) == 0 {
				bad("%s.options: a MultipleChoice field needs at least one option", f)
			}
			for k, o := range e.Options {
				if strings.TrimSpace(o) == "" || slices.Contains(e.Options[:k], o) {
					bad("%s.options: %q is empty or repeated", f, o)
				}
			}
		default:
			bad("%s.type: %q (want String or MultipleChoice)", f, e.Type)
		}
	}
}

// validateMetadataFields checks metadata_fields, filling in the default type
// and enrollment and Keyfactor's spelling of both, and normalizing default
// values as a request's values are.
func (c *Config) validateMetadataFields(bad func(format string, args ...any)) {
	seen := map[string]bool{}
	for i := range c.Metadata {
		f := &c.Metadata[i]
		field := fmt.Sprintf("metadata_fields[%d]", i)
		checkName(field, f.Name, seen, bad)
		if f.DisplayOrder < 0 {
			bad("%s.display_order: must be positive (or 0, for the field's position)", field)
		}
		typ, typeOK := metadata.TypeName(f.Type)
		if typeOK {
			f.Type = typ
		} else {
			bad("%s.type: %q is not a metadata field type (want %s)", field, f.Type, strings.Join(metadata.Types, ", "))
		}
		if f.Enrollment == "" {
			f.Enrollment = metadata.Optional
		}
		if j := slices.IndexFunc(metadata.Enrollments, func(e string) bool { return strings.EqualFold(e, f.Enrollment) }); j >= 0 {
			f.Enrollment = metadata.Enrollments[j]
		} else {
			bad("%s.enrollment: %q (want %s)", field, f.Enrollment, strings.Join(metadata.Enrollments, ", "))
		}
		checkable := typeOK // whether default_value can be checked
		if f.Validation != "" {
			if _, err := regexp.Compile(f.Validation); err != nil {
				bad("%s.validation: %v", field, err)
				checkable = false
			}
			if typeOK && f.Type != metadata.String {
				bad("%s.validation: only String fields have a validation pattern", field)
			}
		}
		if typeOK && f.Type == metadata.MultipleChoice && len(f.Options) == 0 {
			bad("%s.options: a MultipleChoice field needs at least one option", field)
			checkable = false
		}
		if typeOK && f.Type != metadata.MultipleChoice && len(f.Options) > 0 {
			bad("%s.options: only MultipleChoice fields have options", field)
		}
		if f.DefaultValue != "" && checkable {
			v, err := metadata.Check(metadata.Field{Type: f.Type, Validation: f.Validation, Message: f.Message, Options: f.Options}, f.DefaultValue)
			if err != nil {
				bad("%s.default_value: %v", field, err)
			} else {
				f.DefaultValue = v
			}
		}
	}
}

// checkName checks an entry's name: well-formed, and not used by an
// earlier entry of the same list (names compare without case, as
// Keyfactor's do).
func checkName(field, name string, seen map[string]bool, bad func(string, ...any)) {
	if !nameRE.MatchString(name) {
		bad("%s.name: %q is not a valid name", field, name)
	}
	if seen[strings.ToLower(name)] {
		bad("%s.name: %q appears twice", field, name)
	}
	seen[strings.ToLower(name)] = true
}

// TLSOff is the tls.listen that serves no HTTPS.
const TLSOff = "off"

// validate checks the tls section.
func (t *TLS) validate(bad func(format string, args ...any)) {
	if t.Listen != TLSOff {
		if _, _, err := net.SplitHostPort(t.Listen); err != nil {
			bad("tls.listen: want host:port or %q, got %q", TLSOff, t.Listen)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		bad("tls.cert_file and tls.key_file: give both or neither")
	}
	for i, n := range t.Names {
		if net.ParseIP(n) == nil && !dnsNameRE.MatchString(n) {
			bad("tls.names[%d]: %q is neither a host name nor an IP address", i, n)
		}
	}
	if t.Validity < time.Hour || t.Validity > 397*24*time.Hour {
		bad("tls.validity: want a duration from 1h to 9528h (397 days), got %s", t.Validity)
	}
	if t.ReloadInterval < 100*time.Millisecond {
		bad("tls.reload_interval: want at least 100ms, got %s", t.ReloadInterval)
	}
}

// dnsNameRE is a host name the server certificate can carry.
var dnsNameRE = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// CheckPlainListen refuses a plain-HTTP listen address that is not
// loopback unless allow_plain_http says so: tokens and passwords would
// cross the network in the clear. A host name counts as loopback only
// when it is "localhost".
func (c *Config) CheckPlainListen() error {
	if c.AllowPlainHTTP {
		return nil
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("listen: want host:port, got %q", c.Listen)
	}
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || strings.EqualFold(host, "localhost") {
		return nil
	}
	return fmt.Errorf("listen: %q serves plain HTTP beyond this host, where credentials would cross the network in the clear: "+
		"use a loopback address (127.0.0.1:8080) and HTTPS (tls.listen, CERTFLOW_TLS_LISTEN) for the network, "+
		"or set allow_plain_http: true (CERTFLOW_ALLOW_PLAIN_HTTP=true) behind a TLS-terminating proxy", c.Listen)
}

// ParseProxy reads one api.trusted_proxies entry: a CIDR prefix, or an IP
// address (a prefix of its whole length).
func ParseProxy(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Package config is certflow's configuration file: its shape, its defaults
// and its validation. A file only needs the settings it changes; everything it
// leaves out keeps the default, so a file holding only `auth:` still has the
// WebServer template and the built-in CA.
package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration file.
type Config struct {
	// Listen is the API's plain-HTTP address. Defaults to 127.0.0.1:8080.
	// It must be a loopback address unless AllowPlainHTTP is set: HTTP
	// elsewhere carries credentials in the clear.
	Listen string `yaml:"listen"`
	// AllowPlainHTTP lets Listen be an address that is not loopback
	// (behind a TLS-terminating proxy, say). Defaults to false.
	AllowPlainHTTP bool `yaml:"allow_plain_http"`
	// TLS is the API's HTTPS listener.
	TLS TLS `yaml:"tls"`
	// RedisURL is redis://[user:pass@]host:port/db. Empty means: start an
	// embedded in-memory Redis (first run only; nothing survives a restart).
	RedisURL string `yaml:"redis_url"`
	// DataDir holds the built-in CAs, the generated KEK, admin token and
	// webhook secret. Defaults to ./.certflow.
	DataDir string `yaml:"data_dir"`
	// KEKFile is the key-encryption key file. Defaults to <DataDir>/kek,
	// generated on first start.
	KEKFile string `yaml:"kek_file"`
	// Definitions is the folder of workflow definitions. Defaults to
	// ./definitions, or the shipped set when that folder does not exist.
	Definitions string `yaml:"definitions"`
	// KeyPrefix prefixes every certflow key in Redis. Defaults to "certflow".
	KeyPrefix string `yaml:"key_prefix"`
	// CRLBaseURL is certflow's API as relying parties reach it (e.g.
	// http://pki.example.com). When set, issued certificates carry the CRL
	// distribution point <crl_base_url>/CRL/<ca>.crl. Defaults to none.
	CRLBaseURL string `yaml:"crl_base_url"`
	// Queue is the asynq queue certflow's tasks go to. Defaults to "certflow".
	Queue string `yaml:"queue"`

	API       API         `yaml:"api"`
	Worker    Worker      `yaml:"worker"`
	Callbacks Callbacks   `yaml:"callbacks"`
	Auth      Auth        `yaml:"auth"`
	CAs       []CA        `yaml:"certificate_authorities"`
	Templates []Template  `yaml:"templates"`
	Metadata  []MetaField `yaml:"metadata_fields"`
	SMTP      SMTP        `yaml:"smtp"`
	// Events governs the event log and event-triggered workflows
	// (docs/events.md).
	Events Events `yaml:"events"`
	// ACMEClient is what certflow needs as an ACME client of external
	// CAs (certificate_authorities of type acme; docs/acme.md).
	ACMEClient ACMEClient `yaml:"acme_client"`
	// Speed switches certflow's speed shortcuts off, one by one; each has a
	// plain fallback that does the same work more slowly.
	Speed Speed `yaml:"speed"`
	// SecurityRoles are the roles a certificate owner (OwnerRoleId,
	// OwnerRoleName) can name, besides the built-in requester, approver
	// and admin (BuiltinRoles). Defaults to none.
	SecurityRoles []SecurityRole `yaml:"security_roles"`
}

// SecurityRole is Keyfactor's security role as far as certflow knows it: an
// integer id and a name, for certificate ownership.
type SecurityRole struct {
	// ID is the role's Keyfactor id, at least MinSecurityRoleID (smaller
	// ids are the built-in roles'). Required.
	ID int64 `yaml:"id"`
	// Name is the role name (RolePattern), unique without regard to case
	// and not a built-in role's. Required.
	Name string `yaml:"name"`
	// Description is shown by GET /Security/Roles. Defaults to empty.
	Description string `yaml:"description"`
}

// MinSecurityRoleID is the smallest id a configured security role may
// have; the ids below it belong to the built-in roles.
const MinSecurityRoleID = 10

// BuiltinRoles are the built-in roles as security roles, with fixed ids.
var BuiltinRoles = []SecurityRole{
	{ID: 1, Name: RoleRequester, Description: "enrolls for certificates (built in)"},
	{ID: 2, Name: RoleApprover, Description: "reads every request and decides approvals (built in)"},
	{ID: 3, Name: RoleAdmin, Description: "may do everything (built in)"},
}

// API tunes the HTTP side.
type API struct {
	// MaxBodyBytes bounds every request body. Defaults to 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// SyncWait is how long a submit without `Prefer: respond-async` waits for
	// the workflow to settle before answering 202. Defaults to 30s.
	SyncWait time.Duration `yaml:"sync_wait"`
	// MaxSyncWait caps `Prefer: wait=N`. Defaults to 120s.
	MaxSyncWait time.Duration `yaml:"max_sync_wait"`
	// IdempotencyTTL is how long an Idempotency-Key is remembered. Defaults to 24h.
	IdempotencyTTL time.Duration `yaml:"idempotency_ttl"`
	// RateLimit is each identity's sustained requests per second, per API
	// process; 0 turns rate limiting off. Defaults to 100.
	RateLimit float64 `yaml:"rate_limit"`
	// RateBurst is how many requests an identity may make at once above
	// the rate. Defaults to 200.
	RateBurst int `yaml:"rate_burst"`
	// TrustedProxies are the addresses (IPs or CIDR prefixes) of the
	// TLS-terminating proxies in front of certflow. A request from one of
	// them is taken to come from the right-most address of its
	// X-Forwarded-For that is not itself a trusted proxy, so rate limits,
	// the login throttle and the logs see the real client rather than one
	// shared proxy address. Empty (the default): X-Forwarded-For is ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// AuthFailuresPerMinute is each client address's budget of failed
	// authentications (a wrong password or token; a request without
	// credentials costs nothing): that many at once, then that many per
	// minute. IPv6 addresses count per /64. Once an address has spent it,
	// every request from it is answered 429 with Retry-After, without any
	// credential being checked (the right one included), for a lockout
	// that starts at one failure's share of the minute and doubles with
	// each failure that follows a lockout, up to AuthMaxLockout. The
	// budgets are kept in each API process's memory (bounded; not shared
	// between processes, not kept across restarts). Defaults to 30.
	AuthFailuresPerMinute int `yaml:"auth_failures_per_minute"`
	// AuthFailuresPerUserPerHour is each HTTP Basic user name's budget of
	// failed logins, whichever addresses they come from, and whether or
	// not the name exists: that many at once, then that many per hour,
	// with the same lockout and backoff as AuthFailuresPerMinute. A
	// successful login clears the name's failures. Bearer tokens name no
	// user and are not held by it; an attacker who knows a name can keep
	// its Basic logins locked out, which is the price of stopping a
	// guesser spread over many addresses. Defaults to 10.
	AuthFailuresPerUserPerHour int `yaml:"auth_failures_per_user_per_hour"`
	// AuthMaxLockout caps the doubling lockout of an address or user name
	// that keeps failing. Defaults to 15m.
	AuthMaxLockout time.Duration `yaml:"auth_max_lockout"`
	// MaxPendingCSRs bounds the CSRs one requester may have generated
	// (POST /CSRGeneration/Generate) and not yet enrolled or deleted: each
	// keeps a sealed key in Redis. Defaults to 100.
	MaxPendingCSRs int `yaml:"max_pending_csrs"`
	// MaxSANs bounds the subject alternative names of one request, the
	// CSR's and the body's SANs together. Defaults to 100.
	MaxSANs int `yaml:"max_sans"`
	// MaxScan bounds the records one listing or search reads when no
	// index answers it (a queryString on a field that is not looked up
	// directly, or a requester's own certificates). A listing that reaches
	// it before its page is full is refused (400, 0xA0010007) rather than
	// answered with what it found so far, which would look complete.
	// Defaults to 10000.
	MaxScan int `yaml:"max_scan"`
	// MaxIndexRead bounds the index entries one certificate search reads
	// (ids to intersect, names a -contains scans). A search that reaches
	// it before its page is known is refused like one that reaches
	// MaxScan. Defaults to 1000000.
	MaxIndexRead int `yaml:"max_index_read"`
	// KeyGenerationConcurrency bounds the private keys one API process
	// generates at once (POST /CSRGeneration/Generate): a request that
	// finds every slot taken answers 429 with Retry-After before doing any
	// work. A worker process generates PFX keys as many at once, from a
	// pool of its own. Defaults to the number of CPUs.
	KeyGenerationConcurrency int `yaml:"key_generation_concurrency"`
	// RenewalGrace is how long after its NotAfter an expired certificate
	// may still be renewed (POST /Enrollment/Renew); past it, the
	// identity is enrolled anew, through the enrollment workflow. At most
	// worker.retention. Defaults to 0: an expired certificate is not renewed.
	RenewalGrace time.Duration `yaml:"renewal_grace"`
	// RedisTimeout bounds each store call made while answering a request, so
	// an unreachable Redis yields 503 rather than a hang. Defaults to 3s.
	RedisTimeout time.Duration `yaml:"redis_timeout"`
}

// TLS is the API's HTTPS listener: certflow serves TLS itself, with the
// certificate and key files given, or else with a server certificate its
// own built-in CA issues (internal/tlsserve).
type TLS struct {
	// Listen is the HTTPS address; "off" serves no HTTPS. Defaults to
	// 127.0.0.1:8443.
	Listen string `yaml:"listen"`
	// CertFile and KeyFile are PEM files (the certificate first, then its
	// chain; the key in PKCS#8, PKCS#1 or SEC 1), reloaded when they
	// change and on SIGHUP. Both or neither. Defaults to empty: a server
	// certificate issued by certflow for Names.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Names are the host names and IP addresses the issued server
	// certificate is for. Defaults to localhost, 127.0.0.1, ::1 and the
	// host's name.
	Names []string `yaml:"names"`
	// Validity is the issued server certificate's lifetime; certflow
	// renews it after two thirds of it. Defaults to 720h (30 days).
	Validity time.Duration `yaml:"validity"`
	// ReloadInterval is how often the files (or the issued certificate's
	// age) are checked. Defaults to 5s.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Worker tunes the asynq side.
type Worker struct {
	// Concurrency is the number of tasks one worker process runs at once.
	// Defaults to 32.
	Concurrency int `yaml:"concurrency"`
	// MaxRetry is asynq's retry budget for a workflow task. Crashed workers
	// count against it (hibiken/asynq#1015), so it is generous. Defaults to 25.
	MaxRetry int `yaml:"max_retry"`
	// TaskTimeout bounds one run of a workflow task. Defaults to 5m.
	TaskTimeout time.Duration `yaml:"task_timeout"`
	// ShutdownTimeout is how long in-flight tasks get to finish on SIGTERM
	// before they are handed back to the queue. Defaults to 20s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Retention is how long a settled request (and the certificate issued
	// for it) is kept after it was last read or written; it bounds Redis
	// memory (the README's Speed section has what a request takes).
	// Defaults to 825 days, the longest validity a built-in CA grants, so
	// a record outlives its certificate.
	Retention time.Duration `yaml:"retention"`
	// PollInterval is how often an idle worker asks Redis for new tasks: it
	// bounds the pickup delay when the queue runs empty, at one small Lua
	// call per interval per worker process. Defaults to 10ms.
	PollInterval time.Duration `yaml:"poll_interval"`
	// ScheduledInterval is how often a worker moves tasks whose time has
	// come (an approval's timeout, a callback's retry, the next look at
	// an external CA's order) to the queue: it bounds how late they run,
	// at one small Lua call per interval per asynq server. Defaults to 1s.
	ScheduledInterval time.Duration `yaml:"scheduled_interval"`
	// Servers is how many asynq servers one worker process runs, sharing
	// Concurrency between them. One server dequeues one task per Redis
	// round trip in one loop and, finding the queue empty, sleeps about
	// PollInterval before it looks again; several servers look in turn,
	// so a task that arrives then waits less. Each polls on its own when
	// idle, and each adds its own background calls to Redis. Defaults to 2;
	// never more than Concurrency.
	Servers int `yaml:"servers"`
	// ReconcileAfter: a request QUEUED or RUNNING for longer than this with
	// no progress is enqueued again (the task id makes that safe). Defaults to 10m.
	ReconcileAfter time.Duration `yaml:"reconcile_after"`
}

// Speed holds the switches of the speed shortcuts (docs/speed.md). All
// default to on; turning one off changes how fast certflow is, never what
// it does.
type Speed struct {
	// Piggyback sends a new request's record with its task, in asynq's own
	// enqueue round trip (it relies on asynq's enqueue script; a startup
	// probe turns it off for the process when it does not recognise it).
	// Off: the record is written first, then the task is enqueued.
	Piggyback bool `yaml:"piggyback"`
	// GroupCommit lets concurrent callers' Redis pipelines share round
	// trips. Off: each pipeline is its own round trip.
	GroupCommit bool `yaml:"group_commit"`
	// LeafEncoder builds the usual leaf certificate's TBSCertificate by
	// hand instead of through x509.CreateCertificate (a check when each
	// CA opens turns it off for the process when its bytes differ from
	// x509's). Off: x509 builds every certificate.
	LeafEncoder bool `yaml:"leaf_encoder"`
}

// TurnOff turns off the shortcuts named as in the file (piggyback,
// group_commit, leaf_encoder): `certflow bench --off` measures what each
// is worth.
func (s *Speed) TurnOff(names ...string) error {
	for _, name := range names {
		switch strings.TrimSpace(name) {
		case "piggyback":
			s.Piggyback = false
		case "group_commit":
			s.GroupCommit = false
		case "leaf_encoder":
			s.LeafEncoder = false
		default:
			return fmt.Errorf("speed: no shortcut %q (want piggyback, group_commit or leaf_encoder)", name)
		}
	}
	return nil
}

// Events governs the event log and the workflows events trigger.
type Events struct {
	// Retention is how long the event log keeps an event, and how long a
	// repeated external event Id is refused. Defaults to 720h (30 days).
	Retention time.Duration `yaml:"retention"`
	// ExpiryWatch emits certificate.expiring and certificate.expired.
	ExpiryWatch ExpiryWatch `yaml:"expiry_watch"`
	// PublisherRoles may post events (POST /Events), besides admin.
	// Defaults to [event-publisher].
	PublisherRoles []string `yaml:"publisher_roles"`
	// ReaderRoles may read the event log (GET /Events, GET /Events/{id}),
	// besides admin. Defaults to none.
	ReaderRoles []string `yaml:"reader_roles"`
	// Sources are the systems that post events without a token, signed
	// the Standard Webhooks way (POST /Events/Sources/{name}), by name.
	// Defaults to none.
	Sources map[string]EventSource `yaml:"sources"`
}

// EventSource is a system that posts events signed with a secret of its
// own (Standard Webhooks).
type EventSource struct {
	// Secret is the signing secret, "whsec_" + base64 of at least 16
	// bytes; or SecretFile names a file holding it (mode 0600, read as
	// the callback secret is). Exactly one of them is required.
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// Names are the events the source may post: a name, or "prefix.*"
	// for every name under prefix; never certflow's own (request.,
	// certificate., …). Required.
	Names []string `yaml:"names"`
	// Tolerance is how far webhook-timestamp may be from now, either
	// way. Defaults to 5m; at most 1h.
	Tolerance time.Duration `yaml:"tolerance"`
}

// DefaultEventRetention is events.retention's default.
const DefaultEventRetention = 30 * 24 * time.Hour

// DefaultEventPublisherRole is events.publisher_roles's default.
const DefaultEventPublisherRole = "event-publisher"

// DefaultEventSourceTolerance is an event source's default tolerance,
// and MaxEventSourceTolerance its largest: the longer it is, the longer
// a captured delivery could be replayed were its webhook-id forgotten.
const (
	DefaultEventSourceTolerance = 5 * time.Minute
	MaxEventSourceTolerance     = time.Hour
)

// ToleranceOrDefault is the source's tolerance, its default when unset.
func (s EventSource) ToleranceOrDefault() time.Duration {
	if s.Tolerance == 0 {
		return DefaultEventSourceTolerance
	}
	return s.Tolerance
}

// ExpiryWatch is the periodic job that emits certificate.expiring once
// per certificate per threshold and certificate.expired once
// (docs/events.md, "Expiry watch").
type ExpiryWatch struct {
	// Enabled runs the watch in worker processes. Defaults to true.
	Enabled bool `yaml:"enabled"`
	// Thresholds are how long before its NotAfter a certificate is
	// announced as expiring: Go durations ("36h") or whole days ("14d").
	// Defaults to 30d, 14d, 7d, 1d. At most MaxExpiryThresholds, distinct
	// and positive; an empty list announces expiry only.
	Thresholds []string `yaml:"thresholds"`
	// Interval is how often a pass looks for what is due. Defaults to 1m.
	Interval time.Duration `yaml:"interval"`
}

// Expiry watch defaults and bounds.
var DefaultExpiryThresholds = []string{"30d", "14d", "7d", "1d"}

const (
	DefaultExpiryInterval = time.Minute
	MaxExpiryThresholds   = 10
)

// ExpiryThreshold is one parsed expiry_watch threshold.
type ExpiryThreshold struct {
	// Text is the threshold as configured ("14d"), what events carry.
	Text string
	Lead time.Duration
}

// ParseExpiryThreshold reads a threshold: a Go duration ("36h", "90m")
// or a whole number of days ("14d").
func ParseExpiryThreshold(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		digits := strings.TrimPrefix(days, "-")
		if digits != "" && strings.Trim(digits, "0123456789") == "" {
			n, err := strconv.ParseInt(days, 10, 64)
			if err != nil || n > 100*365 || n < -100*365 {
				return 0, fmt.Errorf("%q is more than 100 years", s)
			}
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 14d or 36h", s)
	}
	return d, nil
}

// ParsedThresholds returns the thresholds parsed, largest first (what
// Validate checks: call it on a validated config).
func (e *ExpiryWatch) ParsedThresholds() []ExpiryThreshold {
	out := make([]ExpiryThreshold, 0, len(e.Thresholds))
	for _, s := range e.Thresholds {
		if d, err := ParseExpiryThreshold(s); err == nil && d > 0 {
			out = append(out, ExpiryThreshold{Text: s, Lead: d})
		}
	}
	slices.SortFunc(out, func(a, b ExpiryThreshold) int { return cmp.Compare(b.Lead, a.Lead) })
	return out
}

// Callbacks governs the result delivery to CallbackUrl.
type Callbacks struct {
	// SigningSecret is the Standard-Webhooks secret ("whsec_" + base64).
	// Defaults to one generated into <DataDir>/webhook-secret.
	SigningSecret string `yaml:"signing_secret"`
	// AllowPrivate permits callback and webhook targets in loopback,
	// private, link-local and other non-public ranges. Defaults to false.
	AllowPrivate bool `yaml:"allow_private"`
	// Timeout bounds one delivery attempt. Defaults to 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Schedule is the delay before each retry. Defaults to 5s, 5m, 30m, 2h, 5h, 10h.
	Schedule []time.Duration `yaml:"schedule"`
}

// SMTP is the mail server the notify step's email goes through.
type SMTP struct {
	// Addr is the server's host:port. Defaults to empty: a definition that
	// sends email then fails to load.
	Addr string `yaml:"addr"`
	// From is the envelope sender and the From header ("certflow
	// <pki@example.com>" or a bare address). Required with Addr. Defaults to empty.
	From string `yaml:"from"`
	// Username and Password authenticate with AUTH PLAIN, only ever over
	// TLS (or to a loopback server). The password may come from
	// CERTFLOW_SMTP_PASSWORD instead; it is never logged. Defaults to
	// empty: no AUTH.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// TLS is "starttls" (required: a server that does not offer it is an
	// error), "implicit" (SMTPS, TLS from the first byte) or "none" (only
	// for a loopback Addr). Defaults to "starttls".
	TLS string `yaml:"tls"`
	// Timeout bounds one whole delivery, connect to QUIT. Defaults to 30s.
	Timeout time.Duration `yaml:"timeout"`
	// CAFile is a PEM file of roots trusted, besides the system's, to
	// verify the server. Defaults to empty: the system roots only.
	CAFile string `yaml:"ca_file"`
}

// Auth lists who may call the API.
type Auth struct {
	Users []User `yaml:"users"`
	// OIDC accepts JWT access tokens from an OAuth 2.0 / OpenID Connect
	// identity provider as bearer tokens. Off unless issuer is set.
	OIDC OIDC `yaml:"oidc"`
}

// OIDC is an identity provider whose JWT access tokens (typically from
// the client-credentials grant) certflow accepts as bearer tokens, their
// signing keys found through the issuer's discovery document and JWKS.
type OIDC struct {
	// Issuer is the provider's issuer URL, exactly as its tokens' iss
	// claim and its discovery document name it; https, or http only for a
	// loopback host. Defaults to empty: OIDC is off.
	Issuer string `yaml:"issuer"`
	// Audience must be one of a token's aud values: the identifier the
	// provider gives certflow as a resource. Required with Issuer.
	Audience string `yaml:"audience"`
	// UsernameClaim is the claim whose value (a string) names the caller.
	// Defaults to "sub".
	UsernameClaim string `yaml:"username_claim"`
	// UsernamePrefix is put before every token user's name, so that no
	// token can take a configured user's name or the admin token's
	// identity; configured users' names may not start with it. Not
	// empty. Defaults to "oidc:".
	UsernamePrefix string `yaml:"username_prefix"`
	// RolesClaim is the claim holding the caller's roles, a string or a
	// list of strings; a dotted path reaches into objects
	// (realm_access.roles). Defaults to "roles".
	RolesClaim string `yaml:"roles_claim"`
	// RoleMap maps the provider's role (or group) values to certflow
	// roles; values it does not name give no role. Without it, the
	// values are certflow role names as they are, except admin (in any
	// case), which a token only gets through the map.
	RoleMap map[string]string `yaml:"role_map"`
	// AllowedAlgs are the signature algorithms accepted; asymmetric only
	// (HS256 and none are never accepted). Defaults to RS256, RS384,
	// RS512, PS256, PS384, PS512, ES256, ES384, ES512 and EdDSA.
	AllowedAlgs []string `yaml:"allowed_algs"`
	// AllowedClients, when set, are the only OAuth clients whose tokens
	// are taken: a token's azp (else its client_id) must be one of them.
	// Defaults to empty: any client the issuer gives certflow's audience.
	AllowedClients []string `yaml:"allowed_clients"`
	// CAFile is a PEM file of roots trusted, besides the system's, to
	// verify the issuer's HTTPS. Defaults to empty: the system roots only.
	CAFile string `yaml:"ca_file"`
	// ClockSkew is how far past its exp a token is still accepted, and
	// how far in the future its iat may be. Defaults to 1m.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// MaxKeyAge is how long the issuer's signing keys are trusted without
	// a successful fetch: past it, while the provider is unreachable, the
	// keys held are dropped (a key it withdrew meanwhile must not verify
	// for ever) and bearer JWTs are answered 503. Defaults to 24h.
	MaxKeyAge time.Duration `yaml:"max_key_age"`
}

// Enabled reports whether bearer JWTs are checked against an issuer.
func (o *OIDC) Enabled() bool { return o.Issuer != "" }

// User is one API identity. Exactly one of Token and PasswordHash is set:
// Token is a bearer token (plain, or "sha256:<hex>" of it); PasswordHash is
// a bcrypt hash for HTTP Basic.
type User struct {
	Name         string   `yaml:"name"`
	Token        string   `yaml:"token"`
	PasswordHash string   `yaml:"password_hash"`
	Roles        []string `yaml:"roles"`
}

// AdminName is the identity of the CERTFLOW_ADMIN_TOKEN bearer; no
// configured user may take it (requests are owned by name).
const AdminName = "admin"

// SystemNamePrefix starts the names of certflow's own callers (such as
// certflow:automation, the requester of what event-triggered definitions
// submit): no configured user or token user may be named so.
const SystemNamePrefix = "certflow:"

// EventSourceNamePrefix starts the name a signed event source posts as
// (webhook:<source>, POST /Events/Sources/{name}): no user may take such
// a name, or they would post events as the source, which definitions
// trust by event.Source.
const EventSourceNamePrefix = "webhook:"

// Roles with built-in meaning: requester enrolls, approver reads every
// request and is an approval step's default decider, admin may do
// everything. Any other role name (RolePattern) is the organisation's own,
// for approval steps' roles.
const (
	RoleRequester = "requester"
	RoleApprover  = "approver"
	RoleAdmin     = "admin"
)

// RolePattern is the shape of a role name.
const RolePattern = `^[A-Za-z][A-Za-z0-9_.-]{0,63}$`

var roleRE = regexp.MustCompile(RolePattern)

// Load reads the file at path over the defaults. Unknown keys are errors.
// An empty path returns the defaults.
func Load(path string) (Config, error) {
	cfg := Default()
	if path == "" {
		return cfg, cfg.Validate()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if len(root.Content) > 0 {
		if err := checkShape(path, root.Content[0], reflect.TypeOf(cfg)); err != nil {
			return cfg, err
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	cfg.Queue = ""                                                      // derived from key_prefix unless the file names one
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.fillDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Roles returns every security role: the built-in ones, then the configured.
func (c *Config) Roles() []SecurityRole {
	return slices.Concat(BuiltinRoles, c.SecurityRoles)
}

// RoleByID finds a security role by its id.
func (c *Config) RoleByID(id int64) (SecurityRole, bool) {
	for _, r := range c.Roles() {
		if r.ID == id {
			return r, true
		}
	}
	return SecurityRole{}, false
}

// RoleByName finds a security role by name, ignoring case.
func (c *Config) RoleByName(name string) (SecurityRole, bool) {
	r := c.roleByName(name)
	return r, r.ID != 0
}

func (c *Config) roleByName(name string) SecurityRole {
	for _, r := range c.Roles() {
		if strings.EqualFold(r.Name, name) {
			return r
		}
	}
	return SecurityRole{}
}

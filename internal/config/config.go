// Package config is certflow's configuration file: its shape, its defaults
// and its validation. A file only needs the settings it changes; everything it
// leaves out keeps the default, so a file holding only `auth:` still has the
// WebServer template and the built-in CA.
package config

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/metadata"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/certflow/certflow/internal/pki"
)

// Config is the whole configuration file.
type Config struct {
	// Listen is the API's address. Defaults to 127.0.0.1:8080.
	Listen string `yaml:"listen"`
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
	// memory at about 6 KB per request. Defaults to 825 days, the longest
	// validity a built-in CA grants, so a record outlives its certificate.
	Retention time.Duration `yaml:"retention"`
	// PollInterval is how often an idle worker asks Redis for new tasks: it
	// bounds the pickup delay when the queue runs empty, at one small Lua
	// call per interval per worker process. Defaults to 10ms.
	PollInterval time.Duration `yaml:"poll_interval"`
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
	// hand instead of through x509.CreateCertificate. Off: x509 builds
	// every certificate.
	LeafEncoder bool `yaml:"leaf_encoder"`
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
}

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

// CA is a certificate authority certflow can issue from.
type CA struct {
	// Name is the logical name ("CertflowIssuingCA").
	Name string `yaml:"name"`
	// Host is the host part of Keyfactor's "host\\logical" form.
	Host string `yaml:"host"`
	// Type is "builtin" (the only kind so far).
	Type string `yaml:"type"`
	// KeyType of the CA's own keys: "ecdsa-p256" (default), "ecdsa-p384",
	// "rsa-2048", "rsa-3072", "rsa-4096".
	KeyType string `yaml:"key_type"`
	// Standalone CAs need no template; requests must name them.
	Standalone bool `yaml:"standalone"`
	// MaxValidity caps what a template asks for. Defaults to 825 days.
	MaxValidity time.Duration `yaml:"max_validity"`

	// Policy binds the requests that name a standalone CA without a
	// template (a CA that serves templates is bound by theirs). The
	// defaults are safe: RSA 2048, 3072 and 4096, P-256 and P-384, no
	// Ed25519, no wildcards, DNS and IP names only, no local names, and
	// allowed_requesters [requester].
	Policy `yaml:",inline"`
}

// Policy is the key and name policy a template or a standalone CA sets,
// and who may enroll with it (internal/policy applies it).
type Policy struct {
	// RSAKeySizes are the RSA sizes allowed.
	RSAKeySizes []int `yaml:"rsa_key_sizes"`
	// ECCCurves are the curves allowed.
	ECCCurves []string `yaml:"ecc_curves"`
	// AllowEd25519 allows Ed25519 keys. Defaults to false.
	AllowEd25519 bool `yaml:"allow_ed25519"`
	// AllowWildcards allows a left-most "*." label (never directly under
	// a public suffix such as "*.com"). Defaults to false.
	AllowWildcards bool `yaml:"allow_wildcards"`
	// SANTypes are the subject alternative name types (dns, ip, email,
	// uri) the certificates may carry; a request with another type is
	// refused.
	SANTypes []string `yaml:"san_types"`
	// AllowLocalNames allows "localhost" names and loopback, link-local
	// and unspecified IP addresses. Defaults to false.
	AllowLocalNames bool `yaml:"allow_local_names"`
	// AllowedRequesters are the roles whose holders may enroll (admin
	// holds every role).
	AllowedRequesters []string `yaml:"allowed_requesters"`
}

// SAN types, as san_types names them.
const (
	SANTypeDNS   = "dns"
	SANTypeIP    = "ip"
	SANTypeEmail = "email"
	SANTypeURI   = "uri"
)

// SANTypes are the known SAN types.
var SANTypes = []string{SANTypeDNS, SANTypeIP, SANTypeEmail, SANTypeURI}

// DefaultSANTypes are the SAN types of a template or CA that names none:
// a server's (DNS names and IP addresses), and mail addresses too for a
// template whose certificates protect e-mail.
func DefaultSANTypes(extKeyUsages []string) []string {
	if slices.Contains(extKeyUsages, "EmailProtection") {
		return []string{SANTypeDNS, SANTypeIP, SANTypeEmail}
	}
	return []string{SANTypeDNS, SANTypeIP}
}

// WithPolicyDefaults returns the CA with the safe defaults in every
// policy setting it leaves out (nil, not an explicitly empty list): RSA
// 2048, 3072 and 4096, P-256 and P-384, DNS and IP names, the requester
// role.
func (ca CA) WithPolicyDefaults() CA {
	if ca.RSAKeySizes == nil {
		ca.RSAKeySizes = []int{2048, 3072, 4096}
	}
	if ca.ECCCurves == nil {
		ca.ECCCurves = []string{"P-256", "P-384"}
	}
	if ca.SANTypes == nil {
		ca.SANTypes = DefaultSANTypes(nil)
	}
	if ca.AllowedRequesters == nil {
		ca.AllowedRequesters = []string{RoleRequester}
	}
	return ca
}

// MayEnroll reports whether a caller holding roles may enroll with the
// standalone CA: a holder of one of AllowedRequesters (admin holds every
// role).
func (ca *CA) MayEnroll(roles []string) bool {
	return mayEnroll(roles, ca.WithPolicyDefaults().AllowedRequesters)
}

// Template is Keyfactor's certificate template: the policy a request is
// checked against and the profile its certificate gets.
type Template struct {
	// Name is the short name requests give as Template. Required.
	Name string `yaml:"name"`
	// DisplayName defaults to Name.
	DisplayName string `yaml:"display_name"`
	// CAs are the authorities that serve the template; a request that
	// names none gets one of them at random. Defaults to the first CA.
	CAs []string `yaml:"certificate_authorities"`
	// Policy is what the template's certificates may carry and who may
	// enroll: for a template, RSAKeySizes defaults to 2048, 3072, 4096,
	// ECCCurves to P-256, P-384, SANTypes to dns and ip (and email with
	// EmailProtection), AllowedRequesters to empty (any requester).
	Policy `yaml:",inline"`
	// RFCEnforcement (RFC 2818) adds the CN as a DNS or IP SAN when it is
	// one, and denies a request left with no DNS or IP SAN. Defaults to
	// false for a template a file adds (true for the built-in WebServer).
	RFCEnforcement bool `yaml:"rfc_enforcement"`
	// Validity of issued certificates, capped by the CA. Defaults to 397 days.
	Validity time.Duration `yaml:"validity"`
	// KeyUsages and ExtKeyUsages of issued certificates. Default to
	// DigitalSignature, KeyEncipherment and ServerAuth, ClientAuth.
	KeyUsages    []string `yaml:"key_usages"`
	ExtKeyUsages []string `yaml:"extended_key_usages"`
	// KeyRetention accepts a request's PrivateKey and keeps it sealed.
	// Defaults to false.
	KeyRetention bool `yaml:"key_retention"`
	// RequireOwnerRole makes OwnerRoleId/OwnerRoleName mandatory.
	// Defaults to false.
	RequireOwnerRole bool `yaml:"require_owner_role"`
	// MetadataFields change, for this template's enrollments, how
	// configured metadata fields take part (Keyfactor's template metadata
	// fields). Defaults to none: every field as metadata_fields says.
	MetadataFields []TemplateMetaField `yaml:"metadata_fields"`
	// EnrollmentFields are the template's custom request attributes,
	// given in a request's AdditionalEnrollmentFields and passed to the
	// CA. Defaults to none: the template takes no additional fields.
	EnrollmentFields []EnrollmentField `yaml:"enrollment_fields"`
}

// TemplateMetaField overrides a metadata field's settings for one
// template's enrollments. An empty setting keeps the field's own.
type TemplateMetaField struct {
	// Name is a field of metadata_fields. Required.
	Name string `yaml:"name"`
	// Enrollment is Optional, Required or Hidden. Defaults to the field's.
	Enrollment string `yaml:"enrollment"`
	// DefaultValue replaces the field's default. Defaults to the field's.
	DefaultValue string `yaml:"default_value"`
	// Validation and Message (String fields only) replace the field's
	// pattern and its message. Default to the field's.
	Validation string `yaml:"validation"`
	Message    string `yaml:"message"`
}

// Enrollment field types, as Keyfactor numbers them (DataType).
const (
	EnrollmentFieldString         = "String"         // DataType 1
	EnrollmentFieldMultipleChoice = "MultipleChoice" // DataType 2
)

// EnrollmentField is a template's custom request attribute (Keyfactor's
// template EnrollmentFields).
type EnrollmentField struct {
	// Name is the key in AdditionalEnrollmentFields (exact case on the
	// wire is not required; names compare without case). Required.
	Name string `yaml:"name"`
	// Type is String or MultipleChoice. Defaults to String.
	Type string `yaml:"type"`
	// Options (MultipleChoice only) are the allowed values, exact case.
	Options []string `yaml:"options"`
	// Required makes the field mandatory at enrollment. Defaults to false.
	Required bool `yaml:"required"`
}

// MetaField is a Keyfactor metadata field definition. Values are checked
// against it (internal/metadata) wherever they are set: the request's
// Metadata, the workflow's metadata step, DefaultValue itself.
type MetaField struct {
	Name string `yaml:"name"`
	// Description and Hint are shown by GET /MetadataFields. Default to empty.
	Description string `yaml:"description"`
	Hint        string `yaml:"hint"`
	// DisplayOrder orders the fields in GET /MetadataFields. Defaults to
	// 0, which shows the field's position in the list (1, 2, …).
	DisplayOrder int `yaml:"display_order"`
	// Type is String, Integer, Date, Boolean, MultipleChoice, BigText or
	// Email. Defaults to String.
	Type string `yaml:"type"`
	// Enrollment is Optional, Required or Hidden (only workflows set it).
	// Defaults to Optional.
	Enrollment   string `yaml:"enrollment"`
	DefaultValue string `yaml:"default_value"`
	// Validation (String only) is a regular expression the whole value
	// must match; Message is the error shown when it does not.
	Validation string `yaml:"validation"`
	Message    string `yaml:"message"`
	// Options (MultipleChoice only) are the allowed values, exact case.
	Options []string `yaml:"options"`
}

// Defaults, exported so docs and tests can name them.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultDataDir         = ".certflow"
	DefaultDefinitions     = "definitions"
	DefaultKeyPrefix       = "certflow"
	DefaultQueue           = "certflow"
	DefaultMaxBodyBytes    = 1 << 20
	DefaultSyncWait        = 30 * time.Second
	DefaultMaxSyncWait     = 120 * time.Second
	DefaultIdempotencyTTL  = 24 * time.Hour
	DefaultRedisTimeout    = 3 * time.Second
	DefaultMaxPendingCSRs  = 100
	DefaultMaxSANs         = 100
	DefaultConcurrency     = 32
	DefaultMaxRetry        = 25
	DefaultTaskTimeout     = 5 * time.Minute
	DefaultShutdownTimeout = 20 * time.Second
	DefaultReconcileAfter  = 10 * time.Minute
	DefaultPollInterval    = 10 * time.Millisecond
	DefaultServers         = 2
	DefaultRetention       = 825 * 24 * time.Hour
	DefaultCallbackTimeout = 10 * time.Second
	DefaultCAName          = "CertflowIssuingCA"
	DefaultCAHost          = "certflow"
	DefaultTemplate        = "WebServer"
)

// Failed-login budgets: API.AuthFailuresPerMinute and the two after it.
const (
	DefaultAuthFailuresPerMinute      = 30
	DefaultAuthFailuresPerUserPerHour = 10
	DefaultAuthMaxLockout             = 15 * time.Minute
)

// DefaultCallbackSchedule follows the Standard Webhooks recommendation.
var DefaultCallbackSchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour,
}

// Default returns the configuration certflow runs with when no file is given.
func Default() Config {
	return Config{
		Listen:      DefaultListen,
		DataDir:     DefaultDataDir,
		Definitions: DefaultDefinitions,
		KeyPrefix:   DefaultKeyPrefix,
		Queue:       DefaultQueue,
		API: API{
			MaxBodyBytes:          DefaultMaxBodyBytes,
			SyncWait:              DefaultSyncWait,
			MaxSyncWait:           DefaultMaxSyncWait,
			IdempotencyTTL:        DefaultIdempotencyTTL,
			RedisTimeout:          DefaultRedisTimeout,
			RateLimit:             100,
			RateBurst:             200,
			AuthFailuresPerMinute: DefaultAuthFailuresPerMinute,
			MaxPendingCSRs:        DefaultMaxPendingCSRs,
			MaxSANs:               DefaultMaxSANs,
			// Key generation is CPU-bound: more at once only slows each.
			KeyGenerationConcurrency:   runtime.NumCPU(),
			AuthFailuresPerUserPerHour: DefaultAuthFailuresPerUserPerHour,
			AuthMaxLockout:             DefaultAuthMaxLockout,
		},
		Worker: Worker{
			Concurrency:     DefaultConcurrency,
			MaxRetry:        DefaultMaxRetry,
			TaskTimeout:     DefaultTaskTimeout,
			ShutdownTimeout: DefaultShutdownTimeout,
			ReconcileAfter:  DefaultReconcileAfter,
			PollInterval:    DefaultPollInterval,
			Servers:         DefaultServers,
			Retention:       DefaultRetention,
		},
		Callbacks: Callbacks{Timeout: DefaultCallbackTimeout, Schedule: slices.Clone(DefaultCallbackSchedule)},
		SMTP:      SMTP{TLS: "starttls", Timeout: 30 * time.Second},
		Speed:     Speed{Piggyback: true, GroupCommit: true, LeafEncoder: true},
		CAs: []CA{CA{
			Name: DefaultCAName, Host: DefaultCAHost, Type: "builtin", KeyType: "ecdsa-p256",
			MaxValidity: 825 * 24 * time.Hour,
		}.WithPolicyDefaults()},
		Templates: []Template{{
			Name:           DefaultTemplate,
			DisplayName:    "Web Server",
			CAs:            []string{DefaultCAName},
			Policy:         Policy{RSAKeySizes: []int{2048, 3072, 4096}, ECCCurves: []string{"P-256", "P-384"}},
			RFCEnforcement: true,
			Validity:       397 * 24 * time.Hour,
			KeyUsages:      []string{"DigitalSignature", "KeyEncipherment"},
			ExtKeyUsages:   []string{"ServerAuth", "ClientAuth"},
		}},
	}
}

// fillDefaults gives the entries a file adds (a CA, a template) the
// defaults the built-in ones have, for every setting the entry leaves out
// (nil, not an explicitly empty list), and names the queue after the key
// prefix so that two certflows sharing a Redis never take each other's tasks.
func (c *Config) fillDefaults() {
	if c.Queue == "" {
		c.Queue = c.KeyPrefix
	}
	def := Default()
	dca, dt := def.CAs[0], def.Templates[0]
	for i := range c.CAs {
		ca := &c.CAs[i]
		ca.Host = cmp.Or(ca.Host, dca.Host)
		ca.Type = cmp.Or(ca.Type, dca.Type)
		ca.KeyType = cmp.Or(ca.KeyType, dca.KeyType)
		ca.MaxValidity = cmp.Or(ca.MaxValidity, dca.MaxValidity)
		*ca = ca.WithPolicyDefaults()
	}
	for i := range c.Templates {
		t := &c.Templates[i]
		t.DisplayName = cmp.Or(t.DisplayName, t.Name)
		t.Validity = cmp.Or(t.Validity, dt.Validity)
		if t.CAs == nil && len(c.CAs) > 0 {
			t.CAs = []string{c.CAs[0].Name}
		}
		if t.RSAKeySizes == nil {
			t.RSAKeySizes = dt.RSAKeySizes
		}
		if t.ECCCurves == nil {
			t.ECCCurves = dt.ECCCurves
		}
		if t.KeyUsages == nil {
			t.KeyUsages = dt.KeyUsages
		}
		if t.ExtKeyUsages == nil {
			t.ExtKeyUsages = dt.ExtKeyUsages
		}
	}
}

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

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks the whole configuration; its errors name the setting.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
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
	if c.API.MaxBodyBytes < 1024 {
		bad("api.max_body_bytes: must be at least 1024")
	}
	if c.API.RateLimit < 0 || (c.API.RateLimit > 0 && c.API.RateBurst < 1) {
		bad("api.rate_limit: must be 0 (off) or positive, with api.rate_burst at least 1")
	}
	if c.API.MaxSANs < 1 || c.API.MaxSANs > 10000 {
		bad("api.max_sans: must be between 1 and 10000")
	}
	if c.API.MaxPendingCSRs < 1 {
		bad("api.max_pending_csrs: must be at least 1")
	}
	if c.API.KeyGenerationConcurrency < 1 {
		bad("api.key_generation_concurrency: must be at least 1")
	}
	if c.API.RenewalGrace < 0 || c.API.RenewalGrace > c.Worker.Retention {
		bad("api.renewal_grace: must be between 0 and worker.retention (%s)", c.Worker.Retention)
	}
	if c.API.AuthFailuresPerMinute < 1 {
		bad("api.auth_failures_per_minute: must be at least 1")
	}
	if c.API.AuthFailuresPerUserPerHour < 1 {
		bad("api.auth_failures_per_user_per_hour: must be at least 1")
	}
	if c.API.AuthMaxLockout < time.Second {
		bad("api.auth_max_lockout: must be at least 1s")
	}
	if c.API.SyncWait < 0 || c.API.MaxSyncWait < c.API.SyncWait {
		bad("api.sync_wait: must be between 0 and api.max_sync_wait")
	}
	if c.Worker.ReconcileAfter <= c.Worker.TaskTimeout {
		bad("worker.reconcile_after: must be longer than worker.task_timeout (%s), or a running task would be started again", c.Worker.TaskTimeout)
	}
	if c.Worker.Concurrency < 1 {
		bad("worker.concurrency: must be at least 1")
	}
	if c.Worker.Servers < 1 {
		bad("worker.servers: must be at least 1")
	}
	if c.Worker.MaxRetry < 1 {
		bad("worker.max_retry: must be at least 1 (a crashed worker counts as a retry)")
	}
	if len(c.Callbacks.Schedule) == 0 {
		bad("callbacks.schedule: must list at least one retry delay")
	}
	for i, d := range c.Callbacks.Schedule {
		if d <= 0 {
			bad("callbacks.schedule[%d]: must be positive", i)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"api.idempotency_ttl", c.API.IdempotencyTTL},
		{"api.redis_timeout", c.API.RedisTimeout},
		{"worker.task_timeout", c.Worker.TaskTimeout},
		{"worker.shutdown_timeout", c.Worker.ShutdownTimeout},
		{"worker.reconcile_after", c.Worker.ReconcileAfter},
		{"worker.poll_interval", c.Worker.PollInterval},
		{"worker.retention", c.Worker.Retention},
		{"callbacks.timeout", c.Callbacks.Timeout},
		{"smtp.timeout", c.SMTP.Timeout},
	} {
		if d.v <= 0 {
			bad("%s: must be positive", d.name)
		}
	}
	if !slices.Contains([]string{"starttls", "implicit", "none"}, c.SMTP.TLS) {
		bad("smtp.tls: %q (want starttls, implicit or none)", c.SMTP.TLS)
	}
	if c.SMTP.Addr != "" {
		host, port, err := net.SplitHostPort(c.SMTP.Addr)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			bad("smtp.addr: %q is not host:port", c.SMTP.Addr)
		} else if ip := net.ParseIP(host); c.SMTP.TLS == "none" && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			bad("smtp.tls: none is only allowed for a loopback smtp.addr, not %q", host)
		}
		if _, err := mail.ParseAddress(c.SMTP.From); err != nil {
			bad("smtp.from: %q is not a mail address", c.SMTP.From)
		}
	}
	seenUser := map[string]bool{}
	for i, u := range c.Auth.Users {
		field := fmt.Sprintf("auth.users[%d]", i)
		switch {
		case u.Name == "":
			bad("%s.name: required", field)
		case u.Name == AdminName:
			bad("%s.name: %q is reserved for CERTFLOW_ADMIN_TOKEN's identity", field, u.Name)
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
			builtin := slices.ContainsFunc([]string{RoleRequester, RoleApprover, RoleAdmin}, func(b string) bool { return strings.EqualFold(b, r) })
			switch {
			case !roleRE.MatchString(r):
				bad("%s.roles: %q is not a role name (letters, digits, -, _ and .; built in: requester, approver, admin)", field, r)
			case builtin && r != strings.ToLower(r):
				bad("%s.roles: %q: the built-in roles are spelt requester, approver and admin", field, r)
			}
		}
	}
	caNames := map[string]bool{}
	for i, ca := range c.CAs {
		field := fmt.Sprintf("certificate_authorities[%d]", i)
		checkName(field, ca.Name, caNames, bad)
		if !nameRE.MatchString(ca.Host) {
			bad("%s.host: %q is not a valid host name", field, ca.Host)
		}
		if ca.Type != "builtin" {
			bad("%s.type: %q is not supported (want builtin)", field, ca.Type)
		}
		if !slices.Contains([]string{"ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"}, ca.KeyType) {
			bad("%s.key_type: %q (want ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096)", field, ca.KeyType)
		}
		if ca.MaxValidity <= 0 {
			bad("%s.max_validity: must be positive", field)
		}
		validatePolicy(field, &ca.Policy, bad)
	}
	tmplNames := map[string]bool{}
	for i, t := range c.Templates {
		field := fmt.Sprintf("templates[%d]", i)
		checkName(field, t.Name, tmplNames, bad)
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
	c.validateMetadataFields(bad)
	c.validateSecurityRoles(bad)
	for i := range c.Templates {
		c.validateTemplateFields(fmt.Sprintf("templates[%d]", i), &c.Templates[i], bad)
	}
	return errors.Join(errs...)
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

// MetaField finds a configured metadata field by name, ignoring case as
// Keyfactor does.
func (c *Config) MetaField(name string) *MetaField {
	for i := range c.Metadata {
		if strings.EqualFold(c.Metadata[i].Name, name) {
			return &c.Metadata[i]
		}
	}
	return nil
}

// MetaField returns f as it applies to enrollments with t: the field with
// the template's overrides, if it has any for f. t may be nil.
func (t *Template) MetaField(f *MetaField) MetaField {
	eff := *f
	if t == nil {
		return eff
	}
	for _, o := range t.MetadataFields {
		if !strings.EqualFold(o.Name, f.Name) {
			continue
		}
		eff.Enrollment = cmp.Or(o.Enrollment, eff.Enrollment)
		eff.DefaultValue = cmp.Or(o.DefaultValue, eff.DefaultValue)
		if o.Validation != "" {
			eff.Validation, eff.Message = o.Validation, o.Message
		} else {
			eff.Message = cmp.Or(o.Message, eff.Message)
		}
	}
	return eff
}

// EnrollmentField finds one of t's enrollment fields by name, ignoring case.
func (t *Template) EnrollmentField(name string) *EnrollmentField {
	for i := range t.EnrollmentFields {
		if strings.EqualFold(t.EnrollmentFields[i].Name, name) {
			return &t.EnrollmentFields[i]
		}
	}
	return nil
}

// MayEnroll reports whether a caller holding roles may enroll with t: any
// requester when AllowedRequesters is empty, else a holder of one of them
// (admin holds every role).
func (t *Template) MayEnroll(roles []string) bool {
	if !slices.Contains(roles, RoleAdmin) && !slices.Contains(roles, RoleRequester) {
		return false
	}
	return len(t.AllowedRequesters) == 0 || mayEnroll(roles, t.AllowedRequesters)
}

// mayEnroll: admin, or a holder of one of allowed.
func mayEnroll(roles, allowed []string) bool {
	return slices.Contains(roles, RoleAdmin) ||
		slices.ContainsFunc(roles, func(r string) bool { return slices.Contains(allowed, r) })
}

// AllowedSANTypes are the SAN types the template's certificates may carry.
func (t *Template) AllowedSANTypes() []string {
	if t.SANTypes == nil {
		return DefaultSANTypes(t.ExtKeyUsages)
	}
	return t.SANTypes
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

// Template finds a template by its short name, ignoring case as Keyfactor does.
func (c *Config) Template(name string) (*Template, bool) {
	for i := range c.Templates {
		if strings.EqualFold(c.Templates[i].Name, name) {
			return &c.Templates[i], true
		}
	}
	return nil, false
}

// CA finds an authority by Keyfactor's "host\\logical" or bare "logical"
// name, ignoring case. A host part, when given, must match.
func (c *Config) CA(name string) (*CA, bool) {
	host, logical, hasHost := strings.Cut(strings.ReplaceAll(name, `\\`, `\`), `\`)
	if !hasHost {
		logical, host = host, ""
	}
	for i := range c.CAs {
		ca := &c.CAs[i]
		if strings.EqualFold(ca.Name, logical) && (!hasHost || strings.EqualFold(ca.Host, host)) {
			return ca, true
		}
	}
	return nil, false
}

// QualifiedName is Keyfactor's host\logical form of a CA's name: one
// backslash (JSON shows it escaped as two).
func (ca *CA) QualifiedName() string { return ca.Host + `\` + ca.Name }

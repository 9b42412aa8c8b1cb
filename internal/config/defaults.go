package config

import (
	"cmp"
	"runtime"
	"slices"
	"time"
)

// Defaults, exported so docs and tests can name them.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultTLSListen       = "127.0.0.1:8443"
	DefaultTLSValidity     = 30 * 24 * time.Hour
	DefaultTLSReload       = 5 * time.Second
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
	DefaultMaxScan         = 10000
	DefaultMaxIndexRead    = 1000000
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

// OIDC defaults: Auth.OIDC's claims, prefix, algorithms and skew.
const (
	DefaultOIDCUsernameClaim  = "sub"
	DefaultOIDCUsernamePrefix = "oidc:"
	DefaultOIDCRolesClaim     = "roles"
	DefaultOIDCClockSkew      = time.Minute
	DefaultOIDCMaxKeyAge      = 24 * time.Hour
)

// DefaultOIDCAlgs are the asymmetric JWS algorithms accepted by default.
var DefaultOIDCAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// DefaultCallbackSchedule follows the Standard Webhooks recommendation.
var DefaultCallbackSchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour,
}

// Default returns the configuration certflow runs with when no file is given.
func Default() Config {
	return Config{
		Listen:      DefaultListen,
		TLS:         TLS{Listen: DefaultTLSListen, Validity: DefaultTLSValidity, ReloadInterval: DefaultTLSReload},
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
			MaxScan:               DefaultMaxScan,
			MaxIndexRead:          DefaultMaxIndexRead,
			// Key generation is CPU-bound: more at once only slows each.
			KeyGenerationConcurrency:   runtime.NumCPU(),
			AuthFailuresPerUserPerHour: DefaultAuthFailuresPerUserPerHour,
			AuthMaxLockout:             DefaultAuthMaxLockout,
		},
		Worker: Worker{
			Concurrency:       DefaultConcurrency,
			MaxRetry:          DefaultMaxRetry,
			TaskTimeout:       DefaultTaskTimeout,
			ShutdownTimeout:   DefaultShutdownTimeout,
			ReconcileAfter:    DefaultReconcileAfter,
			PollInterval:      DefaultPollInterval,
			ScheduledInterval: time.Second,
			Servers:           DefaultServers,
			Retention:         DefaultRetention,
		},
		Callbacks: Callbacks{Timeout: DefaultCallbackTimeout, Schedule: slices.Clone(DefaultCallbackSchedule)},
		SMTP:      SMTP{TLS: "starttls", Timeout: 30 * time.Second},
		Events: Events{Retention: DefaultEventRetention, ExpiryWatch: ExpiryWatch{
			Enabled: true, Thresholds: slices.Clone(DefaultExpiryThresholds), Interval: DefaultExpiryInterval,
		}, PublisherRoles: []string{DefaultEventPublisherRole}},
		Speed: Speed{Piggyback: true, GroupCommit: true, LeafEncoder: true},
		Auth: Auth{OIDC: OIDC{
			UsernameClaim: DefaultOIDCUsernameClaim, UsernamePrefix: DefaultOIDCUsernamePrefix,
			RolesClaim: DefaultOIDCRolesClaim, AllowedAlgs: slices.Clone(DefaultOIDCAlgs), ClockSkew: DefaultOIDCClockSkew,
			MaxKeyAge: DefaultOIDCMaxKeyAge,
		}},
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
	if c.Events.ExpiryWatch.Thresholds == nil { // "thresholds:" with no value; [] is an empty list
		c.Events.ExpiryWatch.Thresholds = def.Events.ExpiryWatch.Thresholds
	}
	dca, dt := def.CAs[0], def.Templates[0]
	for i := range c.CAs {
		ca := &c.CAs[i]
		ca.Host = cmp.Or(ca.Host, dca.Host)
		ca.Type = cmp.Or(ca.Type, dca.Type)
		ca.KeyType = cmp.Or(ca.KeyType, dca.KeyType)
		ca.MaxValidity = cmp.Or(ca.MaxValidity, dca.MaxValidity)
		*ca = ca.WithPolicyDefaults()
		if ca.ACME != nil {
			ca.ACME.withACMEDefaults()
		}
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

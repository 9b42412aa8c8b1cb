package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// CA types.
const (
	CATypeBuiltin = "builtin"
	CATypeACME    = "acme"
)

// ACME challenge types.
const (
	ChallengeHTTP01 = "http-01"
	ChallengeDNS01  = "dns-01"
)

// ACME configures a certificate authority of type acme: an external CA
// reached over RFC 8555. certflow is the ACME client; the CA signs.
type ACME struct {
	// Directory is the CA's ACME directory URL (https; http only for a
	// loopback host).
	Directory string `yaml:"directory"`
	// Contact are the account's contact URLs (mailto:…).
	Contact []string `yaml:"contact"`
	// EAB binds the account to one the CA knows (RFC 8555 §7.3.4), as
	// ZeroSSL, Google Trust Services, Sectigo and DigiCert ask.
	EAB *EAB `yaml:"external_account_binding"`
	// CABundle is a PEM file of roots trusted for the directory's TLS (a
	// private CA's directory); empty: the system's roots.
	CABundle string `yaml:"ca_bundle"`
	// Profile is the certificate profile asked for (draft-ietf-acme-
	// profiles), when the CA offers profiles.
	Profile string `yaml:"profile"`
	// Challenge is http-01 (default) or dns-01.
	Challenge string `yaml:"challenge"`
	// DNS answers dns-01 challenges.
	DNS ACMEDNS `yaml:"dns"`
	// PollInterval is the first wait between two looks at an order
	// (default 2s); each wait doubles, up to MaxPollInterval (default
	// 5m). A Retry-After the CA sends is honoured instead.
	PollInterval    time.Duration `yaml:"poll_interval"`
	MaxPollInterval time.Duration `yaml:"max_poll_interval"`
	// OrderTimeout ends a request FAILED when its order is not valid
	// this long after it was placed (default 24h).
	OrderTimeout time.Duration `yaml:"order_timeout"`
	// Timeout bounds one exchange with the CA (default 30s).
	Timeout time.Duration `yaml:"timeout"`
}

// EAB is an external account binding: the key id and the base64url HMAC
// key the CA gave, inline or (better) in a file only certflow may read.
type EAB struct {
	KeyID       string `yaml:"key_id"`
	HMACKey     string `yaml:"hmac_key"`
	HMACKeyFile string `yaml:"hmac_key_file"`
}

// ACMEDNS answers dns-01 challenges: through a DNS provider of the lego
// library (its credentials from its own environment variables, or their
// _FILE forms), or through a hook (HTTP calls) for DNS systems no
// provider covers. Exactly one.
type ACMEDNS struct {
	Provider string   `yaml:"provider"`
	Hook     *DNSHook `yaml:"hook"`
	// PropagationDelay is how long certflow waits, after presenting the
	// record, before asking the CA to look (default 0).
	PropagationDelay time.Duration `yaml:"propagation_delay"`
}

// DNSHook presents and cleans up TXT records with HTTP calls. Each call is
// a POST of Body with {fqdn}, {value} and {domain} replaced by the record's
// name (with its final dot), its value and the name being validated, each
// JSON-string escaped.
type DNSHook struct {
	Present DNSHookCall `yaml:"present"`
	Cleanup DNSHookCall `yaml:"cleanup"`
	// Headers are sent with every call; a value may be read from a file
	// with HeaderFiles (name → file), never logged.
	Headers     map[string]string `yaml:"headers"`
	HeaderFiles map[string]string `yaml:"header_files"`
	// AllowPrivate lets the hook reach private and loopback addresses
	// (an internal DNS API). Default false.
	AllowPrivate bool `yaml:"allow_private"`
}

// DNSHookCall is one call of a DNSHook.
type DNSHookCall struct {
	URL  string `yaml:"url"`
	Body string `yaml:"body"`
}

// ACMEClient is certflow's side of the ACME CAs' challenges.
type ACMEClient struct {
	// HTTP01Listen is a plain-HTTP address (":80" in production, where
	// the CA looks) that serves only /.well-known/acme-challenge/ from
	// Redis, in every API process. Empty: none; the API's own listeners
	// answer the path too (behind a proxy that forwards port 80).
	HTTP01Listen string `yaml:"http01_listen"`
}

func (c *ACMEClient) validate(bad func(format string, args ...any)) {
	if c.HTTP01Listen == "" {
		return
	}
	if _, port, err := net.SplitHostPort(c.HTTP01Listen); err != nil || port == "" {
		bad("acme_client.http01_listen: %q is not host:port (e.g. :80)", c.HTTP01Listen)
	}
}

// IsACME reports whether the CA is an external ACME CA.
func (ca *CA) IsACME() bool { return ca.Type == CATypeACME }

// withACMEDefaults fills an ACME CA's unset durations.
func (a *ACME) withACMEDefaults() {
	if a.Challenge == "" {
		a.Challenge = ChallengeHTTP01
	}
	if a.PollInterval == 0 {
		a.PollInterval = 2 * time.Second
	}
	if a.MaxPollInterval == 0 {
		a.MaxPollInterval = 5 * time.Minute
	}
	if a.OrderTimeout == 0 {
		a.OrderTimeout = 24 * time.Hour
	}
	if a.Timeout == 0 {
		a.Timeout = 30 * time.Second
	}
}

// validate checks an acme CA's settings (field is the CA's).
func (a *ACME) validate(field string, bad func(format string, args ...any)) {
	field += ".acme"
	u, err := url.Parse(a.Directory)
	switch {
	case a.Directory == "":
		bad("%s.directory: required (the CA's ACME directory URL)", field)
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		bad("%s.directory: %q is not an http(s) URL", field, a.Directory)
	case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()):
		bad("%s.directory: %q: plain http only to a loopback address; an ACME directory is https", field, a.Directory)
	case u.User != nil:
		bad("%s.directory: must not carry credentials", field)
	}
	for i, c := range a.Contact {
		if !strings.HasPrefix(c, "mailto:") || len(c) == len("mailto:") {
			bad("%s.contact[%d]: %q is not a mailto: URL", field, i, c)
		}
	}
	if e := a.EAB; e != nil {
		if e.KeyID == "" {
			bad("%s.external_account_binding.key_id: required", field)
		}
		if (e.HMACKey == "") == (e.HMACKeyFile == "") {
			bad("%s.external_account_binding: set one of hmac_key and hmac_key_file", field)
		}
	}
	if !slices.Contains([]string{ChallengeHTTP01, ChallengeDNS01}, a.Challenge) {
		bad("%s.challenge: %q (want %s or %s)", field, a.Challenge, ChallengeHTTP01, ChallengeDNS01)
	}
	if a.Challenge == ChallengeDNS01 && (a.DNS.Provider == "") == (a.DNS.Hook == nil) {
		bad("%s.dns: dns-01 needs exactly one of provider and hook", field)
	}
	if h := a.DNS.Hook; h != nil {
		for name, c := range map[string]DNSHookCall{"present": h.Present, "cleanup": h.Cleanup} {
			if u, err := url.Parse(c.URL); c.URL == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				bad("%s.dns.hook.%s.url: %q is not an http(s) URL", field, name, c.URL)
			}
		}
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{{"poll_interval", a.PollInterval}, {"max_poll_interval", a.MaxPollInterval}, {"order_timeout", a.OrderTimeout}, {"timeout", a.Timeout}} {
		if d.value <= 0 {
			bad("%s.%s: must be positive", field, d.name)
		}
	}
	if a.MaxPollInterval < a.PollInterval {
		bad("%s.max_poll_interval: %s is shorter than poll_interval %s", field, a.MaxPollInterval, a.PollInterval)
	}
	if a.DNS.PropagationDelay < 0 {
		bad("%s.dns.propagation_delay: must not be negative", field)
	}
}

// String names the CA's directory for logs and listings, without
// credentials or query.
func (a *ACME) String() string {
	u, err := url.Parse(a.Directory)
	if err != nil {
		return "(unparsable directory URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return fmt.Sprint(u)
}

// NewACMECA is a CA of type acme named name, with every setting a file
// would leave out at its default (for tests and `certflow bench`).
func NewACMECA(name string, a ACME) CA {
	def := Default().CAs[0]
	a.withACMEDefaults()
	c := CA{Name: name, Host: def.Host, Type: CATypeACME, KeyType: def.KeyType, MaxValidity: def.MaxValidity, ACME: &a}
	return c.WithPolicyDefaults()
}

package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/config"
)

// loadDocBlock loads the first yaml block after marker in a document.
func loadDocBlock(t *testing.T, doc, marker string) config.Config {
	t.Helper()
	page, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(page), marker)
	_, rest, ok1 := strings.Cut(after, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok1 || !ok2 {
		t.Fatalf("%s has no yaml block after %q", doc, marker)
	}
	path := filepath.Join(t.TempDir(), "certflow.yaml")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("%s's configuration: %v", doc, err)
	}
	return cfg
}

// The configuration docs/acme.md and the README show loads as written,
// and means what they say.
func TestTheACMEPagesConfigurationLoads(t *testing.T) {
	readme := loadDocBlock(t, "../../README.md", "### External CAs over ACME")
	if c, ok := readme.CA("ZeroSSL"); !ok || c.ACME.EAB == nil || readme.ACMEClient.HTTP01Listen != ":80" {
		t.Fatalf("README's ZeroSSL: %+v", c)
	}
	if c, ok := readme.CA("StepCA"); !ok || c.ACME.DNS.Provider != "rfc2136" {
		t.Fatalf("README's StepCA: %+v", c)
	}
	cfg := loadDocBlock(t, "../../docs/acme.md", "## Configuring an ACME CA")
	zerossl, ok := cfg.CA("ZeroSSL")
	if !ok || !zerossl.IsACME() || zerossl.ACME.EAB == nil || zerossl.ACME.Challenge != config.ChallengeHTTP01 || zerossl.ACME.OrderTimeout <= 0 {
		t.Fatalf("ZeroSSL: %+v", zerossl)
	}
	step, ok := cfg.CA("StepCA")
	if !ok || step.ACME.Challenge != config.ChallengeDNS01 || step.ACME.DNS.Provider != "rfc2136" || step.ACME.CABundle == "" {
		t.Fatalf("StepCA: %+v", step)
	}
	if builtin, ok := cfg.CA("CertflowIssuingCA"); !ok || builtin.Type != config.CATypeBuiltin {
		t.Fatalf("the built-in CA: %+v", builtin)
	}
	if cfg.ACMEClient.HTTP01Listen != ":80" {
		t.Fatalf("acme_client.http01_listen = %q", cfg.ACMEClient.HTTP01Listen)
	}
}

// Each bad acme setting is refused with a message naming it.
func TestBadACMESettingsAreRefusedByName(t *testing.T) {
	base := func() config.ACME { return config.ACME{Directory: "https://ca.example/dir"} }
	cases := []struct {
		name   string
		change func(c *config.CA)
		want   string
	}{
		{"no directory", func(c *config.CA) { c.ACME.Directory = "" }, "acme.directory: required"},
		{"plain http beyond loopback", func(c *config.CA) { c.ACME.Directory = "http://ca.example/dir" }, "acme.directory"},
		{"credentials in the URL", func(c *config.CA) { c.ACME.Directory = "https://u:p@ca.example/dir" }, "must not carry credentials"},
		{"a contact that is not mailto", func(c *config.CA) { c.ACME.Contact = []string{"pki@example.com"} }, "acme.contact[0]"},
		{"EAB without its key", func(c *config.CA) { c.ACME.EAB = &config.EAB{KeyID: "k"} }, "external_account_binding: set one of"},
		{"EAB without a key id", func(c *config.CA) { c.ACME.EAB = &config.EAB{HMACKey: "x"} }, "external_account_binding.key_id"},
		{"an unknown challenge", func(c *config.CA) { c.ACME.Challenge = "tls-alpn-01" }, "acme.challenge"},
		{"dns-01 with neither", func(c *config.CA) { c.ACME.Challenge = config.ChallengeDNS01 }, "acme.dns: dns-01 needs exactly one"},
		{"a hook without URLs", func(c *config.CA) {
			c.ACME.Challenge, c.ACME.DNS.Hook = config.ChallengeDNS01, &config.DNSHook{}
		}, "acme.dns.hook.present.url"},
		{"polls longer than their cap", func(c *config.CA) { c.ACME.PollInterval, c.ACME.MaxPollInterval = 10e9, 1e9 }, "max_poll_interval"},
		{"acme settings on a built-in CA", func(c *config.CA) { c.Type = config.CATypeBuiltin }, "only a CA of type acme takes acme settings"},
		{"type acme without settings", func(c *config.CA) { c.ACME = nil }, "a CA of type acme needs its acme settings"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			c := config.NewACMECA("Ext", base())
			tc.change(&c)
			cfg.CAs = append(cfg.CAs, c)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "certificate_authorities[1]") {
				t.Fatalf("Validate = %v; want an error naming certificate_authorities[1] and %q", err, tc.want)
			}
		})
	}
	ok := config.Default()
	ok.CAs = append(ok.CAs, config.NewACMECA("Ext", base()))
	if err := ok.Validate(); err != nil {
		t.Fatalf("a good acme CA: %v", err)
	}
}

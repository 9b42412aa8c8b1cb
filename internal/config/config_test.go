package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const goodSHA256Token = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// writeConfig writes content to a config file in a fresh directory.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "certflow.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// joined returns the individual errors of an errors.Join result.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func TestDefaultIsValidAndUsable(t *testing.T) {
	t.Parallel()
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate(): %v", err)
	}
	tmpl, ok := c.Template(DefaultTemplate)
	if !ok {
		t.Fatalf("default template %q missing", DefaultTemplate)
	}
	for _, n := range tmpl.CAs {
		if _, ok := c.CA(n); !ok {
			t.Errorf("default template names CA %q, which the defaults do not define", n)
		}
	}
	if ca, ok := c.CA(DefaultCAName); !ok || ca.Host != DefaultCAHost {
		t.Errorf("default CA %q missing or not on host %q", DefaultCAName, DefaultCAHost)
	}
	if len(c.Auth.Users) != 0 {
		t.Errorf("defaults define users: %v", c.Auth.Users)
	}
	if c.Callbacks.AllowPrivate {
		t.Error("defaults allow private callback targets")
	}
}

func TestDefaultReturnsIndependentCopies(t *testing.T) {
	t.Parallel()
	a := Default()
	a.Templates[0].Name = "Changed"
	a.CAs[0].Name = "Changed"
	a.Templates[0].ECCCurves[0] = "P-521"
	b := Default()
	if b.Templates[0].Name != DefaultTemplate || b.CAs[0].Name != DefaultCAName || b.Templates[0].ECCCurves[0] != "P-256" {
		t.Error("changing one Default() result changed another")
	}
}

func TestLoadWithoutSettingsGivesTheDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		noFile  bool
		content string
	}{
		{name: "no path", noFile: true},
		{name: "empty file", content: ""},
		{name: "only comments", content: "# certflow\n# nothing to change\n"},
		{name: "only a document marker", content: "---\n"},
		{name: "an empty mapping", content: "{}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := ""
			if !tt.noFile {
				path = writeConfig(t, tt.content)
			}
			got, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if want := Default(); !reflect.DeepEqual(got, want) {
				t.Errorf("Load = %+v\nwant the defaults %+v", got, want)
			}
		})
	}
}

func TestLoadOfAFileWithOnlyUsersKeepsTheDefaultTemplateAndCA(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `
auth:
  users:
    - name: alice
      token: `+goodSHA256Token+`
      roles: [requester, approver]
    - name: bob
      password_hash: "$2a$10$abcdefghijklmnopqrstuuN6m1Yb8Yc7Yh3zYQ6rY8m0F5r0W4Xa"
      roles: [admin]
`)
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	wantUsers := []User{
		{Name: "alice", Token: goodSHA256Token, Roles: []string{"requester", "approver"}},
		{Name: "bob", PasswordHash: "$2a$10$abcdefghijklmnopqrstuuN6m1Yb8Yc7Yh3zYQ6rY8m0F5r0W4Xa", Roles: []string{"admin"}},
	}
	if !reflect.DeepEqual(got.Auth.Users, wantUsers) {
		t.Errorf("users = %+v, want %+v", got.Auth.Users, wantUsers)
	}
	if _, ok := got.Template("WebServer"); !ok {
		t.Error("the WebServer template is gone")
	}
	if ca, ok := got.CA(`certflow\CertflowIssuingCA`); !ok || ca.Type != "builtin" {
		t.Error("the built-in CA is gone")
	}
	// Everything but the users is exactly the default.
	want := Default()
	want.Auth.Users = wantUsers
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load = %+v\nwant the defaults plus the users: %+v", got, want)
	}
}

func TestLoadOverridesOnlyTheSettingsAFileNames(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `
listen: 0.0.0.0:9443
redis_url: rediss://user:pw@redis.internal:6380/2
worker:
  concurrency: 4
callbacks:
  allow_private: true
  timeout: 2s
`)
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Default()
	want.Listen = "0.0.0.0:9443"
	want.RedisURL = "rediss://user:pw@redis.internal:6380/2"
	want.Worker.Concurrency = 4
	want.Callbacks.AllowPrivate = true
	want.Callbacks.Timeout = 2 * time.Second
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load = %+v\nwant %+v", got, want)
	}
}

func TestLoadRejectsUnknownKeysNamingThem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content string
		key     string
	}{
		{"top level", "listen: 127.0.0.1:1\nlisten_addr: 127.0.0.1:2\n", "listen_addr"},
		{"nested in worker", "worker:\n  concurency: 4\n", "concurency"},
		{"in a user", "auth:\n  users:\n    - name: a\n      token: t\n      role: admin\n", "role"},
		{"in a template", "templates:\n  - name: X\n    certificate_authorities: [CertflowIssuingCA]\n    validity: 1h\n    key_sizes: [2048]\n", "key_sizes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(writeConfig(t, tt.content))
			if err == nil {
				t.Fatal("Load accepted an unknown key")
			}
			if !strings.Contains(err.Error(), tt.key) {
				t.Errorf("error %q does not name %q", err, tt.key)
			}
		})
	}
}

func TestLoadReportsFileErrors(t *testing.T) {
	t.Parallel()
	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		if _, err := Load(filepath.Join(t.TempDir(), "absent.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Load = %v, want an error wrapping os.ErrNotExist", err)
		}
	})
	t.Run("malformed YAML", func(t *testing.T) {
		t.Parallel()
		if _, err := Load(writeConfig(t, "listen: [unclosed\n")); err == nil {
			t.Error("Load accepted malformed YAML")
		}
	})
	t.Run("a duration without a unit", func(t *testing.T) {
		t.Parallel()
		if _, err := Load(writeConfig(t, "callbacks:\n  timeout: 10\n")); err == nil {
			t.Error("Load accepted timeout: 10 (10 what?)")
		}
	})
	t.Run("a validation error names the file and the field", func(t *testing.T) {
		t.Parallel()
		path := writeConfig(t, "worker:\n  concurrency: 0\n")
		_, err := Load(path)
		if err == nil {
			t.Fatal("Load accepted concurrency 0")
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "worker.concurrency") {
			t.Errorf("error %q does not name the file and worker.concurrency", err)
		}
	})
}

func TestValidateNamesTheFieldOfEachError(t *testing.T) {
	t.Parallel()
	user := func(name, token, hash string, roles ...string) User {
		return User{Name: name, Token: token, PasswordHash: hash, Roles: roles}
	}
	tests := []struct {
		name   string
		change func(c *Config)
		field  string
	}{
		{"redis_url with http scheme", func(c *Config) { c.RedisURL = "http://127.0.0.1:6379/0" }, "redis_url"},
		{"redis_url without scheme", func(c *Config) { c.RedisURL = "127.0.0.1:6379" }, "redis_url"},
		{"crl_base_url without scheme", func(c *Config) { c.CRLBaseURL = "pki.example.com" }, "crl_base_url"},
		{"crl_base_url with an ldap scheme", func(c *Config) { c.CRLBaseURL = "ldap://pki.example.com" }, "crl_base_url"},
		{"crl_base_url with a query", func(c *Config) { c.CRLBaseURL = "http://pki.example.com/?x=1" }, "crl_base_url"},
		{"key_prefix with a colon", func(c *Config) { c.KeyPrefix = "cert:flow" }, "key_prefix"},
		{"empty queue", func(c *Config) { c.Queue = "" }, "queue"},
		{"max_body_bytes below 1024", func(c *Config) { c.API.MaxBodyBytes = 1023 }, "api.max_body_bytes"},
		{"sync_wait above max_sync_wait", func(c *Config) { c.API.SyncWait = 3 * time.Minute }, "api.sync_wait"},
		{"negative sync_wait", func(c *Config) { c.API.SyncWait = -time.Second }, "api.sync_wait"},
		{"max_pending_csrs below 1", func(c *Config) { c.API.MaxPendingCSRs = 0 }, "api.max_pending_csrs"},
		{"key_generation_concurrency below 1", func(c *Config) { c.API.KeyGenerationConcurrency = 0 }, "api.key_generation_concurrency"},
		{"auth_failures_per_minute 0", func(c *Config) { c.API.AuthFailuresPerMinute = 0 }, "api.auth_failures_per_minute"},
		{"auth_failures_per_user_per_hour 0", func(c *Config) { c.API.AuthFailuresPerUserPerHour = 0 }, "api.auth_failures_per_user_per_hour"},
		{"auth_max_lockout below a second", func(c *Config) { c.API.AuthMaxLockout = time.Millisecond }, "api.auth_max_lockout"},
		{"concurrency 0", func(c *Config) { c.Worker.Concurrency = 0 }, "worker.concurrency"},
		{"max_retry 0", func(c *Config) { c.Worker.MaxRetry = 0 }, "worker.max_retry"},
		{"servers 0", func(c *Config) { c.Worker.Servers = 0 }, "worker.servers"},
		{"empty callback schedule", func(c *Config) { c.Callbacks.Schedule = nil }, "callbacks.schedule"},
		{"tls.listen without a port", func(c *Config) { c.TLS.Listen = "127.0.0.1" }, "tls.listen"},
		{"tls.listen empty", func(c *Config) { c.TLS.Listen = "" }, "tls.listen"},
		{"tls.cert_file without tls.key_file", func(c *Config) { c.TLS.CertFile = "server.crt" }, "tls.cert_file and tls.key_file"},
		{"tls.key_file without tls.cert_file", func(c *Config) { c.TLS.KeyFile = "server.key" }, "tls.cert_file and tls.key_file"},
		{"tls.names with a wildcard", func(c *Config) { c.TLS.Names = []string{"localhost", "*.example.com"} }, "tls.names[1]"},
		{"tls.names with a URL", func(c *Config) { c.TLS.Names = []string{"https://certflow"} }, "tls.names[0]"},
		{"tls.names with an empty name", func(c *Config) { c.TLS.Names = []string{""} }, "tls.names[0]"},
		{"tls.validity below an hour", func(c *Config) { c.TLS.Validity = time.Minute }, "tls.validity"},
		{"tls.validity above 397 days", func(c *Config) { c.TLS.Validity = 398 * 24 * time.Hour }, "tls.validity"},
		{"tls.reload_interval zero", func(c *Config) { c.TLS.ReloadInterval = 0 }, "tls.reload_interval"},
		{"user without a name", func(c *Config) {
			c.Auth.Users = []User{user("", "t", "")}
		}, "auth.users[0].name"},
		{"duplicate user", func(c *Config) {
			c.Auth.Users = []User{user("alice", "t1", ""), user("bob", "t2", ""), user("alice", "t3", "")}
		}, "auth.users[2].name"},
		{"user with both token and password_hash", func(c *Config) {
			c.Auth.Users = []User{user("alice", "t", "$2a$10$x")}
		}, "auth.users[0]"},
		{"password_hash that is not bcrypt", func(c *Config) {
			c.Auth.Users = []User{user("alice", "", "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=")}
		}, "auth.users[0].password_hash"},
		{"user with neither token nor password_hash", func(c *Config) {
			c.Auth.Users = []User{user("alice", "t", ""), user("bob", "", "")}
		}, "auth.users[1]"},
		{"sha256 token with 63 hex characters", func(c *Config) {
			c.Auth.Users = []User{user("alice", goodSHA256Token[:len(goodSHA256Token)-1], "")}
		}, "auth.users[0].token"},
		{"sha256 token with 65 hex characters", func(c *Config) {
			c.Auth.Users = []User{user("alice", goodSHA256Token+"0", "")}
		}, "auth.users[0].token"},
		{"role name with a space", func(c *Config) {
			c.Auth.Users = []User{user("alice", "t", "", "requester", "pki approvers")}
		}, "auth.users[0].roles"},
		{"role in the wrong case", func(c *Config) {
			c.Auth.Users = []User{user("alice", "t", "", "Admin")}
		}, "auth.users[0].roles"},
		{"CA with an invalid name", func(c *Config) { c.CAs[0].Name = "bad name"; c.Templates[0].CAs = []string{"bad name"} }, "certificate_authorities[0].name"},
		{"duplicate CA name in another case", func(c *Config) { c.CAs = append(c.CAs, c.CAs[0]); c.CAs[1].Name = "certflowissuingca" }, "certificate_authorities[1].name"},
		{"unknown CA type", func(c *Config) { c.CAs[0].Type = "adcs" }, "certificate_authorities[0].type"},
		{"unknown CA key_type", func(c *Config) { c.CAs[0].KeyType = "rsa-1024" }, "certificate_authorities[0].key_type"},
		{"CA key_type in the wrong case", func(c *Config) { c.CAs[0].KeyType = "ECDSA-P256" }, "certificate_authorities[0].key_type"},
		{"zero CA max_validity", func(c *Config) { c.CAs[0].MaxValidity = 0 }, "certificate_authorities[0].max_validity"},
		{"template naming an unknown CA", func(c *Config) { c.Templates[0].CAs = []string{"CertflowIssuingCA", "NoSuchCA"} }, "templates[0].certificate_authorities"},
		{"template naming no CA", func(c *Config) { c.Templates[0].CAs = nil }, "templates[0].certificate_authorities"},
		{"template with an invalid name", func(c *Config) { c.Templates[0].Name = "Web Server" }, "templates[0].name"},
		{"rsa key size 1024", func(c *Config) { c.Templates[0].RSAKeySizes = []int{1024, 2048} }, "templates[0].rsa_key_sizes"},
		{"rsa key size 16384", func(c *Config) { c.Templates[0].RSAKeySizes = []int{16384} }, "templates[0].rsa_key_sizes"},
		{"unknown curve", func(c *Config) { c.Templates[0].ECCCurves = []string{"P-256", "secp256k1"} }, "templates[0].ecc_curves"},
		{"negative renewal_grace", func(c *Config) { c.API.RenewalGrace = -time.Second }, "api.renewal_grace"},
		{"renewal_grace beyond retention", func(c *Config) { c.API.RenewalGrace = c.Worker.Retention + time.Hour }, "api.renewal_grace"},
		{"zero validity", func(c *Config) { c.Templates[0].Validity = 0 }, "templates[0].validity"},
		{"negative validity", func(c *Config) { c.Templates[0].Validity = -time.Hour }, "templates[0].validity"},
		{"duplicate template name in another case", func(c *Config) {
			c.Templates = append(c.Templates, c.Templates[0])
			c.Templates[1].Name = "WEBSERVER"
		}, "templates[1].name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			tt.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			errs := joined(err)
			if len(errs) != 1 {
				t.Fatalf("Validate gave %d errors, want 1 naming %s: %v", len(errs), tt.field, err)
			}
			if !strings.HasPrefix(errs[0].Error(), tt.field) {
				t.Errorf("error %q does not start with the field %q", errs[0], tt.field)
			}
		})
	}
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	c := Default()
	c.RedisURL = "http://x"
	c.Worker.Concurrency = 0
	c.Templates[0].Validity = 0
	err := c.Validate()
	for _, field := range []string{"redis_url", "worker.concurrency", "templates[0].validity"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("error %v does not name %s", err, field)
		}
	}
	if n := len(joined(err)); n != 3 {
		t.Errorf("%d errors, want 3", n)
	}
}

func TestValidateAcceptsGoodVariations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(c *Config)
	}{
		{"redis URL", func(c *Config) { c.RedisURL = "redis://127.0.0.1:6379/0" }},
		{"rediss URL", func(c *Config) { c.RedisURL = "rediss://user:pw@redis:6380/1" }},
		{"tls off", func(c *Config) { c.TLS.Listen = TLSOff }},
		{"tls with files, names and a year", func(c *Config) {
			c.TLS = TLS{Listen: "0.0.0.0:443", CertFile: "/etc/certflow/tls.crt", KeyFile: "/etc/certflow/tls.key",
				Names: []string{"certflow.example.com", "certflow", "10.0.0.7", "fe80::1"}, Validity: 397 * 24 * time.Hour, ReloadInterval: time.Minute}
		}},
		{"users of every kind", func(c *Config) {
			c.Auth.Users = []User{
				{Name: "plain", Token: "s3cr3t", Roles: []string{RoleRequester}},
				{Name: "hashed", Token: goodSHA256Token, Roles: []string{RoleApprover, RoleAdmin}},
				{Name: "basic", PasswordHash: "$2a$10$abcdefghijklmnopqrstuuN6m1Yb8Yc7Yh3zYQ6rY8m0F5r0W4Xa", Roles: nil},
			}
		}},
		{"every CA key type", func(c *Config) {
			for i, kt := range []string{"ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"} {
				c.CAs = append(c.CAs, CA{Name: "CA" + string(rune('A'+i)), Host: "h", Type: "builtin", KeyType: kt, MaxValidity: time.Hour})
			}
		}},
		{"template naming its CA in another case", func(c *Config) { c.Templates[0].CAs = []string{"certflowissuingca"} }},
		{"RSA sizes at the bounds and P-521", func(c *Config) {
			c.Templates[0].RSAKeySizes = []int{2048, 8192}
			c.Templates[0].ECCCurves = []string{"P-521"}
		}},
		{"a second template", func(c *Config) {
			c.Templates = append(c.Templates, Template{Name: "Client.Auth_v2", CAs: []string{DefaultCAName}, Validity: time.Hour, Policy: Policy{AllowEd25519: true}})
		}},
		{"sync_wait equal to max_sync_wait", func(c *Config) { c.API.SyncWait = c.API.MaxSyncWait }},
		{"max_body_bytes of 1024", func(c *Config) { c.API.MaxBodyBytes = 1024 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			tt.change(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// lookupConfig has two CAs with the same logical name on different hosts,
// to show the host part is honoured.
func lookupConfig() Config {
	c := Default()
	c.CAs = append(c.CAs,
		CA{Name: "PartnerCA", Host: "partner", Type: "builtin", KeyType: "rsa-2048", MaxValidity: time.Hour},
		CA{Name: "SharedCA", Host: "alpha", Type: "builtin", KeyType: "ecdsa-p256", MaxValidity: time.Hour},
	)
	c.Templates = append(c.Templates, Template{Name: "ClientAuth", CAs: []string{"PartnerCA"}, Validity: time.Hour})
	return c
}

func TestTemplateLookupIgnoresCase(t *testing.T) {
	t.Parallel()
	c := lookupConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		query string
		want  string // "" means not found
	}{
		{"WebServer", "WebServer"},
		{"webserver", "WebServer"},
		{"WEBSERVER", "WebServer"},
		{"clientauth", "ClientAuth"},
		{"Web Server", ""},
		{"WebServer2", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			got, ok := c.Template(tt.query)
			if ok != (tt.want != "") {
				t.Fatalf("Template(%q) found=%v, want %v", tt.query, ok, tt.want != "")
			}
			if ok && got.Name != tt.want {
				t.Errorf("Template(%q) = %q, want %q", tt.query, got.Name, tt.want)
			}
		})
	}
	// The result points into the configuration, not at a copy.
	got, _ := c.Template("webserver")
	if got != &c.Templates[0] {
		t.Error("Template returned a copy")
	}
}

func TestCALookupAcceptsKeyfactorNames(t *testing.T) {
	t.Parallel()
	c := lookupConfig()
	tests := []struct {
		name  string
		query string
		want  string // Host\Name of the CA found, "" for none
	}{
		{"host and name with one backslash", `certflow\CertflowIssuingCA`, `certflow\CertflowIssuingCA`},
		{"host and name with two backslashes (JSON-escaped form)", `certflow\\CertflowIssuingCA`, `certflow\CertflowIssuingCA`},
		{"bare logical name", `CertflowIssuingCA`, `certflow\CertflowIssuingCA`},
		{"everything in lower case", `certflow\certflowissuingca`, `certflow\CertflowIssuingCA`},
		{"host in upper case", `CERTFLOW\CertflowIssuingCA`, `certflow\CertflowIssuingCA`},
		{"bare name in upper case", `PARTNERCA`, `partner\PartnerCA`},
		{"another CA by host and name", `partner\PartnerCA`, `partner\PartnerCA`},
		{"wrong host", `otherhost\CertflowIssuingCA`, ""},
		{"wrong host with two backslashes", `otherhost\\CertflowIssuingCA`, ""},
		{"host of another CA", `partner\CertflowIssuingCA`, ""},
		{"empty host part", `\CertflowIssuingCA`, ""},
		{"host only", `certflow\`, ""},
		{"unknown name", `NoSuchCA`, ""},
		{"three parts", `certflow\x\CertflowIssuingCA`, ""},
		{"forward slash is not a separator", `certflow/CertflowIssuingCA`, ""},
		{"empty", ``, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := c.CA(tt.query)
			if ok != (tt.want != "") {
				t.Fatalf("CA(%q) found=%v, want %v", tt.query, ok, tt.want != "")
			}
			if ok {
				if q := got.Host + `\` + got.Name; q != tt.want {
					t.Errorf("CA(%q) = %q, want %q", tt.query, q, tt.want)
				}
			}
		})
	}
	got, _ := c.CA("partnerca")
	if got != &c.CAs[1] {
		t.Error("CA returned a copy")
	}
}

func TestQualifiedNameIsHostBackslashName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ca   CA
		want string
	}{
		{CA{Host: "certflow", Name: "CertflowIssuingCA"}, "certflow\\CertflowIssuingCA"},
		{CA{Host: "dc1.corp.example", Name: "Corp-Issuing-01"}, "dc1.corp.example\\Corp-Issuing-01"},
	}
	for _, tt := range tests {
		got := tt.ca.QualifiedName()
		if got != tt.want {
			t.Errorf("QualifiedName = %q, want %q", got, tt.want)
		}
		if n := strings.Count(got, `\`); n != 1 {
			t.Errorf("QualifiedName %q has %d backslashes, want 1", got, n)
		}
		// It is a name CA() finds the CA by.
		c := Config{CAs: []CA{tt.ca}}
		if found, ok := c.CA(got); !ok || found.Name != tt.ca.Name {
			t.Errorf("CA(%q) does not find the CA it names", got)
		}
	}
	d := Default()
	if got := d.CAs[0].QualifiedName(); got != DefaultCAHost+`\`+DefaultCAName {
		t.Errorf("default CA QualifiedName = %q", got)
	}
}

func TestSpeedTurnOff(t *testing.T) {
	s := Default().Speed
	if !s.Piggyback || !s.GroupCommit || !s.LeafEncoder {
		t.Fatalf("defaults %+v: every shortcut should be on", s)
	}
	if err := s.TurnOff("group_commit", " leaf_encoder"); err != nil {
		t.Fatal(err)
	}
	if want := (Speed{Piggyback: true}); s != want {
		t.Errorf("after turning off group_commit and leaf_encoder: %+v, want %+v", s, want)
	}
	if err := s.TurnOff("piggyback", "warp"); err == nil || !strings.Contains(err.Error(), `"warp"`) {
		t.Errorf("unknown shortcut: err = %v, want one naming it", err)
	}
}

// TestPlainHTTPBeyondLoopbackNeedsTheOptIn: credentials cross a plain
// listener in the clear, so only loopback serves it unless
// allow_plain_http says otherwise; the refusal names the setting.
func TestPlainHTTPBeyondLoopbackNeedsTheOptIn(t *testing.T) {
	t.Parallel()
	for listen, allowed := range map[string]bool{
		"127.0.0.1:8080": true, "127.0.0.2:8080": true, "[::1]:8080": true, "localhost:8080": true, "LOCALHOST:0": true,
		"0.0.0.0:8080": false, ":8080": false, "[::]:8080": false, "192.168.1.5:8080": false, "certflow.example.com:8080": false,
		"localhost.example.com:8080": false, "[::ffff:10.0.0.1]:8080": false,
	} {
		c := Default()
		c.Listen = listen
		err := c.CheckPlainListen()
		if allowed != (err == nil) {
			t.Errorf("listen %s: %v (allowed: %v)", listen, err, allowed)
		}
		if err != nil && !strings.Contains(err.Error(), "allow_plain_http") {
			t.Errorf("listen %s: the refusal does not name allow_plain_http: %v", listen, err)
		}
		c.AllowPlainHTTP = true
		if err := c.CheckPlainListen(); err != nil {
			t.Errorf("listen %s with allow_plain_http: %v", listen, err)
		}
	}
	c := Default()
	c.Listen = "nonsense"
	if err := c.CheckPlainListen(); err == nil || !strings.HasPrefix(err.Error(), "listen:") {
		t.Errorf("listen without a port: %v", err)
	}
}

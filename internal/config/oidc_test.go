package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// oidcOn is c with auth.oidc turned on for a well-formed issuer.
func oidcOn(c *Config) {
	c.Auth.OIDC.Issuer, c.Auth.OIDC.Audience = "https://idp.example.com/realms/pki", "certflow"
}

func TestOIDCValidateNamesTheKey(t *testing.T) {
	t.Parallel()
	on := func(change func(o *OIDC)) func(c *Config) {
		return func(c *Config) { oidcOn(c); change(&c.Auth.OIDC) }
	}
	tests := []struct {
		name   string
		change func(c *Config)
		field  string
		says   string
	}{
		{"audience without issuer", func(c *Config) { c.Auth.OIDC.Audience = "certflow" }, "auth.oidc.issuer", "required"},
		{"role_map without issuer", func(c *Config) { c.Auth.OIDC.RoleMap = map[string]string{"a": "requester"} }, "auth.oidc.issuer", "required"},
		{"issuer not a URL", on(func(o *OIDC) { o.Issuer = "idp.example.com" }), "auth.oidc.issuer", "absolute URL"},
		{"issuer with credentials", on(func(o *OIDC) { o.Issuer = "https://u:p@idp.example.com" }), "auth.oidc.issuer", "without credentials"},
		{"issuer with a query", on(func(o *OIDC) { o.Issuer = "https://idp.example.com/?x=1" }), "auth.oidc.issuer", "query"},
		{"issuer over http to a remote host", on(func(o *OIDC) { o.Issuer = "http://idp.example.com" }), "auth.oidc.issuer", "loopback"},
		{"issuer with another scheme", on(func(o *OIDC) { o.Issuer = "ftp://idp.example.com" }), "auth.oidc.issuer", "https"},
		{"no audience", on(func(o *OIDC) { o.Audience = "" }), "auth.oidc.audience", "required"},
		{"no username claim", on(func(o *OIDC) { o.UsernameClaim = "" }), "auth.oidc.username_claim", "required"},
		{"empty roles claim", on(func(o *OIDC) { o.RolesClaim = "" }), "auth.oidc.roles_claim", "dotted path"},
		{"roles claim with an empty part", on(func(o *OIDC) { o.RolesClaim = "realm_access..roles" }), "auth.oidc.roles_claim", "dotted path"},
		{"empty username prefix", on(func(o *OIDC) { o.UsernamePrefix = "" }), "auth.oidc.username_prefix", "keeps token users apart"},
		{"username prefix with a space", on(func(o *OIDC) { o.UsernamePrefix = "idp " }), "auth.oidc.username_prefix", "without spaces"},
		{"role_map to a bad role name", on(func(o *OIDC) { o.RoleMap = map[string]string{"pki": "pki approvers"} }), `auth.oidc.role_map["pki"]`, "not a role name"},
		{"role_map to a built-in role in another case", on(func(o *OIDC) { o.RoleMap = map[string]string{"pki": "Admin"} }), `auth.oidc.role_map["pki"]`, "spelt"},
		{"role_map from an empty value", on(func(o *OIDC) { o.RoleMap = map[string]string{"": "requester"} }), "auth.oidc.role_map", "empty"},
		{"allowed_clients without issuer", func(c *Config) { c.Auth.OIDC.AllowedClients = []string{"ci"} }, "auth.oidc.issuer", "allowed_clients"},
		{"an empty allowed client", on(func(o *OIDC) { o.AllowedClients = []string{"ci", ""} }), "auth.oidc.allowed_clients[1]", "want a client id"},
		{"an allowed client with a newline", on(func(o *OIDC) { o.AllowedClients = []string{"ci\nx"} }), "auth.oidc.allowed_clients[0]", "no control characters"},
		{"an allowed client too long", on(func(o *OIDC) { o.AllowedClients = []string{strings.Repeat("c", 256)} }), "auth.oidc.allowed_clients[0]", "1 to 255 bytes"},
		{"max_key_age below the refetch interval", on(func(o *OIDC) { o.MaxKeyAge = 5 * time.Minute }), "auth.oidc.max_key_age", "want at least 10m0s"},
		{"max_key_age zero", on(func(o *OIDC) { o.MaxKeyAge = 0 }), "auth.oidc.max_key_age", "got 0s"},
		{"HS256", on(func(o *OIDC) { o.AllowedAlgs = []string{"RS256", "HS256"} }), "auth.oidc.allowed_algs", `"HS256" is not accepted`},
		{"none", on(func(o *OIDC) { o.AllowedAlgs = []string{"none"} }), "auth.oidc.allowed_algs", `"none" is not accepted`},
		{"no algorithm", on(func(o *OIDC) { o.AllowedAlgs = nil }), "auth.oidc.allowed_algs", "at least one"},
		{"negative clock skew", on(func(o *OIDC) { o.ClockSkew = -time.Second }), "auth.oidc.clock_skew", "want 0 to 5m0s"},
		{"clock skew of an hour", on(func(o *OIDC) { o.ClockSkew = time.Hour }), "auth.oidc.clock_skew", "want 0 to 5m0s"},
		{"a configured user under the token users' prefix", func(c *Config) {
			oidcOn(c)
			c.Auth.Users = []User{{Name: "oidc:ci", Token: "t", Roles: []string{RoleRequester}}}
		}, "auth.users[0].name", "username_prefix"},
		{"a username prefix in certflow's own namespace", on(func(o *OIDC) { o.UsernamePrefix = "certflow:" }), "auth.oidc.username_prefix", "certflow's own callers"},
		{"a username prefix that certflow's own names extend", on(func(o *OIDC) { o.UsernamePrefix = "cert" }), "auth.oidc.username_prefix", "certflow's own callers"},
		{"a configured user named as certflow's automation", func(c *Config) {
			c.Auth.Users = []User{{Name: "certflow:automation", Token: "t", Roles: []string{RoleAdmin}}}
		}, "auth.users[0].name", "certflow's own callers"},
		// A signed event source posts as webhook:<name>, and definitions
		// trust event.Source: a user so named would post as the source
		// (and spend its rate limit).
		{"a configured user named as a signed event source", func(c *Config) {
			c.Auth.Users = []User{{Name: "webhook:cmdb", Token: "t", Roles: []string{DefaultEventPublisherRole}}}
		}, "auth.users[0].name", "signed event sources"},
		{"a username prefix in the signed sources' namespace", on(func(o *OIDC) { o.UsernamePrefix = "webhook:" }), "auth.oidc.username_prefix", "signed event sources"},
		{"a username prefix that the signed sources' names extend", on(func(o *OIDC) { o.UsernamePrefix = "web" }), "auth.oidc.username_prefix", "signed event sources"},
		{"a configured token shaped like a JWT", func(c *Config) {
			oidcOn(c)
			c.Auth.Users = []User{{Name: "ci", Token: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", Roles: []string{RoleRequester}}}
		}, "auth.users[0].token", "looks like a JWT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			tt.change(&c)
			errs := joined(c.Validate())
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tt.field+":") || !strings.Contains(errs[0].Error(), tt.says) {
				t.Fatalf("errors %v; want one starting %s: saying %q", errs, tt.field, tt.says)
			}
		})
	}
}

func TestOIDCValidateAcceptsGoodVariations(t *testing.T) {
	t.Parallel()
	for name, change := range map[string]func(o *OIDC){
		"the defaults":                 func(o *OIDC) {},
		"http on loopback":             func(o *OIDC) { o.Issuer = "http://127.0.0.1:8081/realms/pki" },
		"http on localhost":            func(o *OIDC) { o.Issuer = "http://localhost:8081" },
		"a dotted roles claim":         func(o *OIDC) { o.RolesClaim = "resource_access.certflow.roles" },
		"a role map to custom roles":   func(o *OIDC) { o.RoleMap = map[string]string{"PKI Admins": "admin", "g-1": "pki-leads"} },
		"one algorithm, no clock skew": func(o *OIDC) { o.AllowedAlgs, o.ClockSkew = []string{"ES256"}, 0 },
		"another prefix":               func(o *OIDC) { o.UsernamePrefix = "idp/" },
		"allowed clients":              func(o *OIDC) { o.AllowedClients = []string{"pki-enroller", "ci"} },
		"keys trusted a week":          func(o *OIDC) { o.MaxKeyAge = 7 * 24 * time.Hour },
	} {
		c := Default()
		oidcOn(&c)
		change(&c.Auth.OIDC)
		c.Auth.Users = []User{{Name: "ci", Token: "not-a-jwt", Roles: []string{RoleRequester}}}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Off, a configured token may look like anything.
	c := Default()
	c.Auth.Users = []User{{Name: "oidc:ci", Token: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"}}
	if err := c.Validate(); err != nil {
		t.Errorf("auth.oidc off: %v", err)
	}
}

func TestOIDCLoadKeepsTheDefaultsAFileLeavesOut(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "certflow.yaml")
	os.WriteFile(path, []byte(`auth:
  oidc:
    issuer: https://idp.example.com
    audience: certflow
    roles_claim: realm_access.roles
    role_map: {pki-requesters: requester}
`), 0o600)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := OIDC{
		Issuer: "https://idp.example.com", Audience: "certflow", UsernameClaim: "sub", UsernamePrefix: "oidc:",
		RolesClaim: "realm_access.roles", RoleMap: map[string]string{"pki-requesters": "requester"},
		AllowedAlgs: DefaultOIDCAlgs, ClockSkew: time.Minute, MaxKeyAge: 24 * time.Hour,
	}
	if !reflect.DeepEqual(c.Auth.OIDC, want) {
		t.Fatalf("auth.oidc = %+v, want %+v", c.Auth.OIDC, want)
	}
	if d := Default(); !c.Auth.OIDC.Enabled() || d.Auth.OIDC.Enabled() {
		t.Fatal("Enabled: want on with an issuer, off by default")
	}
}

func TestLooksLikeJWT(t *testing.T) {
	t.Parallel()
	for token, want := range map[string]bool{
		"eyJhbGciOiJSUzI1NiJ9.e30.c2ln": true,
		"eyJhbGciOiJub25lIn0.e30.":      true,
		"eyJ.a":                         false,
		"eyJ.a.b.c":                     false,
		"abc.def.ghi":                   false,
		"0123456789abcdef":              false,
		"":                              false,
	} {
		if LooksLikeJWT(token) != want {
			t.Errorf("LooksLikeJWT(%q) = %v, want %v", token, !want, want)
		}
	}
}

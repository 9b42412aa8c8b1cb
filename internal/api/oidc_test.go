package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
)

func TestOIDCRolesFromTheClaim(t *testing.T) {
	t.Parallel()
	claims := map[string]any{
		"roles":                          []any{"requester", "approver", 7, "not a role", "requester", "admin", "Admin"},
		"admins":                         "pki-admins admin",
		"scope":                          "pki.enroll  openid pki.approve",
		"realm_access":                   map[string]any{"roles": []any{"pki-requesters", "offline_access"}},
		"https://example.com/roles":      []any{"pki-approvers"},
		"https://example":                map[string]any{"com/roles": []any{"wrong"}},
		"resource_access":                map[string]any{"certflow": "not an object"},
		"groups":                         map[string]any{"a": "b"},
		"realm_access.roles.not.present": nil,
	}
	mapped := map[string]string{"pki-requesters": "requester", "pki-approvers": "approver", "pki.enroll": "requester", "offline_access": "bad role!"}
	for _, tc := range []struct {
		claim   string
		roleMap map[string]string
		want    []string
	}{
		{"roles", nil, []string{"requester", "approver"}},
		{"roles", mapped, nil},
		{"admins", nil, []string{"pki-admins"}},
		{"admins", map[string]string{"pki-admins": "admin"}, []string{"admin"}},
		{"admins", map[string]string{"admin": "admin"}, []string{"admin"}},
		{"scope", mapped, []string{"requester"}},
		{"scope", nil, []string{"pki.enroll", "openid", "pki.approve"}},
		{"realm_access.roles", mapped, []string{"requester"}},
		{"https://example.com/roles", mapped, []string{"approver"}},
		{"resource_access.certflow.roles", nil, nil},
		{"groups", nil, nil},
		{"absent", nil, nil},
	} {
		o := &oidcVerifier{cfg: config.OIDC{RolesClaim: tc.claim, RoleMap: tc.roleMap}}
		if got := o.roles(claims); !slices.Equal(got, tc.want) {
			t.Errorf("roles from %s (map %v) = %q, want %q", tc.claim, tc.roleMap != nil, got, tc.want)
		}
	}
}

func TestUseOIDCRefusesABadCAFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	for file, says := range map[string]string{filepath.Join(dir, "missing.pem"): "no such file", notPEM: "no PEM certificate"} {
		cfg := config.Default()
		cfg.Auth.OIDC.Issuer, cfg.Auth.OIDC.Audience, cfg.Auth.OIDC.CAFile = "https://127.0.0.1:1", "certflow", file
		err := NewAuthenticator(&cfg, "", slog.New(slog.NewTextHandler(io.Discard, nil))).UseOIDC(cfg.Auth.OIDC)
		if err == nil || !strings.HasPrefix(err.Error(), "auth.oidc.ca_file: ") || !strings.Contains(err.Error(), says) {
			t.Errorf("ca_file %s: %v; want auth.oidc.ca_file: … %s", filepath.Base(file), err, says)
		}
	}
}

func TestOversizedJWTIsRefusedBeforeTheIssuerIsAsked(t *testing.T) {
	t.Parallel()
	o := &oidcVerifier{cfg: config.OIDC{Issuer: "https://127.0.0.1:1"}, now: time.Now}
	id, why, err := o.check(t.Context(), "eyJ"+strings.Repeat("A", maxJWTBytes)+".e30.x")
	if id != nil || err != nil || why != "bearer token: longer than 16384 bytes" {
		t.Fatalf("check = %v, %q, %v", id, why, err)
	}
	if o.verifier.Load() != nil || !o.retryAt.IsZero() {
		t.Fatal("an oversized token made certflow ask the issuer")
	}
}

func TestJWKSURLMustBeProtected(t *testing.T) {
	t.Parallel()
	for raw, ok := range map[string]bool{
		"https://idp.example.com/jwks": true,
		"http://127.0.0.1:8081/jwks":   true,
		"http://localhost/jwks":        true,
		"http://idp.example.com/jwks":  false,
		"ftp://idp.example.com/jwks":   false,
		"/jwks":                        false,
		"":                             false,
		"https://idp.example.com/jwks?secret=s3cr": true,
	} {
		err := checkJWKSURL(raw)
		if (err == nil) != ok {
			t.Errorf("checkJWKSURL(%q) = %v, want ok %v", raw, err, ok)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr") {
			t.Errorf("the error shows the query: %v", err)
		}
	}
}

func TestUseOIDCRefusesAJWTShapedAdminToken(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Auth.OIDC.Issuer, cfg.Auth.OIDC.Audience = "https://127.0.0.1:1", "certflow"
	a := NewAuthenticator(&cfg, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := a.UseOIDC(cfg.Auth.OIDC); err == nil || !strings.HasPrefix(err.Error(), "CERTFLOW_ADMIN_TOKEN looks like a JWT") {
		t.Fatalf("UseOIDC = %v", err)
	}
	cfg.Auth.OIDC.Issuer, cfg.Auth.OIDC.Audience = "", ""
	if err := a.UseOIDC(cfg.Auth.OIDC); err != nil {
		t.Fatalf("auth.oidc off: %v", err)
	}
}

// The identity provider's redirects are followed only to where its URLs
// may point (https, or http to a loopback host), and only a few times.
func TestOIDCRedirectsStayProtected(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/jwks":
			w.Write([]byte(`{"keys": []}`))
		case "/moved":
			http.Redirect(w, r, "/jwks", http.StatusFound)
		case "/to-plain-http":
			http.Redirect(w, r, "http://idp.example.com/jwks?secret=s3cr", http.StatusFound)
		case "/to-ftp":
			http.Redirect(w, r, "ftp://127.0.0.1/jwks", http.StatusMovedPermanently)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusTemporaryRedirect)
		}
	}))
	t.Cleanup(srv.Close)
	for path, says := range map[string]string{
		"/moved":         "",
		"/to-plain-http": "redirect to http://idp.example.com/jwks?…: want https (http only for a loopback host)",
		"/to-ftp":        "redirect to ftp://127.0.0.1/jwks: want https",
		"/loop":          "stopped after 3 redirects",
	} {
		k := &keySet{url: srv.URL + path, client: idpClient(nil)}
		_, err := k.fetch(t.Context())
		if says == "" && err != nil || says != "" && (err == nil || !strings.Contains(err.Error(), says)) {
			t.Errorf("fetching %s: %v, want %q", path, err, says)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr") {
			t.Errorf("the error shows the query: %v", err)
		}
	}
}

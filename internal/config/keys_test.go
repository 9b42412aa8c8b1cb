package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A config file's mistakes are told in the file's terms — the key path
// and line, the closest known key, the kind of value wanted — every one
// of them at once, not yaml.v3's Go type and field names.
func TestConfigErrorsSpeakTheFilesTerms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "certflow.yaml")
	os.WriteFile(path, []byte(`key_prefx: x
worker:
  poll_interval: 5
  concurency: 3
api:
  sync_wait: soon
  rate_limit: lots
callbacks:
  schedule: [5s, 1]
  allow_private: maybe
auth:
  users:
    - {nmae: a}
certificate_authorities:
  - {name: X, hots: y}
templates:
  - name: W
    rsa_key_size: [2048]
speed: 3
frobnicate: 1
`+"auth:\n  oidc:\n    role_map: [a]\n"), 0o600)
	_, err := Load(path)
	if err == nil {
		t.Fatal("a file full of mistakes loaded")
	}
	want := []string{
		`:1: unknown key "key_prefx" (did you mean "key_prefix"?)`,
		`:3: worker.poll_interval: want a duration like 10ms, got 5`,
		`:4: worker: unknown key "concurency" (did you mean "concurrency"?)`,
		`:6: api.sync_wait: want a duration like 10ms, got soon`,
		`:7: api.rate_limit: want a number, got lots`,
		`:9: callbacks.schedule[1]: want a duration like 10ms, got 1`,
		`:10: callbacks.allow_private: want true or false, got maybe`,
		`:13: auth.users[0]: unknown key "nmae" (did you mean "name"?)`,
		`:15: certificate_authorities[0]: unknown key "hots" (did you mean "host"?)`,
		`:18: templates[0]: unknown key "rsa_key_size" (did you mean "rsa_key_sizes"?)`,
		`:19: speed: want a mapping of keys, got 3`,
		`:20: unknown key "frobnicate" (known: acme_client, allow_plain_http, api, `,
		`:23: auth.oidc.role_map: want a mapping, got a list`,
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d errors, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], "config "+path+w) {
			t.Errorf("error %d = %q, want %q", i+1, lines[i], "config "+path+w)
		}
	}
	if strings.Contains(err.Error(), "config.") || strings.Contains(err.Error(), "time.Duration") {
		t.Errorf("the errors name Go types:\n%v", err)
	}
	// What yaml.v3 accepts is not refused: YAML 1.1 booleans, quoted
	// durations, empty values, hex numbers.
	// A mapping of values (role_map) is walked key by key.
	os.WriteFile(path, []byte("callbacks:\n  allow_private: yes\nworker:\n  poll_interval: \"20ms\"\n  concurrency: 0x10\napi:\nauth:\n  oidc:\n    issuer: https://idp.example.com\n    audience: certflow\n    role_map: {pki-admins: admin}\n"), 0o600)
	cfg, err := Load(path)
	if err != nil || !cfg.Callbacks.AllowPrivate || cfg.Worker.Concurrency != 16 || cfg.Auth.OIDC.RoleMap["pki-admins"] != "admin" {
		t.Fatalf("a valid file: %v, %+v", err, cfg.Worker)
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"hots", "host", 1}, {"key_prefx", "key_prefix", 1}, {"abc", "", 3}, {"kitten", "sitting", 3}} {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

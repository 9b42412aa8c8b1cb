package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
)

func load(t *testing.T, yaml string) (config.Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "certflow.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Load(path)
}

func TestEntriesAFileAddsGetTheBuiltInDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := load(t, "certificate_authorities: [{name: CorpCA}]\ntemplates: [{name: Web}]\n")
	if err != nil {
		t.Fatalf("a CA and a template given by name only: %v", err)
	}
	ca := cfg.CAs[0]
	if ca.Host != config.DefaultCAHost || ca.Type != "builtin" || ca.KeyType != "ecdsa-p256" || ca.MaxValidity != 825*24*time.Hour {
		t.Fatalf("CA defaults: %+v", ca)
	}
	tmpl := cfg.Templates[0]
	if tmpl.DisplayName != "Web" || tmpl.Validity != 397*24*time.Hour || len(tmpl.CAs) != 1 || tmpl.CAs[0] != "CorpCA" ||
		len(tmpl.RSAKeySizes) == 0 || len(tmpl.ECCCurves) == 0 || len(tmpl.ExtKeyUsages) == 0 {
		t.Fatalf("template defaults: %+v", tmpl)
	}
	// An explicitly empty list stays empty: RSA is then not allowed.
	cfg, err = load(t, "templates: [{name: EccOnly, rsa_key_sizes: []}]\n")
	if err != nil || len(cfg.Templates[0].RSAKeySizes) != 0 {
		t.Fatalf("explicit empty rsa_key_sizes: %v %v", cfg.Templates[0].RSAKeySizes, err)
	}
}

func TestTheQueueIsNamedAfterTheKeyPrefix(t *testing.T) {
	t.Parallel()
	cfg, err := load(t, "key_prefix: tenant-b\n")
	if err != nil || cfg.Queue != "tenant-b" {
		t.Fatalf("queue %q (%v), want tenant-b: two certflows sharing a Redis must not share a queue", cfg.Queue, err)
	}
	cfg, err = load(t, "key_prefix: tenant-b\nqueue: shared\n")
	if err != nil || cfg.Queue != "shared" {
		t.Fatalf("an explicit queue: %q %v", cfg.Queue, err)
	}
	if cfg, _ := config.Load(""); cfg.Queue != config.DefaultQueue {
		t.Fatalf("default queue %q", cfg.Queue)
	}
}

func TestMoreValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ yaml, want string }{
		{"templates: [{name: W, extended_key_usages: [ServerAuthentication]}]", `templates[0].extended_key_usages: unknown extended key usage "ServerAuthentication"`},
		{"templates: [{name: W, key_usages: [Sign]}]", `templates[0].key_usages: unknown key usage "Sign"`},
		{"auth: {users: [{name: admin, token: t, roles: [requester]}]}", `auth.users[0].name: "admin" is reserved`},
		{"worker: {task_timeout: 10m, reconcile_after: 5m}", "worker.reconcile_after: must be longer than worker.task_timeout"},
		{"certificate_authorities: [{name: C, host: 'a\\b'}]", "certificate_authorities[0].host"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			if _, err := load(t, tc.yaml+"\n"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

//go:build unix

package app_test

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/app"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/testutil"
)

// TestPolicySecretFilesAtStart: certflow does not start on a secret file
// that others could read or that a link decides (the KEK, named or
// generated, the webhook secret, a built-in CA's sealed key): the error
// names the file and the fix. A data directory others may enter is
// tightened to owner-only, with a warning, and certflow starts.
func TestPolicySecretFilesAtStart(t *testing.T) {
	t.Parallel()
	open := func(cfg *config.Config) (string, error) {
		var logs bytes.Buffer
		a, err := app.Open(cfg, app.RoleBoth, testutil.AdminToken, slog.New(slog.NewTextHandler(&logs, nil)), io.Discard)
		if err == nil {
			a.Close()
		}
		return logs.String(), err
	}
	// started is a data directory certflow has started on once (KEK,
	// webhook secret and CA made), ready to be tampered with.
	started := func(t *testing.T) *config.Config {
		_, prefix := testutil.Redis(t)
		cfg := testutil.TestConfig(t, prefix)
		if _, err := open(cfg); err != nil {
			t.Fatalf("first start: %v", err)
		}
		return cfg
	}
	caKey := func(cfg *config.Config) string {
		return filepath.Join(cfg.DataDir, "ca", cfg.CAs[0].Name, "issuing.key.sealed")
	}
	cases := []struct {
		name string
		// tamper changes a started data directory and returns the file
		// the refusal must name.
		tamper func(t *testing.T, cfg *config.Config) string
		want   string
	}{
		{"the generated KEK made world-readable", func(t *testing.T, cfg *config.Config) string {
			os.Chmod(cfg.KEKFile, 0o644)
			return cfg.KEKFile
		}, "run: chmod 600"},
		{"the generated KEK made group-readable", func(t *testing.T, cfg *config.Config) string {
			os.Chmod(cfg.KEKFile, 0o640)
			return cfg.KEKFile
		}, "run: chmod 600"},
		{"a named KEK that is world-readable", func(t *testing.T, cfg *config.Config) string {
			named := filepath.Join(t.TempDir(), "kek")
			copyFile(t, cfg.KEKFile, named, 0o644)
			cfg.KEKFile = named
			return named
		}, "run: chmod 600"},
		{"a named KEK that is a symlink", func(t *testing.T, cfg *config.Config) string {
			link := filepath.Join(t.TempDir(), "kek")
			if err := os.Symlink(cfg.KEKFile, link); err != nil {
				t.Fatal(err)
			}
			cfg.KEKFile = link
			return link
		}, "is a symbolic link"},
		{"the generated KEK replaced by a symlink", func(t *testing.T, cfg *config.Config) string {
			elsewhere := filepath.Join(t.TempDir(), "kek")
			copyFile(t, cfg.KEKFile, elsewhere, 0o600)
			os.Remove(cfg.KEKFile)
			if err := os.Symlink(elsewhere, cfg.KEKFile); err != nil {
				t.Fatal(err)
			}
			return cfg.KEKFile
		}, "is a symbolic link"},
		{"the webhook secret made world-readable", func(t *testing.T, cfg *config.Config) string {
			p := filepath.Join(cfg.DataDir, "webhook-secret")
			os.Chmod(p, 0o644)
			return p
		}, "run: chmod 600"},
		{"a CA's sealed key made world-readable", func(t *testing.T, cfg *config.Config) string {
			os.Chmod(caKey(cfg), 0o644)
			return caKey(cfg)
		}, "run: chmod 600"},
		{"a CA's sealed key replaced by a symlink", func(t *testing.T, cfg *config.Config) string {
			elsewhere := filepath.Join(t.TempDir(), "key")
			copyFile(t, caKey(cfg), elsewhere, 0o600)
			os.Remove(caKey(cfg))
			os.Symlink(elsewhere, caKey(cfg))
			return caKey(cfg)
		}, "is a symbolic link"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := started(t)
			file := tc.tamper(t, cfg)
			_, err := open(cfg)
			if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("start: %v; want a refusal naming %s with %q", err, file, tc.want)
			}
		})
	}
	t.Run("a data directory others may read is tightened, with a warning", func(t *testing.T) {
		t.Parallel()
		cfg := started(t)
		os.Chmod(cfg.DataDir, 0o755)
		logs, err := open(cfg)
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		st, _ := os.Stat(cfg.DataDir)
		if st.Mode().Perm() != 0o700 || !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "tightened") || !strings.Contains(logs, cfg.DataDir) {
			t.Fatalf("data directory now %04o; logs:\n%s", st.Mode().Perm(), logs)
		}
	})
	t.Run("a fresh start makes every secret owner-only", func(t *testing.T) {
		t.Parallel()
		cfg := started(t)
		for _, p := range []string{cfg.DataDir, cfg.KEKFile, filepath.Join(cfg.DataDir, "webhook-secret"), caKey(cfg)} {
			if st, err := os.Stat(p); err != nil || st.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s: %v, mode %04o", p, err, st.Mode().Perm())
			}
		}
		if _, err := pki.LoadKEKFile(cfg.KEKFile); err != nil {
			t.Errorf("the KEK it made does not load: %v", err)
		}
	})
}

// TestPolicyConfigFileSecrets: a config file that holds a secret in the
// clear and that its group or others may read is warned about, naming the
// file and the secret (never its value); a private one, or one whose
// token is a digest, is not.
func TestPolicyConfigFileSecrets(t *testing.T) {
	t.Parallel()
	const plain = "auth:\n  users:\n    - {name: ops, token: plain-token-value, roles: [admin]}\n"
	const digest = "auth:\n  users:\n    - {name: ops, token: \"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\", roles: [admin]}\n"
	for _, tc := range []struct {
		name, yaml string
		mode       os.FileMode
		warned     bool
	}{
		{"a plain token, world-readable", plain, 0o644, true},
		{"a plain token, group-readable", plain, 0o640, true},
		{"a plain token, owner-only", plain, 0o600, false},
		{"a signing secret, world-readable", "callbacks: {signing_secret: whsec_MDEyMzQ1Njc4OWFiY2RlZg==}\n", 0o644, true},
		{"a token digest, world-readable", digest, 0o644, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "certflow.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, tc.mode)
			s := app.Settings{ConfigPath: path, DataDir: t.TempDir()}
			cfg, err := app.LoadConfig(s)
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			app.WarnOnExposedConfigSecrets(s, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), path)
			if warned != tc.warned || strings.Contains(logs.String(), "plain-token-value") || strings.Contains(logs.String(), "whsec_") {
				t.Fatalf("warned %v, want %v:\n%s", warned, tc.warned, logs.String())
			}
		})
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, mode); err != nil {
		t.Fatal(err)
	}
}

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

//go:build unix

package secretfile_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/certflow/certflow/internal/secretfile"
)

// TestPolicySecretFiles: a secret file is read only when it is a regular
// file that only its owner may read or write, never through a link; each
// refusal names the file and, where a chmod fixes it, the chmod. The
// same holds for LoadOrCreate, which must not generate a secret over (or
// through) what it refused.
func TestPolicySecretFiles(t *testing.T) {
	t.Parallel()
	const secret = "0123456789abcdef0123456789abcdef\n"
	write := func(t *testing.T, dir string, mode fs.FileMode) string {
		p := filepath.Join(dir, "target")
		if err := os.WriteFile(p, []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // WriteFile's mode passes through the umask
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		// make returns the path to read.
		make func(t *testing.T, dir string) string
		// want is in the refusal's message ("" when the read succeeds).
		want string
	}{
		{"owner-only 0600 is read", func(t *testing.T, dir string) string { return write(t, dir, 0o600) }, ""},
		{"owner read-only 0400 is read", func(t *testing.T, dir string) string { return write(t, dir, 0o400) }, ""},
		{"world-readable 0644", func(t *testing.T, dir string) string { return write(t, dir, 0o644) }, "(mode 0644); run: chmod 600 "},
		{"group-readable 0640", func(t *testing.T, dir string) string { return write(t, dir, 0o640) }, "(mode 0640); run: chmod 600 "},
		{"others-readable only 0604", func(t *testing.T, dir string) string { return write(t, dir, 0o604) }, "(mode 0604); run: chmod 600 "},
		{"group-writable 0620", func(t *testing.T, dir string) string { return write(t, dir, 0o620) }, "(mode 0620); run: chmod 600 "},
		{"world-writable 0606", func(t *testing.T, dir string) string { return write(t, dir, 0o606) }, "(mode 0606); run: chmod 600 "},
		{"an owner-only file of another user", func(t *testing.T, dir string) string {
			p := write(t, dir, 0o600)
			if err := os.Chown(p, os.Geteuid()+4242, -1); err != nil {
				t.Skip("cannot give a file away here (not root):", err)
			}
			return p
		}, "is owned by uid"},
		{"a symlink to an owner-only file", func(t *testing.T, dir string) string {
			target := write(t, dir, 0o600)
			link := filepath.Join(dir, "kek")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "is a symbolic link"},
		{"a dangling symlink (where a creator would write)", func(t *testing.T, dir string) string {
			link := filepath.Join(dir, "kek")
			if err := os.Symlink(filepath.Join(dir, "attacker-chosen"), link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "is a symbolic link"},
		{"a directory", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "kek")
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			return p
		}, "not a regular file"},
		{"a FIFO (would block a plain open)", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "kek")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Skip("no FIFOs here:", err)
			}
			return p
		}, "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := tc.make(t, dir)
			got, err := secretfile.Read(path)
			generated := false
			_, _, cerr := secretfile.LoadOrCreate(path, func() ([]byte, error) { generated = true; return []byte("fresh"), nil })
			if tc.want == "" {
				if err != nil || string(got) != secret || cerr != nil || generated {
					t.Fatalf("Read: %q, %v; LoadOrCreate: %v (generated %v)", got, err, cerr, generated)
				}
				return
			}
			for what, err := range map[string]error{"Read": err, "LoadOrCreate": cerr} {
				if err == nil || !errors.Is(err, secretfile.ErrInsecure) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: %v; want a refusal (ErrInsecure) naming %s with %q", what, err, path, tc.want)
				}
			}
			if generated {
				t.Error("LoadOrCreate generated a secret over a refused path")
			}
			if _, err := os.Stat(filepath.Join(dir, "attacker-chosen")); err == nil {
				t.Error("LoadOrCreate wrote through the link")
			}
		})
	}
}

// TestPolicySecretDataDir: a data directory its group or others may enter
// is tightened to owner-only, and says what it was; an owner-only one and
// one not made yet are left alone; a file is not a directory.
func TestPolicySecretDataDir(t *testing.T) {
	t.Parallel()
	cases := []struct {
		mode, want fs.FileMode
		tightened  bool
	}{
		{0o755, 0o700, true},
		{0o750, 0o700, true},
		{0o705, 0o700, true},
		{0o777, 0o700, true},
		{0o700, 0o700, false},
		{0o500, 0o500, false},
	}
	for _, tc := range cases {
		dir := filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, tc.mode)
		tightened, was, err := secretfile.SecureDir(dir)
		st, _ := os.Stat(dir)
		if err != nil || tightened != tc.tightened || was != tc.mode || st.Mode().Perm() != tc.want {
			t.Errorf("mode %04o: tightened %v (was %04o), %v; now %04o, want %04o", tc.mode, tightened, was, err, st.Mode().Perm(), tc.want)
		}
	}
	if tightened, _, err := secretfile.SecureDir(filepath.Join(t.TempDir(), "not-yet")); tightened || err != nil {
		t.Errorf("a data directory not made yet: %v, %v", tightened, err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, _, err := secretfile.SecureDir(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file as the data directory: %v", err)
	}
}

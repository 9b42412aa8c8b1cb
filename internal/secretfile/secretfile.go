// Package secretfile reads secret files (the KEK, the webhook secret, the
// admin token, sealed CA keys) only when no one else could have read or
// replaced them, and creates them once, safely when several processes
// start at the same moment: the content is written to a temporary file
// and hard-linked into place, so a reader never sees a half-written file
// and exactly one creator wins. SecureDir keeps the data directory that
// holds them private.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// ErrInsecure is wrapped by every refusal of a secret file or directory
// that others could read or replace; the message names the path and the
// command that fixes it.
var ErrInsecure = errors.New("insecure secret file")

// private is the permission mask that must be clear on a secret file or
// the data directory: nothing for the group, nothing for others.
const private fs.FileMode = 0o077

// modeBits reports whether the file system's permission bits mean
// anything here (they do not on Windows).
var modeBits = runtime.GOOS != "windows"

// Read returns the content of the secret file at path. It refuses, with
// an error wrapping ErrInsecure:
//
//   - a path whose last element is a symbolic link (the link, not the
//     file, decides what is read: anyone who can write the link's folder
//     could point it at their own key); the folders above may be links;
//   - anything but a regular file;
//   - a file its group or others may read or write (mode & 0077): the
//     fix is chmod 600;
//   - a file owned by another user than this process's or root's (on
//     Unix): whoever owns it chose the key.
//
// The file is opened without following a link (O_NOFOLLOW) and checked
// on the open descriptor, so it cannot be swapped between check and read.
func Read(path string) ([]byte, error) {
	if st, err := os.Lstat(path); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		return nil, insecure("%s is a symbolic link; name the file itself (a secret is read only from a regular file)", path)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|oNoFollow|oNonBlock, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, insecure("%s is a symbolic link; name the file itself (a secret is read only from a regular file)", path)
		}
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, insecure("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	if perm := st.Mode().Perm(); modeBits && perm&private != 0 {
		return nil, insecure("%s is readable or writable by its group or others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	if uid, foreign := foreignOwner(st); foreign {
		return nil, insecure("%s is owned by uid %d, neither this process's user (uid %d) nor root: its owner chose its content; run: chown %d %s", path, uid, os.Geteuid(), os.Geteuid(), path)
	}
	return io.ReadAll(f)
}

// SecureDir makes sure the directory at path is private: one that its
// group or others may read, search or write is tightened to mode &^ 0077,
// and tightened reports the mode it had, for the caller to warn about.
// One that cannot be tightened (another user's) is refused, with an error
// wrapping ErrInsecure. A directory that does not exist yet is no error:
// whatever creates it (LoadOrCreate, the CA) makes it 0700. The path may
// be a symbolic link to a directory: it is the directory that must be
// private.
func SecureDir(path string) (tightened bool, was fs.FileMode, err error) {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	if !st.IsDir() {
		return false, 0, fmt.Errorf("%s is not a directory", path)
	}
	perm := st.Mode().Perm()
	if !modeBits || perm&private == 0 {
		return false, perm, nil
	}
	if err := os.Chmod(path, perm&^private); err != nil {
		return false, perm, insecure("data directory %s is open to its group or others (mode %04o) and could not be tightened (%v); run: chmod 700 %s", path, perm, err, path)
	}
	return true, perm, nil
}

func insecure(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInsecure}, args...)...)
}

// LoadOrCreate returns the content of the secret file at path (read with
// Read: a link, or a file others may read, is refused), creating it (mode
// 0600, parent folders 0700) with generate's output when it does not
// exist. created reports whether this call's content was the one
// installed.
func LoadOrCreate(path string, generate func() ([]byte, error)) (content []byte, created bool, err error) {
	b, err := Read(path)
	if err == nil {
		return b, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	data, err := generate()
	if err != nil {
		return nil, false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return nil, false, err
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(data)
	if err := errors.Join(werr, tmp.Chmod(0o600), tmp.Sync(), tmp.Close()); err != nil {
		return nil, false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			// Another process installed its file first: use that one.
			b, err := Read(path)
			return b, false, err
		}
		return nil, false, fmt.Errorf("install %s: %w", path, err)
	}
	return data, true, nil
}

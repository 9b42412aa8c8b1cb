// Package secretfile creates a secret file once and loads it ever after,
// safely when several processes start at the same moment: the content is
// written to a temporary file and hard-linked into place, so a reader never
// sees a half-written file and exactly one creator wins.
package secretfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// LoadOrCreate returns the content of the file at path, creating it (mode
// 0600, parent folders 0700) with generate's output when it does not exist.
// created reports whether this call's content was the one installed.
func LoadOrCreate(path string, generate func() ([]byte, error)) (content []byte, created bool, err error) {
	b, err := os.ReadFile(path)
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
			b, err := os.ReadFile(path)
			return b, false, err
		}
		return nil, false, fmt.Errorf("install %s: %w", path, err)
	}
	return data, true, nil
}

package secretfile_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/certflow/certflow/internal/secretfile"
)

func TestConcurrentCreatorsAgreeOnOneContent(t *testing.T) {
	t.Parallel()
	for round := 0; round < 50; round++ {
		path := filepath.Join(t.TempDir(), "sub", "secret")
		var wg sync.WaitGroup
		var creators atomic.Int32
		got := make([][]byte, 8)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, created, err := secretfile.LoadOrCreate(path, func() ([]byte, error) {
					return []byte(fmt.Sprintf("content-%d", i)), nil
				})
				if err != nil {
					t.Error(err)
				}
				if created {
					creators.Add(1)
				}
				got[i] = b
			}()
		}
		wg.Wait()
		if creators.Load() != 1 {
			t.Fatalf("round %d: %d callers believe they created the file", round, creators.Load())
		}
		for i := range got {
			if !bytes.Equal(got[i], got[0]) || len(got[i]) == 0 {
				t.Fatalf("round %d: caller %d read %q, caller 0 %q", round, i, got[i], got[0])
			}
		}
		st, _ := os.Stat(path)
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, want 0600", st.Mode().Perm())
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		if len(entries) != 1 {
			t.Fatalf("temporary files left behind: %v", entries)
		}
	}
}

func TestAnUnreadablePathIsAnErrorNotARecreation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir() // a directory cannot be read as a file
	called := false
	if _, _, err := secretfile.LoadOrCreate(dir, func() ([]byte, error) { called = true; return []byte("x"), nil }); err == nil {
		t.Fatal("reading a directory as a secret succeeded")
	}
	if called {
		t.Fatal("generated a secret although the path exists")
	}
}

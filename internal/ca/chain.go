package ca

import (
	"crypto/x509"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
)

// ReadChain returns the certificates of the built-in CA called name in
// dataDir, issuing CA first, then the root. It reads only the public
// files (no key, no KEK), for processes that show the catalogue without
// signing; a CA not created yet is an error.
func ReadChain(dataDir, name string) ([]*x509.Certificate, error) {
	dir := filepath.Join(dataDir, "ca", name)
	iss, err := readCert(filepath.Join(dir, issuingCertFile))
	if err != nil {
		return nil, fmt.Errorf("built-in CA %s: %w", name, err)
	}
	root, err := readCert(filepath.Join(dir, rootCertFile))
	if err != nil {
		return nil, fmt.Errorf("built-in CA %s: %w", name, err)
	}
	return []*x509.Certificate{iss, root}, nil
}

// Subjects knows the subjects of every configured built-in CA's root and
// issuing certificates (as pki.NameKey gives them), which no certificate
// certflow issues may carry. It reads the public chain files on first use
// and again until every CA's are there (a CA another process has not
// created yet).
type Subjects struct {
	cfg      *config.Config
	mu       sync.Mutex
	subjects []string
	complete bool
}

// NewSubjects returns the subjects of cfg's CAs, read lazily.
func NewSubjects(cfg *config.Config) *Subjects { return &Subjects{cfg: cfg} }

// All returns the subjects known so far (none from a nil Subjects, as
// when definitions are only linted).
func (s *Subjects) All() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.complete {
		return s.subjects
	}
	var out []string
	complete := true
	for _, c := range s.cfg.CAs {
		if c.Type != config.CATypeBuiltin {
			continue // an external CA's certificates are not in the data dir
		}
		chain, err := ReadChain(s.cfg.DataDir, c.Name)
		if err != nil {
			complete = false
			continue
		}
		for _, cert := range chain {
			if key, err := pki.NameKey(cert.RawSubject); err == nil {
				out = append(out, key)
			}
		}
	}
	s.subjects, s.complete = out, complete
	return out
}

package ca

import (
	"crypto/x509"
	"fmt"
	"path/filepath"
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

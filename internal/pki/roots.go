package pki

import (
	"crypto/x509"
	"fmt"
	"os"
)

// RootsWith is the system's roots plus the PEM certificates of caFile
// (none when it is ""), for a TLS client that also trusts a private CA.
func RootsWith(caFile string) (*x509.CertPool, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if caFile == "" {
		return roots, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", caFile)
	}
	return roots, nil
}

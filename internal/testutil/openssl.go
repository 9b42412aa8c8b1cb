package testutil

import (
	"bytes"
	"math/big"
	"os/exec"
	"strings"
	"testing"
)

// OpenSSLCRLNumber is the CRL Number `openssl crl -text` prints for a DER
// CRL, as a relying party's tooling reads it.
func OpenSSLCRLNumber(t testing.TB, der []byte) *big.Int {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is not installed: %v", err)
	}
	cmd := exec.Command(openssl, "crl", "-inform", "DER", "-noout", "-text")
	cmd.Stdin = bytes.NewReader(der)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
	_, rest, ok := strings.Cut(string(out), "X509v3 CRL Number:")
	if !ok || len(strings.Fields(rest)) == 0 {
		t.Fatalf("openssl printed no CRL number:\n%s", out)
	}
	n, ok := new(big.Int).SetString(strings.Fields(rest)[0], 10)
	if !ok {
		t.Fatalf("openssl's CRL number %q is not a decimal", strings.Fields(rest)[0])
	}
	return n
}

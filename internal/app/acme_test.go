package app_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/internal/testutil/acmetest"
)

// acmeCertflow is a certflow whose template AcmeServer routes to a real
// Pebble, which validates http-01 on certflow's own challenge listener.
func acmeCertflow(t *testing.T, mutate func(*config.Config)) (*testutil.Certflow, *acmetest.Pebble) {
	t.Helper()
	port := testutil.FreePort(t)
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: port})
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.CAs = append(c.CAs, config.NewACMECA("Pebble", config.ACME{
			Directory: pb.DirectoryURL, CABundle: pb.CABundle,
			PollInterval: 200 * time.Millisecond, MaxPollInterval: time.Second, Timeout: 5 * time.Second,
		}))
		tmpl := c.Templates[0]
		tmpl.Name, tmpl.DisplayName, tmpl.CAs = "AcmeServer", "ACME server", []string{"Pebble"}
		c.Templates = append(c.Templates, tmpl)
		c.ACMEClient.HTTP01Listen = fmt.Sprintf("127.0.0.1:%d", port)
		if mutate != nil {
			mutate(c)
		}
	})
	return cf, pb
}

func TestEnrollmentThroughPebble(t *testing.T) {
	t.Parallel()
	cf, pb := acmeCertflow(t, nil)
	csr, key := testutil.CSR(t, "www.certflow.test", "www.certflow.test", "api.certflow.test")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "AcmeServer", "IncludeChain": true}), "Prefer", "wait=60")
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	chain := pemChain(t, er.CertificateInformation.Certificates, true)
	leaf := chain[0]
	if !pki.SamePublicKey(leaf.PublicKey, key.Public()) {
		t.Fatal("the certificate does not carry the CSR's public key")
	}
	if status, _ := pb.CertStatus(t, fmt.Sprintf("%x", leaf.SerialNumber)); status != "Valid" {
		t.Fatalf("Pebble says %q of the serial certflow stored", status)
	}
}

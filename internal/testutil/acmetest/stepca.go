package acmetest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// StepCAOptions configures StartStepCA.
type StepCAOptions struct {
	// Resolver is the DNS server (host:port) step-ca resolves names with
	// when it validates challenges, e.g. a ChallSrv's DNSAddr. Empty: the
	// system's.
	Resolver string
	// HTTPPort, if not 0, is the port step-ca connects to for http-01
	// (--insecure --acme-http-port); else it uses 80.
	HTTPPort int
}

// StepCA is a step-ca started for a test, with one ACME provisioner
// ("acme", challenges dns-01 and http-01) and its CRL on.
type StepCA struct {
	DirectoryURL string            // https://127.0.0.1:<port>/acme/acme/directory
	CABundle     string            // PEM file of Root: trust for step-ca's TLS and for the chains it issues
	Root         *x509.Certificate // the root made here
	Intermediate *x509.Certificate // signed by Root; signs the certificates and the CRL
	CRLURL       string            // https://127.0.0.1:<port>/crl (DER), regenerated on every revocation

	client *http.Client
}

// StartStepCA makes a root and an intermediate (unencrypted key) in a
// temporary folder, writes a ca.json with one ACME provisioner, a bbolt
// database and the CRL on, starts step-ca on a free port and waits for
// its /health. It is killed when the test ends.
func StartStepCA(t testing.TB, o StepCAOptions) *StepCA {
	t.Helper()
	bin := Binary(t, "step-ca")
	dir := t.TempDir()
	root := newCA(t, "acmetest step-ca Root CA", nil)
	inter := newCA(t, "acmetest step-ca Intermediate CA", root)
	s := &StepCA{Root: root.cert, Intermediate: inter.cert, CABundle: filepath.Join(dir, "root.pem")}
	writeCert(t, s.CABundle, root.cert)
	writeCert(t, filepath.Join(dir, "intermediate.pem"), inter.cert)
	writeKey(t, filepath.Join(dir, "intermediate.key"), inter.key)

	port := freePort(t, false)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	s.DirectoryURL = base + "/acme/acme/directory"
	s.CRLURL = base + "/crl"
	conf := map[string]any{
		"root":     filepath.Join(dir, "root.pem"),
		"crt":      filepath.Join(dir, "intermediate.pem"),
		"key":      filepath.Join(dir, "intermediate.key"),
		"address":  fmt.Sprintf("127.0.0.1:%d", port),
		"dnsNames": []string{"127.0.0.1", "localhost"},
		"logger":   map[string]any{"format": "text"},
		"db":       map[string]any{"type": "bbolt", "dataSource": filepath.Join(dir, "db")},
		"crl":      map[string]any{"enabled": true, "generateOnRevoke": true},
		"authority": map[string]any{
			"provisioners": []any{map[string]any{
				"type":       "ACME",
				"name":       "acme",
				"challenges": []string{"dns-01", "http-01"},
			}},
		},
		"tls": map[string]any{"minVersion": 1.2, "maxVersion": 1.3},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "ca.json")
	if err := os.WriteFile(config, b, 0o600); err != nil {
		t.Fatal(err)
	}

	args := []string{config}
	if o.Resolver != "" {
		args = append(args, "--resolver", o.Resolver)
	}
	if o.HTTPPort != 0 {
		args = append(args, "--insecure", "--acme-http-port", strconv.Itoa(o.HTTPPort))
	}
	// STEPPATH: step-ca looks for contexts and defaults there, not in $HOME.
	p := startProcess(t, "step-ca", dir, bin, args, []string{"STEPPATH=" + filepath.Join(dir, "step")})

	pool := x509.NewCertPool()
	pool.AddCert(root.cert)
	s.client = &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	p.waitReady(t, func() error {
		if err := httpReady(s.client, base+"/health")(); err != nil {
			return err
		}
		return httpReady(s.client, s.DirectoryURL)()
	})
	return s
}

// HTTPClient is a client that trusts Root (for DirectoryURL and CRLURL).
func (s *StepCA) HTTPClient() *http.Client { return s.client }

// Revoked reports whether the certificate with this serial is on
// step-ca's CRL (fetched from CRLURL, its signature checked against
// Intermediate). step-ca regenerates the CRL on each revocation, so a
// revocation it acknowledged is listed.
func (s *StepCA) Revoked(t testing.TB, serial *big.Int) bool {
	t.Helper()
	resp, err := s.client.Get(s.CRLURL)
	if err != nil {
		t.Fatalf("step-ca: CRL: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("step-ca: %v", errStatus(resp))
	}
	der, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatalf("step-ca: CRL: %v", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("step-ca: CRL: %v", err)
	}
	if err := crl.CheckSignatureFrom(s.Intermediate); err != nil {
		t.Fatalf("step-ca: CRL signature: %v", err)
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}

package acmetest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PebbleOptions configures StartPebble.
type PebbleOptions struct {
	// HTTPPort is the port Pebble's validation authority connects to for
	// http-01 (on the address the name resolves to through DNS, 127.0.0.1
	// by default). 0: a free port nobody listens on.
	HTTPPort int
	// EAB maps key ids to base64url HMAC keys; non-empty turns on
	// externalAccountRequired.
	EAB map[string]string
	// Env is added to Pebble's environment, e.g. "PEBBLE_WFE_NONCEREJECT=0".
	// By default Pebble's unreliability stays on (5% of good nonces
	// rejected, authorizations reused half the time) but its validation
	// authority does not sleep before validating (PEBBLE_VA_NOSLEEP=1).
	Env []string
	// DNS is the resolver Pebble's validation authority uses; nil: a new
	// StartChallSrv.
	DNS *ChallSrv
	// DomainBlocklist are names (and their subdomains) Pebble refuses to
	// order, with a rejectedIdentifier problem.
	DomainBlocklist []string
	// RetryAfterOrder is the Retry-After (seconds) Pebble sends with a
	// processing order; 0: 1.
	RetryAfterOrder int
}

// Pebble is a Pebble ACME server started for a test.
type Pebble struct {
	DirectoryURL string // https://127.0.0.1:<port>/dir
	CABundle     string // PEM file of the CA that signed DirectoryURL's (and MgmtURL's) TLS certificate
	MgmtURL      string // https://127.0.0.1:<port>: roots, intermediates, certificate status
	DNS          *ChallSrv

	dir, bin, config string
	env              []string
	client           *http.Client
	proc             *process
}

// StartPebble starts Pebble on free ports with a TLS certificate made
// here (a Pebble built with go install has none of its test
// certificates). Its CA is new at every start; everything is in memory.
// It is killed when the test ends.
func StartPebble(t testing.TB, o PebbleOptions) *Pebble {
	t.Helper()
	bin := Binary(t, "pebble")
	if o.DNS == nil {
		o.DNS = StartChallSrv(t)
	}
	dir := t.TempDir()
	ca := newCA(t, "acmetest Pebble TLS CA", nil)
	leaf := newServerCert(t, ca)
	p := &Pebble{DNS: o.DNS, dir: dir, bin: bin, CABundle: filepath.Join(dir, "tls-ca.pem")}
	writeCert(t, p.CABundle, ca.cert)
	writeCert(t, filepath.Join(dir, "tls.pem"), leaf.cert)
	writeKey(t, filepath.Join(dir, "tls.key"), leaf.key)

	httpPort := o.HTTPPort
	if httpPort == 0 {
		httpPort = freePort(t, false)
	}
	listen, mgmt := freePort(t, false), freePort(t, false)
	p.DirectoryURL = fmt.Sprintf("https://127.0.0.1:%d/dir", listen)
	p.MgmtURL = fmt.Sprintf("https://127.0.0.1:%d", mgmt)

	type pebbleConf struct {
		ListenAddress                  string            `json:"listenAddress"`
		ManagementListenAddress        string            `json:"managementListenAddress"`
		Certificate                    string            `json:"certificate"`
		PrivateKey                     string            `json:"privateKey"`
		HTTPPort                       int               `json:"httpPort"`
		TLSPort                        int               `json:"tlsPort"`
		ExternalAccountBindingRequired bool              `json:"externalAccountBindingRequired"`
		ExternalAccountMACKeys         map[string]string `json:"externalAccountMACKeys,omitempty"`
		RetryAfter                     map[string]int    `json:"retryAfter"`
		KeyAlgorithm                   string            `json:"keyAlgorithm"`
		DomainBlocklist                []string          `json:"domainBlocklist,omitempty"`
	}
	conf := map[string]pebbleConf{"pebble": {
		ListenAddress:                  fmt.Sprintf("127.0.0.1:%d", listen),
		ManagementListenAddress:        fmt.Sprintf("127.0.0.1:%d", mgmt),
		Certificate:                    filepath.Join(dir, "tls.pem"),
		PrivateKey:                     filepath.Join(dir, "tls.key"),
		HTTPPort:                       httpPort,
		TLSPort:                        freePort(t, false), // tls-alpn-01: nobody listens
		ExternalAccountBindingRequired: len(o.EAB) > 0,
		ExternalAccountMACKeys:         o.EAB,
		RetryAfter:                     map[string]int{"authz": 1, "order": max(o.RetryAfterOrder, 1)},
		KeyAlgorithm:                   "ecdsa",
		DomainBlocklist:                o.DomainBlocklist,
	}}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p.config = filepath.Join(dir, "pebble-config.json")
	if err := os.WriteFile(p.config, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p.env = append([]string{"PEBBLE_VA_NOSLEEP=1"}, o.Env...)

	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	p.client = &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	p.start(t)
	return p
}

func (p *Pebble) start(t testing.TB) {
	t.Helper()
	p.proc = startProcess(t, "pebble", p.dir, p.bin,
		[]string{"-config", p.config, "-dnsserver", p.DNS.DNSAddr}, p.env)
	p.proc.waitReady(t, func() error {
		if err := httpReady(p.client, p.DirectoryURL)(); err != nil {
			return err
		}
		return httpReady(p.client, p.MgmtURL+"/roots/0")()
	})
}

// HTTPClient is a client that trusts CABundle (for DirectoryURL and MgmtURL).
func (p *Pebble) HTTPClient() *http.Client { return p.client }

// Stop kills Pebble (its accounts, orders and CA are gone).
func (p *Pebble) Stop() { p.proc.stop() }

// Restart kills Pebble and starts it again on the same ports and
// configuration: a server with no accounts or orders and a new CA (new
// Roots), as a CA that lost its state.
func (p *Pebble) Restart(t testing.TB) {
	t.Helper()
	p.proc.stop()
	p.start(t)
}

// Roots returns Pebble's root certificate (management /roots/0), the
// trust anchor of the chains it issues. Pebble sends the intermediate
// with each certificate; Intermediates has it too.
func (p *Pebble) Roots(t testing.TB) []*x509.Certificate {
	t.Helper()
	return p.mgmtCerts(t, "/roots/0")
}

// Intermediates returns the intermediate certificate that signs Pebble's
// certificates (management /intermediates/0).
func (p *Pebble) Intermediates(t testing.TB) []*x509.Certificate {
	t.Helper()
	return p.mgmtCerts(t, "/intermediates/0")
}

func (p *Pebble) mgmtCerts(t testing.TB, path string) []*x509.Certificate {
	t.Helper()
	resp, err := p.client.Get(p.MgmtURL + path)
	if err != nil {
		t.Fatalf("pebble: GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble: %v", errStatus(resp))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("pebble: GET %s: %v", path, err)
	}
	certs, err := parsePEMCerts(b)
	if err != nil || len(certs) == 0 {
		t.Fatalf("pebble: GET %s: no certificate (%v)", path, err)
	}
	return certs
}

// CertStatus asks Pebble's management interface about the certificate
// with this serial (hexadecimal, any case, as big.Int.Text(16)): "Valid"
// or "Revoked" with the revocation reason (0 when none was given), or ""
// when Pebble never issued it.
func (p *Pebble) CertStatus(t testing.TB, serialHex string) (status string, reason int) {
	t.Helper()
	resp, err := p.client.Get(p.MgmtURL + "/cert-status-by-serial/" + serialHex)
	if err != nil {
		t.Fatalf("pebble: certificate status: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "", 0
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble: %v", errStatus(resp))
	}
	var body struct {
		Status string
		Reason *int
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		t.Fatalf("pebble: certificate status: %v", err)
	}
	if body.Reason != nil {
		reason = *body.Reason
	}
	return body.Status, reason
}

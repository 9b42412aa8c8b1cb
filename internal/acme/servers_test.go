package acme_test

// Real ACME servers for this package's tests, until the shared harness
// (internal/testutil/acmetest) lands: Pebble and pebble-challtestsrv,
// started from $ACME_BIN (default /tmp/acmebin).

import (
	"bytes"
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func binDir() string { return cmp.Or(os.Getenv("ACME_BIN"), "/tmp/acmebin") }

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startProcess(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir(), name), args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() && testing.Verbose() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
}

type challSrv struct {
	DNSAddr string
	MgmtURL string
}

func startChallSrv(t *testing.T) *challSrv {
	dns, mgmt := freePort(t), freePort(t)
	startProcess(t, nil, "pebble-challtestsrv",
		"-dnsserver", "127.0.0.1:"+strconv.Itoa(dns), "-management", "127.0.0.1:"+strconv.Itoa(mgmt),
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "", "-defaultIPv6", "")
	c := &challSrv{DNSAddr: "127.0.0.1:" + strconv.Itoa(dns), MgmtURL: "http://127.0.0.1:" + strconv.Itoa(mgmt)}
	waitFor(t, func() error {
		resp, err := http.Post(c.MgmtURL+"/clear-request-history", "application/json", bytes.NewBufferString(`{"host":"x","type":"dns"}`))
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	return c
}

type pebbleOptions struct {
	HTTPPort  int
	EAB       map[string]string
	Env       []string
	Blocklist []string
}

type pebble struct {
	DirectoryURL string
	CABundle     string
	MgmtURL      string
	DNS          *challSrv
	client       *http.Client
}

func startPebble(t *testing.T, o pebbleOptions) *pebble {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeTLSCert(t, certFile, keyFile)
	listen, mgmt := freePort(t), freePort(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + strconv.Itoa(listen),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(mgmt),
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       cmp.Or(o.HTTPPort, freePort(t)),
		"tlsPort":                        freePort(t),
		"externalAccountBindingRequired": len(o.EAB) > 0,
		"externalAccountMACKeys":         o.EAB,
		"domainBlocklist":                o.Blocklist,
		"retryAfter":                     map[string]int{"authz": 1, "order": 3},
		"profiles":                       map[string]any{"default": map[string]any{"description": "default", "validityPeriod": 7776000}},
	}}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble.json")
	os.WriteFile(cfgFile, b, 0o600)
	cs := startChallSrv(t)
	startProcess(t, append([]string{"PEBBLE_VA_NOSLEEP=1"}, o.Env...), "pebble", "-config", cfgFile, "-dnsserver", cs.DNSAddr)
	pem, _ := os.ReadFile(certFile)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	p := &pebble{
		DirectoryURL: fmt.Sprintf("https://127.0.0.1:%d/dir", listen),
		CABundle:     certFile,
		MgmtURL:      fmt.Sprintf("https://127.0.0.1:%d", mgmt),
		DNS:          cs,
		client:       &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 10 * time.Second},
	}
	waitFor(t, func() error {
		resp, err := p.client.Get(p.DirectoryURL)
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	return p
}

// Roots are Pebble's issuing roots.
func (p *pebble) Roots(t *testing.T) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.get(t, "/roots/0"))
	return pool
}

// CertStatus is Pebble's status of a certificate by serial (hex).
func (p *pebble) CertStatus(t *testing.T, serialHex string) string {
	t.Helper()
	var st struct{ Status string }
	if err := json.Unmarshal(p.get(t, "/cert-status-by-serial/"+serialHex), &st); err != nil {
		t.Fatal(err)
	}
	return st.Status
}

func (p *pebble) get(t *testing.T, path string) []byte {
	t.Helper()
	resp, err := p.client.Get(p.MgmtURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("pebble %s: %d %s", path, resp.StatusCode, b)
	}
	return b
}

func waitFor(t *testing.T, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeTLSCert(t *testing.T, certFile, keyFile string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test TLS"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
}

package tlsserve_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/internal/tlsserve"
)

// clock is a test's own time, moved by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// serve runs an HTTPS server with src's configuration on a loopback port,
// as the API does (http.Server.ServeTLS), and returns its address.
func serve(t *testing.T, src *tlsserve.Source) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(r.Proto))
		}),
		TLSConfig: src.Config(),
	}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// handshake connects with the given roots and server name and returns
// what the server presented.
func handshake(t *testing.T, addr string, roots *x509.CertPool, name string, mutate func(*tls.Config)) (tls.ConnectionState, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: name, NextProtos: []string{"h2", "http/1.1"}}
	if mutate != nil {
		mutate(cfg)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}

func bundlePool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the CA bundle: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("the CA bundle %s holds no certificate", path)
	}
	return pool
}

func openIssued(t *testing.T, dataDir string, kek *pki.KEK, c *clock, names []string, log *testutil.SyncBuffer) *tlsserve.Source {
	t.Helper()
	o := tlsserve.Options{DataDir: dataDir, KEK: kek, Names: names, Validity: 3 * time.Hour}
	if c != nil {
		o.Now = c.Now
	}
	if log != nil {
		o.Log = slog.New(slog.NewTextHandler(log, nil))
	}
	src, err := tlsserve.Open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return src
}

// TestIssuedCertificateVerifiesAgainstTheBundle: with no files, the
// served certificate is issued for the names by a CA whose root is the
// bundle, for server authentication only, and the listener speaks TLS 1.2
// and 1.3 with HTTP/2, never TLS 1.1.
func TestIssuedCertificateVerifiesAgainstTheBundle(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	src := openIssued(t, dataDir, testutil.KEK(t), nil, []string{"certflow.example.com", "localhost", "127.0.0.1", "::1"}, nil)
	if want := filepath.Join(dataDir, tlsserve.BundleFile); src.BundlePath() != want {
		t.Fatalf("bundle at %s, want %s", src.BundlePath(), want)
	}
	roots := bundlePool(t, src.BundlePath())
	addr := serve(t, src)
	for _, name := range []string{"certflow.example.com", "localhost", "127.0.0.1"} {
		st, err := handshake(t, addr, roots, name, nil)
		if err != nil {
			t.Fatalf("a client trusting the bundle, for %s: %v", name, err)
		}
		leaf := st.PeerCertificates[0]
		if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Fatalf("the server certificate's usages: EKU %v, KU %v, CA %v", leaf.ExtKeyUsage, leaf.KeyUsage, leaf.IsCA)
		}
		if len(st.PeerCertificates) != 2 || len(st.VerifiedChains) != 1 || len(st.VerifiedChains[0]) != 3 {
			t.Fatalf("sent %d certificates (want leaf and issuing CA), verified chain %d long (want 3)", len(st.PeerCertificates), len(st.VerifiedChains[0]))
		}
		if st.NegotiatedProtocol != "h2" {
			t.Fatalf("ALPN negotiated %q, want h2", st.NegotiatedProtocol)
		}
	}
	if _, err := handshake(t, addr, roots, "other.example.com", nil); err == nil {
		t.Fatal("the certificate verified for a name it was not issued for")
	}
	if _, err := handshake(t, addr, x509.NewCertPool(), "localhost", nil); err == nil {
		t.Fatal("the certificate verified without the bundle")
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		if st, err := handshake(t, addr, roots, "localhost", func(c *tls.Config) { c.MinVersion, c.MaxVersion = v, v }); err != nil || st.Version != v {
			t.Fatalf("TLS version %x: %v", v, err)
		}
	}
	if _, err := handshake(t, addr, roots, "localhost", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS11, tls.VersionTLS11 }); err == nil {
		t.Fatal("TLS 1.1 was accepted")
	}
	// HTTP/2 end to end through net/http.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	resp, err := client.Get("https://" + strings.Replace(addr, "127.0.0.1", "localhost", 1))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" {
		t.Fatalf("the request went over %s, want HTTP/2.0", resp.Proto)
	}
	// The key is kept sealed and owner-only; the bundle is public.
	st, err := os.Stat(filepath.Join(dataDir, "tls", "server.pem"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("server.pem: %v, mode %v", err, st.Mode().Perm())
	}
	stored, _ := os.ReadFile(filepath.Join(dataDir, "tls", "server.pem"))
	if bytes.Contains(stored, []byte("PRIVATE KEY-----")) && !bytes.Contains(stored, []byte("CERTFLOW SEALED PRIVATE KEY")) {
		t.Fatal("server.pem holds the key in the clear")
	}
	der, _ := x509.MarshalPKCS8PrivateKey(src.Certificate().PrivateKey)
	if bytes.Contains(stored, der) {
		t.Fatal("server.pem holds the key's DER in the clear")
	}
	opensslCheck(t, addr, src.BundlePath())
}

// opensslCheck connects with openssl s_client, verifying against the
// bundle, when openssl is installed.
func opensslCheck(t *testing.T, addr, bundle string) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Log("openssl not installed: s_client check skipped")
		return
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("openssl", "s_client", "-connect", "127.0.0.1:"+port, "-servername", "localhost",
		"-verify_hostname", "localhost", "-CAfile", bundle, "-verify_return_error", "-alpn", "h2")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verify return code: 0 (ok)") || !strings.Contains(string(out), "ALPN protocol: h2") {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	cmd = exec.Command("openssl", "s_client", "-connect", "127.0.0.1:"+port, "-tls1_1", "-CAfile", bundle)
	cmd.Stdin = strings.NewReader("")
	if out, err := cmd.CombinedOutput(); err == nil && strings.Contains(string(out), "Verify return code: 0") {
		t.Fatalf("openssl connected with TLS 1.1:\n%s", out)
	}
}

// TestIssuedCertificateIsSharedAndRenewed: a second process on the same
// data directory serves the certificate the first issued; two thirds into
// its lifetime it is renewed (by the process that notices first) and the
// other takes the renewed one from disk; a change of names reissues it.
func TestIssuedCertificateIsSharedAndRenewed(t *testing.T) {
	t.Parallel()
	dataDir, kek := t.TempDir(), testutil.KEK(t)
	names := []string{"localhost", "127.0.0.1"}
	c1, c2 := &clock{now: time.Now()}, &clock{now: time.Now()}
	log := &testutil.SyncBuffer{}
	a := openIssued(t, dataDir, kek, c1, names, log)
	b := openIssued(t, dataDir, kek, c2, names, nil)
	first := a.Certificate().Leaf
	if !bytes.Equal(b.Certificate().Leaf.Raw, first.Raw) {
		t.Fatal("a second process issued a certificate of its own instead of using the stored one")
	}
	roots := bundlePool(t, a.BundlePath())
	addr := serve(t, a)

	// Not yet due: nothing changes.
	c1.Add(time.Hour)
	a.Refresh()
	if !bytes.Equal(a.Certificate().Leaf.Raw, first.Raw) {
		t.Fatal("renewed a third into its lifetime")
	}
	// Two thirds through its 3h: renewed, and served at once.
	c1.Add(time.Hour + time.Minute)
	a.Refresh()
	renewed := a.Certificate().Leaf
	if bytes.Equal(renewed.Raw, first.Raw) || !strings.Contains(log.String(), "two thirds of its lifetime are past") {
		t.Fatalf("not renewed two thirds into its lifetime; log:\n%s", log)
	}
	st, err := handshake(t, addr, roots, "localhost", nil)
	if err != nil || !bytes.Equal(st.PeerCertificates[0].Raw, renewed.Raw) {
		t.Fatalf("the listener does not serve the renewed certificate: %v", err)
	}
	// The other process, whose clock says its own is still good, takes
	// the renewed one from disk rather than renewing again.
	b.Refresh()
	if !bytes.Equal(b.Certificate().Leaf.Raw, renewed.Raw) {
		t.Fatal("the other process did not take the renewed certificate from disk")
	}
	// Other names: a new certificate for them.
	c := openIssued(t, dataDir, kek, nil, []string{"certflow.internal", "10.0.0.7"}, nil)
	leaf := c.Certificate().Leaf
	if !slices.Equal(leaf.DNSNames, []string{"certflow.internal"}) || len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "10.0.0.7" {
		t.Fatalf("issued for DNS %v IP %v", leaf.DNSNames, leaf.IPAddresses)
	}
	// A damaged file is replaced, not served.
	os.WriteFile(filepath.Join(dataDir, "tls", "server.pem"), []byte("garbage"), 0o600)
	d := openIssued(t, dataDir, kek, nil, names, nil)
	if d.Certificate() == nil || bytes.Equal(d.Certificate().Leaf.Raw, leaf.Raw) {
		t.Fatal("no certificate after a damaged file")
	}
	// A KEK that does not open the stored key cannot use it, and cannot
	// open the server CA either: the start is refused.
	if _, err := tlsserve.Open(tlsserve.Options{DataDir: dataDir, KEK: testutil.KEK(t), Names: names, Validity: 3 * time.Hour}); err == nil {
		t.Fatal("opened with another KEK")
	}
}

// testCA signs server certificates for the files mode.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Operator Root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// write writes a certificate for localhost (serial n) and its key.
func (c *testCA) write(t *testing.T, certFile, keyFile string, n int64) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	// A fresh key file, as an operator's tooling writes one: WriteFile
	// keeps an existing file's mode, and a case below leaves it 0644.
	os.Remove(keyFile)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// TestFilesAreReloadedWithoutRestart: replaced files are served at the
// next check (Refresh, run by the poll and by SIGHUP) without a restart;
// a broken replacement keeps the old certificate, and says why.
func TestFilesAreReloadedWithoutRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	ca := newTestCA(t)
	ca.write(t, certFile, keyFile, 100)
	log := &testutil.SyncBuffer{}
	src, err := tlsserve.Open(tlsserve.Options{CertFile: certFile, KeyFile: keyFile, Log: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if src.BundlePath() != "" {
		t.Fatalf("a bundle %s with the operator's files", src.BundlePath())
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	addr := serve(t, src)
	serial := func() int64 {
		t.Helper()
		st, err := handshake(t, addr, roots, "localhost", nil)
		if err != nil {
			t.Fatal(err)
		}
		return st.PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 100 {
		t.Fatalf("serving serial %d, want 100", got)
	}
	src.Refresh() // unchanged files: nothing to do
	ca.write(t, certFile, keyFile, 101)
	src.Refresh()
	if got := serial(); got != 101 {
		t.Fatalf("after the files changed, serving serial %d, want 101", got)
	}
	// Broken replacements: the old certificate stays, the log says why.
	for name, breakIt := range map[string]func(){
		"a key of another certificate": func() {
			other := t.TempDir()
			ca.write(t, filepath.Join(other, "c"), filepath.Join(other, "k"), 102)
			k, _ := os.ReadFile(filepath.Join(other, "k"))
			os.WriteFile(keyFile, k, 0o600)
		},
		"a truncated certificate": func() {
			ca.write(t, certFile, keyFile, 103)
			c, _ := os.ReadFile(certFile)
			os.WriteFile(certFile, c[:len(c)/2], 0o644)
		},
		"a key file others may read": func() {
			ca.write(t, certFile, keyFile, 104)
			os.Chmod(keyFile, 0o644)
		},
		"a missing key file": func() { os.Remove(keyFile) },
	} {
		breakIt()
		src.Refresh()
		if got := serial(); got != 101 {
			t.Fatalf("%s: serving serial %d, want the old 101", name, got)
		}
	}
	if !strings.Contains(log.String(), "keeping the certificate served") || !strings.Contains(log.String(), "tls.key_file") {
		t.Fatalf("the refusals are not logged with their reason:\n%s", log)
	}
	// Repaired: served again.
	ca.write(t, certFile, keyFile, 105)
	src.Refresh()
	if got := serial(); got != 105 {
		t.Fatalf("after the repair, serving serial %d, want 105", got)
	}
	// The poll does the same on its own.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go src.Run(ctx, 10*time.Millisecond)
	ca.write(t, certFile, keyFile, 106)
	deadline := time.Now().Add(10 * time.Second)
	for serial() != 106 {
		if time.Now().After(deadline) {
			t.Fatal("the poll did not load the changed files")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBrokenFilesRefuseTheStart: at start there is no old certificate to
// keep, so broken files are an error naming the setting.
func TestBrokenFilesRefuseTheStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	os.WriteFile(certFile, []byte("not a certificate"), 0o644)
	os.WriteFile(keyFile, []byte("not a key"), 0o600)
	_, err := tlsserve.Open(tlsserve.Options{CertFile: certFile, KeyFile: keyFile})
	if err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Fatalf("broken files: %v", err)
	}
	_, err = tlsserve.Open(tlsserve.Options{CertFile: filepath.Join(dir, "none.crt"), KeyFile: keyFile})
	if err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Fatalf("a missing file: %v", err)
	}
}

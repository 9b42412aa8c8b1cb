package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/testutil"
)

// selfSigned makes a self-signed certificate for localhost with the
// openssl CLI into certFile and keyFile (0600), as an operator would, and
// returns it.
func selfSigned(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-days", "1",
		"-keyout", keyFile, "-out", certFile).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(certFile)
	block, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// served is the certificate the HTTPS listener at addr presents, nil
// while it does not answer.
func served(addr string) *x509.Certificate {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err != nil {
		return nil
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// TestSIGHUPReloadsTheTLSFiles: `certflow serve` with certificate files
// serves them over HTTPS, and after SIGHUP serves the replaced files
// without a restart (the poll is an hour away, so only the signal can have
// done it); a broken replacement keeps the served certificate and the
// log says why.
func TestSIGHUPReloadsTheTLSFiles(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is required for this test")
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	first := selfSigned(t, certFile, keyFile)
	cfgFile := filepath.Join(dir, "certflow.yaml")
	os.WriteFile(cfgFile, []byte("tls:\n  reload_interval: 1h\n"), 0o600)
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cmd := exec.Command(binary, "serve", "--config", cfgFile, "--listen", fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), "--tls-listen", tlsAddr)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "CERTFLOW_TLS_CERT_FILE="+certFile, "CERTFLOW_TLS_KEY_FILE="+keyFile)
	logs := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; output:\n%s", what, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitUntil("the HTTPS listener", func() bool { return served(tlsAddr) != nil })
	if c := served(tlsAddr); !bytes.Equal(c.Raw, first.Raw) {
		t.Fatalf("serving %s, not the certificate file", c.Subject)
	}

	second := selfSigned(t, certFile, keyFile)
	cmd.Process.Signal(syscall.SIGHUP)
	waitUntil("the replaced certificate after SIGHUP", func() bool {
		c := served(tlsAddr)
		return c != nil && bytes.Equal(c.Raw, second.Raw)
	})

	os.WriteFile(keyFile, []byte("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitUntil("the refusal logged", func() bool { return strings.Contains(logs.String(), "keeping the certificate served") })
	if c := served(tlsAddr); c == nil || !bytes.Equal(c.Raw, second.Raw) {
		t.Fatal("a broken key file replaced the served certificate")
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Fatal("the log shows the key file's content")
	}
}

// TestServeRefusesPlainHTTPBeyondLoopback: a plain listener on every
// interface needs allow_plain_http; the refusal names it, and the opt-in
// is a boolean.
func TestServeRefusesPlainHTTPBeyondLoopback(t *testing.T) {
	dir := t.TempDir()
	listen := fmt.Sprintf("0.0.0.0:%d", testutil.FreePort(t))
	out, code := runEnv(t, dir, nil, "serve", "--listen", listen)
	if code != 1 || !strings.Contains(out, "allow_plain_http") || !strings.Contains(out, listen) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, code = runEnv(t, dir, []string{"CERTFLOW_ALLOW_PLAIN_HTTP=yes please"}, "serve", "--listen", listen)
	if code != 1 || !strings.Contains(out, "CERTFLOW_ALLOW_PLAIN_HTTP: want true or false") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

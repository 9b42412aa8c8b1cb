package testutil

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
)

// The credentials and sender of StartSMTPServer's servers and their
// Config.
const (
	SMTPUser     = "certflow"
	SMTPPassword = "pw-Zq81xv0Lk" // distinctive: tests look for it in errors, outputs and logs
	SMTPFrom     = "certflow <pki@example.com>"
)

// SMTPOptions is how StartSMTPServer runs the server.
type SMTPOptions struct {
	// TLS is the server's mode: "starttls" (the default), "implicit" or
	// "none". Config's client side uses the same mode.
	TLS string
	// Stall makes a server that accepts connections and never answers.
	Stall bool
}

// SMTPServer is a running internal/notify/testdata/smtpd process.
type SMTPServer struct {
	Addr   string // host:port it listens on
	Dir    string // where it writes messages and AUTH events
	CAFile string // the CA that signed its certificate (PEM)
	tls    string
}

// SMTPMessage is what the server wrote for one message it accepted.
type SMTPMessage struct {
	From string   `json:"from"`
	To   []string `json:"to"`
	TLS  bool     `json:"tls"`  // the session was encrypted when DATA came
	User string   `json:"user"` // who authenticated, "" for nobody
	Data string   `json:"data"`
}

// SMTPAuthEvent is one AUTH attempt the server saw.
type SMTPAuthEvent struct {
	Mechanism string `json:"mechanism"`
	TLS       bool   `json:"tls"` // the session was encrypted when AUTH came
	User      string `json:"user"`
	OK        bool   `json:"ok"`
}

// smtpdBinary builds internal/notify/testdata/smtpd once per test process.
var smtpdBinary = sync.OnceValues(func() (string, error) { return buildTestdata("notify", "smtpd") })

// buildTestdata builds internal/<pkg>/testdata/<name> into a temporary
// folder named after the test process. Without a TestMain nothing removes
// it when the process ends, so each build first removes the folders of
// test processes that have ended.
func buildTestdata(pkg, name string) (string, error) {
	prefix := buildPrefix + name + "-" // then <pid>-<random>
	removeEndedBuilds(prefix)
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", pkg, "testdata", name)
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", prefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("build %s: %v\n%s", src, err, out)
	}
	return bin, nil
}

const buildPrefix = "certflow-"

// removeEndedBuilds removes buildTestdata's folders (prefix) whose process
// is no longer running. One it cannot tell about (another user's, say) stays.
func removeEndedBuilds(prefix string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*-*"))
	for _, dir := range dirs {
		pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), prefix), "-")
		n, err := strconv.Atoi(pid)
		if err != nil || n == os.Getpid() {
			continue
		}
		if p, err := os.FindProcess(n); err == nil && errors.Is(p.Signal(syscall.Signal(0)), os.ErrProcessDone) {
			os.RemoveAll(dir)
		}
	}
}

// StartSMTPServer starts internal/notify/testdata/smtpd on a free port
// with a certificate for 127.0.0.1 and localhost from a fresh CA, and
// AUTH PLAIN for SMTPUser/SMTPPassword. It is killed when the test ends.
func StartSMTPServer(t testing.TB, opts SMTPOptions) *SMTPServer {
	t.Helper()
	bin, err := smtpdBinary()
	if err != nil {
		t.Fatal(err)
	}
	if opts.TLS == "" {
		opts.TLS = "starttls"
	}
	dir := t.TempDir()
	caFile, certFile, keyFile := writeSMTPCerts(t, dir)
	s := &SMTPServer{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
		Dir:  filepath.Join(dir, "mail"), CAFile: caFile, tls: opts.TLS,
	}
	if err := os.Mkdir(s.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-addr", s.Addr, "-dir", s.Dir, "-cert", certFile, "-key", keyFile,
		"-tls", opts.TLS, "-user", SMTPUser, "-pass", SMTPPassword, "-stall="+strconv.FormatBool(opts.Stall))
	runServer(t, "smtpd", cmd, s.Addr)
	return s
}

// runServer starts cmd, a server that will listen on addr, and returns
// once addr accepts connections; the process is killed when the test
// ends (its output logged if the test failed), or by the returned stop.
func runServer(t testing.TB, name string, cmd *exec.Cmd, addr string) (stop func()) {
	t.Helper()
	var output SyncBuffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = sync.OnceFunc(func() {
		cmd.Process.Kill()
		<-exited
	})
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, output.String())
		}
	})
	for deadline := time.Now().Add(3 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return stop
		}
		select {
		case <-exited:
			t.Fatalf("%s exited: %s", name, output.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not accept connections on %s: %v", name, addr, err)
		}
	}
}

// writeSMTPCerts makes a CA and a server certificate for 127.0.0.1 and
// localhost signed by it, as PEM files in dir.
func writeSMTPCerts(t testing.TB, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtpd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for file, block := range map[string]*pem.Block{
		caFile: {Type: "CERTIFICATE", Bytes: caDER}, certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: pkcs8},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// Config is the client side of s: its address, SMTPFrom, SMTPUser and
// SMTPPassword, the server's TLS mode, s.CAFile and a 5s timeout.
func (s *SMTPServer) Config() config.SMTP {
	return config.SMTP{
		Addr: s.Addr, From: SMTPFrom, Username: SMTPUser, Password: SMTPPassword,
		TLS: s.tls, Timeout: 5 * time.Second, CAFile: s.CAFile,
	}
}

// Messages are the messages s accepted so far, in the order it took them.
func (s *SMTPServer) Messages(t testing.TB) []SMTPMessage {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(s.Dir, "msg-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	// msg-<n>.json: by n, not by name (msg-10 comes after msg-9).
	slices.SortFunc(files, func(a, b string) int { return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b)) })
	var out []SMTPMessage
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m SMTPMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, m)
	}
	return out
}

// Auths are the AUTH attempts s saw so far, in order.
func (s *SMTPServer) Auths(t testing.TB) []SMTPAuthEvent {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "auth.jsonl"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []SMTPAuthEvent
	for line := range strings.Lines(string(b)) {
		var ev SMTPAuthEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("auth.jsonl: %v", err)
		}
		out = append(out, ev)
	}
	return out
}

// Package tlsserve is the API's HTTPS certificate: the operator's
// certificate and key files, reloaded when they change, or — with none
// given — a server certificate issued by a CA certflow keeps for the
// purpose in its data directory, renewed before it expires. A
// Keyfactor client (which always speaks HTTPS) connects to certflow
// directly, with no proxy in front.
package tlsserve

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/secretfile"
)

// Options say where the certificate comes from.
type Options struct {
	// CertFile and KeyFile, when set, are the certificate (chain) and key
	// to serve.
	CertFile, KeyFile string
	// Otherwise a certificate for Names is issued under DataDir, its key
	// sealed under KEK, for Validity, renewed after two thirds of it.
	Names    []string
	DataDir  string
	KEK      *pki.KEK
	Validity time.Duration
	// Now is the clock renewal is decided by (tests move it). Default
	// time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Files under the data directory.
const (
	// BundleFile is the CA certificate a client trusts to verify an
	// issued server certificate.
	BundleFile = "ca-bundle.pem"
	// dir holds the server CA's hierarchy and the server certificate.
	dir = "tls"
	// serverFile holds the server certificate, its chain and its sealed
	// key in one file, replaced in one rename, so that a process reading
	// it while another renews it never pairs one's certificate with the
	// other's key.
	serverFile = "server.pem"
	// caName is the server CA's name: a hierarchy of its own, not the CA
	// that issues requesters' certificates, so that trusting certflow's
	// HTTPS does not mean trusting any certificate a requester enrolled
	// for certflow's host name.
	caName        = "CertflowServerCA"
	sealedKeyType = "CERTFLOW SEALED PRIVATE KEY"
)

// keyAAD binds the sealed server key to its role.
var keyAAD = []byte("certflow-tls/server-key")

// Source serves the current certificate to the TLS handshakes and keeps it
// current (Refresh).
type Source struct {
	o    Options
	cert atomic.Pointer[tls.Certificate]
	mu   sync.Mutex // serialises Refresh
	// sum is the hash of the files last loaded (files mode).
	sum [sha256.Size]byte
	// ca issues the server certificate (issued mode).
	ca *ca.Builtin
}

// Open loads (or issues) the certificate; an error here refuses the start.
func Open(o Options) (*Source, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	s := &Source{o: o}
	if s.files() {
		return s, s.loadFiles(true)
	}
	if len(o.Names) == 0 {
		o.Names = DefaultNames()
		s.o.Names = o.Names
	}
	tlsDir := filepath.Join(o.DataDir, dir)
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	b, created, err := ca.OpenBuiltin(tlsDir, caName, "ecdsa-p256", o.KEK, true, ca.Logger(o.Log))
	if err != nil {
		return nil, fmt.Errorf("tls: server CA: %w", err)
	}
	if created {
		o.Log.Info("created the CA that issues certflow's HTTPS certificate", "dir", filepath.Join(tlsDir, "ca", caName))
	}
	s.ca = b
	if err := writeBundle(s.BundlePath(), b.Root()); err != nil {
		return nil, err
	}
	return s, s.refreshIssued()
}

// DefaultNames are the issued certificate's names without tls.names:
// this host by loopback and by its name.
func DefaultNames() []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" && !slices.Contains(names, strings.ToLower(h)) {
		names = append(names, strings.ToLower(h))
	}
	return names
}

func (s *Source) files() bool { return s.o.CertFile != "" }

// BundlePath is the CA bundle clients trust, "" when the operator's files
// are served (their CA is the operator's to hand out).
func (s *Source) BundlePath() string {
	if s.files() {
		return ""
	}
	return filepath.Join(s.o.DataDir, BundleFile)
}

// Names are the names the issued certificate is for (none in files mode).
func (s *Source) Names() []string {
	if s.files() {
		return nil
	}
	return slices.Clone(s.o.Names)
}

// Certificate is the certificate served now.
func (s *Source) Certificate() *tls.Certificate { return s.cert.Load() }

// Config is the listener's TLS configuration: TLS 1.2 at least, Go's
// default (secure) cipher suites, HTTP/2 offered first, the current
// certificate at every handshake.
func (s *Source) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		},
	}
}

// Run refreshes every interval until ctx ends.
func (s *Source) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Refresh()
		}
	}
}

// Refresh reloads changed files, or renews the issued certificate when it
// is due (or takes the one another process renewed). A failure keeps the
// certificate served and is logged with its reason.
func (s *Source) Refresh() {
	var err error
	if s.files() {
		err = s.loadFiles(false)
	} else {
		err = s.refreshIssued()
	}
	if err != nil {
		s.o.Log.Error("tls: keeping the certificate served", "err", err)
	}
}

// loadFiles loads the files when their content changed since the last
// load (always at the first).
func (s *Source) loadFiles(first bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	certPEM, err := os.ReadFile(s.o.CertFile)
	if err != nil {
		return fmt.Errorf("tls.cert_file: %w", err)
	}
	keyPEM, err := secretfile.Read(s.o.KeyFile)
	if err != nil {
		return fmt.Errorf("tls.key_file: %w", err)
	}
	sum := sha256.Sum256(append(append(slices.Clip(certPEM), 0), keyPEM...))
	if !first && sum == s.sum {
		return nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("tls.cert_file %s with tls.key_file %s: %w", s.o.CertFile, s.o.KeyFile, err)
	}
	if now := s.o.Now(); now.After(pair.Leaf.NotAfter) {
		s.o.Log.Warn("tls: the certificate file has expired; clients will refuse it", "file", s.o.CertFile, "not_after", pair.Leaf.NotAfter)
	}
	s.cert.Store(&pair)
	s.sum = sum
	if !first {
		s.o.Log.Info("tls: loaded the changed certificate files", "file", s.o.CertFile, "subject", pair.Leaf.Subject.String(), "serial", pki.SerialHex(pair.Leaf), "not_after", pair.Leaf.NotAfter)
	}
	return nil
}

// refreshIssued serves the issued certificate on disk when it is good for
// the names and not due, and otherwise issues and stores a new one.
func (s *Source) refreshIssued() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	path := filepath.Join(s.o.DataDir, dir, serverFile)
	pair, why := s.readIssued(path)
	if pair == nil {
		if cur := s.cert.Load(); cur != nil && s.good(cur.Leaf) == "" {
			return nil // another process's file is unreadable for now; ours is still good
		}
		var err error
		if pair, err = s.issue(path); err != nil {
			return fmt.Errorf("issue the server certificate (%s): %w", why, err)
		}
		s.o.Log.Info("tls: issued the server certificate", "why", why, "names", strings.Join(s.o.Names, ","),
			"serial", pki.SerialHex(pair.Leaf), "not_after", pair.Leaf.NotAfter)
	}
	if cur := s.cert.Load(); cur == nil || !bytes.Equal(cur.Leaf.Raw, pair.Leaf.Raw) {
		s.cert.Store(pair)
	}
	return nil
}

// readIssued reads the stored certificate; nil and the reason when it is
// missing, broken or no longer good.
func (s *Source) readIssued(path string) (*tls.Certificate, string) {
	data, err := secretfile.Read(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "none yet"
	}
	if err != nil {
		return nil, err.Error()
	}
	var chain [][]byte
	var sealed []byte
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		switch block.Type {
		case "CERTIFICATE":
			chain = append(chain, block.Bytes)
		case sealedKeyType:
			sealed = block.Bytes
		}
	}
	if len(chain) == 0 || sealed == nil {
		return nil, "the stored certificate is incomplete"
	}
	der, err := s.o.KEK.Open(sealed, keyAAD)
	if err != nil {
		return nil, "the stored key does not open under the KEK"
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, "the stored key does not parse"
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil || !pki.SamePublicKey(pki.PublicKeyOf(key), leaf.PublicKey) {
		return nil, "the stored certificate does not match its key"
	}
	if why := s.good(leaf); why != "" {
		return nil, why
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, ""
}

// good says why leaf must be replaced, "" when it need not: not issued by
// the server CA, not for exactly the configured names, or two thirds
// through its lifetime.
func (s *Source) good(leaf *x509.Certificate) string {
	if err := leaf.CheckSignatureFrom(s.ca.Issuing()); err != nil {
		return "the stored certificate is not the server CA's"
	}
	dns, ips := splitNames(s.o.Names)
	var have []string
	for _, ip := range leaf.IPAddresses {
		have = append(have, ip.String())
	}
	want := make([]string, 0, len(ips))
	for _, ip := range ips {
		want = append(want, ip.String())
	}
	if !sameSet(leaf.DNSNames, dns) || !sameSet(have, want) {
		return "the configured names changed"
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if !s.o.Now().Before(leaf.NotBefore.Add(life * 2 / 3)) {
		return "two thirds of its lifetime are past"
	}
	return ""
}

// issue makes a key and a certificate for the names and stores both in
// one file, replaced atomically.
func (s *Source) issue(path string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	dns, ips := splitNames(s.o.Names)
	issued, err := s.ca.Issue(context.Background(), &ca.Request{
		Subject:     pkix.Name{CommonName: s.o.Names[0], Organization: []string{"certflow"}},
		PublicKey:   key.Public(),
		DNSNames:    dns,
		IPAddresses: ips,
		Validity:    s.o.Validity,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, err
	}
	chain := issued.Chain[:len(issued.Chain)-1] // the root is the client's to trust, not to be sent
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, c := range chain {
		pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c})
	}
	pem.Encode(&out, &pem.Block{Type: sealedKeyType, Bytes: s.o.KEK.Seal(der, keyAAD)})
	if err := writeFile(path, out.Bytes(), 0o600); err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: crypto.Signer(key), Leaf: issued.Leaf}, nil
}

func splitNames(names []string) (dns []string, ips []net.IP) {
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	return dns, ips
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	for i := range a {
		a[i] = strings.ToLower(a[i])
	}
	for i := range b {
		b[i] = strings.ToLower(b[i])
	}
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// writeBundle writes the server CA's root for clients to trust (public,
// so 0644), unless it holds it already.
func writeBundle(path string, root *x509.Certificate) error {
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := writeFile(path, data, 0o644); err != nil {
		return fmt.Errorf("tls: CA bundle: %w", err)
	}
	return nil
}

// writeFile replaces path with data in one rename, so a reader sees the
// old file or the new one, never a part.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

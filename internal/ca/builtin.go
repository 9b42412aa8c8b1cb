package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/secretfile"
	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Builtin is a two-tier CA (self-signed root, issuing CA below it) whose
// keys live in the data directory, sealed under the KEK.
type Builtin struct {
	name    string
	issuer  *x509.Certificate
	signer  crypto.Signer
	chain   [][]byte // issuing, root
	rootCrt *x509.Certificate
	// keyID identifies the issuing key: the issuing certificate's
	// SubjectKeyId, or derived from its key when it has none. Every
	// certificate and CRL carries it as its authority key identifier.
	keyID []byte
	// caNames are the subjects (pki.NameKey) no leaf may have: this CA's
	// root and issuing CA, and every other configured CA's (OpenAll).
	caNames map[string]bool
	// enc builds and signs the certificates (OpenBuiltin chooses it and
	// checks it against x509 once, at open).
	enc encoder
}

var _ Authority = (*Builtin)(nil)

// Files of one built-in CA, under <dataDir>/ca/<name>/.
const (
	rootCertFile    = "root.crt"
	rootKeyFile     = "root.key.sealed"
	issuingCertFile = "issuing.crt"
	issuingKeyFile  = "issuing.key.sealed"
)

// Lifetimes of the built-in hierarchy.
const (
	rootValidity    = 20 * 365 * 24 * time.Hour
	issuingValidity = 10 * 365 * 24 * time.Hour
	// backdate absorbs clock skew between certflow and relying parties.
	backdate = time.Minute
)

// Name implements Authority.
func (b *Builtin) Name() string { return b.name }

// Root returns the self-signed root certificate.
func (b *Builtin) Root() *x509.Certificate { return b.rootCrt }

// Issuing returns the issuing CA certificate.
func (b *Builtin) Issuing() *x509.Certificate { return b.issuer }

// Issue implements Authority. It refuses a leaf whose subject is a CA's
// (ErrRefused), and releases only a certificate whose signature verifies
// under the issuing CA's key and that names that key as its authority.
func (b *Builtin) Issue(ctx context.Context, req *Request) (*Issued, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	subject := req.RawSubject
	if len(subject) == 0 {
		var err error
		if subject, err = asn1.Marshal(req.Subject.ToRDNSequence()); err != nil {
			return nil, fmt.Errorf("built-in CA %s: %w: subject: %w", b.name, ErrRefused, err)
		}
	}
	key, err := pki.NameKey(subject)
	if err != nil {
		return nil, fmt.Errorf("built-in CA %s: %w: subject: %w", b.name, ErrRefused, err)
	}
	if b.caNames[key] {
		return nil, fmt.Errorf("built-in CA %s: %w: the subject is a certificate authority's", b.name, ErrRefused)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := b.leafTemplate(req, serial, time.Now())
	leaf, err := b.enc.sign(rand.Reader, tmpl, b.issuer, req.PublicKey, b.signer)
	if err != nil {
		return nil, fmt.Errorf("built-in CA %s: sign: %w", b.name, err)
	}
	if !bytes.Equal(leaf.AuthorityKeyId, b.keyID) {
		return nil, fmt.Errorf("built-in CA %s: the signed certificate names authority key %x, not %x", b.name, leaf.AuthorityKeyId, b.keyID)
	}
	chain := make([][]byte, 0, 1+len(b.chain))
	chain = append(append(chain, leaf.Raw), b.chain...)
	return &Issued{Leaf: leaf, Chain: chain}, nil
}

// leafTemplate is the certificate Issue signs for req.
func (b *Builtin) leafTemplate(req *Request, serial *big.Int, now time.Time) *x509.Certificate {
	notAfter := now.Add(req.Validity)
	if notAfter.After(b.issuer.NotAfter) {
		notAfter = b.issuer.NotAfter
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               req.Subject,
		RawSubject:            req.RawSubject,
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              req.KeyUsage,
		ExtKeyUsage:           req.ExtKeyUsage,
		BasicConstraintsValid: true,
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPAddresses,
		EmailAddresses:        req.Emails,
		URIs:                  req.URIs,
		CRLDistributionPoints: req.CRLDistributionPoints,
		// x509 takes the issuing certificate's SubjectKeyId instead when
		// it has one: the same bytes.
		AuthorityKeyId: b.keyID,
	}
}

// ErrRefused is a request the CA will not sign whatever the policy in
// front of it said: asking again does not help.
var ErrRefused = errors.New("refused")

// randomSerial returns a positive 128-bit serial (RFC 5280: at most 20 octets;
// CA/B Forum: at least 64 bits of entropy).
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil
}

// OpenBuiltin loads the built-in CA called name from dir, creating its
// hierarchy first when create is true and none exists. Two processes that
// create at once agree on one hierarchy: it is written to a temporary
// folder and renamed into place, and the loser loads the winner's.
//
// The CA signs with the hand-built leaf encoder unless LeafEncoder(false)
// says otherwise; either way the shortcuts it would take are first checked
// against x509.CreateCertificate on one certificate (checkEncoder), and
// any that fails is turned off, reported to Logger's logger.
func OpenBuiltin(dir, name, keyType string, kek *pki.KEK, create bool, opts ...Option) (*Builtin, bool, error) {
	o := openOptions{enc: handEncoder, log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	b, created, err := openBuiltin(dir, name, keyType, kek, create)
	if err != nil {
		return nil, false, err
	}
	b.useEncoder(o.enc, o.log)
	return b, created, nil
}

// openBuiltin is OpenBuiltin but for the choice of encoder.
func openBuiltin(dir, name, keyType string, kek *pki.KEK, create bool) (b *Builtin, created bool, err error) {
	caDir := filepath.Join(dir, "ca", name)
	if _, err := os.Stat(filepath.Join(caDir, issuingCertFile)); err == nil {
		b, err := loadBuiltin(caDir, name, kek)
		return b, false, err
	}
	if !create {
		return nil, false, fmt.Errorf("built-in CA %s: not initialised in %s (run `certflow ca init`)", name, caDir)
	}
	if err := os.MkdirAll(filepath.Dir(caDir), 0o700); err != nil {
		return nil, false, fmt.Errorf("built-in CA %s: %w", name, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(caDir), "."+name+".tmp-")
	if err != nil {
		return nil, false, fmt.Errorf("built-in CA %s: %w", name, err)
	}
	defer os.RemoveAll(tmp)
	if err := createBuiltin(tmp, name, keyType, kek); err != nil {
		return nil, false, err
	}
	if err := os.Rename(tmp, caDir); err != nil {
		// Another process won the race; use its hierarchy.
		if _, statErr := os.Stat(filepath.Join(caDir, issuingCertFile)); statErr != nil {
			return nil, false, fmt.Errorf("built-in CA %s: install: %w", name, err)
		}
		b, err := loadBuiltin(caDir, name, kek)
		return b, false, err
	}
	b, err = loadBuiltin(caDir, name, kek)
	return b, err == nil, err
}

func createBuiltin(dir, name, keyType string, kek *pki.KEK) error {
	rootKey, err := newKey(keyType)
	if err != nil {
		return err
	}
	issKey, err := newKey(keyType)
	if err != nil {
		return err
	}
	now := time.Now().Add(-backdate)
	rootSerial, err := randomSerial()
	if err != nil {
		return err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          rootSerial,
		Subject:               pkix.Name{CommonName: name + " Root", Organization: []string{"certflow"}},
		NotBefore:             now,
		NotAfter:              now.Add(rootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return fmt.Errorf("built-in CA %s: create root: %w", name, err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	issSerial, err := randomSerial()
	if err != nil {
		return err
	}
	issTmpl := &x509.Certificate{
		SerialNumber:          issSerial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"certflow"}},
		NotBefore:             now,
		NotAfter:              now.Add(issuingValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	issDER, err := x509.CreateCertificate(rand.Reader, issTmpl, root, issKey.Public(), rootKey)
	if err != nil {
		return fmt.Errorf("built-in CA %s: create issuing CA: %w", name, err)
	}
	for _, f := range []struct {
		path string
		data []byte
	}{
		{rootCertFile, pemCert(rootDER)},
		{issuingCertFile, pemCert(issDER)},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.path), f.data, 0o644); err != nil {
			return fmt.Errorf("built-in CA %s: %w", name, err)
		}
	}
	for _, k := range []struct {
		path string
		key  crypto.Signer
	}{{rootKeyFile, rootKey}, {issuingKeyFile, issKey}} {
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		if err != nil {
			return err
		}
		sealed := kek.Seal(der, keyAAD(name, k.path))
		if err := os.WriteFile(filepath.Join(dir, k.path), sealed, 0o600); err != nil {
			return fmt.Errorf("built-in CA %s: %w", name, err)
		}
	}
	return nil
}

// keyAAD binds a sealed CA key to its CA and role, so keys cannot be swapped.
func keyAAD(name, file string) []byte { return []byte("certflow-ca/" + name + "/" + file) }

func loadBuiltin(dir, name string, kek *pki.KEK) (*Builtin, error) {
	root, err := readCert(filepath.Join(dir, rootCertFile))
	if err != nil {
		return nil, fmt.Errorf("built-in CA %s: %w", name, err)
	}
	iss, err := readCert(filepath.Join(dir, issuingCertFile))
	if err != nil {
		return nil, fmt.Errorf("built-in CA %s: %w", name, err)
	}
	// Sealed, but still refused when others could read or replace it:
	// the KEK is the only thing that should stand between a reader and it.
	sealed, err := secretfile.Read(filepath.Join(dir, issuingKeyFile))
	if err != nil {
		return nil, fmt.Errorf("built-in CA %s: %w", name, err)
	}
	der, err := kek.Open(sealed, keyAAD(name, issuingKeyFile))
	if err != nil {
		return nil, fmt.Errorf("built-in CA %s: issuing key: %w", name, err)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("built-in CA %s: issuing key: %w", name, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok || !pki.SamePublicKey(signer.Public(), iss.PublicKey) {
		return nil, fmt.Errorf("built-in CA %s: issuing key does not match the issuing certificate", name)
	}
	if err := iss.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("built-in CA %s: issuing certificate is not signed by the root: %w", name, err)
	}
	return newBuiltin(name, root, iss, signer)
}

// newBuiltin is the CA of a loaded hierarchy.
func newBuiltin(name string, root, iss *x509.Certificate, signer crypto.Signer) (*Builtin, error) {
	keyID := iss.SubjectKeyId
	if len(keyID) == 0 {
		var err error
		if keyID, err = keyIdentifier(iss.RawSubjectPublicKeyInfo); err != nil {
			return nil, fmt.Errorf("built-in CA %s: issuing key: %w", name, err)
		}
	}
	b := &Builtin{name: name, issuer: iss, signer: signer, chain: [][]byte{iss.Raw, root.Raw}, rootCrt: root, keyID: keyID, caNames: map[string]bool{}, enc: handEncoder}
	for _, c := range []*x509.Certificate{root, iss} {
		key, err := pki.NameKey(c.RawSubject)
		if err != nil {
			return nil, fmt.Errorf("built-in CA %s: subject of %s: %w", name, c.Subject, err)
		}
		b.caNames[key] = true
	}
	return b, nil
}

// keyIdentifier derives a key identifier as x509 derives a CA's missing
// SubjectKeyId (RFC 7093 section 2, method 1): the leftmost 160 bits of
// the SHA-256 of a SubjectPublicKeyInfo's subjectPublicKey bits.
func keyIdentifier(spki []byte) ([]byte, error) {
	in := cryptobyte.String(spki)
	var body cryptobyte.String
	var bits asn1.BitString
	if !in.ReadASN1(&body, casn1.SEQUENCE) || !body.SkipASN1(casn1.SEQUENCE) || !body.ReadASN1BitString(&bits) {
		return nil, errors.New("malformed SubjectPublicKeyInfo")
	}
	sum := sha256.Sum256(bits.Bytes)
	return sum[:20], nil
}

func newKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "", "ecdsa-p256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ecdsa-p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa-2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "rsa-3072":
		return rsa.GenerateKey(rand.Reader, 3072)
	case "rsa-4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	default:
		return nil, fmt.Errorf("unknown CA key type %q", keyType)
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New(path + ": not a PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"github.com/certflow/certflow/internal/config"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"
)

// Option changes how OpenBuiltin and OpenAll open a built-in CA.
type Option func(*openOptions)

type openOptions struct {
	enc encoder
	log *slog.Logger
	// external opens the CAs of a type certflow does not sign for (acme).
	external map[string]func(*config.CA) (Authority, error)
}

// LeafEncoder turns the hand-built leaf encoder on or off (config's
// speed.leaf_encoder; on unless told). Off, x509.CreateCertificate builds
// every certificate: the same certificates, more slowly.
func LeafEncoder(on bool) Option {
	return func(o *openOptions) {
		if on {
			o.enc = handEncoder
		} else {
			o.enc = captureEncoder
		}
	}
}

// Logger is where a CA reports a shortcut its start-up check turned off.
// Defaults to slog.Default().
func Logger(log *slog.Logger) Option {
	return func(o *openOptions) { o.log = log }
}

// External has OpenAll open the CAs of type typ with open (internal/acme
// for acme: package ca knows no external protocol).
func External(typ string, open func(*config.CA) (Authority, error)) Option {
	return func(o *openOptions) {
		if o.external == nil {
			o.external = map[string]func(*config.CA) (Authority, error){}
		}
		o.external[typ] = open
	}
}

// withEncoder opens the CA with enc, for tests to hand it faulty shortcuts.
func withEncoder(enc encoder) Option {
	return func(o *openOptions) { o.enc = enc }
}

// useEncoder makes b sign with enc, less whatever shortcut checkEncoder
// finds wrong; that is said once, as an error, since the CA then runs
// slower than it was configured to.
func (b *Builtin) useEncoder(enc encoder, log *slog.Logger) {
	checked, problems := b.checkEncoder(enc)
	if len(problems) > 0 {
		log.Error("built-in CA: a signing shortcut does not make what x509.CreateCertificate makes; "+
			"x509.CreateCertificate builds those certificates for the life of this process (docs/speed.md)",
			"ca", b.name, "problems", strings.Join(problems, "; "))
	}
	b.enc = checked
}

// checkEncoder signs one certificate of the usual leaf shape with
// x509.CreateCertificate alone and once with each of enc's shortcuts,
// and returns enc without those whose certificate differs from x509's in
// anything but the signature, with why. The shortcuts rest on how x509
// encodes a certificate and on how it hands the TBSCertificate to its
// signer, neither of which is promised; both hold or not for the whole
// life of a process, so one check at open is enough.
func (b *Builtin) checkEncoder(enc encoder) (encoder, []string) {
	switch b.signer.Public().(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
	default:
		return enc, nil // x509.CreateCertificate signs with other keys, whatever enc says
	}
	if enc.leaf == nil && enc.capture == nil {
		return enc, nil
	}
	tmpl, pub, err := b.selfCheckLeaf()
	if err != nil {
		return encoder{}, []string{fmt.Sprintf("the self-check's certificate: %v", err)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.issuer, pub, b.signer)
	if err != nil {
		return encoder{}, []string{fmt.Sprintf("x509.CreateCertificate: %v", err)}
	}
	want, err := x509.ParseCertificate(der)
	if err != nil {
		return encoder{}, []string{fmt.Sprintf("x509.CreateCertificate's certificate: %v", err)}
	}
	same := func(e encoder) error {
		got, err := e.sign(rand.Reader, tmpl, b.issuer, pub, b.signer)
		switch {
		case err != nil:
			return err
		case !bytes.Equal(got.RawTBSCertificate, want.RawTBSCertificate):
			return errors.New("another TBSCertificate than x509's")
		case got.SignatureAlgorithm != want.SignatureAlgorithm:
			return fmt.Errorf("signature algorithm %v, not x509's %v", got.SignatureAlgorithm, want.SignatureAlgorithm)
		}
		return nil
	}
	var problems []string
	if enc.capture != nil {
		if err := same(encoder{capture: enc.capture}); err != nil {
			problems = append(problems, fmt.Sprintf("capturing x509's TBSCertificate: %v", err))
			enc.capture = nil
		}
	}
	if enc.leaf != nil {
		if _, _, _, ok := enc.leaf(tmpl, b.issuer, pub, b.signer); !ok {
			problems = append(problems, "the hand-built leaf encoder declines the usual leaf")
			enc.leaf = nil
		} else if err := same(encoder{leaf: enc.leaf}); err != nil {
			problems = append(problems, fmt.Sprintf("the hand-built leaf encoder: %v", err))
			enc.leaf = nil
		}
	}
	return enc, problems
}

// selfCheckLeaf is the template and key of checkEncoder's certificate: a
// leaf as an enrollment asks for it (the CSR's subject bytes, every kind
// of SAN, key usages, a CRL distribution point), never released.
func (b *Builtin) selfCheckLeaf() (*x509.Certificate, any, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	subject := pkix.Name{CommonName: "certflow self-check", Organization: []string{"certflow"}}
	raw, err := asn1.Marshal(subject.ToRDNSequence())
	if err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	req := &Request{
		Subject: subject, RawSubject: raw, PublicKey: key.Public(), Validity: time.Hour,
		DNSNames:              []string{"self-check.certflow.invalid"},
		IPAddresses:           []net.IP{net.ParseIP("192.0.2.1"), net.ParseIP("2001:db8::1")},
		Emails:                []string{"self-check@certflow.invalid"},
		URIs:                  []*url.URL{{Scheme: "https", Host: "certflow.invalid", Path: "/self-check"}},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		CRLDistributionPoints: []string{"http://certflow.invalid/CRL/" + b.name + ".crl"},
	}
	return b.leafTemplate(req, serial, time.Now()), key.Public(), nil
}

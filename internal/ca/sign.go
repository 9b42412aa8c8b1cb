package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// signCertificate signs tmpl as x509.CreateCertificate does and returns
// the certificate parsed, once its signature verifies under parent's
// public key (the signer's when parent has none, as for a self-signed
// template). Nothing leaves it that a faulty signer got wrong: a signature
// made with a bit flipped (a fault in an ECDSA or HSM signer) or with
// another key is an error, whatever the signer and whichever way the
// TBSCertificate was built.
//
// The certificate is byte for byte what x509.CreateCertificate would have
// made. A leaf of the built-in CA's usual shape has its TBSCertificate
// built by leafTBS, held to x509's bytes by tests. Anything else is built
// by x509.CreateCertificate itself: the signer it is given captures the
// TBSCertificate and the signer options at the point of signing and stops
// it there; the real key signs exactly those bytes with exactly those
// options, and the outer signatureAlgorithm is copied from the
// TBSCertificate's own. A signer of another kind of key (Ed25519) is
// left to x509.CreateCertificate, whose own check of the signature runs
// before this one.
func signCertificate(rand io.Reader, tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := createCertificate(rand, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("the signed certificate does not parse: %w", err)
	}
	verifier := parent
	if verifier.PublicKey == nil {
		verifier = &x509.Certificate{PublicKey: signer.Public()}
	}
	if err := verifier.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return cert, nil
}

// ErrBadSignature is a signature that does not verify under the CA's key:
// the signer is faulty, and what it signed is withheld.
var ErrBadSignature = errors.New("the CA's signer returned a signature that does not verify")

// createCertificate is the DER of signCertificate, unchecked.
func createCertificate(rand io.Reader, tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) ([]byte, error) {
	switch signer.Public().(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
	default:
		return x509.CreateCertificate(rand, tmpl, parent, pub, signer)
	}
	tbs, alg, opts, built := leafTBS(tmpl, parent, pub, signer)
	if !built {
		c := &tbsCapture{signer: signer}
		if _, err := x509.CreateCertificate(rand, tmpl, parent, pub, c); !errors.Is(err, errCaptured) {
			if err == nil {
				err = errors.New("x509.CreateCertificate did not hand over the TBSCertificate")
			}
			return nil, err
		}
		var err error
		if alg, err = tbsSignatureAlgorithm(c.tbs); err != nil {
			return nil, err
		}
		tbs, opts = c.tbs, c.opts
	}
	sig, err := crypto.SignMessage(signer, rand, tbs, opts)
	if err != nil {
		return nil, err
	}
	// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(alg)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

var errCaptured = errors.New("TBSCertificate captured")

// tbsCapture is a crypto.MessageSigner that records what it is asked to
// sign, and how, instead of signing.
type tbsCapture struct {
	signer crypto.Signer
	tbs    []byte
	opts   crypto.SignerOpts
}

func (c *tbsCapture) Public() crypto.PublicKey { return c.signer.Public() }

func (c *tbsCapture) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("tbsCapture: Sign called instead of SignMessage")
}

func (c *tbsCapture) SignMessage(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.tbs, c.opts = append([]byte(nil), msg...), opts
	return nil, errCaptured
}

// tbsSignatureAlgorithm returns the DER of a TBSCertificate's signature
// AlgorithmIdentifier: its third element, after the version and serial.
func tbsSignatureAlgorithm(tbs []byte) ([]byte, error) {
	in := cryptobyte.String(tbs)
	var body, alg cryptobyte.String
	if !in.ReadASN1(&body, casn1.SEQUENCE) || !in.Empty() ||
		!body.SkipOptionalASN1(casn1.Tag(0).Constructed().ContextSpecific()) ||
		!body.SkipASN1(casn1.INTEGER) ||
		!body.ReadASN1Element(&alg, casn1.SEQUENCE) {
		return nil, errors.New("malformed TBSCertificate")
	}
	return alg, nil
}

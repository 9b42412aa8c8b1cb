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

// encoder is how a certificate's TBSCertificate is built and signed. Each
// field is a shortcut past x509.CreateCertificate's slowest work, and
// each may be nil: the zero encoder leaves everything to
// x509.CreateCertificate. Whatever the encoder, sign verifies the
// signature before a certificate leaves.
type encoder struct {
	// leaf builds the TBSCertificate of a leaf of the built-in CA's usual
	// shape by hand (leafTBS), or declines (ok false) and leaves it to
	// capture or x509.
	leaf func(tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) (tbs, alg []byte, opts crypto.SignerOpts, ok bool)
	// capture has x509.CreateCertificate build the TBSCertificate and
	// takes it at the point of signing (captureTBS), so that the real key
	// signs it and only sign's check verifies the signature, where
	// x509.CreateCertificate would verify it once more itself. Nil:
	// x509.CreateCertificate signs with the real key.
	capture func(rand io.Reader, tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) (tbs, alg []byte, opts crypto.SignerOpts, err error)
}

// The encoders a built-in CA runs with (OpenBuiltin picks one, and
// checkEncoder may take shortcuts out of it).
var (
	// handEncoder: the hand-built leaf encoder, and the capture for
	// every other certificate (speed.leaf_encoder on).
	handEncoder = encoder{leaf: leafTBS, capture: captureTBS}
	// captureEncoder: x509 builds every TBSCertificate (speed.leaf_encoder off).
	captureEncoder = encoder{capture: captureTBS}
)

// sign signs tmpl as x509.CreateCertificate does and returns the
// certificate parsed, once its signature verifies under parent's public
// key (the signer's when parent has none, as for a self-signed template).
// Nothing leaves it that a faulty signer got wrong: a signature made with
// a bit flipped (a fault in an ECDSA or HSM signer) or with another key
// is an error, whatever the signer and whichever way the TBSCertificate
// was built.
//
// The certificate is byte for byte what x509.CreateCertificate would have
// made. A leaf of the built-in CA's usual shape has its TBSCertificate
// built by e.leaf, held to x509's bytes by tests and by checkEncoder at
// start. Anything else is built by x509.CreateCertificate itself: through
// e.capture, whose signer captures the TBSCertificate and the signer
// options at the point of signing and stops it there, the real key then
// signing exactly those bytes with exactly those options and the outer
// signatureAlgorithm copied from the TBSCertificate's own; or, without
// e.capture, by x509.CreateCertificate signing with the real key. A
// signer of another kind of key (Ed25519) is left to
// x509.CreateCertificate, whose own check of the signature runs before
// this one.
func (e encoder) sign(rand io.Reader, tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := e.create(rand, tmpl, parent, pub, signer)
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

// create is the DER of sign, unchecked.
func (e encoder) create(rand io.Reader, tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) ([]byte, error) {
	switch signer.Public().(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
	default:
		return x509.CreateCertificate(rand, tmpl, parent, pub, signer)
	}
	var (
		tbs, alg []byte
		opts     crypto.SignerOpts
		built    bool
	)
	if e.leaf != nil {
		tbs, alg, opts, built = e.leaf(tmpl, parent, pub, signer)
	}
	if !built {
		if e.capture == nil {
			return x509.CreateCertificate(rand, tmpl, parent, pub, signer)
		}
		var err error
		if tbs, alg, opts, err = e.capture(rand, tmpl, parent, pub, signer); err != nil {
			return nil, err
		}
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

// captureTBS is the TBSCertificate x509.CreateCertificate builds for tmpl,
// its signature AlgorithmIdentifier and the signer options, taken from
// what x509 hands its signer. That x509 hands over the TBSCertificate
// whole (crypto.MessageSigner) is how it happens to work, not a promise:
// when it does not, this is errNotHandedOver, and checkEncoder turns
// the capture off.
func captureTBS(rand io.Reader, tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) (tbs, alg []byte, opts crypto.SignerOpts, err error) {
	c := &tbsCapture{signer: signer}
	if _, err := x509.CreateCertificate(rand, tmpl, parent, pub, c); !errors.Is(err, errCaptured) {
		if err == nil {
			err = errNotHandedOver
		}
		return nil, nil, nil, err
	}
	if alg, err = tbsSignatureAlgorithm(c.tbs); err != nil {
		return nil, nil, nil, err
	}
	return c.tbs, alg, c.opts, nil
}

var (
	errCaptured      = errors.New("TBSCertificate captured")
	errNotHandedOver = errors.New("x509.CreateCertificate did not hand over the TBSCertificate")
)

// tbsCapture is a crypto.MessageSigner that records what it is asked to
// sign, and how, instead of signing.
type tbsCapture struct {
	signer crypto.Signer
	tbs    []byte
	opts   crypto.SignerOpts
}

func (c *tbsCapture) Public() crypto.PublicKey { return c.signer.Public() }

// Sign is asked for a digest: x509 hashed the TBSCertificate itself.
func (c *tbsCapture) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, fmt.Errorf("%w: it asked to sign a digest", errNotHandedOver)
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

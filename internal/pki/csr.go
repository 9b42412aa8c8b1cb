// Package pki parses and encodes the things certflow handles: certificate
// signing requests, certificates and chains (PEM, DER, Keyfactor's subject
// header), PKCS#8 private keys, and the sealed (AES-256-GCM) form in which
// private keys are kept at rest.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ErrCSR is wrapped by every CSR decoding failure so callers can map it to a
// "bad CSR" answer without string matching.
var ErrCSR = errors.New("invalid CSR")

// DecodeCSR accepts a CSR the way Keyfactor clients send one: PEM (with the
// "CERTIFICATE REQUEST" or "NEW CERTIFICATE REQUEST" label), or base64 of the
// DER, with or without line breaks. It returns the DER bytes and the parsed
// request. It does not check the signature; see VerifyCSR.
func DecodeCSR(s string) ([]byte, *x509.CertificateRequest, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil, fmt.Errorf("%w: empty", ErrCSR)
	}
	var der []byte
	if strings.HasPrefix(s, "-----BEGIN") {
		block, rest := pem.Decode([]byte(s))
		if block == nil {
			return nil, nil, fmt.Errorf("%w: malformed PEM", ErrCSR)
		}
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, nil, fmt.Errorf("%w: PEM block is %q, want CERTIFICATE REQUEST", ErrCSR, block.Type)
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, nil, fmt.Errorf("%w: trailing data after the PEM block", ErrCSR)
		}
		der = block.Bytes
	} else {
		compact := strings.Map(func(r rune) rune {
			if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, s)
		var err error
		der, err = base64.StdEncoding.DecodeString(compact)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: neither PEM nor base64 DER", ErrCSR)
		}
	}
	csr, err := ParseCSR(der)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrCSR, err)
	}
	return der, csr, nil
}

// VerifyCSR checks the CSR's self-signature (proof of possession) and that
// its key is of a kind certflow issues for. An RSA key's shape is checked
// first (CheckRSAShape): verifying a signature under a 184,000-bit modulus
// with a large exponent costs seconds of CPU, which a refusal must not.
func VerifyCSR(csr *x509.CertificateRequest) error {
	if k, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		if err := CheckRSAShape(k); err != nil {
			return fmt.Errorf("%w: %v", ErrCSR, err)
		}
	}
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("%w: signature does not verify: %v", ErrCSR, err)
	}
	if _, _, err := DescribeKey(csr.PublicKey); err != nil {
		return fmt.Errorf("%w: %v", ErrCSR, err)
	}
	return nil
}

// RSAExponent is the only RSA public exponent certflow certifies: the one
// every current implementation generates. Others that Go's parser accepts
// (3, 17, 2^31-1) are refused, small ones for their attacks, large ones
// for the work they put on verifiers.
const RSAExponent = 65537

// CheckRSAShape refuses an RSA public key larger than MaxRSABits, the
// largest size a template may allow, or with an exponent other than
// RSAExponent. It is cheap, and runs before anything costs in proportion
// to the key (a signature check, a GCD).
func CheckRSAShape(k *rsa.PublicKey) error {
	if bits := k.N.BitLen(); bits > MaxRSABits {
		return fmt.Errorf("RSA key of %d bits, more than the %d certflow certifies", bits, MaxRSABits)
	}
	if k.E != RSAExponent {
		return errors.New("RSA public exponent must be 65537")
	}
	return nil
}

// DescribeKey names a public key's type ("RSA", "ECC", "Ed25519") and its
// size: the modulus bits for RSA, the curve bits for ECC (with the curve's
// name available from CurveName).
func DescribeKey(pub any) (keyType string, bits int, err error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RSA", k.N.BitLen(), nil
	case *ecdsa.PublicKey:
		return "ECC", k.Curve.Params().BitSize, nil
	case ed25519.PublicKey:
		return "Ed25519", 256, nil
	default:
		return "", 0, fmt.Errorf("unsupported public key type %T", pub)
	}
}

// CurveName returns the NIST name of an ECDSA key's curve ("P-256"), or ""
// for other keys.
func CurveName(pub any) string {
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		return k.Curve.Params().Name
	}
	return ""
}

// SamePublicKey reports whether two public keys are equal.
func SamePublicKey(a, b any) bool {
	type equaler interface{ Equal(x crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

// ParsePKCS8 decodes a base64 (or PEM) unencrypted PKCS#8 private key, as
// Keyfactor's PrivateKey field carries it.
func ParsePKCS8(s string) (any, []byte, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if strings.HasPrefix(s, "-----BEGIN") {
		block, _ := pem.Decode([]byte(s))
		if block == nil || block.Type != "PRIVATE KEY" {
			return nil, nil, errors.New("want a PEM \"PRIVATE KEY\" (PKCS#8) block")
		}
		der = block.Bytes
	} else {
		var err error
		der, err = base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, nil, errors.New("not base64")
		}
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, nil, fmt.Errorf("not an unencrypted PKCS#8 key: %v", err)
	}
	return key, der, nil
}

// PublicKeyOf returns the public half of a private key from crypto/*.
func PublicKeyOf(priv any) any {
	type publicer interface{ Public() crypto.PublicKey }
	if p, ok := priv.(publicer); ok {
		return p.Public()
	}
	return nil
}

package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
)

// wrap breaks s into lines of n characters joined by sep.
func wrap(s string, n int, sep string) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n])
		b.WriteString(sep)
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}

func pemString(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func TestDecodeCSRAcceptsPEMAndBase64DERForms(t *testing.T) {
	t.Parallel()
	der := newCSR(t, newECKey(t, elliptic.P256()), "decode.certflow.test")
	b64 := base64.StdEncoding.EncodeToString(der)
	opensslPEM := readFile(t, "rsa2048.csr.pem")
	opensslDER := readPEM(t, "rsa2048.csr.pem", "CERTIFICATE REQUEST")

	tests := []struct {
		name    string
		in      string
		wantDER []byte
		wantCN  string
	}{
		{"PEM labelled CERTIFICATE REQUEST", pemString("CERTIFICATE REQUEST", der), der, "decode.certflow.test"},
		{"PEM labelled NEW CERTIFICATE REQUEST", pemString("NEW CERTIFICATE REQUEST", der), der, "decode.certflow.test"},
		{"PEM with CRLF line endings", strings.ReplaceAll(pemString("CERTIFICATE REQUEST", der), "\n", "\r\n"), der, "decode.certflow.test"},
		{"PEM surrounded by blank lines and spaces", "\n\n  " + pemString("CERTIFICATE REQUEST", der) + "\n\n", der, "decode.certflow.test"},
		{"PEM made by openssl req", opensslPEM, opensslDER, "rsa.certflow.test"},
		{"base64 DER on one line", b64, der, "decode.certflow.test"},
		{"base64 DER wrapped at 64 with LF", wrap(b64, 64, "\n"), der, "decode.certflow.test"},
		{"base64 DER wrapped at 76 with CRLF", wrap(b64, 76, "\r\n"), der, "decode.certflow.test"},
		{"base64 DER with surrounding whitespace", " \t\n" + b64 + "\n", der, "decode.certflow.test"},
		{"base64 DER of an openssl CSR wrapped at 64", wrap(base64.StdEncoding.EncodeToString(opensslDER), 64, "\n"), opensslDER, "rsa.certflow.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gotDER, csr, err := DecodeCSR(tt.in)
			if err != nil {
				t.Fatalf("DecodeCSR: %v", err)
			}
			if !bytes.Equal(gotDER, tt.wantDER) {
				t.Errorf("DER differs from the encoded request")
			}
			if csr == nil {
				t.Fatal("nil request")
			}
			if csr.Subject.CommonName != tt.wantCN {
				t.Errorf("CommonName = %q, want %q", csr.Subject.CommonName, tt.wantCN)
			}
			if !bytes.Equal(csr.Raw, tt.wantDER) {
				t.Errorf("parsed request's Raw differs from the DER")
			}
		})
	}
}

func TestDecodeCSRRejectsWithErrCSR(t *testing.T) {
	t.Parallel()
	der := newCSR(t, newECKey(t, elliptic.P256()), "reject.certflow.test")
	chain := newTestChain(t)
	csrPEM := pemString("CERTIFICATE REQUEST", der)

	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"only whitespace", " \r\n\t "},
		{"garbage text", "this is not a CSR!"},
		{"raw binary DER instead of base64", string(der)},
		{"base64 of non-ASN.1 bytes", base64.StdEncoding.EncodeToString([]byte("hello, certflow"))},
		{"base64 of a certificate, not a request", base64.StdEncoding.EncodeToString(chain.leaf)},
		{"base64 DER with a byte appended", base64.StdEncoding.EncodeToString(append(bytes.Clone(der), 0))},
		{"base64 DER cut short", base64.StdEncoding.EncodeToString(der[:len(der)-10])},
		{"PEM block of type CERTIFICATE", pemString("CERTIFICATE", chain.leaf)},
		{"PEM block of type PRIVATE KEY", pemString("PRIVATE KEY", der)},
		{"PEM request followed by a second block", csrPEM + pemString("CERTIFICATE REQUEST", der)},
		{"PEM request followed by text", csrPEM + "trailing text\n"},
		{"PEM request followed by a certificate", csrPEM + pemString("CERTIFICATE", chain.leaf)},
		{"PEM header without an END line", "-----BEGIN CERTIFICATE REQUEST-----\n" + base64.StdEncoding.EncodeToString(der) + "\n"},
		{"PEM request holding garbage", pemString("CERTIFICATE REQUEST", []byte("not DER at all"))},
		{"PEM request holding a certificate", pemString("CERTIFICATE REQUEST", chain.leaf)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gotDER, csr, err := DecodeCSR(tt.in)
			if err == nil {
				t.Fatalf("DecodeCSR accepted %q", truncate(tt.in))
			}
			if !errors.Is(err, ErrCSR) {
				t.Errorf("error %v does not wrap ErrCSR", err)
			}
			if gotDER != nil || csr != nil {
				t.Errorf("returned a result alongside the error")
			}
		})
	}
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// csrKeys are the key kinds certflow issues for.
func csrKeys(t *testing.T) []struct {
	name string
	key  crypto.Signer
} {
	return []struct {
		name string
		key  crypto.Signer
	}{
		{"RSA-2048", testRSAKey(t)},
		{"ECDSA P-256", newECKey(t, elliptic.P256())},
		{"ECDSA P-384", newECKey(t, elliptic.P384())},
		{"Ed25519", newEd25519Key(t)},
	}
}

func TestVerifyCSRAcceptsGoodRequests(t *testing.T) {
	t.Parallel()
	for _, k := range csrKeys(t) {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			_, csr, err := DecodeCSR(base64.StdEncoding.EncodeToString(newCSR(t, k.key, "good.certflow.test")))
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyCSR(csr); err != nil {
				t.Errorf("VerifyCSR: %v", err)
			}
			if !SamePublicKey(csr.PublicKey, k.key.Public()) {
				t.Errorf("the request does not carry the signer's key")
			}
		})
	}
	t.Run("RSA-2048 made by openssl", func(t *testing.T) {
		t.Parallel()
		_, csr, err := DecodeCSR(readFile(t, "rsa2048.csr.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyCSR(csr); err != nil {
			t.Errorf("VerifyCSR: %v", err)
		}
	})
}

func TestVerifyCSRRejectsTamperedRequests(t *testing.T) {
	t.Parallel()
	for _, k := range csrKeys(t) {
		t.Run(k.name+" with a flipped signature byte", func(t *testing.T) {
			t.Parallel()
			der := newCSR(t, k.key, "tamper.certflow.test")
			orig, err := x509.ParseCertificateRequest(der)
			if err != nil {
				t.Fatal(err)
			}
			// The signature BIT STRING ends the DER; its last byte is
			// signature value, not ASN.1 framing, for every key type.
			if !bytes.HasSuffix(der, orig.Signature) {
				t.Fatal("signature is not at the end of the DER")
			}
			bad := bytes.Clone(der)
			bad[len(bad)-1] ^= 0x01
			csr, err := x509.ParseCertificateRequest(bad)
			if err != nil {
				t.Fatalf("tampered request no longer parses: %v", err)
			}
			if bytes.Equal(csr.Signature, orig.Signature) {
				t.Fatal("tampering did not change the signature")
			}
			err = VerifyCSR(csr)
			if err == nil {
				t.Fatal("VerifyCSR accepted a request with a tampered signature")
			}
			if !errors.Is(err, ErrCSR) {
				t.Errorf("error %v does not wrap ErrCSR", err)
			}
		})
		t.Run(k.name+" with an altered subject", func(t *testing.T) {
			t.Parallel()
			der := newCSR(t, k.key, "alpha.certflow.test")
			i := bytes.Index(der, []byte("alpha"))
			if i < 0 {
				t.Fatal("common name not found in DER")
			}
			bad := bytes.Clone(der)
			copy(bad[i:], "omega")
			csr, err := x509.ParseCertificateRequest(bad)
			if err != nil {
				t.Fatalf("altered request no longer parses: %v", err)
			}
			if csr.Subject.CommonName != "omega.certflow.test" {
				t.Fatalf("CommonName = %q, alteration did not take", csr.Subject.CommonName)
			}
			if err := VerifyCSR(csr); !errors.Is(err, ErrCSR) {
				t.Errorf("VerifyCSR = %v, want an error wrapping ErrCSR", err)
			}
		})
	}
}

func TestDescribeKeyAndCurveNameNameEachKeyKind(t *testing.T) {
	t.Parallel()
	rsa3072 := &rsa.PublicKey{N: new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 3071), big.NewInt(1)), E: 65537}
	tests := []struct {
		name      string
		pub       any
		wantType  string
		wantBits  int
		wantCurve string
	}{
		{"RSA-2048", testRSAKey(t).Public(), "RSA", 2048, ""},
		{"RSA with a 3072-bit modulus", rsa3072, "RSA", 3072, ""},
		{"ECDSA P-256", newECKey(t, elliptic.P256()).Public(), "ECC", 256, "P-256"},
		{"ECDSA P-384", newECKey(t, elliptic.P384()).Public(), "ECC", 384, "P-384"},
		{"ECDSA P-521", newECKey(t, elliptic.P521()).Public(), "ECC", 521, "P-521"},
		{"Ed25519", newEd25519Key(t).Public(), "Ed25519", 256, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			typ, bits, err := DescribeKey(tt.pub)
			if err != nil {
				t.Fatalf("DescribeKey: %v", err)
			}
			if typ != tt.wantType || bits != tt.wantBits {
				t.Errorf("DescribeKey = (%q, %d), want (%q, %d)", typ, bits, tt.wantType, tt.wantBits)
			}
			if got := CurveName(tt.pub); got != tt.wantCurve {
				t.Errorf("CurveName = %q, want %q", got, tt.wantCurve)
			}
		})
	}
}

func TestDescribeKeyRejectsUnsupportedKeys(t *testing.T) {
	t.Parallel()
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec := newECKey(t, elliptic.P256())
	tests := []struct {
		name string
		pub  any
	}{
		{"nil", nil},
		{"X25519 (ECDH) public key", x25519.PublicKey()},
		{"an ECDSA private key instead of a public key", ec},
		{"an Ed25519 private key instead of a public key", newEd25519Key(t)},
		{"a byte slice", []byte("key")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			typ, bits, err := DescribeKey(tt.pub)
			if err == nil {
				t.Fatalf("DescribeKey(%T) = (%q, %d), want an error", tt.pub, typ, bits)
			}
			if CurveName(tt.pub) != "" {
				t.Errorf("CurveName(%T) = %q, want empty", tt.pub, CurveName(tt.pub))
			}
		})
	}
}

func TestParsePKCS8AcceptsBase64AndPEM(t *testing.T) {
	t.Parallel()
	rsaDER := readPEM(t, "rsa2048.pkcs8.pem", "PRIVATE KEY")
	keys := []struct {
		name string
		priv crypto.Signer
		der  []byte
	}{
		{"RSA-2048 made by openssl", testRSAKey(t), rsaDER},
	}
	for _, k := range []struct {
		name string
		priv crypto.Signer
	}{
		{"ECDSA P-256", newECKey(t, elliptic.P256())},
		{"ECDSA P-384", newECKey(t, elliptic.P384())},
		{"Ed25519", newEd25519Key(t)},
	} {
		der, err := x509.MarshalPKCS8PrivateKey(k.priv)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, struct {
			name string
			priv crypto.Signer
			der  []byte
		}{k.name, k.priv, der})
	}
	for _, k := range keys {
		forms := []struct {
			name string
			in   string
		}{
			{"base64", base64.StdEncoding.EncodeToString(k.der)},
			{"base64 with a trailing newline", base64.StdEncoding.EncodeToString(k.der) + "\n"},
			{"PEM", pemString("PRIVATE KEY", k.der)},
		}
		for _, f := range forms {
			t.Run(k.name+" as "+f.name, func(t *testing.T) {
				t.Parallel()
				key, der, err := ParsePKCS8(f.in)
				if err != nil {
					t.Fatalf("ParsePKCS8: %v", err)
				}
				if !bytes.Equal(der, k.der) {
					t.Errorf("returned DER differs from the input's")
				}
				if !SamePublicKey(PublicKeyOf(key), k.priv.Public()) {
					t.Errorf("parsed key's public half differs from the original's")
				}
			})
		}
	}
	t.Run("the openssl PEM file as it is", func(t *testing.T) {
		t.Parallel()
		key, _, err := ParsePKCS8(readFile(t, "rsa2048.pkcs8.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if !SamePublicKey(PublicKeyOf(key), testRSAKey(t).Public()) {
			t.Error("wrong key")
		}
	})
}

func TestParsePKCS8RejectsOtherEncodings(t *testing.T) {
	t.Parallel()
	pkcs1DER := readPEM(t, "rsa2048.pkcs1.pem", "RSA PRIVATE KEY")
	sec1DER, err := x509.MarshalECPrivateKey(newECKey(t, elliptic.P256()))
	if err != nil {
		t.Fatal(err)
	}
	pkcs8DER := readPEM(t, "rsa2048.pkcs8.pem", "PRIVATE KEY")
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"garbage", "definitely not a key"},
		{"base64 of garbage", base64.StdEncoding.EncodeToString([]byte("definitely not a key"))},
		{"PKCS#1 RSA PEM made by openssl", readFile(t, "rsa2048.pkcs1.pem")},
		{"base64 of PKCS#1 RSA DER", base64.StdEncoding.EncodeToString(pkcs1DER)},
		{"PKCS#1 DER under a PRIVATE KEY label", pemString("PRIVATE KEY", pkcs1DER)},
		{"base64 of SEC 1 EC DER", base64.StdEncoding.EncodeToString(sec1DER)},
		{"SEC 1 EC PEM", pemString("EC PRIVATE KEY", sec1DER)},
		{"PKCS#8 DER under an ENCRYPTED PRIVATE KEY label", pemString("ENCRYPTED PRIVATE KEY", pkcs8DER)},
		{"a certificate request PEM", readFile(t, "rsa2048.csr.pem")},
		{"PEM header without an END line", "-----BEGIN PRIVATE KEY-----\n" + base64.StdEncoding.EncodeToString(pkcs8DER)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key, der, err := ParsePKCS8(tt.in)
			if err == nil {
				t.Fatalf("ParsePKCS8 accepted it as %T", key)
			}
			if key != nil || der != nil {
				t.Errorf("returned a result alongside the error")
			}
		})
	}
}

func TestSamePublicKeyComparesKeyValues(t *testing.T) {
	t.Parallel()
	rsaKey := testRSAKey(t)
	// An independently parsed copy of the same RSA public key.
	csrOfRSA, err := x509.ParseCertificateRequest(readPEM(t, "rsa2048.csr.pem", "CERTIFICATE REQUEST"))
	if err != nil {
		t.Fatal(err)
	}
	ecA, ecB := newECKey(t, elliptic.P256()), newECKey(t, elliptic.P256())
	ec384 := newECKey(t, elliptic.P384())
	edA, edB := newEd25519Key(t), newEd25519Key(t)
	ecCopy := &ecdsa.PublicKey{Curve: ecA.Curve, X: new(big.Int).Set(ecA.X), Y: new(big.Int).Set(ecA.Y)}

	tests := []struct {
		name string
		a, b any
		want bool
	}{
		{"RSA key and the key parsed from its CSR", rsaKey.Public(), csrOfRSA.PublicKey, true},
		{"ECDSA key and a copy of it", ecA.Public(), ecCopy, true},
		{"Ed25519 key and itself", edA.Public(), edA.Public(), true},
		{"two different P-256 keys", ecA.Public(), ecB.Public(), false},
		{"P-256 and P-384 keys", ecA.Public(), ec384.Public(), false},
		{"two different Ed25519 keys", edA.Public(), edB.Public(), false},
		{"RSA and ECDSA keys", rsaKey.Public(), ecA.Public(), false},
		{"ECDSA and Ed25519 keys", ecA.Public(), edA.Public(), false},
		{"nil and a key", nil, ecA.Public(), false},
		{"a key and nil", ecA.Public(), nil, false},
		{"nil and nil", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := SamePublicKey(tt.a, tt.b); got != tt.want {
				t.Errorf("SamePublicKey = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPublicKeyOfReturnsThePublicHalf(t *testing.T) {
	t.Parallel()
	ec := newECKey(t, elliptic.P384())
	ed := newEd25519Key(t)
	if !SamePublicKey(PublicKeyOf(ec), &ec.PublicKey) {
		t.Error("ECDSA: wrong public key")
	}
	if !SamePublicKey(PublicKeyOf(ed), ed.Public()) {
		t.Error("Ed25519: wrong public key")
	}
	if got := PublicKeyOf("not a key"); got != nil {
		t.Errorf("PublicKeyOf(string) = %v, want nil", got)
	}
}

// A CSR's RSA key is sized up before its signature is checked: verifying
// under a huge modulus or exponent costs seconds of CPU, which a refusal
// must not.
func TestVerifyCSRRefusesOversizedRSAKeysBeforeTheSignature(t *testing.T) {
	t.Parallel()
	huge := new(big.Int).Lsh(big.NewInt(1), 184000)
	huge.Add(huge, big.NewInt(1))
	small := new(big.Int).Lsh(big.NewInt(1), 2047)
	small.Add(small, big.NewInt(1))
	for _, tc := range []struct {
		name string
		key  *rsa.PublicKey
		want string
	}{
		{"a 184,000-bit modulus", &rsa.PublicKey{N: huge, E: 65537}, "184001 bits"},
		{"a 2^31-1 exponent", &rsa.PublicKey{N: small, E: 1<<31 - 1}, "exponent must be 65537"},
		{"exponent 3", &rsa.PublicKey{N: small, E: 3}, "exponent must be 65537"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr := &x509.CertificateRequest{PublicKey: tc.key, SignatureAlgorithm: x509.SHA256WithRSA, Signature: make([]byte, 23000)}
			err := VerifyCSR(csr)
			if err == nil || !errors.Is(err, ErrCSR) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "signature") {
				t.Fatalf("VerifyCSR = %v; want the key refused (%q) before any signature check", err, tc.want)
			}
		})
	}
}

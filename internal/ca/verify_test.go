package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/certflow/certflow/internal/pki"
)

// multiValued is the name O=org+CN=cn as one RDN, CN first if cnFirst:
// built by hand, as encoding/asn1 would sort the SET.
func multiValued(t *testing.T, org, cn string, cnFirst bool) []byte {
	t.Helper()
	atv := func(oid asn1.ObjectIdentifier, v string) cryptobyte.BuilderContinuation {
		return func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oid)
				b.AddASN1(casn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(v)) })
			})
		}
	}
	attrs := []cryptobyte.BuilderContinuation{atv(asn1.ObjectIdentifier{2, 5, 4, 10}, org), atv(asn1.ObjectIdentifier{2, 5, 4, 3}, cn)}
	if cnFirst {
		attrs[0], attrs[1] = attrs[1], attrs[0]
	}
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) {
			for _, a := range attrs {
				a(b)
			}
		})
	})
	return b.BytesOrPanic()
}

// testKey is a CA key of the built-in CA's kinds, or Ed25519 (a signer
// that only x509.CreateCertificate handles).
func testKey(t *testing.T, keyType string) crypto.Signer {
	t.Helper()
	if keyType == "ed25519" {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k, err := newKey(keyType)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testHierarchy is a root and an issuing CA called name, made as
// createBuiltin makes them, with the issuing CA's key.
func testHierarchy(t *testing.T, name, keyType string) (root, iss *x509.Certificate, key crypto.Signer) {
	t.Helper()
	rootKey, key := testKey(t, keyType), testKey(t, keyType)
	now := time.Now().Add(-time.Hour)
	make := func(tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " Root", Organization: []string{"certflow"}},
		NotBefore: now, NotAfter: now.Add(48 * time.Hour), KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true}
	root = make(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	iss = make(&x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name, Organization: []string{"certflow"}},
		NotBefore: now, NotAfter: now.Add(48 * time.Hour), KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true}, root, key.Public(), rootKey)
	return root, iss, key
}

// testBuiltin is a built-in CA over iss that signs with signer.
func testBuiltin(t *testing.T, name string, root, iss *x509.Certificate, signer crypto.Signer) *Builtin {
	t.Helper()
	b, err := newBuiltin(name, root, iss, signer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// corruptSigner signs with the right key and flips the last bit of the
// signature, as a faulty signer would (a glitch in the ECDSA arithmetic,
// a broken HSM): the signature stays well-formed and does not verify.
type corruptSigner struct{ crypto.Signer }

func (s corruptSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := s.Signer.Sign(r, digest, opts)
	if err != nil {
		return nil, err
	}
	sig = bytes.Clone(sig)
	sig[len(sig)-1] ^= 1
	return sig, nil
}

// otherKeySigner presents the CA's public key and signs with another key.
type otherKeySigner struct {
	pub   crypto.PublicKey
	other crypto.Signer
}

func (s otherKeySigner) Public() crypto.PublicKey { return s.pub }

func (s otherKeySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.other.Sign(r, digest, opts)
}

// leafRequest is a request of a leaf; raw chooses whether it carries
// the CSR's subject bytes (as enrollments do: leafTBS builds it) or only
// the parsed subject (x509 builds the TBSCertificate).
func leafRequest(t *testing.T, raw bool) *Request {
	t.Helper()
	name := pkix.Name{CommonName: "svc.example.com", Organization: []string{"Example"}}
	req := &Request{Subject: name, PublicKey: testKey(t, "ecdsa-p256").Public(), Validity: time.Hour,
		DNSNames: []string{"svc.example.com"}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if raw {
		req.RawSubject, _ = asn1.Marshal(name.ToRDNSequence())
	}
	return req
}

// The path a request takes through encoder.create.
const (
	pathLeafTBS  = "leafTBS builds the TBSCertificate"
	pathX509TBS  = "x509 builds the TBSCertificate"
	pathX509Only = "x509.CreateCertificate signs"
)

// pathOf is the path b's signer and req take, as encoder.create
// decides it.
func pathOf(b *Builtin, req *Request) string {
	switch b.signer.Public().(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
	default:
		return pathX509Only
	}
	if b.enc.leaf != nil {
		if _, _, _, ok := b.enc.leaf(b.leafTemplate(req, big.NewInt(1), time.Now()), b.issuer, req.PublicKey, b.signer); ok {
			return pathLeafTBS
		}
	}
	if b.enc.capture != nil {
		return pathX509TBS
	}
	return pathX509Only
}

// TestPolicyCASignsOnlyWhatVerifies: whatever the signer and whichever
// path builds the certificate, a signature that does not verify under the
// issuing CA's key is an error, and neither the certificate nor the CRL
// leaves the CA.
func TestPolicyCASignsOnlyWhatVerifies(t *testing.T) {
	t.Parallel()
	for _, keyType := range []string{"ecdsa-p256", "rsa-2048", "ed25519"} {
		t.Run(keyType, func(t *testing.T) {
			t.Parallel()
			root, iss, key := testHierarchy(t, "Faulty", keyType)
			other := testKey(t, keyType)
			honest := testBuiltin(t, "Faulty", root, iss, key)
			signers := []struct {
				name   string
				signer crypto.Signer
				// ours: only certflow's own check stands between the
				// signer and the world on the paths it owns (x509 checks
				// the signatures it makes itself).
				ours bool
			}{
				{"a signer that corrupts its signatures", corruptSigner{key}, true},
				{"a signer that signs with another key than it shows", otherKeySigner{pub: key.Public(), other: other}, true},
				{"a signer of another key", other, false},
			}
			for encName, enc := range testEncoders {
				honest.enc = enc
				for _, raw := range []bool{true, false} {
					req := leafRequest(t, raw)
					path := pathOf(honest, req)
					switch {
					case keyType == "ed25519" && path != pathX509Only,
						keyType != "ed25519" && raw && enc.leaf != nil && path != pathLeafTBS,
						keyType != "ed25519" && (!raw || enc.leaf == nil) && enc.capture != nil && path != pathX509TBS,
						keyType != "ed25519" && (!raw || enc.leaf == nil) && enc.capture == nil && path != pathX509Only:
						t.Fatalf("%s, raw subject %v: path %q: the rows below do not test what they say", encName, raw, path)
					}
					if _, err := honest.Issue(t.Context(), req); err != nil {
						t.Fatalf("%s, %s, honest signer: %v", encName, path, err)
					}
					for _, s := range signers {
						t.Run(fmt.Sprintf("%s, %s, %s", encName, s.name, path), func(t *testing.T) {
							b := testBuiltin(t, "Faulty", root, iss, s.signer)
							b.enc = enc
							if got := pathOf(b, req); s.ours && got != path {
								t.Fatalf("takes %q, want %q", got, path)
							}
							issued, err := b.Issue(t.Context(), req)
							if err == nil || issued != nil {
								t.Fatalf("certificate released: %v", err)
							}
							if s.ours && path != pathX509Only && !errors.Is(err, ErrBadSignature) {
								t.Fatalf("error %v, want ErrBadSignature", err)
							}
						})
					}
				}
			}
			honest.enc = handEncoder
			if _, err := honest.RevocationList(t.Context(), crlEntries(), big.NewInt(1), time.Now(), time.Now().Add(time.Hour)); err != nil {
				t.Fatalf("CRL, honest signer: %v", err)
			}
			for _, s := range signers {
				t.Run(s.name+", CRL", func(t *testing.T) {
					b := testBuiltin(t, "Faulty", root, iss, s.signer)
					der, err := b.RevocationList(t.Context(), crlEntries(), big.NewInt(1), time.Now(), time.Now().Add(time.Hour))
					if err == nil || der != nil {
						t.Fatalf("CRL released: %v", err)
					}
				})
			}
		})
	}
}

func crlEntries() []x509.RevocationListEntry {
	return []x509.RevocationListEntry{{SerialNumber: big.NewInt(42), RevocationTime: time.Now().Add(-time.Hour), ReasonCode: 1}}
}

// x509.CreateRevocationList checks its signer's signature too: checkCRL
// is held on its own to a CRL that another key signed, and to one whose
// signature was damaged after signing.
func TestCheckCRLRefusesWhatTheIssuerDidNotSign(t *testing.T) {
	t.Parallel()
	root, iss, key := testHierarchy(t, "CRL", "ecdsa-p256")
	b := testBuiltin(t, "CRL", root, iss, key)
	good, err := b.RevocationList(t.Context(), crlEntries(), big.NewInt(1), time.Now(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkCRL(good, iss); err != nil {
		t.Fatalf("a good CRL: %v", err)
	}
	other := testKey(t, "ecdsa-p256")
	impostor := *iss
	impostor.PublicKey = other.Public()
	forged, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(2), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, &impostor, other)
	if err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Clone(good)
	damaged[len(damaged)-1] ^= 1
	for name, der := range map[string][]byte{"signed by another key": forged, "a damaged signature": damaged} {
		if err := checkCRL(der, iss); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", name, err)
		}
	}
}

// TestPolicyEveryCertificateNamesItsAuthorityKey: on every path, whether
// or not the issuing CA's certificate carries a SubjectKeyId, what the CA
// issues and the CRLs it signs carry an authority key identifier, the
// issuing key's (derived as x509 derives a CA's key id when there is none).
func TestPolicyEveryCertificateNamesItsAuthorityKey(t *testing.T) {
	t.Parallel()
	for _, keyType := range []string{"ecdsa-p256", "rsa-2048", "ed25519"} {
		t.Run(keyType, func(t *testing.T) {
			t.Parallel()
			root, iss, key := testHierarchy(t, "AKI", keyType)
			// x509 derived iss's SubjectKeyId from its key, as
			// keyIdentifier must when a CA certificate has none.
			want := iss.SubjectKeyId
			if len(want) == 0 {
				t.Fatal("x509 made a CA certificate without a SubjectKeyId")
			}
			for _, skid := range []bool{true, false} {
				parent := iss
				if !skid {
					c := *iss
					c.SubjectKeyId = nil // as a CA certificate made without one
					parent = &c
				}
				b := testBuiltin(t, "AKI", root, parent, key)
				for _, raw := range []bool{true, false} {
					req := leafRequest(t, raw)
					path := pathOf(b, req)
					issued, err := b.Issue(t.Context(), req)
					if err != nil {
						t.Fatalf("key id %v, %s: %v", skid, path, err)
					}
					if !bytes.Equal(issued.Leaf.AuthorityKeyId, want) {
						t.Errorf("CA key id %v, %s: authority key id %x, want %x", skid, path, issued.Leaf.AuthorityKeyId, want)
					}
					if err := issued.Leaf.CheckSignatureFrom(iss); err != nil {
						t.Errorf("CA key id %v, %s: %v", skid, path, err)
					}
				}
				der, err := b.RevocationList(t.Context(), crlEntries(), big.NewInt(1), time.Now(), time.Now().Add(time.Hour))
				if err != nil {
					t.Fatalf("CRL, CA key id %v: %v", skid, err)
				}
				crl, err := x509.ParseRevocationList(der)
				if err != nil || !bytes.Equal(crl.AuthorityKeyId, want) {
					t.Errorf("CRL, CA key id %v: authority key id %x, want %x (%v)", skid, crl.AuthorityKeyId, want, err)
				}
			}
		})
	}
}

// reencode is a DER name with each value rewritten by f and encoded as a
// string of type tag (UTF8String, BMPString, T61String), whatever its
// type was.
func reencode(t *testing.T, der []byte, tag int, f func(string) string) []byte {
	t.Helper()
	var rdns pkix.RDNSequence
	if _, err := asn1.Unmarshal(der, &rdns); err != nil {
		t.Fatal(err)
	}
	for _, rdn := range rdns {
		for i := range rdn {
			v := []byte(f(rdn[i].Value.(string)))
			if tag == asn1.TagBMPString {
				v = nil
				for _, u := range utf16.Encode([]rune(f(rdn[i].Value.(string)))) {
					v = append(v, byte(u>>8), byte(u))
				}
			}
			rdn[i].Value = asn1.RawValue{Tag: tag, Bytes: v}
		}
	}
	out, err := asn1.Marshal(rdns)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPolicyCARefusesALeafNamedAsACA: the CA's last line of defence
// against a leaf that would pass for a CA where chains are built by name
// (its own root and issuing CA, any other configured CA), however the name
// is spelled; names that only resemble one are issued.
func TestPolicyCARefusesALeafNamedAsACA(t *testing.T) {
	t.Parallel()
	root, iss, key := testHierarchy(t, "Corp", "ecdsa-p256")
	b := testBuiltin(t, "Corp", root, iss, key)
	otherRoot, otherIss, otherKey := testHierarchy(t, "Other", "ecdsa-p256")
	reg := &Registry{byName: map[string]Authority{"corp": b, "other": testBuiltin(t, "Other", otherRoot, otherIss, otherKey)}}
	reg.shareCANames()
	same := func(s string) string { return s }
	name := func(n pkix.Name) []byte {
		der, _ := asn1.Marshal(n.ToRDNSequence())
		return der
	}
	tests := []struct {
		name    string
		raw     []byte
		subject pkix.Name
		refused bool
	}{
		{name: "the issuing CA's subject, byte for byte", raw: iss.RawSubject, refused: true},
		{name: "the root's subject", raw: root.RawSubject, refused: true},
		{name: "the issuing CA's subject as UTF8Strings", raw: reencode(t, iss.RawSubject, asn1.TagUTF8String, same), refused: true},
		{name: "the issuing CA's subject as BMPStrings", raw: reencode(t, iss.RawSubject, asn1.TagBMPString, same), refused: true},
		{name: "the issuing CA's subject as T61Strings", raw: reencode(t, iss.RawSubject, asn1.TagT61String, same), refused: true},
		{name: "the issuing CA's subject in upper case, spaces doubled", raw: reencode(t, iss.RawSubject, asn1.TagUTF8String, func(s string) string { return " " + strings.ToUpper(s) + "  " }), refused: true},
		{name: "the issuing CA's subject, parsed, no raw bytes", subject: iss.Subject, refused: true},
		{name: "another configured CA's subject", raw: otherIss.RawSubject, refused: true},
		{name: "another configured CA's root", raw: otherRoot.RawSubject, refused: true},
		{name: "a subject that does not parse", raw: []byte{0x30, 0x03, 0x02, 0x01, 0x00}, refused: true},
		{name: "the CA's common name in another organisation", subject: pkix.Name{CommonName: "Corp", Organization: []string{"Example"}}},
		{name: "the CA's common name alone", raw: name(pkix.Name{CommonName: "Corp"})},
		{name: "a host name", raw: name(pkix.Name{CommonName: "svc.example.com"})},
		// Another DN (RFC 5280 7.1 and OpenSSL keep the RDN structure).
		{name: "the root's attributes as one multi-valued RDN", raw: multiValued(t, "certflow", root.Subject.CommonName, false)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := leafRequest(t, false)
			req.Subject, req.RawSubject = tt.subject, tt.raw
			issued, err := b.Issue(t.Context(), req)
			if tt.refused {
				if !errors.Is(err, ErrRefused) || issued != nil {
					t.Fatalf("issued (%v), want ErrRefused", err)
				}
			} else if err != nil {
				t.Fatalf("refused: %v", err)
			}
			subject := tt.raw
			if subject == nil {
				subject = name(tt.subject)
			}
			if got := reg.IsCASubject(subject); got != tt.refused {
				t.Errorf("IsCASubject = %v, want %v", got, tt.refused)
			}
		})
	}
}

// The attributes of a multi-valued RDN compare in any order.
func TestNameKeyIgnoresTheOrderWithinAnRDN(t *testing.T) {
	t.Parallel()
	x, y := multiValued(t, "certflow", "Corp", false), multiValued(t, "certflow", "Corp", true)
	if bytes.Equal(x, y) {
		t.Fatal("the two orders encode the same: the test proves nothing")
	}
	a, errA := pki.NameKey(x)
	b, errB := pki.NameKey(y)
	if errA != nil || errB != nil || a != b {
		t.Fatalf("%q (%v) != %q (%v)", a, errA, b, errB)
	}
}

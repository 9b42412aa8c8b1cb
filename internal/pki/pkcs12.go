package pki

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"

	"software.sslmate.com/src/go-pkcs12"
)

// MinPFXPassword is the shortest password a PKCS#12 archive certflow
// builds may have: the archive holds a private key, and its password is
// all that protects it once it leaves certflow.
const MinPFXPassword = 8

// maxPFXPassword bounds a password (PKCS#12 encodes it as BMPString).
const maxPFXPassword = 256

// CheckPFXPassword says what is wrong with a PKCS#12 password, or nil.
func CheckPFXPassword(p string) error {
	switch n := utf8.RuneCountInString(p); {
	case p == "":
		return errors.New("required: the password that will protect the PKCS#12 archive")
	case n < MinPFXPassword:
		return fmt.Errorf("must be at least %d characters", MinPFXPassword)
	case n > maxPFXPassword:
		return fmt.Errorf("longer than %d characters", maxPFXPassword)
	case !utf8.ValidString(p):
		return errors.New("not valid UTF-8")
	}
	for _, r := range p {
		if r > 0xFFFF || r == 0 {
			return errors.New("has a character PKCS#12 cannot encode (NUL or outside the Basic Multilingual Plane)")
		}
	}
	return nil
}

// EncodePKCS12 builds a password-protected PKCS#12 archive of key, its
// certificate and (with chain) the rest of the chain, leaf first in the
// DER list. It uses go-pkcs12's Modern2023 encoder: PBES2 with
// PBKDF2-HMAC-SHA-256 and AES-256-CBC for the key and the certificates,
// HMAC-SHA-256 for the MAC — readable by OpenSSL 1.1.1 and later, Java 12
// and later, Windows Server 2019 and later. (pkcs12.Modern may move on to
// PBMAC1, which OpenSSL 3.0 cannot read; the pin keeps archives readable.)
//
// friendlyName, when not empty, labels the key and the leaf (the name
// Windows shows for the imported certificate).
func EncodePKCS12(key any, chain [][]byte, includeChain bool, password, friendlyName string) ([]byte, error) {
	if len(chain) == 0 {
		return nil, errors.New("pkcs12: no certificate")
	}
	if err := CheckPFXPassword(password); err != nil {
		return nil, fmt.Errorf("pkcs12: password %w", err)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("pkcs12: leaf: %w", err)
	}
	if !SamePublicKey(PublicKeyOf(key), leaf.PublicKey) {
		return nil, errors.New("pkcs12: the key does not match the certificate")
	}
	var cas []*x509.Certificate
	if includeChain {
		for i, der := range chain[1:] {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("pkcs12: chain certificate %d: %w", i+1, err)
			}
			cas = append(cas, c)
		}
	}
	pfx, err := pkcs12.Modern2023.Encode(key, leaf, cas, password)
	if err != nil {
		return nil, fmt.Errorf("pkcs12: %w", err)
	}
	if friendlyName != "" {
		return addFriendlyName(pfx, password, friendlyName)
	}
	return pfx, nil
}

// The PKCS#12 shapes (RFC 7292) addFriendlyName reads and rewrites.
type p12PFX struct {
	Version  int
	AuthSafe p12ContentInfo
	MacData  p12MacData
}

type p12ContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue // [0] EXPLICIT, kept whole
}

type p12MacData struct {
	Mac        p12DigestInfo
	MacSalt    []byte
	Iterations int `asn1:"optional,default:1"`
}

type p12DigestInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	Digest    []byte
}

type p12SafeBag struct {
	ID         asn1.ObjectIdentifier
	Value      asn1.RawValue  // [0] EXPLICIT, kept whole
	Attributes []p12Attribute `asn1:"set,optional"`
}

type p12Attribute struct {
	ID     asn1.ObjectIdentifier
	Values asn1.RawValue // SET OF, kept whole
}

var (
	oidData                 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidPKCS8ShroudedKeyBag  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidFriendlyName         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 20}
	oidSHA256               = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	errUnexpectedPFXOutline = errors.New("pkcs12: friendly name: unexpected archive layout")
)

// addFriendlyName labels the key bag of an archive go-pkcs12 built with
// friendlyName (PKCS#9 friendlyName, a BMPString), and computes its MAC
// again. go-pkcs12 has no option for it; the key bag sits in the
// archive's unencrypted SafeContents (the key inside it stays shrouded),
// so only that SafeContents and the MAC change. The MAC is recomputed
// with the archive's own salt and iteration count, after checking that
// this code reproduces the MAC go-pkcs12 wrote.
func addFriendlyName(pfx []byte, password, friendlyName string) ([]byte, error) {
	var p p12PFX
	if rest, err := asn1.Unmarshal(pfx, &p); err != nil || len(rest) != 0 {
		return nil, errUnexpectedPFXOutline
	}
	if !p.AuthSafe.ContentType.Equal(oidData) || !p.MacData.Mac.Algorithm.Algorithm.Equal(oidSHA256) {
		return nil, errUnexpectedPFXOutline
	}
	authSafe, err := explicitOctets(p.AuthSafe.Content)
	if err != nil {
		return nil, err
	}
	pw := bmpZeroTerminated(password)
	if !hmac.Equal(pkcs12MAC(pw, p.MacData.MacSalt, p.MacData.Iterations, authSafe), p.MacData.Mac.Digest) {
		return nil, errUnexpectedPFXOutline
	}
	var safes []p12ContentInfo
	if rest, err := asn1.Unmarshal(authSafe, &safes); err != nil || len(rest) != 0 {
		return nil, errUnexpectedPFXOutline
	}
	name, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagBMPString, Bytes: bmp(friendlyName)})
	if err != nil {
		return nil, err
	}
	labelled := false
	for i := range safes {
		if !safes[i].ContentType.Equal(oidData) {
			continue // an encrypted SafeContents: the certificates
		}
		contents, err := explicitOctets(safes[i].Content)
		if err != nil {
			return nil, err
		}
		var bags []p12SafeBag
		if rest, err := asn1.Unmarshal(contents, &bags); err != nil || len(rest) != 0 {
			return nil, errUnexpectedPFXOutline
		}
		for j := range bags {
			if bags[j].ID.Equal(oidPKCS8ShroudedKeyBag) {
				bags[j].Attributes = append(bags[j].Attributes, p12Attribute{
					ID:     oidFriendlyName,
					Values: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: name},
				})
				labelled = true
			}
		}
		if contents, err = asn1.Marshal(bags); err != nil {
			return nil, err
		}
		if safes[i].Content, err = explicitOctetsValue(contents); err != nil {
			return nil, err
		}
	}
	if !labelled {
		return nil, errUnexpectedPFXOutline
	}
	if authSafe, err = asn1.Marshal(safes); err != nil {
		return nil, err
	}
	if p.AuthSafe.Content, err = explicitOctetsValue(authSafe); err != nil {
		return nil, err
	}
	p.MacData.Mac.Digest = pkcs12MAC(pw, p.MacData.MacSalt, p.MacData.Iterations, authSafe)
	return asn1.Marshal(p)
}

// explicitOctets reads a [0] EXPLICIT OCTET STRING.
func explicitOctets(v asn1.RawValue) ([]byte, error) {
	if v.Class != asn1.ClassContextSpecific || v.Tag != 0 {
		return nil, errUnexpectedPFXOutline
	}
	var octets []byte
	if rest, err := asn1.Unmarshal(v.Bytes, &octets); err != nil || len(rest) != 0 {
		return nil, errUnexpectedPFXOutline
	}
	return octets, nil
}

func explicitOctetsValue(octets []byte) (asn1.RawValue, error) {
	inner, err := asn1.Marshal(octets)
	if err != nil {
		return asn1.RawValue{}, err
	}
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner}, nil
}

// bmp is s in UTF-16 big-endian (ASN.1 BMPString; CheckPFXPassword keeps
// passwords inside the Basic Multilingual Plane, friendly names are
// checked by the caller).
func bmp(s string) []byte {
	var out []byte
	for _, r := range utf16.Encode([]rune(s)) {
		out = append(out, byte(r>>8), byte(r))
	}
	return out
}

func bmpZeroTerminated(s string) []byte { return append(bmp(s), 0, 0) }

// pkcs12MAC is HMAC-SHA-256 keyed as RFC 7292 appendix B.2 derives a MAC
// key (ID 3) from the password.
func pkcs12MAC(password, salt []byte, iterations int, data []byte) []byte {
	key := pkcs12KDF(password, salt, iterations, 3, sha256.Size)
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

// pkcs12KDF is RFC 7292 appendix B.2 with SHA-256 (u = 32, v = 64).
func pkcs12KDF(password, salt []byte, iterations int, id byte, n int) []byte {
	const u, v = sha256.Size, 64
	fill := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		out := make([]byte, v*((len(b)+v-1)/v))
		for i := range out {
			out[i] = b[i%len(b)]
		}
		return out
	}
	d := bytes.Repeat([]byte{id}, v)
	in := append(fill(salt), fill(password)...)
	var out []byte
	for len(out) < n {
		h := sha256.New()
		h.Write(d)
		h.Write(in)
		a := h.Sum(nil)
		for r := 1; r < iterations; r++ {
			s := sha256.Sum256(a)
			a = s[:]
		}
		out = append(out, a...)
		b := fill(a)
		for j := 0; j < len(in); j += v {
			carry := 1
			for k := v - 1; k >= 0; k-- {
				sum := int(in[j+k]) + int(b[k]) + carry
				in[j+k], carry = byte(sum), sum>>8
			}
		}
	}
	return out[:n]
}

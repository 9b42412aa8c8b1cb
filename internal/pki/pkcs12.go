package pki

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
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

// PKCS12Options shape an archive.
type PKCS12Options struct {
	// IncludeChain adds the chain's CA certificates.
	IncludeChain bool
	// FriendlyName, when not empty, labels the key and its certificate
	// (PKCS#9 friendlyName: the name Windows shows once imported).
	FriendlyName string
	// EndEntityFirst puts the leaf before the CA certificates, the order
	// Keyfactor 10+ clients decode (the API's default, enroll.ChainOrder).
	// Without it: the key first, then the CA certificates from the root
	// down, the leaf last (ChainOrder RootFirst).
	EndEntityFirst bool
}

// EncodePKCS12 builds a password-protected PKCS#12 archive of key, its
// certificate (chain[0]) and, as asked, the rest of the chain. It uses
// go-pkcs12's Modern2023 encoding: PBES2 with PBKDF2-HMAC-SHA-256 and
// AES-256-CBC for the key and the certificates, an HMAC-SHA-256 MAC —
// readable by OpenSSL 1.1.1 and later, Java 12 and later, Windows Server
// 2019 and later. (pkcs12.Modern may move on to PBMAC1, which OpenSSL 3.0
// cannot read; the pin keeps archives readable.) go-pkcs12 knows neither
// friendly names nor the order of the bags, so the archive is then
// rearranged (see arrange).
func EncodePKCS12(key any, chain [][]byte, password string, o PKCS12Options) ([]byte, error) {
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
	if o.IncludeChain {
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
	return arrange(pfx, password, o)
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
	oidPKCS8ShroudedKeyBag  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidFriendlyName         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 20}
	oidSHA256               = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	errUnexpectedPFXOutline = errors.New("pkcs12: friendly name: unexpected archive layout")
)

// arrange rewrites an archive go-pkcs12 built: the key's SafeContents
// (unencrypted; the key inside stays shrouded) goes first, the
// certificates' (encrypted) second, the certificates in the order asked,
// friendlyName on the key bag and the leaf's bag; the certificates are
// encrypted again under the same PBES2 key with a fresh IV, and the MAC is
// computed again with the archive's own salt and iteration count (after
// checking that this code reproduces the MAC go-pkcs12 wrote).
func arrange(pfx []byte, password string, o PKCS12Options) ([]byte, error) {
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
	if rest, err := asn1.Unmarshal(authSafe, &safes); err != nil || len(rest) != 0 || len(safes) != 2 {
		return nil, errUnexpectedPFXOutline
	}
	var name []byte
	if o.FriendlyName != "" {
		if name, err = asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagBMPString, Bytes: bmp(o.FriendlyName)}); err != nil {
			return nil, err
		}
	}
	label := func(bag *p12SafeBag) {
		if name != nil {
			bag.Attributes = append(bag.Attributes, p12Attribute{
				ID:     oidFriendlyName,
				Values: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: name},
			})
		}
	}
	var keySafe, certSafe *p12ContentInfo
	for i := range safes {
		switch {
		case safes[i].ContentType.Equal(oidData):
			keySafe = &safes[i]
		case safes[i].ContentType.Equal(oidEncryptedData):
			certSafe = &safes[i]
		}
	}
	if keySafe == nil || certSafe == nil {
		return nil, errUnexpectedPFXOutline
	}
	// The key.
	contents, err := explicitOctets(keySafe.Content)
	if err != nil {
		return nil, err
	}
	var bags []p12SafeBag
	if rest, err := asn1.Unmarshal(contents, &bags); err != nil || len(rest) != 0 || len(bags) != 1 || !bags[0].ID.Equal(oidPKCS8ShroudedKeyBag) {
		return nil, errUnexpectedPFXOutline
	}
	label(&bags[0])
	if contents, err = asn1.Marshal(bags); err != nil {
		return nil, err
	}
	if keySafe.Content, err = explicitOctetsValue(contents); err != nil {
		return nil, err
	}
	// The certificates: the leaf (go-pkcs12 writes it first), then the
	// chain up to the root.
	contents, key, err := pbes2Open(certSafe.Content, password)
	if err != nil {
		return nil, err
	}
	if rest, err := asn1.Unmarshal(contents, &bags); err != nil || len(rest) != 0 || len(bags) == 0 {
		return nil, errUnexpectedPFXOutline
	}
	label(&bags[0])
	if !o.EndEntityFirst {
		slices.Reverse(bags)
	}
	if contents, err = asn1.Marshal(bags); err != nil {
		return nil, err
	}
	if certSafe.Content, err = pbes2Seal(certSafe.Content, key, contents); err != nil {
		return nil, err
	}
	if authSafe, err = asn1.Marshal([]p12ContentInfo{*keySafe, *certSafe}); err != nil {
		return nil, err
	}
	if p.AuthSafe.Content, err = explicitOctetsValue(authSafe); err != nil {
		return nil, err
	}
	p.MacData.Mac.Digest = pkcs12MAC(pw, p.MacData.MacSalt, p.MacData.Iterations, authSafe)
	return asn1.Marshal(p)
}

// EncryptedData (PKCS#7) and the PBES2 parameters (RFC 8018) of the
// certificates' SafeContents.
type p12EncryptedData struct {
	Version int
	Info    p12EncryptedContentInfo
}

type p12EncryptedContentInfo struct {
	ContentType      asn1.ObjectIdentifier
	Algorithm        pkix.AlgorithmIdentifier
	EncryptedContent []byte `asn1:"tag:0,optional"`
}

type p12PBES2Params struct {
	KDF    pkix.AlgorithmIdentifier
	Scheme pkix.AlgorithmIdentifier
}

type p12PBKDF2Params struct {
	Salt       []byte
	Iterations int
	KeyLength  int                      `asn1:"optional"`
	PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
}

var (
	oidEncryptedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	oidPBES2         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACSHA256    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidAES256CBC     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// pbes2Open decrypts a [0] EXPLICIT EncryptedData under PBES2 (PBKDF2
// with HMAC-SHA-256, AES-256-CBC; the password in UTF-8, as go-pkcs12 and
// OpenSSL use it) and returns the plaintext and the derived key.
func pbes2Open(v asn1.RawValue, password string) (plaintext, key []byte, err error) {
	if v.Class != asn1.ClassContextSpecific || v.Tag != 0 {
		return nil, nil, errUnexpectedPFXOutline
	}
	var ed p12EncryptedData
	if rest, err := asn1.Unmarshal(v.Bytes, &ed); err != nil || len(rest) != 0 || !ed.Info.Algorithm.Algorithm.Equal(oidPBES2) {
		return nil, nil, errUnexpectedPFXOutline
	}
	var params p12PBES2Params
	if _, err := asn1.Unmarshal(ed.Info.Algorithm.Parameters.FullBytes, &params); err != nil {
		return nil, nil, errUnexpectedPFXOutline
	}
	var kdf p12PBKDF2Params
	if !params.KDF.Algorithm.Equal(oidPBKDF2) || !params.Scheme.Algorithm.Equal(oidAES256CBC) {
		return nil, nil, errUnexpectedPFXOutline
	}
	if _, err := asn1.Unmarshal(params.KDF.Parameters.FullBytes, &kdf); err != nil || !kdf.PRF.Algorithm.Equal(oidHMACSHA256) {
		return nil, nil, errUnexpectedPFXOutline
	}
	var iv []byte
	if _, err := asn1.Unmarshal(params.Scheme.Parameters.FullBytes, &iv); err != nil || len(iv) != aes.BlockSize {
		return nil, nil, errUnexpectedPFXOutline
	}
	key, err = pbkdf2.Key(sha256.New, password, kdf.Salt, kdf.Iterations, 32)
	if err != nil {
		return nil, nil, err
	}
	ct := ed.Info.EncryptedContent
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, nil, errUnexpectedPFXOutline
	}
	block, _ := aes.NewCipher(key)
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ct)
	pad := int(pt[len(pt)-1])
	if pad == 0 || pad > aes.BlockSize || !bytes.Equal(pt[len(pt)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		return nil, nil, errUnexpectedPFXOutline
	}
	return pt[:len(pt)-pad], key, nil
}

// pbes2Seal encrypts plaintext in place of v's content, under the same
// derived key and KDF parameters, with a fresh IV.
func pbes2Seal(v asn1.RawValue, key, plaintext []byte) (asn1.RawValue, error) {
	var ed p12EncryptedData
	if _, err := asn1.Unmarshal(v.Bytes, &ed); err != nil {
		return v, errUnexpectedPFXOutline
	}
	var params p12PBES2Params
	if _, err := asn1.Unmarshal(ed.Info.Algorithm.Parameters.FullBytes, &params); err != nil {
		return v, errUnexpectedPFXOutline
	}
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(iv); err != nil {
		return v, err
	}
	ivDER, err := asn1.Marshal(iv)
	if err != nil {
		return v, err
	}
	params.Scheme.Parameters = asn1.RawValue{FullBytes: ivDER}
	if ed.Info.Algorithm.Parameters.FullBytes, err = asn1.Marshal(params); err != nil {
		return v, err
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	pt := append(slices.Clone(plaintext), bytes.Repeat([]byte{byte(pad)}, pad)...)
	block, _ := aes.NewCipher(key)
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, pt)
	ed.Info.EncryptedContent = ct
	inner, err := asn1.Marshal(ed)
	if err != nil {
		return v, err
	}
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner}, nil
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

package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// KeySpec is a private key certflow generates on a client's behalf (CSR
// generation, PFX enrollment), in the words the policy uses: Type is
// "RSA", "ECC" or "Ed25519" (DescribeKey's names), Bits the RSA modulus
// size, Curve the NIST name of an ECC curve ("P-256").
type KeySpec struct {
	Type  string `json:"KeyType"`
	Bits  int    `json:"KeyBits,omitempty"`
	Curve string `json:"Curve,omitempty"`
}

// Bounds on generated RSA keys: below 2048 is unsafe, above 8192 too slow
// to generate inside a request (templates allow 2048–8192 too).
const (
	MinRSABits = 2048
	MaxRSABits = 8192
)

// KeySpecError names the request field at fault.
type KeySpecError struct {
	Field string
	Msg   string
}

func (e *KeySpecError) Error() string { return e.Field + ": " + e.Msg }

// curves maps every spelling of a supported curve that Keyfactor's
// clients send (its own API takes the OID, e.g. 1.2.840.10045.3.1.7, or a
// name) to the NIST name.
var curves = map[string]string{
	"p-256": "P-256", "p256": "P-256", "secp256r1": "P-256", "prime256v1": "P-256", "nistp256": "P-256", "1.2.840.10045.3.1.7": "P-256",
	"p-384": "P-384", "p384": "P-384", "secp384r1": "P-384", "nistp384": "P-384", "1.3.132.0.34": "P-384",
	"p-521": "P-521", "p521": "P-521", "secp521r1": "P-521", "nistp521": "P-521", "1.3.132.0.35": "P-521",
}

// curveBySize is Keyfactor's older convention: an ECC "KeyLength" of
// 256, 384 or 521 names the curve.
var curveBySize = map[int]string{256: "P-256", 384: "P-384", 521: "P-521"}

// ParseKeySpec reads Keyfactor's KeyType / KeyLength / Curve fields.
// KeyType is RSA, ECC (also EC, ECDSA) or Ed25519, in any case; an RSA key
// needs KeyLength; an ECC key needs Curve (an OID or a name) or a
// KeyLength of 256, 384 or 521; Ed25519 takes neither. Errors name the
// field (*KeySpecError).
func ParseKeySpec(keyType string, keyLength int, curve string) (KeySpec, error) {
	bad := func(field, format string, args ...any) (KeySpec, error) {
		return KeySpec{}, &KeySpecError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch strings.ToUpper(strings.TrimSpace(keyType)) {
	case "":
		return bad("KeyType", "required: RSA, ECC or Ed25519")
	case "RSA":
		if curve != "" {
			return bad("Curve", "only for ECC keys")
		}
		if keyLength == 0 {
			return bad("KeyLength", "required for RSA keys (e.g. 2048)")
		}
		if keyLength < MinRSABits || keyLength > MaxRSABits || keyLength%8 != 0 {
			return bad("KeyLength", "%d is not an RSA key size certflow generates (%d–%d, a multiple of 8)", keyLength, MinRSABits, MaxRSABits)
		}
		return KeySpec{Type: "RSA", Bits: keyLength}, nil
	case "ECC", "EC", "ECDSA":
		name := ""
		if curve != "" {
			var ok bool
			if name, ok = curves[strings.ToLower(strings.TrimSpace(curve))]; !ok {
				return bad("Curve", "unknown curve %q (want P-256, P-384 or P-521, or its OID such as 1.2.840.10045.3.1.7)", curve)
			}
		}
		if keyLength != 0 {
			bySize, ok := curveBySize[keyLength]
			switch {
			case !ok:
				return bad("KeyLength", "%d is not an ECC key size (256, 384 or 521)", keyLength)
			case name != "" && bySize != name:
				return bad("KeyLength", "%d does not match curve %s", keyLength, name)
			}
			name = bySize
		}
		if name == "" {
			return bad("Curve", "required for ECC keys: P-256, P-384 or P-521 (or KeyLength 256, 384 or 521)")
		}
		return KeySpec{Type: "ECC", Bits: curveBits(name), Curve: name}, nil
	case "ED25519":
		if curve != "" {
			return bad("Curve", "only for ECC keys")
		}
		if keyLength != 0 && keyLength != 256 {
			return bad("KeyLength", "Ed25519 keys have no length to choose (leave KeyLength out)")
		}
		return KeySpec{Type: "Ed25519", Bits: 256}, nil
	default:
		return bad("KeyType", "unknown key type %q (want RSA, ECC or Ed25519)", keyType)
	}
}

func curveBits(name string) int {
	switch name {
	case "P-384":
		return 384
	case "P-521":
		return 521
	}
	return 256
}

func ellipticCurve(name string) (elliptic.Curve, error) {
	switch name {
	case "P-256":
		return elliptic.P256(), nil
	case "P-384":
		return elliptic.P384(), nil
	case "P-521":
		return elliptic.P521(), nil
	}
	return nil, fmt.Errorf("unknown curve %q", name)
}

// Generate makes a new private key of the spec.
func (k KeySpec) Generate() (crypto.Signer, error) {
	switch k.Type {
	case "RSA":
		return rsa.GenerateKey(rand.Reader, k.Bits)
	case "ECC":
		c, err := ellipticCurve(k.Curve)
		if err != nil {
			return nil, err
		}
		return ecdsa.GenerateKey(c, rand.Reader)
	case "Ed25519":
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("unknown key type %q", k.Type)
}

// PublicShape returns a public key with the spec's type and size but no
// usable value: enough for DescribeKey and CurveName (and so for policy
// expressions and definition selection) before the key exists.
func (k KeySpec) PublicShape() crypto.PublicKey {
	switch k.Type {
	case "RSA":
		n := new(big.Int).Lsh(big.NewInt(1), uint(k.Bits-1))
		return &rsa.PublicKey{N: n.Add(n, big.NewInt(1)), E: 65537}
	case "ECC":
		c, _ := ellipticCurve(k.Curve)
		return &ecdsa.PublicKey{Curve: c}
	}
	return make(ed25519.PublicKey, ed25519.PublicKeySize)
}

// subjectAttrs are the attribute names a Subject string may use, with
// their OIDs (RFC 4514's and the ones Keyfactor's UI writes).
var subjectAttrs = map[string]asn1.ObjectIdentifier{
	"CN":           {2, 5, 4, 3},
	"SERIALNUMBER": {2, 5, 4, 5},
	"C":            {2, 5, 4, 6},
	"L":            {2, 5, 4, 7},
	"ST":           {2, 5, 4, 8},
	"S":            {2, 5, 4, 8},
	"STREET":       {2, 5, 4, 9},
	"O":            {2, 5, 4, 10},
	"OU":           {2, 5, 4, 11},
	"E":            {1, 2, 840, 113549, 1, 9, 1},
	"EMAIL":        {1, 2, 840, 113549, 1, 9, 1},
	"EMAILADDRESS": {1, 2, 840, 113549, 1, 9, 1},
	"DC":           {0, 9, 2342, 19200300, 100, 1, 25},
	"UID":          {0, 9, 2342, 19200300, 100, 1, 1},
}

var oidEmailAttr = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

// maxSubjectLen bounds a Subject string.
const maxSubjectLen = 1024

// ParseSubject reads a distinguished name the way Keyfactor's Subject
// field carries it: "CN=www.example.com,O=Example,C=US" — attributes
// separated by commas (or semicolons, or "+" within one RDN), values
// optionally quoted, RFC 4514 backslash escapes. Attribute order is
// kept. The error says what is wrong, without the field name (the caller
// names Subject).
func ParseSubject(s string) (pkix.Name, error) {
	if strings.TrimSpace(s) == "" {
		return pkix.Name{}, fmt.Errorf("required: a distinguished name such as CN=www.example.com,O=Example")
	}
	if len(s) > maxSubjectLen {
		return pkix.Name{}, fmt.Errorf("longer than %d characters", maxSubjectLen)
	}
	var rdns pkix.RDNSequence
	var rdn pkix.RelativeDistinguishedNameSET
	var cur strings.Builder
	inQuotes, escaped := false, false
	flush := func(endRDN bool) error {
		part := strings.TrimSpace(cur.String())
		cur.Reset()
		name, value, ok := strings.Cut(part, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" {
			return fmt.Errorf("%q is not an attribute=value pair", part)
		}
		oid, known := subjectAttrs[strings.ToUpper(name)]
		if !known {
			return fmt.Errorf("unknown attribute %q (known: CN, O, OU, L, ST, C, E, DC, UID, STREET, SERIALNUMBER)", name)
		}
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		value = unescapeDN(value)
		if value == "" {
			return fmt.Errorf("%s has an empty value", name)
		}
		if len(value) > 256 {
			return fmt.Errorf("%s is longer than 256 characters", name)
		}
		if strings.EqualFold(name, "C") && len(value) != 2 {
			return fmt.Errorf("C must be a two-letter country code, got %q", value)
		}
		var v any = value
		if oid.Equal(oidEmailAttr) {
			// RFC 5280: emailAddress is an IA5String.
			for _, c := range value {
				if c > 0x7F {
					return fmt.Errorf("%s must be ASCII", name)
				}
			}
			v = asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagIA5String, Bytes: []byte(value)}
		}
		rdn = append(rdn, pkix.AttributeTypeAndValue{Type: oid, Value: v})
		if endRDN {
			rdns = append(rdns, rdn)
			rdn = nil
		}
		return nil
	}
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune('\\')
			cur.WriteRune(r)
			escaped = false
		case r == '\\':
			escaped = true
		case r == '"':
			inQuotes = !inQuotes
			cur.WriteRune(r)
		case !inQuotes && (r == ',' || r == ';'):
			if err := flush(true); err != nil {
				return pkix.Name{}, err
			}
		case !inQuotes && r == '+':
			if err := flush(false); err != nil {
				return pkix.Name{}, err
			}
		default:
			cur.WriteRune(r)
		}
	}
	if inQuotes {
		return pkix.Name{}, fmt.Errorf("unterminated quoted value")
	}
	if escaped {
		return pkix.Name{}, fmt.Errorf("ends with a lone backslash")
	}
	if err := flush(true); err != nil {
		return pkix.Name{}, err
	}
	var name pkix.Name
	name.FillFromRDNSequence(&rdns)
	// ExtraNames keeps the order and the attributes pkix.Name has no
	// field for (DC, UID, E) when the name is marshalled.
	for _, set := range rdns {
		name.ExtraNames = append(name.ExtraNames, set...)
	}
	return name, nil
}

// unescapeDN undoes RFC 4514 escapes: \, \+ \" \\ \< \> \; \= and \XX hex.
func unescapeDN(v string) string {
	if !strings.Contains(v, `\`) {
		return v
	}
	var b []byte
	for i := 0; i < len(v); i++ {
		if v[i] != '\\' || i+1 >= len(v) {
			b = append(b, v[i])
			continue
		}
		if i+2 < len(v) {
			if h, err := hex.DecodeString(v[i+1 : i+3]); err == nil {
				b = append(b, h...)
				i += 2
				continue
			}
		}
		b = append(b, v[i+1])
		i++
	}
	return string(b)
}

// SubjectParts lists a name's attributes as "CN=value" strings, in order:
// Keyfactor's pending-CSR listing shows the subject that way.
func SubjectParts(der []byte) []string {
	var rdns pkix.RDNSequence
	if _, err := asn1.Unmarshal(der, &rdns); err != nil {
		return nil
	}
	names := map[string]string{}
	for n, oid := range subjectAttrs {
		if n != "S" && n != "EMAIL" && n != "EMAILADDRESS" { // aliases of ST and E
			names[oid.String()] = n
		}
	}
	var out []string
	for _, set := range rdns {
		for _, atv := range set {
			n := names[atv.Type.String()]
			if n == "" {
				n = atv.Type.String()
			}
			v := fmt.Sprint(atv.Value)
			if raw, ok := atv.Value.(asn1.RawValue); ok {
				v = string(raw.Bytes)
			}
			out = append(out, n+"="+v)
		}
	}
	return out
}

// CSRRequest is what NewCSR puts into a certificate signing request.
type CSRRequest struct {
	Subject pkix.Name
	// SANs are Keyfactor's SANs object, already checked (kinds dns, ip4,
	// ip6, uri, rfc822, lower case).
	SANs map[string][]string
}

// NewCSR builds a CSR for key's public half, signed by key (SHA-256 for
// RSA and P-256, SHA-384 and SHA-512 for the larger curves, as openssl
// does), and returns its DER.
func NewCSR(key crypto.Signer, req CSRRequest) ([]byte, error) {
	tmpl := &x509.CertificateRequest{Subject: req.Subject}
	for kind, values := range req.SANs {
		for _, v := range values {
			switch strings.ToLower(kind) {
			case "dns":
				tmpl.DNSNames = append(tmpl.DNSNames, v)
			case "ip4", "ip6":
				ip := net.ParseIP(v)
				if ip == nil {
					return nil, fmt.Errorf("SANs.%s: %q is not an IP address", kind, v)
				}
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			case "uri":
				u, err := url.Parse(v)
				if err != nil {
					return nil, fmt.Errorf("SANs.%s: %q is not a URI", kind, v)
				}
				tmpl.URIs = append(tmpl.URIs, u)
			case "rfc822":
				tmpl.EmailAddresses = append(tmpl.EmailAddresses, v)
			default:
				return nil, fmt.Errorf("SANs: unknown kind %q", kind)
			}
		}
	}
	if k, ok := key.Public().(*ecdsa.PublicKey); ok {
		switch k.Curve {
		case elliptic.P384():
			tmpl.SignatureAlgorithm = x509.ECDSAWithSHA384
		case elliptic.P521():
			tmpl.SignatureAlgorithm = x509.ECDSAWithSHA512
		}
	}
	return x509.CreateCertificateRequest(rand.Reader, tmpl, key)
}

// PublicKeyID is the hex SHA-256 of a public key's SubjectPublicKeyInfo:
// the index under which certflow finds a key it generated when its CSR
// comes back for enrollment.
func PublicKeyID(pub crypto.PublicKey) (string, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	return spkiID(spki), nil
}

// CSRKeyID is PublicKeyID of a parsed CSR's key, from the DER it carries:
// crypto/x509 accepts only the one encoding of each key it would write
// itself (uncompressed EC points, RSA with NULL parameters), so the two
// agree, and re-encoding the key (an EC point validation) is not needed.
func CSRKeyID(csr *x509.CertificateRequest) string {
	return spkiID(csr.RawSubjectPublicKeyInfo)
}

func spkiID(spki []byte) string {
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:])
}

// SpecOf describes an existing public key as a KeySpec.
func SpecOf(pub crypto.PublicKey) KeySpec {
	t, bits, _ := DescribeKey(pub)
	return KeySpec{Type: t, Bits: bits, Curve: CurveName(pub)}
}

// String is "RSA 2048", "ECC P-256", "Ed25519".
func (k KeySpec) String() string {
	switch k.Type {
	case "RSA":
		return "RSA " + strconv.Itoa(k.Bits)
	case "ECC":
		return "ECC " + k.Curve
	}
	return k.Type
}

// The associated data under which private keys and passwords are sealed
// (KEK.Seal): each binds the sealed blob to the one record it belongs to.
// Every feature that seals or opens a request's key uses these.

// RequestKeyAAD binds a request's retained private key (Request.PrivateKey).
func RequestKeyAAD(requestID int64) []byte {
	return []byte("certflow-request/" + strconv.FormatInt(requestID, 10))
}

// PFXPasswordAAD binds a PFX enrollment's password (Request.PFXPassword).
func PFXPasswordAAD(requestID int64) []byte {
	return []byte("certflow-request/" + strconv.FormatInt(requestID, 10) + "/pfx-password")
}

// PendingCSRAAD binds a generated CSR's private key (PendingCSR.PrivateKey).
func PendingCSRAAD(csrID int64) []byte {
	return []byte("certflow-csr/" + strconv.FormatInt(csrID, 10))
}

package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ParseCSR is x509.ParseCertificateRequest, faster for the CSRs clients
// send. x509 decodes a CSR with encoding/asn1's reflection, and an
// enrollment parses its CSR twice (the API and the worker; the README's
// Speed section has the figures). A CSR of the usual shape is read here
// with cryptobyte instead:
//
//   - version 0; a subject of PrintableString, UTF8String or IA5String
//     values whose attribute types x509 names (2.5.4.x, emailAddress,
//     domainComponent, userId);
//   - an ECDSA, RSA or Ed25519 key, and a signature algorithm with the
//     exact encoding Go, OpenSSL and Windows give it;
//   - no attributes, or only an extensionRequest holding at least one
//     extension, none twice, and subject alternative names without URIs.
//
// Anything else, and anything malformed, goes to x509, whose answer
// (result or error) is then ParseCSR's: this path only ever answers what
// x509 would, field for field (TestParseCSRAgreesWithX509 and
// FuzzParseCSR hold it to that), the deprecated Attributes field included.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if c, ok := parseCSRFast(der); ok {
		return c, nil
	}
	return x509.ParseCertificateRequest(der)
}

// parseCSRFast parses der if it has the usual shape (see ParseCSR);
// false: leave it to x509.
func parseCSRFast(der []byte) (*x509.CertificateRequest, bool) {
	in := cryptobyte.String(der)
	var csr, tbs, sigAlg cryptobyte.String
	var tbsRaw, subject, spki cryptobyte.String
	var sig asn1.BitString
	if !in.ReadASN1(&csr, cbasn1.SEQUENCE) || !in.Empty() ||
		!csr.ReadASN1Element(&tbsRaw, cbasn1.SEQUENCE) ||
		!csr.ReadASN1Element(&sigAlg, cbasn1.SEQUENCE) ||
		!csr.ReadASN1BitString(&sig) || !csr.Empty() || sig.BitLength%8 != 0 {
		return nil, false
	}
	tbs = tbsRaw
	var version, attrs cryptobyte.String
	if !tbs.ReadASN1(&tbs, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1(&version, cbasn1.INTEGER) || !bytes.Equal(version, []byte{0}) ||
		!tbs.ReadASN1Element(&subject, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1Element(&spki, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1(&attrs, cbasn1.Tag(0).Constructed().ContextSpecific()) || !tbs.Empty() {
		return nil, false
	}
	sigAlgorithm, ok := signatureAlgorithms[string(sigAlg)]
	if !ok {
		return nil, false
	}
	keyAlgorithm, ok := spkiAlgorithm(spki)
	if !ok {
		return nil, false
	}
	pub, ok := parsePublicKey(spki, keyAlgorithm)
	if !ok {
		return nil, false
	}
	out := &x509.CertificateRequest{
		Raw: der, RawTBSCertificateRequest: tbsRaw, RawSubjectPublicKeyInfo: spki, RawSubject: subject,
		Signature: sig.Bytes, SignatureAlgorithm: sigAlgorithm,
		PublicKeyAlgorithm: keyAlgorithm, PublicKey: pub,
	}
	rdns, ok := parseRDNs(subject)
	if !ok {
		return nil, false
	}
	out.Subject.FillFromRDNSequence(&rdns)
	if !attrs.Empty() && !parseExtensionRequest(attrs, out) {
		return nil, false
	}
	return out, true
}

// signatureAlgorithms are the signature AlgorithmIdentifiers (DER) read
// on the fast path: ECDSA and Ed25519 without parameters, RSA PKCS #1 v1.5
// with NULL ones, as RFC 5758, 8410 and 4055 encode them.
var signatureAlgorithms = map[string]x509.SignatureAlgorithm{
	"\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02":             x509.ECDSAWithSHA256,
	"\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x03":             x509.ECDSAWithSHA384,
	"\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x04":             x509.ECDSAWithSHA512,
	"\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b\x05\x00": x509.SHA256WithRSA,
	"\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0c\x05\x00": x509.SHA384WithRSA,
	"\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0d\x05\x00": x509.SHA512WithRSA,
	"\x30\x05\x06\x03\x2b\x65\x70":                                 x509.PureEd25519,
}

// spkiAlgorithm names the key algorithm of a SubjectPublicKeyInfo (DER)
// when it is ECDSA, RSA or Ed25519.
func spkiAlgorithm(spki cryptobyte.String) (x509.PublicKeyAlgorithm, bool) {
	var alg, oid cryptobyte.String
	if !spki.ReadASN1(&spki, cbasn1.SEQUENCE) || !spki.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) {
		return 0, false
	}
	switch string(oid) {
	case "\x2a\x86\x48\xce\x3d\x02\x01":
		return x509.ECDSA, true
	case "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01":
		return x509.RSA, true
	case "\x2b\x65\x70":
		return x509.Ed25519, true
	}
	return 0, false
}

// namedCurves are the ECDSA SubjectPublicKeyInfo AlgorithmIdentifiers
// (DER: id-ecPublicKey and a named curve) x509 accepts.
var namedCurves = map[string]elliptic.Curve{
	"\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07": elliptic.P256(),
	"\x30\x10\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x05\x2b\x81\x04\x00\x22":             elliptic.P384(),
	"\x30\x10\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x05\x2b\x81\x04\x00\x23":             elliptic.P521(),
}

// parsePublicKey decodes a SubjectPublicKeyInfo as x509.ParsePKIXPublicKey
// does: an ECDSA key on a named curve directly (with the function x509
// calls for it), any other through x509.
func parsePublicKey(spki cryptobyte.String, alg x509.PublicKeyAlgorithm) (any, bool) {
	if alg == x509.ECDSA {
		var seq, ai cryptobyte.String
		var point asn1.BitString
		if !spki.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1Element(&ai, cbasn1.SEQUENCE) ||
			!seq.ReadASN1BitString(&point) || !seq.Empty() || point.BitLength%8 != 0 {
			return nil, false
		}
		curve, ok := namedCurves[string(ai)]
		if !ok {
			return nil, false
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point.Bytes)
		return pub, err == nil
	}
	pub, err := x509.ParsePKIXPublicKey(spki)
	return pub, err == nil
}

// parseRDNs reads a subject whose attribute types are ones x509 names and
// whose values are plain strings (see ParseCSR).
func parseRDNs(subject cryptobyte.String) (pkix.RDNSequence, bool) {
	var seq cryptobyte.String
	if !subject.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return nil, false
	}
	var rdns pkix.RDNSequence
	for !seq.Empty() {
		var set cryptobyte.String
		if !seq.ReadASN1(&set, cbasn1.SET) || set.Empty() {
			return nil, false
		}
		var rdn pkix.RelativeDistinguishedNameSET
		for !set.Empty() {
			var atv, oid, value cryptobyte.String
			var tag cbasn1.Tag
			if !set.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) ||
				!atv.ReadAnyASN1(&value, &tag) || !atv.Empty() {
				return nil, false
			}
			typ, ok := nameAttributeType(oid)
			if !ok {
				return nil, false
			}
			s, ok := plainString(tag, value)
			if !ok {
				return nil, false
			}
			rdn = append(rdn, pkix.AttributeTypeAndValue{Type: typ, Value: s})
		}
		rdns = append(rdns, rdn)
	}
	return rdns, true
}

// nameAttributeType decodes the attribute types a subject usually holds:
// 2.5.4.x (x < 128), emailAddress, domainComponent, userId.
func nameAttributeType(oid cryptobyte.String) (asn1.ObjectIdentifier, bool) {
	switch {
	case len(oid) == 3 && oid[0] == 0x55 && oid[1] == 0x04 && oid[2] < 0x80:
		return asn1.ObjectIdentifier{2, 5, 4, int(oid[2])}, true
	case string(oid) == "\x2a\x86\x48\x86\xf7\x0d\x01\x09\x01":
		return asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, true
	case string(oid) == "\x09\x92\x26\x89\x93\xf2\x2c\x64\x01\x19":
		return asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, true
	case string(oid) == "\x09\x92\x26\x89\x93\xf2\x2c\x64\x01\x01":
		return asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, true
	}
	return nil, false
}

// plainString is a PrintableString (of the characters X.680 allows, and
// no more), a valid UTF8String or an IA5String, as a Go string: what
// encoding/asn1 makes of each into an interface value.
func plainString(tag cbasn1.Tag, v cryptobyte.String) (string, bool) {
	switch tag {
	case cbasn1.PrintableString:
		for _, b := range v {
			if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte(" '()+,-./:=?", b) >= 0) {
				return "", false
			}
		}
	case cbasn1.UTF8String:
		if !utf8.Valid(v) {
			return "", false
		}
	case cbasn1.IA5String:
		for _, b := range v {
			if b >= utf8.RuneSelf {
				return "", false
			}
		}
	default:
		return "", false
	}
	return string(v), true
}

// oidExtensionRequest (PKCS #9) and oidSubjectAltName, DER contents.
const (
	oidExtensionRequest = "\x2a\x86\x48\x86\xf7\x0d\x01\x09\x0e"
	oidSubjectAltName   = "\x55\x1d\x11"
)

// parseExtensionRequest reads a CSR's attributes when they are just one
// extensionRequest of one or more distinct extensions, into out's
// Extensions, SANs and (deprecated) Attributes, as x509 fills them.
func parseExtensionRequest(attrs cryptobyte.String, out *x509.CertificateRequest) bool {
	var attr, oid, values, exts cryptobyte.String
	if !attrs.ReadASN1(&attr, cbasn1.SEQUENCE) || !attrs.Empty() ||
		!attr.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) || string(oid) != oidExtensionRequest ||
		!attr.ReadASN1(&values, cbasn1.SET) || !attr.Empty() ||
		!values.ReadASN1(&exts, cbasn1.SEQUENCE) || !values.Empty() || exts.Empty() {
		return false
	}
	var asAttrs []pkix.AttributeTypeAndValue // how x509 reads them into Attributes
	seen := map[string]bool{}
	for !exts.Empty() {
		var ext cryptobyte.String
		var e pkix.Extension
		if !exts.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&e.Id) {
			return false
		}
		asAttr := pkix.AttributeTypeAndValue{Type: e.Id}
		if ext.PeekASN1Tag(cbasn1.BOOLEAN) {
			if !ext.ReadASN1Boolean(&e.Critical) {
				return false
			}
			asAttr.Value = e.Critical
		}
		var value cryptobyte.String
		if !ext.ReadASN1(&value, cbasn1.OCTET_STRING) || !ext.Empty() {
			return false
		}
		e.Value = value
		if asAttr.Value == nil {
			asAttr.Value = []byte(value)
		}
		key := e.Id.String()
		if seen[key] {
			return false // x509 refuses it, with its own words
		}
		seen[key] = true
		if key == "2.5.29.17" && !parseSANs(value, out) {
			return false
		}
		out.Extensions = append(out.Extensions, e)
		asAttrs = append(asAttrs, asAttr)
	}
	out.Attributes = []pkix.AttributeTypeAndValueSET{{
		Type:  asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14},
		Value: [][]pkix.AttributeTypeAndValue{asAttrs},
	}}
	return true
}

// parseSANs reads a subjectAltName extension's DNS names, email addresses
// and IP addresses as x509 does; one with a URI (which x509 checks in ways
// not copied here) or anything x509 would refuse is left to x509.
func parseSANs(der cryptobyte.String, out *x509.CertificateRequest) bool {
	if !der.ReadASN1(&der, cbasn1.SEQUENCE) {
		return false
	}
	for !der.Empty() {
		var san cryptobyte.String
		var tag cbasn1.Tag
		if !der.ReadAnyASN1(&san, &tag) {
			return false
		}
		switch tag ^ 0x80 {
		case 1, 2: // rfc822Name, dNSName: IA5String
			for _, b := range san {
				if b >= utf8.RuneSelf {
					return false
				}
			}
			if tag^0x80 == 1 {
				out.EmailAddresses = append(out.EmailAddresses, string(san))
			} else {
				out.DNSNames = append(out.DNSNames, string(san))
			}
		case 6: // uniformResourceIdentifier
			return false
		case 7: // iPAddress
			if len(san) != net.IPv4len && len(san) != net.IPv6len {
				return false
			}
			out.IPAddresses = append(out.IPAddresses, net.IP(san))
		}
	}
	return true
}

package pki

import (
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// NameKey is a distinguished name (DER) in a form in which two names that
// a relying party may take for the same compare equal: attribute by
// attribute, whatever the string type (PrintableString, UTF8String,
// BMPString …), case folded and runs of spaces collapsed, as RFC 5280 7.1
// compares names and OpenSSL matches an issuer to a subject. The
// attributes of a multi-valued RDN compare in any order; a value of a
// type that is no string compares by its bytes. It reads the DER with
// cryptobyte: it runs on every certificate the CA signs.
func NameKey(der []byte) (string, error) {
	in := cryptobyte.String(der)
	var rdns cryptobyte.String
	if !in.ReadASN1(&rdns, casn1.SEQUENCE) || !in.Empty() {
		return "", errMalformedName
	}
	var b strings.Builder
	var attrs []string
	for !rdns.Empty() {
		var set cryptobyte.String
		if !rdns.ReadASN1(&set, casn1.SET) {
			return "", errMalformedName
		}
		attrs = attrs[:0]
		for !set.Empty() {
			var atv, value cryptobyte.String
			var oid asn1.ObjectIdentifier
			var tag casn1.Tag
			if !set.ReadASN1(&atv, casn1.SEQUENCE) || !atv.ReadASN1ObjectIdentifier(&oid) ||
				!atv.ReadAnyASN1(&value, &tag) || !atv.Empty() {
				return "", errMalformedName
			}
			attrs = append(attrs, oid.String()+"="+valueKey(tag, value))
		}
		if len(attrs) == 0 {
			return "", errMalformedName
		}
		slices.Sort(attrs)
		for i, a := range attrs {
			if i > 0 {
				b.WriteByte('+')
			}
			b.WriteString(a)
		}
		b.WriteByte('/')
	}
	return b.String(), nil
}

var errMalformedName = errors.New("malformed distinguished name")

// valueKey is an attribute value as NameKey compares it: a string of any
// of the types x509 reads, decoded, lower-cased, its runs of white space
// one space and none at either end, quoted; anything else as its tag and
// bytes in hex.
func valueKey(tag casn1.Tag, v []byte) string {
	var s string
	switch tag {
	case casn1.PrintableString, casn1.UTF8String, casn1.IA5String, casn1.Tag(asn1.TagNumericString):
		s = string(v)
	case casn1.T61String: // Latin-1, as x509 reads it
		r := make([]rune, len(v))
		for i, c := range v {
			r[i] = rune(c)
		}
		s = string(r)
	case casn1.Tag(asn1.TagBMPString): // UCS-2, big-endian
		if len(v)%2 != 0 {
			return "#" + hex.EncodeToString([]byte{byte(tag)}) + hex.EncodeToString(v)
		}
		u := make([]uint16, len(v)/2)
		for i := range u {
			u[i] = uint16(v[2*i])<<8 | uint16(v[2*i+1])
		}
		s = strings.TrimSuffix(string(utf16.Decode(u)), "\x00")
	default:
		return "#" + hex.EncodeToString([]byte{byte(tag)}) + hex.EncodeToString(v)
	}
	return strconv.Quote(strings.Join(strings.Fields(strings.ToLower(s)), " "))
}

package ca

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// nameKey is a distinguished name (DER) in a form in which two names that
// a relying party may take for the same compare equal: attribute by
// attribute, whatever the string type (PrintableString, UTF8String …),
// case folded and runs of spaces collapsed, as RFC 5280 7.1 compares
// names and OpenSSL matches an issuer to a subject. The attributes of a
// multi-valued RDN compare in any order.
func nameKey(der []byte) (string, error) {
	var rdns pkix.RDNSequence
	rest, err := asn1.Unmarshal(der, &rdns)
	if err != nil {
		return "", fmt.Errorf("malformed distinguished name: %w", err)
	}
	if len(rest) > 0 {
		return "", errors.New("malformed distinguished name: trailing data")
	}
	var b strings.Builder
	for _, rdn := range rdns {
		attrs := make([]string, 0, len(rdn))
		for _, a := range rdn {
			v, ok := a.Value.(string)
			if ok {
				v = strings.Join(strings.Fields(strings.ToLower(v)), " ")
			} else {
				v = fmt.Sprintf("%#v", a.Value)
			}
			attrs = append(attrs, a.Type.String()+"="+fmt.Sprintf("%q", v))
		}
		slices.Sort(attrs)
		b.WriteString(strings.Join(attrs, "+"))
		b.WriteByte('/')
	}
	return b.String(), nil
}

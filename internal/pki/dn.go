package pki

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
)

// DN renders a distinguished name from its DER, every attribute in the
// order it is encoded (RFC 4514's string form: last RDN first), unknown
// attribute types included as OID=#hex. It is how certflow shows a
// subject or an issuer, so that what a person reads is what was signed:
// pkix.Name.String() renders only what x509 parsed into its fields and
// drops, for example, all but one of repeated common names.
func DN(raw []byte) (string, error) {
	var rdns pkix.RDNSequence
	rest, err := asn1.Unmarshal(raw, &rdns)
	if err != nil {
		return "", err
	}
	if len(rest) > 0 {
		return "", errors.New("trailing data after the name")
	}
	return rdns.String(), nil
}

// NameString is DN(raw), or parsed's own rendering when there is no raw
// form (a name built here, such as a PFX enrollment's subject to come).
func NameString(raw []byte, parsed pkix.Name) string {
	if len(raw) > 0 {
		if s, err := DN(raw); err == nil {
			return s
		}
	}
	return parsed.String()
}

package policy

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"unicode/utf8"
)

// Attribute types a subject may repeat; every other attribute is
// single-valued (one common name, one organisation, one country …), so
// that what a rule reads of a name is all there is of it.
var repeatable = map[string]bool{
	"2.5.4.11":                   true, // organizationalUnitName
	"2.5.4.9":                    true, // streetAddress
	"0.9.2342.19200300.100.1.25": true, // domainComponent
}

var (
	oidCommonName   = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
)

// checkSubject judges the CSR's subject: no attribute that must be single
// is repeated, no value carries a control character, it is no CA's
// subject, and a common name that is a host name, an IP address or a
// mail address passes the rules that name would pass as a SAN.
func (r *Rules) checkSubject(req *Request, cas CASubjects) error {
	seen := make(map[string]bool, len(req.Subject.Names))
	var cn string
	for _, atv := range req.Subject.Names {
		oid := atv.Type.String()
		if seen[oid] && !repeatable[oid] {
			return fmt.Errorf("the attribute %s appears more than once; a certificate carries one", attributeName(oid))
		}
		seen[oid] = true
		s, ok := attributeString(atv.Value)
		if !ok {
			// A string type Go does not decode (VisibleString,
			// UniversalString …) hides its value from every rule.
			return fmt.Errorf("the attribute %s has a value of a type certflow does not read (use UTF8String or PrintableString)", attributeName(oid))
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < ' ' || c == 0x7f {
				return fmt.Errorf("the attribute %s has the control character %s", attributeName(oid), quoteByte(c))
			}
		}
		switch {
		case atv.Type.Equal(oidCommonName):
			cn = s
		case atv.Type.Equal(oidEmailAddress):
			// Mail clients read a mailbox in the subject as a SAN's.
			if err := r.checkSubjectEmail(s); err != nil {
				return err
			}
		}
	}
	if len(req.RawSubject) > 0 && cas.Is(req.RawSubject) {
		return errors.New("it is a certificate authority's subject")
	}
	return r.checkCommonName(cn)
}

// attributeString is an attribute value as text: a string as x509 decoded
// it, or a raw IA5String, PrintableString or UTF8String (as a subject
// certflow builds carries emailAddress).
func attributeString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case asn1.RawValue:
		if v.Class == asn1.ClassUniversal && (v.Tag == asn1.TagIA5String || v.Tag == asn1.TagPrintableString || v.Tag == asn1.TagUTF8String) && utf8.Valid(v.Bytes) {
			return string(v.Bytes), true
		}
	}
	return "", false
}

// checkSubjectEmail holds a subject's emailAddress to the rules of an
// e-mail SAN.
func (r *Rules) checkSubjectEmail(addr string) error {
	if !slices.Contains(r.SANTypes, SANTypeEmail) {
		return fmt.Errorf("emailAddress %q: %s does not allow e-mail names", printable(addr), r.Scope)
	}
	if err := r.CheckEmail(NormalizeEmail(addr)); err != nil {
		return fmt.Errorf("emailAddress %q: %v", printable(addr), err)
	}
	return nil
}

// checkCommonName applies the name rules to a common name that is a
// name a client would match: an IP address, a mail address, or a host
// name (it has a dot and no space, or it is "localhost"); any "*" makes it
// a host name, so the wildcard rule binds every CN. A CN such as
// "Jane Doe" or "Build Service" is left alone.
func (r *Rules) checkCommonName(cn string) error {
	if cn == "" {
		return nil
	}
	if ip := net.ParseIP(cn); ip != nil {
		if err := r.CheckIP(ip); err != nil {
			return fmt.Errorf("common name %q: %v", cn, err)
		}
		return nil
	}
	if strings.Contains(cn, " ") && !strings.Contains(cn, "*") {
		return nil
	}
	if strings.Contains(cn, "@") {
		if err := r.CheckEmail(NormalizeEmail(cn)); err != nil {
			return fmt.Errorf("common name %q: %v", printable(cn), err)
		}
		return nil
	}
	name := NormalizeDNS(cn)
	if !strings.ContainsAny(name, ".*") && name != "localhost" {
		return nil
	}
	if err := r.CheckDNSName(name); err != nil {
		return fmt.Errorf("common name %q: %v", printable(cn), err)
	}
	return nil
}

// attributeNames are the short names of the usual subject attributes.
var attributeNames = map[string]string{
	"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
	"2.5.4.11": "OU", "2.5.4.5": "SERIALNUMBER", "2.5.4.17": "POSTALCODE", "2.5.4.9": "STREET",
	"1.2.840.113549.1.9.1": "emailAddress",
}

func attributeName(oid string) string {
	if n, ok := attributeNames[oid]; ok {
		return n
	}
	return oid
}

package policy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// Name limits, from RFC 1035 (labels, whole names) and RFC 5321 (mail).
const (
	maxDNSName  = 253
	maxLabel    = 63
	maxEmail    = 254
	maxURI      = 2048
	wildcardTag = "*."
)

// NormalizeDNS is the one spelling of a DNS name that policy, expressions
// and the certificate use: lower case (DNS compares names without case, so
// an upper-case spelling must not slip past a rule written in lower case).
func NormalizeDNS(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

// NormalizeEmail lower-cases an address's domain; the local part is the
// mailbox owner's and keeps its case.
func NormalizeEmail(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	return addr[:at+1] + NormalizeDNS(addr[at+1:])
}

// NameRules are the parts of a policy that judge names.
type NameRules struct {
	// AllowWildcards permits a left-most "*." label.
	AllowWildcards bool
	// AllowLocal permits "localhost" names and loopback, link-local and
	// unspecified IP addresses.
	AllowLocal bool
}

// CheckDNSName reports why name is not a host name a TLS client would
// accept for a certificate, or nil. name must already be normalised
// (NormalizeDNS). The rules: letters, digits and hyphens in labels of 1–63
// characters, 253 in all, no empty label (so no trailing dot), a last
// label that is not all digits (so no IP address written as a name),
// valid punycode in "xn--" labels, "localhost" only where allowed, and a
// wildcard only as the whole left-most label "*.", never directly under
// a public suffix ("*.com", "*.co.uk").
func (r NameRules) CheckDNSName(name string) error {
	if err := dnsSyntax(name); err != nil {
		return err
	}
	rest, wildcard := strings.CutPrefix(name, wildcardTag)
	if wildcard {
		if !r.AllowWildcards {
			return errors.New("wildcard names are not allowed")
		}
		if suffix, _ := publicsuffix.PublicSuffix(rest); suffix == rest {
			return fmt.Errorf("a wildcard directly under the public suffix %q is never issued", rest)
		}
	}
	if suffix, icann := publicsuffix.PublicSuffix(rest); !wildcard && icann && suffix == rest {
		return fmt.Errorf("%q is a public suffix, not a host", rest)
	}
	if !r.AllowLocal && (rest == "localhost" || strings.HasSuffix(rest, ".localhost")) {
		return errors.New("localhost names are not allowed")
	}
	return nil
}

// dnsSyntax checks the shape of a (normalised) DNS name, a left-most
// wildcard label allowed.
func dnsSyntax(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > maxDNSName {
		return fmt.Errorf("longer than %d characters", maxDNSName)
	}
	rest, _ := strings.CutPrefix(name, wildcardTag)
	if rest == "" {
		return errors.New("a wildcard needs a name under it")
	}
	labels := strings.Split(rest, ".")
	for _, label := range labels {
		if err := checkLabel(label); err != nil {
			return err
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" || isHexNumber(last) {
		return errors.New("the last label is numeric: an IP address belongs in an IP SAN, not a DNS name")
	}
	return nil
}

// isHexNumber reports whether a label is a number in hex ("0x7f000001"),
// which browsers and inet_aton read as an IPv4 address.
func isHexNumber(label string) bool {
	digits, ok := strings.CutPrefix(label, "0x")
	return ok && strings.Trim(digits, "0123456789abcdef") == ""
}

func checkLabel(label string) error {
	switch {
	case label == "":
		return errors.New("has an empty label (two dots, or a leading or trailing dot)")
	case len(label) > maxLabel:
		return fmt.Errorf("label %q is longer than %d characters", label, maxLabel)
	case label[0] == '-' || label[len(label)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", label)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c == '*' {
			return errors.New("a wildcard must be the whole left-most label (\"*.\")")
		}
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("label %q has the character %s: only letters, digits and hyphens are allowed", printable(label), quoteByte(c))
		}
	}
	if len(label) >= 4 && label[2:4] == "--" {
		if label[:4] != "xn--" {
			return fmt.Errorf("label %q has hyphens in the third and fourth places, which only punycode (\"xn--\") labels may have", label)
		}
		if _, err := idna.Lookup.ToUnicode(label); err != nil {
			return fmt.Errorf("label %q is not valid punycode", label)
		}
	}
	return nil
}

// CheckIP reports why ip may not be certified, or nil: loopback,
// link-local and unspecified addresses only where the rules allow local
// names; multicast and broadcast addresses never (they name no host).
func (r NameRules) CheckIP(ip net.IP) error {
	switch {
	case ip.IsMulticast() || ip.Equal(net.IPv4bcast):
		return errors.New("a multicast or broadcast address names no host")
	case r.AllowLocal:
		return nil
	case ip.IsLoopback():
		return errors.New("loopback addresses are not allowed")
	case ip.IsLinkLocalUnicast():
		return errors.New("link-local addresses are not allowed")
	case ip.IsUnspecified():
		return errors.New("the unspecified address is not allowed")
	}
	return nil
}

// CheckEmail reports why addr is not a mailbox address certflow
// certifies, or nil: local@domain, the local part printable ASCII without
// spaces, the domain a host name (no wildcard).
func (r NameRules) CheckEmail(addr string) error {
	if len(addr) > maxEmail {
		return fmt.Errorf("longer than %d characters", maxEmail)
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 1 || at == len(addr)-1 {
		return errors.New("want local-part@domain")
	}
	for i := 0; i < at; i++ {
		if c := addr[i]; c <= ' ' || c >= 0x7f || c == '@' {
			return fmt.Errorf("the local part has the character %s", quoteByte(c))
		}
	}
	domain := addr[at+1:]
	if strings.HasPrefix(domain, wildcardTag) {
		return errors.New("a mail domain cannot be a wildcard")
	}
	if err := r.CheckDNSName(domain); err != nil {
		return fmt.Errorf("domain: %w", err)
	}
	return nil
}

// CheckURI reports why s is not a URI certflow certifies, or nil: an
// absolute URI without user information, spaces or control characters,
// whose host (when it has one) passes the DNS or IP rules.
func (r NameRules) CheckURI(s string) error {
	if len(s) > maxURI {
		return fmt.Errorf("longer than %d characters", maxURI)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("has the character %s", quoteByte(c))
		}
	}
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return errors.New("is not an absolute URI")
	}
	if u.User != nil {
		return errors.New("carries user information")
	}
	host := u.Hostname()
	if host == "" {
		if hierarchical[u.Scheme] {
			return fmt.Errorf("a %s URI needs a host (%s://host/…)", u.Scheme, u.Scheme)
		}
		return nil // e.g. urn:uuid:…
	}
	if ip := net.ParseIP(host); ip != nil {
		return r.CheckIP(ip)
	}
	if strings.HasPrefix(host, wildcardTag) {
		return errors.New("a URI's host cannot be a wildcard")
	}
	if err := r.CheckDNSName(NormalizeDNS(host)); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	return nil
}

// hierarchical are URI schemes that name a host: one without (an opaque
// "https:evil.com/x") is a host no rule looked at.
var hierarchical = map[string]bool{
	"http": true, "https": true, "spiffe": true, "ws": true, "wss": true,
	"ldap": true, "ldaps": true, "ftp": true,
}

// printable renders s for a message without its control characters.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

func quoteByte(c byte) string {
	if c < ' ' || c >= 0x7f {
		return fmt.Sprintf("0x%02x", c)
	}
	return fmt.Sprintf("%q", string(c))
}

// IsDNSName reports whether s has the shape of a DNS name (in any case; a
// left-most "*." label allowed), whatever a policy then says of it.
func IsDNSName(s string) bool { return dnsSyntax(NormalizeDNS(s)) == nil }

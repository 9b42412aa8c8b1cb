package pki

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Format is the certificate encoding a client asked for with the
// x-certificateformat header.
type Format string

const (
	FormatPEM Format = "PEM"
	FormatDER Format = "DER"
)

// ParseFormat accepts a format name in any case.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToUpper(strings.TrimSpace(s))); f {
	case FormatPEM, FormatDER:
		return f, nil
	case "":
		return "", fmt.Errorf("missing: want PEM or DER")
	default:
		return "", fmt.Errorf("unknown format %q: want PEM or DER", s)
	}
}

// EncodeChain renders DER certificates as Keyfactor's Certificates list: for
// PEM each entry is a PEM block, preceded by a "subject=…" line when
// subjectHeader is set; for DER each entry is the base64 of the DER.
func EncodeChain(ders [][]byte, format Format, subjectHeader bool) ([]string, error) {
	out := make([]string, 0, len(ders))
	for _, der := range ders {
		if format == FormatDER {
			out = append(out, base64.StdEncoding.EncodeToString(der))
			continue
		}
		block := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		if subjectHeader {
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("encode chain: %w", err)
			}
			block = "subject=" + SubjectHeader(cert.Subject.String()) + "\n" + block
		}
		out = append(out, block)
	}
	return out, nil
}

// SubjectHeader makes a subject's RFC 4514 string (pkix.Name.String,
// which escapes only RFC 4514's specials) safe for the one-line
// "subject=" header: every control character (C0, DEL, C1), the Unicode
// line and paragraph separators and any byte that is not UTF-8 become
// RFC 4514 hex escapes, \XX per byte (openssl's esc_ctrl does the same),
// so a CN cannot end the line or forge a second header. A backslash is
// escaped already by String, so the escapes cannot be confused with text.
func SubjectHeader(dn string) string {
	clean := true
	for _, r := range dn {
		if needsHexEscape(r) {
			clean = false
			break
		}
	}
	if clean {
		return dn
	}
	var b strings.Builder
	for i := 0; i < len(dn); {
		r, size := utf8.DecodeRuneInString(dn[i:])
		if needsHexEscape(r) {
			for _, c := range []byte(dn[i : i+size]) {
				fmt.Fprintf(&b, "\\%02X", c)
			}
		} else {
			b.WriteString(dn[i : i+size])
		}
		i += size
	}
	return b.String()
}

// needsHexEscape reports whether r may not appear as itself in a header
// line: control characters, line and paragraph separators, and
// utf8.RuneError (an invalid byte, or U+FFFD itself, escaped alike).
func needsHexEscape(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == utf8.RuneError
}

// Thumbprint is the certificate's SHA-1 fingerprint in upper-case hex, the
// form Keyfactor shows and searches on.
func Thumbprint(der []byte) string {
	sum := sha1.Sum(der)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// SerialHex renders a serial number the way Keyfactor and openssl do:
// upper-case hex of its bytes, so always an even number of digits
// (0x0ABC is "0ABC", never "ABC").
func SerialHex(cert *x509.Certificate) string {
	return fmt.Sprintf("%X", cert.SerialNumber.Bytes())
}

// KeyUsages are the key usage names templates use (RFC 5280's, in
// Keyfactor's spelling).
var KeyUsages = map[string]x509.KeyUsage{
	"DigitalSignature":  x509.KeyUsageDigitalSignature,
	"ContentCommitment": x509.KeyUsageContentCommitment,
	"KeyEncipherment":   x509.KeyUsageKeyEncipherment,
	"DataEncipherment":  x509.KeyUsageDataEncipherment,
	"KeyAgreement":      x509.KeyUsageKeyAgreement,
}

// EKU is an extended key usage certflow knows: the name templates give
// it (none for anyExtendedKeyUsage, which no template may grant), its OID,
// the name Keyfactor shows, and crypto/x509's constant.
type EKU struct {
	Name, OID, Display string
	Usage              x509.ExtKeyUsage
}

// EKUs in a fixed order: GET /Templates numbers them by it (Id 1 is the
// first). The one table of extended key usages.
var EKUs = []EKU{
	{"ServerAuth", "1.3.6.1.5.5.7.3.1", "Server Authentication", x509.ExtKeyUsageServerAuth},
	{"ClientAuth", "1.3.6.1.5.5.7.3.2", "Client Authentication", x509.ExtKeyUsageClientAuth},
	{"CodeSigning", "1.3.6.1.5.5.7.3.3", "Code Signing", x509.ExtKeyUsageCodeSigning},
	{"EmailProtection", "1.3.6.1.5.5.7.3.4", "Secure Email", x509.ExtKeyUsageEmailProtection},
	{"TimeStamping", "1.3.6.1.5.5.7.3.8", "Time Stamping", x509.ExtKeyUsageTimeStamping},
	{"OCSPSigning", "1.3.6.1.5.5.7.3.9", "OCSP Signing", x509.ExtKeyUsageOCSPSigning},
	{"", "2.5.29.37.0", "Any Purpose", x509.ExtKeyUsageAny},
}

// ExtKeyUsages are the extended key usage names templates use.
var ExtKeyUsages = func() map[string]x509.ExtKeyUsage {
	m := map[string]x509.ExtKeyUsage{}
	for _, e := range EKUs {
		if e.Name != "" {
			m[e.Name] = e.Usage
		}
	}
	return m
}()

package pki

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
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
			block = "subject=" + cert.Subject.String() + "\n" + block
		}
		out = append(out, block)
	}
	return out, nil
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

// ExtKeyUsages are the extended key usage names templates use.
var ExtKeyUsages = map[string]x509.ExtKeyUsage{
	"ServerAuth":      x509.ExtKeyUsageServerAuth,
	"ClientAuth":      x509.ExtKeyUsageClientAuth,
	"CodeSigning":     x509.ExtKeyUsageCodeSigning,
	"EmailProtection": x509.ExtKeyUsageEmailProtection,
	"TimeStamping":    x509.ExtKeyUsageTimeStamping,
	"OCSPSigning":     x509.ExtKeyUsageOCSPSigning,
}

package pki

import (
	"encoding/asn1"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidData       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
)

// EncodeP7B wraps DER certificates, in the order given, in a degenerate
// PKCS#7 SignedData (RFC 2315 / RFC 5652: no content, no signers, only
// certificates): the "certs-only" P7B that Windows, Keyfactor and
// `openssl pkcs7 -inform DER -print_certs` read.
func EncodeP7B(ders [][]byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { // ContentInfo
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(casn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { // SignedData
				b.AddASN1Int64(1)                                  // version
				b.AddASN1(casn1.SET, func(*cryptobyte.Builder) {}) // digestAlgorithms
				b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidData) // contentInfo, no content
				})
				b.AddASN1(casn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					for _, der := range ders { // certificates [0] IMPLICIT
						b.AddBytes(der)
					}
				})
				b.AddASN1(casn1.SET, func(*cryptobyte.Builder) {}) // signerInfos
			})
		})
	})
	return b.Bytes()
}

package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"math/bits"
	"time"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// leafTBS builds the TBSCertificate x509.CreateCertificate builds for a
// leaf of the shape the built-in CA issues (see leafShape), byte for byte,
// with the signature AlgorithmIdentifier and signer options it would use.
// x509 gets there through reflection-driven encoding/asn1, a large share
// of the CA's signing time; building by hand skips the reflection and
// most allocations (docs/speed.md has the figures). ok is false for
// anything else (another template shape, key or curve): the caller then
// lets x509 build it. TestLeafTBSMatchesX509 holds the two to the same
// bytes over templates of every shape this accepts, and checkEncoder
// holds them to it again when a CA opens (speed.leaf_encoder turns it
// off).
func leafTBS(tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) (tbs, alg []byte, opts crypto.SignerOpts, ok bool) {
	alg, opts, ok = leafSigning(signer)
	if !ok || !leafShape(tmpl, parent) || !signsFor(signer, parent) {
		return nil, nil, nil, false
	}
	spki, ok := subjectPublicKeyInfo(pub)
	if !ok {
		return nil, nil, nil, false
	}
	// x509's choice: the template's, unless the parent has a key id and
	// is not the leaf's own subject.
	aki := tmpl.AuthorityKeyId
	if !bytes.Equal(parent.RawSubject, tmpl.RawSubject) && len(parent.SubjectKeyId) > 0 {
		aki = parent.SubjectKeyId
	}
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1Int64(2) // v3
		})
		b.AddASN1BigInt(tmpl.SerialNumber)
		b.AddBytes(alg)
		b.AddBytes(parent.RawSubject)
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addTime(b, tmpl.NotBefore)
			addTime(b, tmpl.NotAfter)
		})
		b.AddBytes(tmpl.RawSubject)
		b.AddBytes(spki)
		b.AddASN1(casn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				addLeafExtensions(b, tmpl, aki)
			})
		})
	})
	tbs, err := b.Bytes()
	if err != nil {
		return nil, nil, nil, false
	}
	return tbs, alg, opts, true
}

// leafShape reports whether tmpl is a template leafTBS builds: an end
// entity with a raw subject, and of the extensions only those the
// built-in CA sets (in buildCertExtensions' order: key usage, extended
// key usage, basic constraints, authority key id, SANs, CRL distribution
// points), each with values x509 encodes without complaint. Key usage
// bits beyond RFC 5280's nine are not modelled: x509 encodes some of them
// as an empty bit string, which leafTBS would not reproduce.
func leafShape(t, parent *x509.Certificate) bool {
	switch {
	case t.SerialNumber == nil || t.SerialNumber.Sign() < 0 || t.SignatureAlgorithm != x509.UnknownSignatureAlgorithm,
		len(t.RawSubject) == 0 || len(parent.RawSubject) == 0,
		t.IsCA || t.MaxPathLenZero || (t.MaxPathLen != 0 && t.MaxPathLen != -1),
		t.KeyUsage&^definedKeyUsages != 0,
		len(t.SubjectKeyId) > 0,
		len(t.ExtraExtensions) > 0 || len(t.UnknownExtKeyUsage) > 0,
		len(t.OCSPServer) > 0 || len(t.IssuingCertificateURL) > 0,
		len(t.Policies) > 0 || len(t.PolicyIdentifiers) > 0,
		len(t.PermittedDNSDomains) > 0 || len(t.ExcludedDNSDomains) > 0,
		len(t.PermittedIPRanges) > 0 || len(t.ExcludedIPRanges) > 0,
		len(t.PermittedEmailAddresses) > 0 || len(t.ExcludedEmailAddresses) > 0,
		len(t.PermittedURIDomains) > 0 || len(t.ExcludedURIDomains) > 0:
		return false
	}
	for _, u := range t.ExtKeyUsage {
		if _, ok := ekuOIDs[u]; !ok {
			return false
		}
	}
	for _, s := range t.DNSNames {
		if !ia5(s) {
			return false
		}
	}
	for _, s := range t.EmailAddresses {
		if !ia5(s) {
			return false
		}
	}
	for _, u := range t.URIs {
		if !ia5(u.String()) {
			return false
		}
	}
	for _, ip := range t.IPAddresses {
		if len(ip) != 4 && len(ip) != 16 {
			return false
		}
	}
	return true
}

// definedKeyUsages are RFC 5280's key usage bits, digitalSignature (0)
// to decipherOnly (8).
const definedKeyUsages = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment |
	x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageKeyAgreement |
	x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageEncipherOnly | x509.KeyUsageDecipherOnly

// signsFor is x509's check that signer is parent's key.
func signsFor(signer crypto.Signer, parent *x509.Certificate) bool {
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && (parent.PublicKey == nil || pub.Equal(parent.PublicKey))
}

// ia5 is x509's IA5String check: ASCII only.
func ia5(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

var (
	oidKeyUsage    = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidBasicConstr = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidAuthKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidSAN         = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidCRLDP       = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDSASHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSASHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSASHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidRSASHA256   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidCurveP256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidCurveP384   = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidCurveP521   = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	emptySubject   = []byte{0x30, 0}
)

// ekuOIDs are the extended key usages leafTBS encodes (x509's table).
var ekuOIDs = map[x509.ExtKeyUsage]asn1.ObjectIdentifier{
	x509.ExtKeyUsageAny:                            {2, 5, 29, 37, 0},
	x509.ExtKeyUsageServerAuth:                     {1, 3, 6, 1, 5, 5, 7, 3, 1},
	x509.ExtKeyUsageClientAuth:                     {1, 3, 6, 1, 5, 5, 7, 3, 2},
	x509.ExtKeyUsageCodeSigning:                    {1, 3, 6, 1, 5, 5, 7, 3, 3},
	x509.ExtKeyUsageEmailProtection:                {1, 3, 6, 1, 5, 5, 7, 3, 4},
	x509.ExtKeyUsageIPSECEndSystem:                 {1, 3, 6, 1, 5, 5, 7, 3, 5},
	x509.ExtKeyUsageIPSECTunnel:                    {1, 3, 6, 1, 5, 5, 7, 3, 6},
	x509.ExtKeyUsageIPSECUser:                      {1, 3, 6, 1, 5, 5, 7, 3, 7},
	x509.ExtKeyUsageTimeStamping:                   {1, 3, 6, 1, 5, 5, 7, 3, 8},
	x509.ExtKeyUsageOCSPSigning:                    {1, 3, 6, 1, 5, 5, 7, 3, 9},
	x509.ExtKeyUsageMicrosoftServerGatedCrypto:     {1, 3, 6, 1, 4, 1, 311, 10, 3, 3},
	x509.ExtKeyUsageNetscapeServerGatedCrypto:      {2, 16, 840, 1, 113730, 4, 1},
	x509.ExtKeyUsageMicrosoftCommercialCodeSigning: {1, 3, 6, 1, 4, 1, 311, 2, 1, 22},
	x509.ExtKeyUsageMicrosoftKernelCodeSigning:     {1, 3, 6, 1, 4, 1, 311, 61, 1, 1},
}

// leafSigning is the signature AlgorithmIdentifier (DER) and signer
// options x509 picks for a key when the template names no algorithm.
func leafSigning(signer crypto.Signer) (alg []byte, opts crypto.SignerOpts, ok bool) {
	var b cryptobyte.Builder
	switch k := signer.Public().(type) {
	case *ecdsa.PublicKey:
		oid, hash := oidECDSASHA256, crypto.SHA256
		switch k.Curve {
		case elliptic.P256():
		case elliptic.P384():
			oid, hash = oidECDSASHA384, crypto.SHA384
		case elliptic.P521():
			oid, hash = oidECDSASHA512, crypto.SHA512
		default:
			return nil, nil, false
		}
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oid) })
		opts = hash
	case *rsa.PublicKey:
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidRSASHA256)
			b.AddASN1NULL()
		})
		opts = crypto.SHA256
	default:
		return nil, nil, false
	}
	alg, err := b.Bytes()
	return alg, opts, err == nil
}

// subjectPublicKeyInfo is pub's SubjectPublicKeyInfo as x509 encodes it:
// EC keys of the NIST curves by hand, RSA and Ed25519 keys through x509.
// Any other kind of key (X25519 and other ECDH keys, a pointer to an
// Ed25519 key, types x509 may learn later) is not modelled: false.
func subjectPublicKeyInfo(pub any) ([]byte, bool) {
	var k *ecdsa.PublicKey
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		k = p
	case *rsa.PublicKey, ed25519.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		return der, err == nil
	default:
		return nil, false
	}
	var curve asn1.ObjectIdentifier
	switch k.Curve {
	case elliptic.P256():
		curve = oidCurveP256
	case elliptic.P384():
		curve = oidCurveP384
	case elliptic.P521():
		curve = oidCurveP521
	default:
		return nil, false
	}
	point, err := k.Bytes()
	if err != nil {
		return nil, false
	}
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidECPublicKey)
			b.AddASN1ObjectIdentifier(curve)
		})
		b.AddASN1BitString(point)
	})
	der, err := b.Bytes()
	return der, err == nil
}

// addTime encodes a validity bound as encoding/asn1 does: UTCTime for
// the years 1950 to 2049, else GeneralizedTime, to the second, in UTC.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	if y := t.Year(); y < 1950 || y >= 2050 {
		b.AddASN1GeneralizedTime(t)
		return
	}
	b.AddASN1UTCTime(t)
}

// addLeafExtensions adds the extensions of a leafShape template.
func addLeafExtensions(b *cryptobyte.Builder, t *x509.Certificate, aki []byte) {
	if t.KeyUsage != 0 {
		addExtension(b, oidKeyUsage, true, func(b *cryptobyte.Builder) {
			// A BIT STRING of the bits set, bit 0 first, without
			// trailing zero bits.
			// The last byte is never zero: KeyUsage is not.
			ku := []byte{bits.Reverse8(byte(t.KeyUsage)), bits.Reverse8(byte(t.KeyUsage >> 8))}
			if ku[1] == 0 {
				ku = ku[:1]
			}
			b.AddASN1(casn1.BIT_STRING, func(b *cryptobyte.Builder) {
				b.AddUint8(uint8(bits.TrailingZeros8(ku[len(ku)-1])))
				b.AddBytes(ku)
			})
		})
	}
	if len(t.ExtKeyUsage) > 0 {
		addExtension(b, oidExtKeyUsage, false, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, u := range t.ExtKeyUsage {
					b.AddASN1ObjectIdentifier(ekuOIDs[u])
				}
			})
		})
	}
	if t.BasicConstraintsValid {
		addExtension(b, oidBasicConstr, true, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(*cryptobyte.Builder) {}) // cA FALSE and no path length: both defaults, omitted
		})
	}
	if len(aki) > 0 {
		addExtension(b, oidAuthKeyID, false, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(casn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(aki) })
			})
		})
	}
	if len(t.DNSNames) > 0 || len(t.EmailAddresses) > 0 || len(t.IPAddresses) > 0 || len(t.URIs) > 0 {
		// RFC 5280 4.2.1.6: critical when the subject is empty.
		addExtension(b, oidSAN, bytes.Equal(t.RawSubject, emptySubject), func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, s := range t.DNSNames {
					b.AddASN1(casn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
				}
				for _, s := range t.EmailAddresses {
					b.AddASN1(casn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
				}
				for _, ip := range t.IPAddresses {
					if v4 := ip.To4(); v4 != nil {
						ip = v4
					}
					b.AddASN1(casn1.Tag(7).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(ip) })
				}
				for _, u := range t.URIs {
					b.AddASN1(casn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u.String())) })
				}
			})
		})
	}
	if len(t.CRLDistributionPoints) > 0 {
		addExtension(b, oidCRLDP, false, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, url := range t.CRLDistributionPoints {
					// DistributionPoint { distributionPoint [0] { fullName [0] { uniformResourceIdentifier [6] } } }
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(casn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddASN1(casn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
								b.AddASN1(casn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(url)) })
							})
						})
					})
				}
			})
		})
	}
}

// addExtension adds Extension { extnID, critical DEFAULT FALSE, extnValue }.
func addExtension(b *cryptobyte.Builder, id asn1.ObjectIdentifier, critical bool, value cryptobyte.BuilderContinuation) {
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(id)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(casn1.OCTET_STRING, value)
	})
}

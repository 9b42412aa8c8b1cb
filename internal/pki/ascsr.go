package pki

import "crypto/x509"

// CertificateAsCSR describes an issued certificate as the request it
// answered: its subject, public key and names. Workflows without a CSR of
// their own (revocation) show it to expressions as `csr`. It carries no
// signature and must never be verified or signed.
func CertificateAsCSR(leaf *x509.Certificate) *x509.CertificateRequest {
	return &x509.CertificateRequest{
		RawSubject: leaf.RawSubject, Subject: leaf.Subject,
		PublicKey: leaf.PublicKey, PublicKeyAlgorithm: leaf.PublicKeyAlgorithm, SignatureAlgorithm: leaf.SignatureAlgorithm,
		DNSNames: leaf.DNSNames, EmailAddresses: leaf.EmailAddresses, IPAddresses: leaf.IPAddresses, URIs: leaf.URIs,
	}
}

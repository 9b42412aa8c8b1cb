// Package ca puts certificate authorities behind one interface. The issue
// step calls Authority.Issue and knows nothing else about the CA; the
// built-in CA is the first implementation, external CAs plug in beside it.
package ca

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"time"
)

// Authority signs certificates. Issue must honour ctx cancellation if it is
// long-running, and must not retain req after returning.
type Authority interface {
	// Name is the CA's logical name.
	Name() string
	// Issue signs a certificate for req.
	Issue(ctx context.Context, req *Request) (*Issued, error)
}

// Request is what the issue step asks a CA for: the subject and public key
// of a verified CSR, the SANs after policy merged the request's with the
// CSR's, and the profile the template dictates.
type Request struct {
	// CSR is the request's CSR (DER), signature checked: what an
	// Orderer finalizes its order with.
	CSR         []byte
	Subject     pkix.Name
	RawSubject  []byte // the CSR's subject, byte for byte; preferred over Subject when set
	PublicKey   any
	DNSNames    []string
	IPAddresses []net.IP
	Emails      []string
	URIs        []*url.URL
	Validity    time.Duration
	KeyUsage    x509.KeyUsage
	ExtKeyUsage []x509.ExtKeyUsage
	// EnrollmentFields are the request's custom attributes for the CA
	// (Keyfactor's AdditionalEnrollmentFields, checked against the
	// template's EnrollmentFields), by field name. The built-in CA has no
	// use for them; external CAs pass them on.
	EnrollmentFields map[string]string
	// CRLDistributionPoints are URLs where the CA's CRL is published.
	CRLDistributionPoints []string
}

// Issued is a signed certificate with the chain above it.
type Issued struct {
	Leaf *x509.Certificate
	// Chain is the DER of the leaf followed by its issuers up to and
	// including the root: leaf → issuing → root.
	Chain [][]byte
}

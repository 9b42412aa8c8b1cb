package workflow

import (
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/policy"
)

// Env is the typed environment every expression is compiled against and
// evaluated in. Its field names (the expr tags) are the names definitions
// use; renaming one breaks definitions in the field.
type Env struct {
	Request     Request                   `expr:"request"`
	CSR         CSR                       `expr:"csr"`
	SANs        SANs                      `expr:"sans"`
	Requester   Requester                 `expr:"requester"`
	Steps       map[string]map[string]any `expr:"steps"`
	Vars        map[string]any            `expr:"vars"`
	Certificate Certificate               `expr:"certificate"`
	// Event is what started an event-triggered run (zero otherwise).
	Event Event     `expr:"event"`
	Now   time.Time `expr:"now"`
}

// Request is an enrollment request as the workflow sees it: the client's
// fields after the API decoded and checked them. It is also what the store
// keeps of the request body.
type Request struct {
	ID                         int64               `json:"ID"`
	Template                   string              `json:"Template,omitempty"`
	CertificateAuthority       string              `json:"CertificateAuthority,omitempty"`
	IncludeChain               bool                `json:"IncludeChain"`
	IncludeSubjectHeader       bool                `json:"IncludeSubjectHeader"`
	Format                     string              `json:"Format"`
	Metadata                   map[string]string   `json:"Metadata,omitempty"`
	SANs                       map[string][]string `json:"SANs,omitempty"`
	AdditionalEnrollmentFields map[string]any      `json:"AdditionalEnrollmentFields,omitempty"`
	OwnerRoleId                int64               `json:"OwnerRoleId,omitempty"`
	OwnerRoleName              string              `json:"OwnerRoleName,omitempty"`
	ForceEnroll                bool                `json:"ForceEnroll,omitempty"`
	HasPrivateKey              bool                `json:"HasPrivateKey,omitempty"`
	CallbackUrl                string              `json:"CallbackUrl,omitempty"`
	// RenewalCertificateId is the certificate a renewal renews (0 otherwise).
	RenewalCertificateId int64     `json:"RenewalCertificateId,omitempty"`
	Timestamp            time.Time `json:"Timestamp"`
	// Revocation is what a revocation request asks (zero otherwise).
	Revocation Revocation `json:"Revocation,omitzero"`
	// PFX is set for a PFX enrollment: the key certflow generates (in the
	// worker, before the steps run) and the CSR it makes for it.
	PFX *PFXSpec `json:"PFX,omitempty"`
}

// PFXSpec is what a PFX enrollment asks certflow to generate.
type PFXSpec struct {
	Subject      string  `json:"Subject"`
	Key          KeySpec `json:"Key"`
	FriendlyName string  `json:"FriendlyName,omitempty"`
	// EndEntityFirst orders the archive leaf first (ChainOrder).
	EndEntityFirst bool `json:"EndEntityFirst,omitempty"`
}

// KeySpec is the private key a PFX enrollment asks for: Type RSA (with
// Bits), ECC (with Curve, e.g. P-256, and its Bits) or Ed25519. The API
// fills it from pki.ParseKeySpec, and the worker generates the key from
// it; both convert, as the fields are pki.KeySpec's.
type KeySpec struct {
	Type  string `json:"KeyType"`
	Bits  int    `json:"KeyBits,omitempty"`
	Curve string `json:"Curve,omitempty"`
}

// Revocation is a revocation request's ask: which certificate, why
// (RFC 5280 CRLReason 0-6), the requester's comment, and from when.
type Revocation struct {
	CertificateId int64  `json:"CertificateId"`
	Reason        int    `json:"Reason"`
	Comment       string `json:"Comment,omitempty"`
	// EffectiveDate is from when the certificate is to be taken as
	// invalid: the requester's EffectiveDate, else when it was asked.
	EffectiveDate time.Time `json:"EffectiveDate"`
	// InvalidityDate is the requester's EffectiveDate when one was given
	// before the time of the request (zero otherwise). The CRL entry
	// carries it as its invalidityDate; its revocation date is when the
	// CA processed the revocation.
	InvalidityDate time.Time `json:"InvalidityDate,omitzero"`
}

// CSR is what expressions see of the certificate signing request.
type CSR struct {
	Subject            string
	CommonName         string
	Organization       []string
	OrganizationalUnit []string
	Country            []string
	Province           []string
	Locality           []string
	DNSNames           []string
	IPAddresses        []string
	EmailAddresses     []string
	URIs               []string
	KeyType            string // RSA, ECC, Ed25519
	KeyBits            int
	Curve              string // P-256, … ("" unless ECC)
	SignatureAlgorithm string
}

// SANs are the request's subject alternative names merged with the CSR's.
type SANs struct {
	DNS   []string
	IP    []string
	Email []string
	URI   []string
}

// Requester is the authenticated caller who submitted the request.
type Requester struct {
	Name  string   `json:"Name"`
	Roles []string `json:"Roles"`
}

// Certificate is the issued certificate, once the issue step has run.
type Certificate struct {
	ID           int64     `json:"ID"`
	SerialNumber string    `json:"SerialNumber"`
	Thumbprint   string    `json:"Thumbprint"`
	IssuerDN     string    `json:"IssuerDN"`
	SubjectDN    string    `json:"SubjectDN"`
	NotBefore    time.Time `json:"NotBefore"`
	NotAfter     time.Time `json:"NotAfter"`
	Authority    string    `json:"Authority"`
	// The fields below are filled for the certificate an event concerns
	// (Input.Certificate), read fresh when its run starts or resumes;
	// an issued certificate's instance record does not keep them.
	Template string            `json:"-"`
	Metadata map[string]string `json:"-"`
	Revoked  bool              `json:"-"`
	// SupersededBy is the certificate that renewed this one (0: none).
	SupersededBy int64 `json:"-"`
	// Renewal is its CA's advice on when to renew it (ACME Renewal
	// Information), where the CA offers it.
	Renewal RenewalAdvice `json:"-"`
}

// RenewalAdvice is a CA's advice on when to renew a certificate (ACME
// Renewal Information, RFC 9773): renew between Start and End. Offered
// is false where the CA gives none (a built-in CA, a CA without ARI, or
// one that could not be asked just now).
type RenewalAdvice struct {
	Offered        bool
	Start, End     time.Time
	ExplanationURL string
}

// NewCSR describes a parsed CSR for expressions.
func NewCSR(c *x509.CertificateRequest) CSR {
	if c == nil {
		return CSR{} // an event about no certificate
	}
	keyType, bits, _ := pki.DescribeKey(c.PublicKey)
	out := CSR{
		Subject:            pki.NameString(c.RawSubject, c.Subject),
		CommonName:         commonName(c.Subject.CommonName),
		Organization:       c.Subject.Organization,
		OrganizationalUnit: c.Subject.OrganizationalUnit,
		Country:            c.Subject.Country,
		Province:           c.Subject.Province,
		Locality:           c.Subject.Locality,
		DNSNames:           normalized(c.DNSNames, policy.NormalizeDNS),
		EmailAddresses:     normalized(c.EmailAddresses, policy.NormalizeEmail),
		KeyType:            keyType,
		KeyBits:            bits,
		Curve:              pki.CurveName(c.PublicKey),
		SignatureAlgorithm: c.SignatureAlgorithm.String(),
	}
	for _, ip := range c.IPAddresses {
		out.IPAddresses = append(out.IPAddresses, ip.String())
	}
	for _, u := range c.URIs {
		out.URIs = append(out.URIs, u.String())
	}
	return out
}

// commonName is a CN as expressions see it: in lower case when it is a
// host name, so that a rule on names cannot be passed by spelling one in
// upper case.
func commonName(cn string) string {
	if strings.Contains(cn, ".") && policy.IsDNSName(cn) {
		return policy.NormalizeDNS(cn)
	}
	return cn
}

// normalized maps names to their normal spelling, copying only when one
// changes.
func normalized(names []string, normalize func(string) string) []string {
	var out []string
	for i, n := range names {
		if m := normalize(n); m != n && out == nil {
			out = slices.Clone(names)
			out[i] = m
		} else if out != nil {
			out[i] = m
		}
	}
	if out == nil {
		return names
	}
	return out
}

// SAN kinds in Keyfactor's SANs object, and which merged list each feeds.
var sanKinds = map[string]func(*SANs) *[]string{
	"dns":    func(s *SANs) *[]string { return &s.DNS },
	"ip4":    func(s *SANs) *[]string { return &s.IP },
	"ip6":    func(s *SANs) *[]string { return &s.IP },
	"uri":    func(s *SANs) *[]string { return &s.URI },
	"rfc822": func(s *SANs) *[]string { return &s.Email },
}

// SANKind reports whether kind is a SANs key certflow understands
// (case-insensitive: dns, ip4, ip6, uri, rfc822).
func SANKind(kind string) bool {
	_, ok := sanKinds[strings.ToLower(kind)]
	return ok
}

// MergeSANs joins the CSR's SANs with the request's, without duplicates,
// CSR's first, then the request's by kind in a fixed order, in time linear
// in their number. Names are normalised as a TLS client compares them,
// and as policy and the certificate see them: DNS names and mail domains
// in lower case, IP addresses in one spelling. With addCN (RFC 2818
// enforcement) a CommonName that is an IP address, or a DNS name with at
// least one dot, and is not among the SANs is added to them.
func MergeSANs(c CSR, requested map[string][]string, addCN bool) SANs {
	var s SANs
	seen := make(map[string]struct{}, len(c.DNSNames)+len(c.IPAddresses)+len(c.EmailAddresses)+len(c.URIs))
	add := func(list *[]string, v string) {
		switch list {
		case &s.DNS:
			v = policy.NormalizeDNS(v)
		case &s.Email:
			v = policy.NormalizeEmail(v)
		case &s.IP:
			if ip := net.ParseIP(v); ip != nil {
				v = ip.String() // one spelling per address
			}
		}
		// The kind's list and the value: a name of one kind does not
		// hide the same text of another.
		key := sanKey(&s, list) + v
		if _, dup := seen[key]; !dup {
			seen[key] = struct{}{}
			*list = append(*list, v)
		}
	}
	for _, v := range c.DNSNames {
		add(&s.DNS, v)
	}
	for _, v := range c.IPAddresses {
		add(&s.IP, v)
	}
	for _, v := range c.EmailAddresses {
		add(&s.Email, v)
	}
	for _, v := range c.URIs {
		add(&s.URI, v)
	}
	kinds := make([]string, 0, len(requested))
	for kind := range requested {
		kinds = append(kinds, kind)
	}
	slices.Sort(kinds)
	for _, kind := range kinds {
		if f, ok := sanKinds[strings.ToLower(kind)]; ok {
			for _, v := range requested[kind] {
				add(f(&s), v)
			}
		}
	}
	if addCN && c.CommonName != "" {
		if ip := net.ParseIP(c.CommonName); ip != nil {
			add(&s.IP, ip.String())
		} else if policy.IsDNSName(c.CommonName) && strings.Contains(c.CommonName, ".") {
			add(&s.DNS, c.CommonName)
		}
	}
	return s
}

// sanKey prefixes a merged name with its kind for MergeSANs' set.
func sanKey(s *SANs, list *[]string) string {
	switch list {
	case &s.DNS:
		return "d:"
	case &s.IP:
		return "i:"
	case &s.Email:
		return "e:"
	}
	return "u:"
}

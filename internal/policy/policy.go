// Package policy decides what a requester may obtain: which keys, which
// subjects and which subject alternative names a certificate from a
// template (or from a standalone CA) may carry. It is the one place these
// rules live. The API applies them when a request is submitted, so a
// request that breaks them is refused before anything is stored; the
// validate and issue steps apply them again when the workflow runs, so a
// template tightened while a request waited for approval still binds it.
//
// Policy judges what will be signed: the CSR's subject exactly as it will
// appear in the certificate, and the subject alternative names after the
// request's are merged with the CSR's and normalised (DNS names in lower
// case). A rule that sees one spelling while the CA signs another is a
// rule that can be walked around.
package policy

import (
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
)

// SAN types, as templates' and CAs' san_types name them.
const (
	SANTypeDNS   = config.SANTypeDNS
	SANTypeIP    = config.SANTypeIP
	SANTypeEmail = config.SANTypeEmail
	SANTypeURI   = config.SANTypeURI
)

// Rules are one template's or one standalone CA's policy.
type Rules struct {
	// Scope names where the rules come from, for messages: "template
	// WebServer", "certificate authority Partners".
	Scope       string
	RSAKeySizes []int
	ECCCurves   []string
	// AllowEd25519 permits Ed25519 keys.
	AllowEd25519 bool
	// SANTypes are the subject alternative name types a certificate may
	// carry (SANTypeDNS …).
	SANTypes []string
	// RFCEnforcement requires at least one DNS or IP SAN (RFC 2818).
	RFCEnforcement bool
	NameRules
}

// ForTemplate returns a template's rules.
func ForTemplate(t *config.Template) Rules {
	p := t.Policy
	p.SANTypes = t.AllowedSANTypes()
	r := rules("template "+t.Name, p)
	r.RFCEnforcement = t.RFCEnforcement
	return r
}

// ForCA returns a standalone CA's rules, which bind the requests that
// name it without a template.
func ForCA(c *config.CA) Rules {
	return rules("certificate authority "+c.Name, c.WithPolicyDefaults().Policy)
}

func rules(scope string, p config.Policy) Rules {
	return Rules{
		Scope: scope, RSAKeySizes: p.RSAKeySizes, ECCCurves: p.ECCCurves, AllowEd25519: p.AllowEd25519,
		SANTypes:  p.SANTypes,
		NameRules: NameRules{AllowWildcards: p.AllowWildcards, AllowLocal: p.AllowLocalNames},
	}
}

// SANs are the merged, normalised subject alternative names of a request.
type SANs struct {
	DNS   []string
	IP    []string
	Email []string
	URI   []string
}

// Of returns the names of one SAN type (SANTypeDNS …).
func (s *SANs) Of(kind string) []string {
	switch kind {
	case SANTypeDNS:
		return s.DNS
	case SANTypeIP:
		return s.IP
	case SANTypeEmail:
		return s.Email
	case SANTypeURI:
		return s.URI
	}
	return nil
}

// Request is what policy judges: the subject and key of a verified CSR
// and the SANs the certificate will carry.
type Request struct {
	// Subject is the CSR's subject parsed (its Names hold every
	// attribute); RawSubject is its DER, which the CA signs as it is.
	Subject    pkix.Name
	RawSubject []byte
	PublicKey  any
	SANs       SANs
	// KeyGenerated: certflow makes the key (a PFX enrollment); PublicKey
	// only has its type and size, and the sanity checks of a requester's
	// key do not apply.
	KeyGenerated bool
}

// Part says which part of a request broke a rule.
type Part int

const (
	PartKey Part = iota
	PartSubject
	PartSAN
)

// Violation is a broken rule, worded for the requester.
type Violation struct {
	Part Part
	// Kind and Value name the subject alternative name at fault (Part
	// PartSAN): Kind is a SAN type.
	Kind, Value string
	Message     string
}

func (v *Violation) Error() string { return v.Message }

// CASubjects are the subjects of every CA certflow runs, root and
// issuing, as pki.NameKey gives them: no certificate it issues may carry
// one of them.
type CASubjects []string

// NewCASubjects returns the CASubjects of subjects given as DER (one that
// does not parse is left out: no CSR can carry it).
func NewCASubjects(subjects ...[]byte) CASubjects {
	out := make(CASubjects, 0, len(subjects))
	for _, der := range subjects {
		if key, err := pki.NameKey(der); err == nil {
			out = append(out, key)
		}
	}
	return out
}

// Check returns the first rule req breaks, or nil.
func (r *Rules) Check(req *Request, cas CASubjects) *Violation {
	if msg := r.checkKey(req.PublicKey, req.KeyGenerated); msg != "" {
		return &Violation{Part: PartKey, Message: msg}
	}
	if err := r.checkSubject(req, cas); err != nil {
		return &Violation{Part: PartSubject, Message: "subject: " + err.Error()}
	}
	if v := r.checkSANs(&req.SANs); v != nil {
		return v
	}
	if r.RFCEnforcement && len(req.SANs.DNS) == 0 && len(req.SANs.IP) == 0 {
		return &Violation{Part: PartSAN, Kind: SANTypeDNS, Message: fmt.Sprintf("%s enforces RFC 2818: the request needs a DNS or IP subject alternative name, or a common name that is one", r.Scope)}
	}
	return nil
}

func (r *Rules) checkKey(pub any, generated bool) string {
	if !generated {
		if err := CheckKeySanity(pub); err != nil {
			return err.Error()
		}
	}
	keyType, bits, err := pki.DescribeKey(pub)
	if err != nil {
		return err.Error()
	}
	_, msg := r.CheckKeyKind(keyType, bits, pki.CurveName(pub))
	return msg
}

// Key parameters, as Keyfactor's key-generation fields name them.
const (
	ParamKeyType   = "KeyType"
	ParamKeyLength = "KeyLength"
	ParamCurve     = "Curve"
)

// CheckKeyKind reports whether the rules allow a key of a type ("RSA",
// "ECC", "Ed25519"), size and curve: "" when they do, else the message
// and the parameter that chose what they refuse. Server-side key
// generation asks it before making a key; Check asks it of a CSR's.
func (r *Rules) CheckKeyKind(keyType string, bits int, curve string) (param, msg string) {
	switch keyType {
	case "RSA":
		if !slices.Contains(r.RSAKeySizes, bits) {
			return ParamKeyLength, fmt.Sprintf("%s does not allow RSA %d-bit keys (allowed: %s)", r.Scope, bits, orNone(joinInts(r.RSAKeySizes)))
		}
	case "ECC":
		if !slices.Contains(r.ECCCurves, curve) {
			return ParamCurve, fmt.Sprintf("%s does not allow ECC curve %s (allowed: %s)", r.Scope, curve, orNone(strings.Join(r.ECCCurves, ", ")))
		}
	case "Ed25519":
		if !r.AllowEd25519 {
			return ParamKeyType, fmt.Sprintf("%s does not allow Ed25519 keys", r.Scope)
		}
	default:
		return ParamKeyType, fmt.Sprintf("unknown key type %q", keyType)
	}
	return "", ""
}

// ForGeneration is the key policy of server-side key generation without
// a template (a CSR generated without Template, a standalone CA's PFX
// enrollment): the sizes and curves every client handles, each made in
// well under a few seconds. A larger RSA key costs minutes of CPU
// (RSA-8192 took 85 s) and Ed25519 is not what a client expects unless a
// template says so: both only where a template allows them.
func ForGeneration() Rules {
	return Rules{Scope: "key generation without a template", RSAKeySizes: []int{2048, 3072, 4096}, ECCCurves: []string{"P-256", "P-384"}}
}

func (r *Rules) checkSANs(s *SANs) *Violation {
	lists := []struct {
		kind   string
		values []string
		check  func(string) error
	}{
		{SANTypeDNS, s.DNS, r.CheckDNSName},
		{SANTypeIP, s.IP, func(v string) error {
			ip := net.ParseIP(v)
			if ip == nil {
				return errors.New("is not an IP address")
			}
			return r.CheckIP(ip)
		}},
		{SANTypeEmail, s.Email, r.CheckEmail},
		{SANTypeURI, s.URI, r.CheckURI},
	}
	for _, l := range lists {
		if len(l.values) > 0 && !slices.Contains(r.SANTypes, l.kind) {
			return &Violation{Part: PartSAN, Kind: l.kind, Value: l.values[0],
				Message: fmt.Sprintf("%s does not allow %s subject alternative names (%s; allowed types: %s)", r.Scope, l.kind, printable(l.values[0]), orNone(strings.Join(r.SANTypes, ", ")))}
		}
		for _, v := range l.values {
			if err := l.check(v); err != nil {
				return &Violation{Part: PartSAN, Kind: l.kind, Value: v, Message: fmt.Sprintf("%s name %q: %v", l.kind, printable(v), err)}
			}
		}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

// Is reports whether a subject (DER) is one of the CAs'. Two spellings of
// one name (PrintableString or UTF8String, another case, other runs of
// spaces) count as the same name, as a relying party matching names would
// take them (pki.NameKey, the comparison the CA itself makes).
func (cas CASubjects) Is(raw []byte) bool {
	if len(cas) == 0 {
		return false
	}
	key, err := pki.NameKey(raw)
	return err == nil && slices.Contains(cas, key)
}

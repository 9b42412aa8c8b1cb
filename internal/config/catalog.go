package config

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// CA is a certificate authority certflow can issue from.
type CA struct {
	// Name is the logical name ("CertflowIssuingCA").
	Name string `yaml:"name"`
	// Host is the host part of Keyfactor's "host\\logical" form.
	Host string `yaml:"host"`
	// Type is "builtin" (certflow signs) or "acme" (an external CA
	// reached over RFC 8555, configured by ACME).
	Type string `yaml:"type"`
	// ACME configures a CA of type acme.
	ACME *ACME `yaml:"acme"`
	// KeyType of the CA's own keys: "ecdsa-p256" (default), "ecdsa-p384",
	// "rsa-2048", "rsa-3072", "rsa-4096".
	KeyType string `yaml:"key_type"`
	// Standalone CAs need no template; requests must name them.
	Standalone bool `yaml:"standalone"`
	// MaxValidity caps what a template asks for. Defaults to 825 days.
	MaxValidity time.Duration `yaml:"max_validity"`

	// Policy binds the requests that name a standalone CA without a
	// template (a CA that serves templates is bound by theirs). The
	// defaults are safe: RSA 2048, 3072 and 4096, P-256 and P-384, no
	// Ed25519, no wildcards, DNS and IP names only, no local names, and
	// allowed_requesters [requester].
	Policy `yaml:",inline"`
}

// Policy is the key and name policy a template or a standalone CA sets,
// and who may enroll with it (internal/policy applies it).
type Policy struct {
	// RSAKeySizes are the RSA sizes allowed.
	RSAKeySizes []int `yaml:"rsa_key_sizes"`
	// ECCCurves are the curves allowed.
	ECCCurves []string `yaml:"ecc_curves"`
	// AllowEd25519 allows Ed25519 keys. Defaults to false.
	AllowEd25519 bool `yaml:"allow_ed25519"`
	// AllowWildcards allows a left-most "*." label (never directly under
	// a public suffix such as "*.com"). Defaults to false.
	AllowWildcards bool `yaml:"allow_wildcards"`
	// SANTypes are the subject alternative name types (dns, ip, email,
	// uri) the certificates may carry; a request with another type is
	// refused.
	SANTypes []string `yaml:"san_types"`
	// AllowLocalNames allows "localhost" names and loopback, link-local
	// and unspecified IP addresses. Defaults to false.
	AllowLocalNames bool `yaml:"allow_local_names"`
	// AllowedRequesters are the roles whose holders may enroll (admin
	// holds every role).
	AllowedRequesters []string `yaml:"allowed_requesters"`
}

// SAN types, as san_types names them.
const (
	SANTypeDNS   = "dns"
	SANTypeIP    = "ip"
	SANTypeEmail = "email"
	SANTypeURI   = "uri"
)

// SANTypes are the known SAN types.
var SANTypes = []string{SANTypeDNS, SANTypeIP, SANTypeEmail, SANTypeURI}

// DefaultSANTypes are the SAN types of a template or CA that names none:
// a server's (DNS names and IP addresses), and mail addresses too for a
// template whose certificates protect e-mail.
func DefaultSANTypes(extKeyUsages []string) []string {
	if slices.Contains(extKeyUsages, "EmailProtection") {
		return []string{SANTypeDNS, SANTypeIP, SANTypeEmail}
	}
	return []string{SANTypeDNS, SANTypeIP}
}

// WithPolicyDefaults returns the CA with the safe defaults in every
// policy setting it leaves out (nil, not an explicitly empty list): RSA
// 2048, 3072 and 4096, P-256 and P-384, DNS and IP names, the requester
// role.
func (ca CA) WithPolicyDefaults() CA {
	if ca.RSAKeySizes == nil {
		ca.RSAKeySizes = []int{2048, 3072, 4096}
	}
	if ca.ECCCurves == nil {
		ca.ECCCurves = []string{"P-256", "P-384"}
	}
	if ca.SANTypes == nil {
		ca.SANTypes = DefaultSANTypes(nil)
	}
	if ca.AllowedRequesters == nil {
		ca.AllowedRequesters = []string{RoleRequester}
	}
	return ca
}

// MayEnroll reports whether a caller holding roles may enroll with the
// standalone CA: a holder of one of AllowedRequesters (admin holds every
// role).
func (ca *CA) MayEnroll(roles []string) bool {
	return mayEnroll(roles, ca.WithPolicyDefaults().AllowedRequesters)
}

// Template is Keyfactor's certificate template: the policy a request is
// checked against and the profile its certificate gets.
type Template struct {
	// Name is the short name requests give as Template. Required.
	Name string `yaml:"name"`
	// DisplayName defaults to Name.
	DisplayName string `yaml:"display_name"`
	// CAs are the authorities that serve the template; a request that
	// names none gets one of them at random. Defaults to the first CA.
	CAs []string `yaml:"certificate_authorities"`
	// Policy is what the template's certificates may carry and who may
	// enroll: for a template, RSAKeySizes defaults to 2048, 3072, 4096,
	// ECCCurves to P-256, P-384, SANTypes to dns and ip (and email with
	// EmailProtection), AllowedRequesters to empty (any requester).
	Policy `yaml:",inline"`
	// RFCEnforcement (RFC 2818) adds the CN as a DNS or IP SAN when it is
	// one, and denies a request left with no DNS or IP SAN. Defaults to
	// false for a template a file adds (true for the built-in WebServer).
	RFCEnforcement bool `yaml:"rfc_enforcement"`
	// Validity of issued certificates, capped by the CA. Defaults to 397 days.
	Validity time.Duration `yaml:"validity"`
	// KeyUsages and ExtKeyUsages of issued certificates. Default to
	// DigitalSignature, KeyEncipherment and ServerAuth, ClientAuth.
	KeyUsages    []string `yaml:"key_usages"`
	ExtKeyUsages []string `yaml:"extended_key_usages"`
	// KeyRetention accepts a request's PrivateKey and keeps it sealed.
	// Defaults to false.
	KeyRetention bool `yaml:"key_retention"`
	// RequireOwnerRole makes OwnerRoleId/OwnerRoleName mandatory.
	// Defaults to false.
	RequireOwnerRole bool `yaml:"require_owner_role"`
	// MetadataFields change, for this template's enrollments, how
	// configured metadata fields take part (Keyfactor's template metadata
	// fields). Defaults to none: every field as metadata_fields says.
	MetadataFields []TemplateMetaField `yaml:"metadata_fields"`
	// EnrollmentFields are the template's custom request attributes,
	// given in a request's AdditionalEnrollmentFields and passed to the
	// CA. Defaults to none: the template takes no additional fields.
	EnrollmentFields []EnrollmentField `yaml:"enrollment_fields"`
}

// TemplateMetaField overrides a metadata field's settings for one
// template's enrollments. An empty setting keeps the field's own.
type TemplateMetaField struct {
	// Name is a field of metadata_fields. Required.
	Name string `yaml:"name"`
	// Enrollment is Optional, Required or Hidden. Defaults to the field's.
	Enrollment string `yaml:"enrollment"`
	// DefaultValue replaces the field's default. Defaults to the field's.
	DefaultValue string `yaml:"default_value"`
	// Validation and Message (String fields only) replace the field's
	// pattern and its message. Default to the field's.
	Validation string `yaml:"validation"`
	Message    string `yaml:"message"`
}

// Enrollment field types, as Keyfactor numbers them (DataType).
const (
	EnrollmentFieldString         = "String"         // DataType 1
	EnrollmentFieldMultipleChoice = "MultipleChoice" // DataType 2
)

// EnrollmentField is a template's custom request attribute (Keyfactor's
// template EnrollmentFields).
type EnrollmentField struct {
	// Name is the key in AdditionalEnrollmentFields (exact case on the
	// wire is not required; names compare without case). Required.
	Name string `yaml:"name"`
	// Type is String or MultipleChoice. Defaults to String.
	Type string `yaml:"type"`
	// Options (MultipleChoice only) are the allowed values, exact case.
	Options []string `yaml:"options"`
	// Required makes the field mandatory at enrollment. Defaults to false.
	Required bool `yaml:"required"`
}

// MetaField is a Keyfactor metadata field definition. Values are checked
// against it (internal/metadata) wherever they are set: the request's
// Metadata, the workflow's metadata step, DefaultValue itself.
type MetaField struct {
	Name string `yaml:"name"`
	// Description and Hint are shown by GET /MetadataFields. Default to empty.
	Description string `yaml:"description"`
	Hint        string `yaml:"hint"`
	// DisplayOrder orders the fields in GET /MetadataFields. Defaults to
	// 0, which shows the field's position in the list (1, 2, …).
	DisplayOrder int `yaml:"display_order"`
	// Type is String, Integer, Date, Boolean, MultipleChoice, BigText or
	// Email. Defaults to String.
	Type string `yaml:"type"`
	// Enrollment is Optional, Required or Hidden (never set at enrollment:
	// by workflows, and administrators' edits of a certificate's metadata).
	// Defaults to Optional.
	Enrollment   string `yaml:"enrollment"`
	DefaultValue string `yaml:"default_value"`
	// Validation (String only) is a regular expression the whole value
	// must match; Message is the error shown when it does not.
	Validation string `yaml:"validation"`
	Message    string `yaml:"message"`
	// Options (MultipleChoice only) are the allowed values, exact case.
	Options []string `yaml:"options"`
}

// MetaField finds a configured metadata field by name, ignoring case as
// Keyfactor does.
func (c *Config) MetaField(name string) *MetaField {
	for i := range c.Metadata {
		if strings.EqualFold(c.Metadata[i].Name, name) {
			return &c.Metadata[i]
		}
	}
	return nil
}

// MetaField returns f as it applies to enrollments with t: the field with
// the template's overrides, if it has any for f. t may be nil.
func (t *Template) MetaField(f *MetaField) MetaField {
	eff := *f
	if t == nil {
		return eff
	}
	for _, o := range t.MetadataFields {
		if !strings.EqualFold(o.Name, f.Name) {
			continue
		}
		eff.Enrollment = cmp.Or(o.Enrollment, eff.Enrollment)
		eff.DefaultValue = cmp.Or(o.DefaultValue, eff.DefaultValue)
		if o.Validation != "" {
			eff.Validation, eff.Message = o.Validation, o.Message
		} else {
			eff.Message = cmp.Or(o.Message, eff.Message)
		}
	}
	return eff
}

// EnrollmentField finds one of t's enrollment fields by name, ignoring case.
func (t *Template) EnrollmentField(name string) *EnrollmentField {
	for i := range t.EnrollmentFields {
		if strings.EqualFold(t.EnrollmentFields[i].Name, name) {
			return &t.EnrollmentFields[i]
		}
	}
	return nil
}

// MayEnroll reports whether a caller holding roles may enroll with t: any
// requester when AllowedRequesters is empty, else a holder of one of them
// (admin holds every role).
func (t *Template) MayEnroll(roles []string) bool {
	if !slices.Contains(roles, RoleAdmin) && !slices.Contains(roles, RoleRequester) {
		return false
	}
	return len(t.AllowedRequesters) == 0 || mayEnroll(roles, t.AllowedRequesters)
}

// mayEnroll: admin, or a holder of one of allowed.
func mayEnroll(roles, allowed []string) bool {
	return slices.Contains(roles, RoleAdmin) ||
		slices.ContainsFunc(roles, func(r string) bool { return slices.Contains(allowed, r) })
}

// AllowedSANTypes are the SAN types the template's certificates may carry.
func (t *Template) AllowedSANTypes() []string {
	if t.SANTypes == nil {
		return DefaultSANTypes(t.ExtKeyUsages)
	}
	return t.SANTypes
}

// Template finds a template by its short name, ignoring case as Keyfactor does.
func (c *Config) Template(name string) (*Template, bool) {
	for i := range c.Templates {
		if strings.EqualFold(c.Templates[i].Name, name) {
			return &c.Templates[i], true
		}
	}
	return nil, false
}

// CA finds an authority by Keyfactor's "host\\logical" or bare "logical"
// name, ignoring case. A host part, when given, must match.
func (c *Config) CA(name string) (*CA, bool) {
	host, logical, hasHost := strings.Cut(strings.ReplaceAll(name, `\\`, `\`), `\`)
	if !hasHost {
		logical, host = host, ""
	}
	for i := range c.CAs {
		ca := &c.CAs[i]
		if strings.EqualFold(ca.Name, logical) && (!hasHost || strings.EqualFold(ca.Host, host)) {
			return ca, true
		}
	}
	return nil, false
}

// QualifiedName is Keyfactor's host\logical form of a CA's name: one
// backslash (JSON shows it escaped as two).
func (ca *CA) QualifiedName() string { return ca.Host + `\` + ca.Name }

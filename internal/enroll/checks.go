package enroll

import (
	"crypto/x509"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/metadata"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/policy"
	"github.com/certflow/certflow/workflow"
)

// Bounds on client input that has no natural limit.
const (
	maxIdempotencyKey = 255
	maxNameLen        = 256
	maxMapEntries     = 100
	// maxPrivateKeyText bounds a PrivateKey field: room for the largest
	// key a template allows (RSA-8192), PEM or base64.
	maxPrivateKeyText = 8 << 10
)

// timestampLayouts are the ISO 8601 forms Keyfactor clients send.
var timestampLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05"}

// maxCSRText bounds a CSR field before anything decodes it: room for a
// 4096-bit RSA request carrying the most SANs api.max_sans allows.
const maxCSRText = 64 << 10

// DecodeCSR reads a body's CSR field: required, PEM or base64 DER,
// its signature (proof of possession) verified, once.
func DecodeCSR(text string) ([]byte, *x509.CertificateRequest, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil, badField("CSR", "required: a PEM or base64 DER certificate signing request")
	}
	if len(text) > maxCSRText {
		return nil, nil, fieldError(Invalid, keyfactor.CodeInvalidCSR, "CSR", "longer than %d bytes", maxCSRText)
	}
	der, csr, err := pki.DecodeCSR(text)
	if err == nil {
		err = pki.VerifyCSR(csr)
	}
	if err != nil {
		return nil, nil, fieldError(Invalid, keyfactor.CodeInvalidCSR, "CSR", "%s", err.Error())
	}
	return der, csr, nil
}

func parseTimestamp(s string) (time.Time, error) {
	if strings.TrimSpace(s) == "" {
		return time.Time{}, badField("Timestamp", "required: the current time in ISO 8601 UTC, e.g. 2023-11-19T16:23:01Z")
	}
	for _, layout := range timestampLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, badField("Timestamp", "%q is not an ISO 8601 time (e.g. 2023-11-19T16:23:01Z)", s)
}

// checkTemplateAndCA resolves the template and checks the named CA, as
// Keyfactor does: a template is required unless the CA is standalone; a
// named CA must exist and serve the template.
func (s *Service) checkTemplateAndCA(templateName, caName string) (*config.Template, error) {
	var ca *config.CA
	if caName != "" {
		var ok bool
		if ca, ok = s.cfg.CA(caName); !ok {
			return nil, fieldError(Invalid, keyfactor.CodeUnknownName, "CertificateAuthority", "unknown certificate authority %q", caName)
		}
	}
	if templateName == "" {
		if ca != nil && ca.Standalone {
			return nil, nil
		}
		return nil, badField("Template", "required unless CertificateAuthority names a standalone CA")
	}
	tmpl, ok := s.cfg.Template(templateName)
	if !ok {
		return nil, fieldError(Invalid, keyfactor.CodeUnknownName, "Template", "unknown template %q", templateName)
	}
	if ca != nil {
		served := false
		for _, n := range tmpl.CAs {
			served = served || strings.EqualFold(n, ca.Name)
		}
		if !served {
			return nil, badField("CertificateAuthority", "%s does not serve template %s", ca.Name, tmpl.Name)
		}
	}
	return tmpl, nil
}

// checkTemplateAccess refuses (Forbidden, naming Template) a caller the
// template's allowed_requesters leave out. A standalone CA's request (nil
// template) is not restricted.
func checkTemplateAccess(caller *Caller, tmpl *config.Template) error {
	if tmpl == nil || tmpl.MayEnroll(caller.Roles) {
		return nil
	}
	return fieldError(Forbidden, keyfactor.CodeForbidden, "Template", "%s may not enroll with template %s (allowed: %s)", caller.Name, tmpl.Name, strings.Join(tmpl.AllowedRequesters, ", "))
}

// caName is a request's CertificateAuthority in its one spelling, the
// configured logical name ("" stays ""), so that a definition matching
// on request.CertificateAuthority sees the same name however the client
// wrote it (host\name, another case). checkTemplateAndCA has checked
// that it names a configured CA.
func (s *Service) caName(name string) string {
	if c, ok := s.cfg.CA(name); ok {
		return c.Name
	}
	return name
}

func templateName(t *config.Template) string {
	if t == nil {
		return ""
	}
	return t.Name
}

// checkOwner checks the certificate owner: OwnerRoleId or OwnerRoleName,
// not both, naming an existing security role; required when the template
// says so. It returns the role resolved to its id and name (zero: none).
func (s *Service) checkOwner(id *int64, name string, tmpl *config.Template) (config.SecurityRole, error) {
	var none config.SecurityRole
	switch {
	case id != nil && name != "":
		return none, badField("OwnerRoleId", "give OwnerRoleId or OwnerRoleName, not both")
	case id != nil && *id <= 0:
		return none, badField("OwnerRoleId", "must be a positive integer")
	case len(name) > maxNameLen:
		return none, badField("OwnerRoleName", "longer than %d characters", maxNameLen)
	case id == nil && strings.TrimSpace(name) == "" && name != "":
		return none, badField("OwnerRoleName", "must not be blank")
	case id == nil && name == "" && tmpl != nil && tmpl.RequireOwnerRole:
		return none, badField("OwnerRoleId", "template %s requires a certificate owner: give OwnerRoleId or OwnerRoleName", tmpl.Name)
	case id != nil:
		r, ok := s.cfg.RoleByID(*id)
		if !ok {
			return none, fieldError(Invalid, keyfactor.CodeUnknownName, "OwnerRoleId", "no security role has id %d (GET /Security/Roles lists them)", *id)
		}
		return r, nil
	case name != "":
		r, ok := s.cfg.RoleByName(name)
		if !ok {
			return none, fieldError(Invalid, keyfactor.CodeUnknownName, "OwnerRoleName", "no security role is called %q (GET /Security/Roles lists them)", name)
		}
		return r, nil
	}
	return none, nil
}

// checkSANs validates the SANs object: known kinds, well-formed values, at
// most maxSANs (api.max_sans) of them. Policy (checkPolicy) then judges
// them with the CSR's.
func checkSANs(in map[string][]string, maxSANs int) (map[string][]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string][]string, len(in))
	total := 0
	for kind, values := range in {
		k := strings.ToLower(kind)
		field := "SANs." + kind
		if !workflow.SANKind(k) {
			return nil, badField(field, "unknown SAN type (want dns, ip4, ip6, uri or rfc822)")
		}
		total += len(values)
		if total > maxSANs {
			return nil, badField("SANs", "more than %d names", maxSANs)
		}
		for i, v := range values {
			f := fmt.Sprintf("%s[%d]", field, i)
			switch k {
			case "dns":
				if !policy.IsDNSName(v) {
					return nil, badField(f, "%q is not a DNS name", v)
				}
			case "ip4":
				if ip := net.ParseIP(v); ip == nil || ip.To4() == nil {
					return nil, badField(f, "%q is not an IPv4 address", v)
				}
			case "ip6":
				if ip := net.ParseIP(v); ip == nil || ip.To4() != nil {
					return nil, badField(f, "%q is not an IPv6 address", v)
				}
			case "uri":
				if u, err := url.Parse(v); err != nil || u.Scheme == "" {
					return nil, badField(f, "%q is not an absolute URI", v)
				}
			case "rfc822":
				if at := strings.LastIndex(v, "@"); at < 1 || !policy.IsDNSName(v[at+1:]) {
					return nil, badField(f, "%q is not an email address", v)
				}
			}
		}
		out[k] = append(out[k], values...)
	}
	return out, nil
}

// checkMetadata validates the Metadata object's shape and, when metadata
// fields are configured, each value against its field (internal/metadata),
// returning the values normalized under the configured spelling of their
// names, with defaults filled in. A null or empty value counts as not given:
// the default applies and a Required field is missing.
//
// tmpl (nil for a standalone CA's request) may change a field's
// enrollment, default and pattern for its own enrollments.
func (s *Service) checkMetadata(in map[string]any, tmpl *config.Template) (map[string]string, error) {
	if len(in) > maxMapEntries {
		return nil, badField("Metadata", "more than %d fields", maxMapEntries)
	}
	out := make(map[string]string, len(in))
	for name, v := range in {
		key, global, text, given, err := s.metadataEntry(name, v)
		if err != nil {
			return nil, err
		}
		if !given {
			continue
		}
		if global == nil {
			out[key] = text
			continue
		}
		eff := tmpl.MetaField(global)
		f := &eff
		field := "Metadata." + f.Name
		if text == "" {
			continue
		}
		if strings.EqualFold(f.Enrollment, metadata.Hidden) {
			if global.Enrollment != metadata.Hidden {
				return nil, badField(field, "hidden for template %s: it cannot be set at enrollment", tmpl.Name)
			}
			return nil, badField(field, "hidden fields cannot be set at enrollment")
		}
		if _, twice := out[f.Name]; twice {
			return nil, badField(field, "given twice (field names ignore case)")
		}
		if out[f.Name], err = checkMetadataValue(f, text); err != nil {
			return nil, err
		}
	}
	for i := range s.cfg.Metadata {
		g := &s.cfg.Metadata[i]
		eff := tmpl.MetaField(g)
		f := &eff
		if _, ok := out[f.Name]; ok {
			continue
		}
		switch {
		case f.DefaultValue != "":
			norm, err := metadata.Check(metadataRule(f), f.DefaultValue)
			if err != nil { // config.Validate refuses such a default
				return nil, fmt.Errorf("metadata field %s: default value: %w", f.Name, err)
			}
			out[f.Name] = norm
		case s.reservedName(f.Name) != "":
			// Required of the certificate, and the workflow's to set: a
			// request may not supply it (checkReservedMetadata).
		case strings.EqualFold(f.Enrollment, metadata.Required) && g.Enrollment != metadata.Required:
			return nil, badField("Metadata."+f.Name, "required by template %s", tmpl.Name)
		case strings.EqualFold(f.Enrollment, metadata.Required):
			return nil, badField("Metadata."+f.Name, "required")
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// metadataEntry reads one entry of a Metadata object, as a submit and an
// edit of a certificate's metadata (UpdateMetadata) both take it: a name
// of 1–maxNameLen characters; a JSON scalar as text (scalarText: null is
// not given, and then nothing more is checked); when metadata fields are
// configured, one of them (compared without case), returned as global
// with key its configured spelling. With none configured, any name is
// taken as is (global nil). The value itself is checked by
// checkMetadataValue.
func (s *Service) metadataEntry(name string, v any) (key string, global *config.MetaField, text string, given bool, err error) {
	if name == "" || len(name) > maxNameLen {
		return "", nil, "", false, badField("Metadata", "field names must be 1–%d characters", maxNameLen)
	}
	field := "Metadata." + name
	if text, given, err = scalarText(field, v); err != nil || !given {
		return name, nil, "", false, err
	}
	if len(s.cfg.Metadata) == 0 {
		return name, nil, text, true, nil
	}
	if global = s.cfg.MetaField(name); global == nil {
		return "", nil, "", false, fieldError(Invalid, keyfactor.CodeUnknownName, field, "no such metadata field")
	}
	return global.Name, global, text, true, nil
}

// checkMetadataValue checks a (non-empty) value against field f's type
// and returns it normalized, or refuses it naming Metadata.<f.Name>.
func checkMetadataValue(f *config.MetaField, text string) (string, error) {
	norm, err := metadata.Check(metadataRule(f), text)
	if err != nil {
		return "", badField("Metadata."+f.Name, "%v", err)
	}
	return norm, nil
}

// metadataRule is the rule field f imposes on its values.
func metadataRule(f *config.MetaField) metadata.Field {
	return metadata.Field{Type: f.Type, Validation: f.Validation, Message: f.Message, Options: f.Options}
}

// checkAdditionalFields checks AdditionalEnrollmentFields against the
// template's EnrollmentFields: every name one of them (compared without
// case, stored under the configured spelling), a MultipleChoice value one
// of its options, every Required one given. Values are kept as their text.
// A standalone CA's request (no template) passes its fields to the CA
// unchecked but for their shape.
func checkAdditionalFields(in map[string]any, tmpl *config.Template) (map[string]any, error) {
	if len(in) > maxMapEntries {
		return nil, badField("AdditionalEnrollmentFields", "more than %d fields", maxMapEntries)
	}
	out := make(map[string]any, len(in))
	for name, v := range in {
		field := "AdditionalEnrollmentFields." + name
		text, given, err := scalarText(field, v)
		if err != nil {
			return nil, err
		}
		if !given {
			continue
		}
		if name == "" || len(name) > maxNameLen {
			return nil, badField("AdditionalEnrollmentFields", "field names must be 1–%d characters", maxNameLen)
		}
		if tmpl == nil {
			out[name] = text
			continue
		}
		f := tmpl.EnrollmentField(name)
		if f == nil {
			known := make([]string, len(tmpl.EnrollmentFields))
			for i, e := range tmpl.EnrollmentFields {
				known[i] = e.Name
			}
			if len(known) == 0 {
				return nil, fieldError(Invalid, keyfactor.CodeUnknownName, field, "template %s has no enrollment fields", tmpl.Name)
			}
			return nil, fieldError(Invalid, keyfactor.CodeUnknownName, field, "template %s has no such enrollment field (it has %s)", tmpl.Name, strings.Join(known, ", "))
		}
		field = "AdditionalEnrollmentFields." + f.Name
		if text == "" {
			continue // not given: a Required field is missing
		}
		if _, twice := out[f.Name]; twice {
			return nil, badField(field, "given twice (field names ignore case)")
		}
		if f.Type == config.EnrollmentFieldMultipleChoice && !slices.Contains(f.Options, text) {
			return nil, badField(field, "%q is not one of the options (%s)", text, strings.Join(f.Options, ", "))
		}
		if len(text) > metadata.MaxStringChars {
			return nil, badField(field, "longer than %d characters", metadata.MaxStringChars)
		}
		out[f.Name] = text
	}
	if tmpl != nil {
		for _, f := range tmpl.EnrollmentFields {
			if _, ok := out[f.Name]; !ok && f.Required {
				return nil, badField("AdditionalEnrollmentFields."+f.Name, "required by template %s", tmpl.Name)
			}
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// scalarText is a Metadata or AdditionalEnrollmentFields value, a JSON
// scalar, as text (a number as written: 12345678, not 1.2345678e+07);
// null is not given. field names the value in errors.
func scalarText(field string, v any) (text string, given bool, err error) {
	switch v := v.(type) {
	case string:
		return v, true, nil
	case float64:
		// JSON numbers arrive as float64: exact only up to 2^53.
		if v == math.Trunc(v) && math.Abs(v) > 1<<53 {
			return "", false, badField(field, "a number this large loses precision; send it as a string")
		}
		return strconv.FormatFloat(v, 'f', -1, 64), true, nil
	case bool:
		return strconv.FormatBool(v), true, nil
	case nil:
		return "", false, nil
	}
	return "", false, badField(field, "want a string, number or boolean")
}

// checkReservedMetadata refuses (Invalid, naming Metadata.<name>) a
// submitted metadata field that workflows set (workflow.Set.MetadataNames:
// RequestedBy, ApprovedBy, Workflow and whatever a loaded definition's
// metadata step sets), compared without regard to case, configured as a
// field or not: what a workflow records is never a requester's word. A
// null or empty value is not given (as checkMetadata counts it) and
// passes.
func (s *Service) checkReservedMetadata(in map[string]any) error {
	for _, name := range slices.Sorted(maps.Keys(in)) { // the same field named every time
		if v := in[name]; v == nil || v == "" {
			continue
		}
		if reserved := s.reservedName(strings.TrimSpace(name)); reserved != "" {
			return badField("Metadata."+reserved, "set by the workflow; a request may not supply it")
		}
	}
	return nil
}

// reservedName is metadata field name, in the spelling workflows set it,
// when it is one they set (compared without case), else "": a request may
// not supply it (checkReservedMetadata), so it is not required of one
// either.
func (s *Service) reservedName(name string) string {
	for _, reserved := range s.defs.Load().MetadataNames() {
		if strings.EqualFold(reserved, name) {
			return reserved
		}
	}
	return ""
}

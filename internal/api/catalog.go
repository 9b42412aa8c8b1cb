package api

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/metadata"
	"github.com/certflow/certflow/internal/pki"
)

// The configured catalogue in Keyfactor's shapes: GET /Templates,
// /Enrollment/CSR/Context/My, /CertificateAuthority, /MetadataFields,
// /Security/Roles. Ids are positions in the configuration (1, 2, …), stable
// as long as the file's lists keep their order; security roles have the ids
// the configuration gives them. Field names follow Keyfactor's public
// clients (keyfactor-go-client, keyfactor-go-client-sdk, the Java SDK);
// what certflow has no notion of is zero or left out, never invented.

// Keyfactor's AllowedEnrollmentTypes bits.
const (
	enrollPFX = 1
	enrollCSR = 2
)

// keyRetention names Keyfactor's template key retention policy.
func keyRetention(t *config.Template) string {
	if t.KeyRetention {
		return "Indefinite"
	}
	return "None"
}

// extendedKeyUsage describes an EKU by its OID, with its Id (its place
// in pki.EKUs; 0 for one certflow does not know).
func extendedKeyUsage(oid string) keyfactor.ExtendedKeyUsage {
	for i, e := range pki.EKUs {
		if e.OID == oid {
			return keyfactor.ExtendedKeyUsage{Id: i + 1, Oid: oid, DisplayName: e.Display}
		}
	}
	return keyfactor.ExtendedKeyUsage{Oid: oid, DisplayName: oid}
}

// curveOIDs are the named curves' OIDs.
var curveOIDs = map[string]string{"P-256": "1.2.840.10045.3.1.7", "P-384": "1.3.132.0.34", "P-521": "1.3.132.0.35"}

func (s *Server) newTemplate(i int) keyfactor.Template {
	t := &s.cfg.Templates[i]
	keyType, keySize := templateKey(t)
	out := keyfactor.Template{
		Id: i + 1, CommonName: t.Name, TemplateName: t.DisplayName, FriendlyName: t.DisplayName, DisplayName: t.DisplayName,
		KeySize: keySize, KeyType: keyType, KeyRetention: keyRetention(t),
		EnrollmentFields: enrollmentFields(t), MetadataFields: s.templateMetadataFields(t),
		AllowedEnrollmentTypes: enrollPFX | enrollCSR, TemplateRegexes: []keyfactor.TemplateRegex{},
		UseAllowedRequesters: len(t.AllowedRequesters) > 0, AllowedRequesters: nonNil(t.AllowedRequesters),
		RFCEnforcement: t.RFCEnforcement, ExtendedKeyUsages: extendedKeyUsages(t), Curve: firstCurve(t),
		TemplatePolicy: templatePolicy(i+1, t),
	}
	for _, u := range t.KeyUsages {
		out.KeyUsage |= dotnetKeyUsage(pki.KeyUsages[u])
	}
	return out
}

// templateKey is Keyfactor's KeyType and (minimum) KeySize of a template.
func templateKey(t *config.Template) (keyType, keySize string) {
	switch {
	case len(t.RSAKeySizes) > 0:
		return "RSA", strconv.Itoa(slices.Min(t.RSAKeySizes))
	case len(t.ECCCurves) > 0:
		return "ECC", strings.TrimPrefix(slices.Min(t.ECCCurves), "P-")
	case t.AllowEd25519:
		return "Ed25519", "256"
	}
	return "", ""
}

func firstCurve(t *config.Template) string {
	if len(t.ECCCurves) == 0 {
		return ""
	}
	return curveOIDs[t.ECCCurves[0]]
}

func templatePolicy(id int, t *config.Template) keyfactor.TemplatePolicy {
	p := keyfactor.TemplatePolicy{
		TemplateId: id, RSAValidKeySizes: nonNil(t.RSAKeySizes), ECCValidCurves: []string{},
		AllowWildcards: t.AllowWildcards, RFCEnforcement: t.RFCEnforcement, AllowEd25519: t.AllowEd25519,
	}
	for _, c := range t.ECCCurves {
		p.ECCValidCurves = append(p.ECCValidCurves, curveOIDs[c])
	}
	if t.RequireOwnerRole {
		p.CertificateOwnerRole = 1
	}
	return p
}

func enrollmentFields(t *config.Template) []keyfactor.TemplateEnrollmentField {
	out := make([]keyfactor.TemplateEnrollmentField, len(t.EnrollmentFields))
	for i, f := range t.EnrollmentFields {
		dt := 1
		if f.Type == config.EnrollmentFieldMultipleChoice {
			dt = 2
		}
		out[i] = keyfactor.TemplateEnrollmentField{Id: i + 1, Name: f.Name, Options: nonNil(f.Options), DataType: dt, Required: f.Required}
	}
	return out
}

// templateMetadataFields lists every metadata field as it applies to t's
// enrollments (Keyfactor lists them all), with the template's overrides.
func (s *Server) templateMetadataFields(t *config.Template) []keyfactor.TemplateMetadataField {
	out := make([]keyfactor.TemplateMetadataField, len(s.cfg.Metadata))
	for i := range s.cfg.Metadata {
		f := t.MetaField(&s.cfg.Metadata[i])
		out[i] = keyfactor.TemplateMetadataField{
			Id: i + 1, MetadataId: i + 1, DefaultValue: f.DefaultValue, Validation: f.Validation,
			Enrollment: enrollmentNumber(f.Enrollment), Message: f.Message, Options: strings.Join(f.Options, ","), AllowAPI: true,
		}
	}
	return out
}

func extendedKeyUsages(t *config.Template) []keyfactor.ExtendedKeyUsage {
	out := []keyfactor.ExtendedKeyUsage{}
	for _, u := range t.ExtKeyUsages {
		if i := slices.IndexFunc(pki.EKUs, func(e pki.EKU) bool { return e.Name == u }); i >= 0 {
			out = append(out, extendedKeyUsage(pki.EKUs[i].OID))
		}
	}
	return out
}

func enrollmentNumber(e string) int {
	return max(slices.Index(metadata.Enrollments, e), 0)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// pathID reads the {id} path segment, a positive integer: the id of a
// what (template, certificate, request, …).
func pathID(r *http.Request, what string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, badField("id", "want a positive integer %s id, got %q", what, r.PathValue("id"))
	}
	return id, nil
}

// catalogue renders the n configured items of one kind, in order (the
// answer of GET /Templates, /CertificateAuthority, /MetadataFields).
func catalogue[T any](n int, render func(i int) T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = render(i)
	}
	return out
}

// writeCatalogueItem answers GET /<kind>/{id} of a catalogue of n items:
// the item at position id (from 1) as render makes it, 404 naming what
// past the end.
func writeCatalogueItem[T any](s *Server, w http.ResponseWriter, r *http.Request, n int, what string, render func(i int) T) {
	id, err := pathID(r, what)
	if err == nil && id > int64(n) {
		err = newError(http.StatusNotFound, keyfactor.CodeNotFound, "%s %d: not found", what, id)
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, render(int(id-1)))
}

// handleTemplates is GET /Templates.
func (s *Server) handleTemplates(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, catalogue(len(s.cfg.Templates), s.newTemplate))
}

// handleTemplate is GET /Templates/{id}.
func (s *Server) handleTemplate(w http.ResponseWriter, r *http.Request) {
	writeCatalogueItem(s, w, r, len(s.cfg.Templates), "template", s.newTemplate)
}

// handleCSRContext is GET /Enrollment/CSR/Context/My: the templates the
// caller may enroll with (template.allowed_requesters), each with the CAs
// that serve it and its policy, and the standalone CAs. It also answers
// GET /Enrollment/PFX/Context/My: every template allows both enrollments.
func (s *Server) handleCSRContext(w http.ResponseWriter, r *http.Request) {
	caller := identity(r)
	out := keyfactor.CSRContext{Templates: []keyfactor.ContextTemplate{}, StandaloneCAs: []keyfactor.ContextCA{}}
	mayEnroll := caller.Has(config.RoleRequester)
	for i := range s.cfg.Templates {
		t := &s.cfg.Templates[i]
		if !mayEnroll || !t.MayEnroll(caller.Roles) {
			continue
		}
		keyType, keySize := templateKey(t)
		ct := keyfactor.ContextTemplate{
			Id: i + 1, Name: t.Name, DisplayName: t.DisplayName, KeySize: keySize, KeyType: keyType,
			RFCEnforcement: t.RFCEnforcement, KeyRetention: keyRetention(t), AllowedEnrollmentTypes: enrollPFX | enrollCSR,
			CAs: []keyfactor.ContextCA{}, EnrollmentFields: enrollmentFields(t), MetadataFields: s.templateMetadataFields(t),
			Regexes: []keyfactor.TemplateRegex{}, ExtendedKeyUsages: extendedKeyUsages(t), Curve: firstCurve(t),
			TemplateDefaultSettings: []keyfactor.TemplateDefault{}, TemplatePolicy: templatePolicy(i+1, t),
		}
		for _, name := range t.CAs {
			if c, ok := s.cfg.CA(name); ok {
				ct.CAs = append(ct.CAs, keyfactor.ContextCA{Name: c.QualifiedName(), RFCEnforcement: t.RFCEnforcement})
			}
		}
		out.Templates = append(out.Templates, ct)
	}
	for i := range s.cfg.CAs {
		if c := &s.cfg.CAs[i]; c.Standalone && mayEnroll && c.MayEnroll(caller.Roles) {
			out.StandaloneCAs = append(out.StandaloneCAs, keyfactor.ContextCA{Name: c.QualifiedName()})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) newCA(i int) keyfactor.CertificateAuthority {
	c := &s.cfg.CAs[i]
	p := map[string]string{"Type": c.Type, "KeyType": c.KeyType, "MaxValidity": c.MaxValidity.Round(time.Second).String()}
	if a := c.ACME; c.IsACME() && a != nil {
		// The CA chooses its keys and validity; what it is, and how
		// certflow proves names to it, is worth showing.
		p = map[string]string{"Type": c.Type, "Directory": a.String(), "Challenge": a.Challenge}
		if a.Profile != "" {
			p["Profile"] = a.Profile
		}
	}
	props, _ := json.Marshal(p)
	out := keyfactor.CertificateAuthority{
		Id: i + 1, LogicalName: c.Name, HostName: c.Host, Standalone: c.Standalone,
		Properties: string(props), AllowedEnrollmentTypes: enrollPFX | enrollCSR, AllowedRequesters: []string{},
	}
	if chain, err := ca.ReadChain(s.cfg.DataDir, c.Name); err == nil {
		ders := make([][]byte, len(chain))
		for i, cert := range chain {
			ders[i] = cert.Raw
		}
		out.Certificates, _ = pki.EncodeChain(ders, pki.FormatPEM, false) // only subject headers can fail
	}
	return out
}

// handleCAs is GET /CertificateAuthority.
func (s *Server) handleCAs(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, catalogue(len(s.cfg.CAs), s.newCA))
}

// handleCA is GET /CertificateAuthority/{id}.
func (s *Server) handleCA(w http.ResponseWriter, r *http.Request) {
	writeCatalogueItem(s, w, r, len(s.cfg.CAs), "certificate authority", s.newCA)
}

func (s *Server) newMetadataField(i int) keyfactor.MetadataField {
	f := &s.cfg.Metadata[i]
	return keyfactor.MetadataField{
		Id: i + 1, Name: f.Name, Description: f.Description, DataType: slices.Index(metadata.Types, f.Type) + 1,
		Hint: f.Hint, Validation: f.Validation, Enrollment: enrollmentNumber(f.Enrollment), Message: f.Message,
		Options: strings.Join(f.Options, ","), DefaultValue: f.DefaultValue, DisplayOrder: cmp.Or(f.DisplayOrder, i+1),
	}
}

// handleMetadataFields is GET /MetadataFields, in display order.
func (s *Server) handleMetadataFields(w http.ResponseWriter, r *http.Request) {
	out := catalogue(len(s.cfg.Metadata), s.newMetadataField)
	slices.SortStableFunc(out, func(a, b keyfactor.MetadataField) int { return a.DisplayOrder - b.DisplayOrder })
	writeJSON(w, http.StatusOK, out)
}

// handleMetadataField is GET /MetadataFields/{id} and, as Keyfactor also
// serves it, GET /MetadataFields/{name}: a segment of digits is an id,
// anything else a field name (without regard to case).
func (s *Server) handleMetadataField(w http.ResponseWriter, r *http.Request) {
	seg := r.PathValue("id")
	if strings.Trim(seg, "0123456789-+") != "" {
		i := slices.IndexFunc(s.cfg.Metadata, func(f config.MetaField) bool { return strings.EqualFold(f.Name, seg) })
		if i < 0 {
			writeError(w, r, s.log, newError(http.StatusNotFound, keyfactor.CodeNotFound, "metadata field %q: not found", seg))
			return
		}
		writeJSON(w, http.StatusOK, s.newMetadataField(i))
		return
	}
	writeCatalogueItem(s, w, r, len(s.cfg.Metadata), "metadata field", s.newMetadataField)
}

// handleSecurityRoles is GET /Security/Roles: the roles an owner can name,
// those pq.queryString asks for (Id, Name), paged. A client that looks a
// role up by name must get that role or none, never the first role.
func (s *Server) handleSecurityRoles(w http.ResponseWriter, r *http.Request) {
	p, err := parsePage(r, "id", "name")
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	field := func(role *keyfactor.SecurityRole) func(string) string {
		return func(f string) string {
			if f == "id" {
				return strconv.FormatInt(role.Id, 10)
			}
			return role.Name
		}
	}
	roles := s.cfg.Roles()
	writePage(s, w, r, p, field, func(offer func(keyfactor.SecurityRole) bool) error {
		for _, role := range roles {
			if !offer(newSecurityRole(role)) {
				break
			}
		}
		return nil
	})
}

// handleSecurityRole is GET /Security/Roles/{id}.
func (s *Server) handleSecurityRole(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "security role")
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	role, ok := s.cfg.RoleByID(id)
	if !ok {
		writeError(w, r, s.log, newError(http.StatusNotFound, keyfactor.CodeNotFound, "security role %d: not found", id))
		return
	}
	writeJSON(w, http.StatusOK, newSecurityRole(role))
}

// newSecurityRole is a role in Keyfactor's shape.
func newSecurityRole(role config.SecurityRole) keyfactor.SecurityRole {
	return keyfactor.SecurityRole{
		Id: role.ID, Name: role.Name, Description: role.Description, Enabled: true, Valid: true,
		Immutable: role.ID < config.MinSecurityRoleID, Identities: []any{}, Permissions: []string{},
	}
}

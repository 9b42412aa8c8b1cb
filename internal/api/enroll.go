package api

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/metadata"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/policy"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
	"github.com/redis/go-redis/v9"
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

// enrollment is a decoded, checked submit, ready to store.
type enrollment struct {
	req        store.Request
	csr        *x509.CertificateRequest // parsed and verified once, here
	privateKey []byte                   // PKCS#8 DER, sealed once the request id is known
	// pfxPassword is a PFX enrollment's Password, sealed once the request
	// id is known.
	pfxPassword string
	// pending is the generated CSR a forceEnroll marries (its key is
	// privateKey); it is deleted once the request is accepted.
	pending *store.PendingCSR
	// keyID names the CSR's public key (pki.PublicKeyID) when the submit
	// may be a generated CSR coming back; submit looks it up.
	keyID string
	// barredKey names the CSR's public key (pki.PublicKeyID) for the
	// create to refuse if it was revoked for key compromise ("": the key
	// does not exist yet, a PFX enrollment's; the issue step checks it).
	barredKey string
}

// decodeEnrollment reads and checks everything about a submit that needs no
// Redis: the body, the query, the headers, the catalogue. Every problem is
// an *apiError naming the field.
func (s *Server) decodeEnrollment(r *http.Request, caller *Identity) (*enrollment, error) {
	format, err := pki.ParseFormat(r.Header.Get("x-certificateformat"))
	if err != nil {
		return nil, badField("x-certificateformat header", "%v", err)
	}
	force := false
	if v := r.URL.Query().Get("forceEnroll"); v != "" {
		if force, err = strconv.ParseBool(v); err != nil {
			return nil, badField("forceEnroll", "want true or false, got %q", v)
		}
	}
	var body keyfactor.EnrollmentCSRRequest
	if err := decodeJSON(r, &body); err != nil {
		return nil, err
	}
	der, csr, err := decodeCSRField(body.CSR)
	if err != nil {
		return nil, err
	}
	e, err := s.enrollmentOf(r, caller, &body, format, der, csr)
	if err != nil {
		return nil, err
	}
	e.req.Input.ForceEnroll = force
	return e, nil
}

// enrollmentOf checks the fields every enrollment body shares (CSR and PFX
// alike) and builds the request to store. der is the CSR as sent (nil for
// a PFX enrollment, whose CSR the worker makes); csr is it parsed (for a
// PFX enrollment, the shape of the CSR to come).
func (s *Server) enrollmentOf(r *http.Request, caller *Identity, body *keyfactor.EnrollmentCSRRequest, format pki.Format, der []byte, csr *x509.CertificateRequest) (*enrollment, error) {
	ts, err := parseTimestamp(body.Timestamp)
	if err != nil {
		return nil, err
	}
	tmpl, err := s.checkTemplateAndCA(body.Template, body.CertificateAuthority)
	if err != nil {
		return nil, err
	}
	if err := checkTemplateAccess(caller, tmpl); err != nil {
		return nil, err
	}
	owner, err := s.checkOwner(body.OwnerRoleId, body.OwnerRoleName, tmpl)
	if err != nil {
		return nil, err
	}
	sans, err := checkSANs(body.SANs, s.cfg.API.MaxSANs)
	if err != nil {
		return nil, err
	}
	if err := s.checkReservedMetadata(body.Metadata); err != nil {
		return nil, err
	}
	md, err := s.checkMetadata(body.Metadata, tmpl)
	if err != nil {
		return nil, err
	}
	fields, err := checkAdditionalFields(body.AdditionalEnrollmentFields, tmpl)
	if err != nil {
		return nil, err
	}
	if body.CallbackUrl != "" {
		if err := callback.CheckURL(body.CallbackUrl, s.cfg.Callbacks.AllowPrivate); err != nil {
			return nil, badField("CallbackUrl", "%v", err)
		}
	}
	e := &enrollment{csr: csr}
	if body.PrivateKey != "" {
		if tmpl == nil || !tmpl.KeyRetention {
			return nil, badField("PrivateKey", "the template does not retain private keys; leave PrivateKey out")
		}
		if len(body.PrivateKey) > maxPrivateKeyText {
			// Parsing validates the key, at a cost that grows with its size.
			return nil, badField("PrivateKey", "longer than %d bytes (an RSA-8192 key in PKCS#8 is about 6,500)", maxPrivateKeyText)
		}
		key, keyDER, err := pki.ParsePKCS8(body.PrivateKey)
		if err != nil {
			return nil, badField("PrivateKey", "%v", err)
		}
		if !pki.SamePublicKey(pki.PublicKeyOf(key), csr.PublicKey) {
			return nil, badField("PrivateKey", "does not match the CSR's public key")
		}
		e.privateKey = keyDER
	}
	idemKey := r.Header.Get("Idempotency-Key")
	if len(idemKey) > maxIdempotencyKey {
		return nil, badField("Idempotency-Key header", "longer than %d characters", maxIdempotencyKey)
	}
	now := time.Now().UTC()
	e.req = store.Request{
		Disposition: store.Queued,
		Submitted:   now,
		Updated:     now,
		Trigger:     workflow.TriggerEnrollment,
		Requester:   workflow.Requester{Name: caller.Name, Roles: caller.Roles},
		CSR:         der,
		Subject:     pki.NameString(csr.RawSubject, csr.Subject),
		CommonName:  csr.Subject.CommonName,
		Input: workflow.Request{
			Template:                   templateName(tmpl),
			CertificateAuthority:       s.caName(body.CertificateAuthority),
			IncludeChain:               body.IncludeChain != nil && *body.IncludeChain,
			IncludeSubjectHeader:       body.IncludeSubjectHeader == nil || *body.IncludeSubjectHeader, // PEM only; applied when rendering
			Format:                     string(format),
			Metadata:                   md,
			SANs:                       sans,
			AdditionalEnrollmentFields: fields,
			OwnerRoleId:                owner.ID,
			OwnerRoleName:              owner.Name,
			HasPrivateKey:              e.privateKey != nil,
			CallbackUrl:                body.CallbackUrl,
			Timestamp:                  ts,
		},
		IdempotencyKey: idemKey,
	}
	return e, nil
}

// decodeCSRField reads a body's CSR field: required, PEM or base64 DER,
// its signature (proof of possession) verified, once.
func decodeCSRField(text string) ([]byte, *x509.CertificateRequest, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil, badField("CSR", "required: a PEM or base64 DER certificate signing request")
	}
	if len(text) > maxCSRText {
		return nil, nil, &apiError{status: http.StatusBadRequest, code: keyfactor.CodeInvalidCSR, msg: fmt.Sprintf("CSR: longer than %d bytes", maxCSRText)}
	}
	der, csr, err := pki.DecodeCSR(text)
	if err == nil {
		err = pki.VerifyCSR(csr)
	}
	if err != nil {
		return nil, nil, &apiError{status: http.StatusBadRequest, code: keyfactor.CodeInvalidCSR, msg: "CSR: " + err.Error()}
	}
	return der, csr, nil
}

// decodeJSON decodes one JSON object from the (size-limited) body and names
// the field of a type mismatch.
func decodeJSON(r *http.Request, v any) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return err // *http.MaxBytesError → 413
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return badField("request body", "empty; want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return badField(te.Field, "want %s, got a JSON %s", jsonKind(te.Type.String()), te.Value)
		case errors.As(err, &te):
			// The body itself has the wrong shape; Go's text would name a
			// Go type.
			return badField("request body", "want %s, got a JSON %s", jsonKind(te.Type.String()), te.Value)
		case errors.As(err, &se):
			return badField("request body", "invalid JSON at byte %d: %v", se.Offset, se)
		default:
			return badField("request body", "invalid JSON: %v", err)
		}
	}
	if dec.More() {
		return badField("request body", "trailing data after the JSON object")
	}
	return nil
}

func jsonKind(goType string) string {
	switch {
	case goType == "string" || goType == "*string":
		return "a string"
	case goType == "bool" || goType == "*bool":
		return "a boolean (true or false)"
	// Before the integers: "map[string]interface {}" contains "int".
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "api."), strings.HasPrefix(goType, "*api."),
		strings.HasPrefix(goType, "keyfactor."), strings.HasPrefix(goType, "*keyfactor."):
		return "an object"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.Contains(goType, "int"):
		return "an integer"
	}
	return goType
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
func (s *Server) checkTemplateAndCA(templateName, caName string) (*config.Template, error) {
	var ca *config.CA
	if caName != "" {
		var ok bool
		if ca, ok = s.cfg.CA(caName); !ok {
			return nil, &apiError{status: http.StatusBadRequest, code: keyfactor.CodeUnknownName, msg: fmt.Sprintf("CertificateAuthority: unknown certificate authority %q", caName)}
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
		return nil, &apiError{status: http.StatusBadRequest, code: keyfactor.CodeUnknownName, msg: fmt.Sprintf("Template: unknown template %q", templateName)}
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

// checkTemplateAccess refuses, with 403 naming Template, a caller the
// template's allowed_requesters leave out. A standalone CA's request (nil
// template) is not restricted.
func checkTemplateAccess(caller *Identity, tmpl *config.Template) error {
	if tmpl == nil || tmpl.MayEnroll(caller.Roles) {
		return nil
	}
	return newError(http.StatusForbidden, keyfactor.CodeForbidden, "Template: %s may not enroll with template %s (allowed: %s)", caller.Name, tmpl.Name, strings.Join(tmpl.AllowedRequesters, ", "))
}

// caName is a request's CertificateAuthority in its one spelling, the
// configured logical name ("" stays ""), so that a definition matching
// on request.CertificateAuthority sees the same name however the client
// wrote it (host\name, another case). checkTemplateAndCA has checked
// that it names a configured CA.
func (s *Server) caName(name string) string {
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
func (s *Server) checkOwner(id *int64, name string, tmpl *config.Template) (config.SecurityRole, error) {
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
			return none, &apiError{status: http.StatusBadRequest, code: keyfactor.CodeUnknownName, msg: fmt.Sprintf("OwnerRoleId: no security role has id %d (GET /Security/Roles lists them)", *id)}
		}
		return r, nil
	case name != "":
		r, ok := s.cfg.RoleByName(name)
		if !ok {
			return none, &apiError{status: http.StatusBadRequest, code: keyfactor.CodeUnknownName, msg: fmt.Sprintf("OwnerRoleName: no security role is called %q (GET /Security/Roles lists them)", name)}
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
func (s *Server) checkMetadata(in map[string]any, tmpl *config.Template) (map[string]string, error) {
	if len(in) > maxMapEntries {
		return nil, badField("Metadata", "more than %d fields", maxMapEntries)
	}
	rule := func(f *config.MetaField) metadata.Field {
		return metadata.Field{Type: f.Type, Validation: f.Validation, Message: f.Message, Options: f.Options}
	}
	out := make(map[string]string, len(in))
	for name, v := range in {
		field := "Metadata." + name
		if name == "" || len(name) > maxNameLen {
			return nil, badField("Metadata", "field names must be 1–%d characters", maxNameLen)
		}
		text, given, err := scalarText(field, v)
		if err != nil {
			return nil, err
		}
		if !given {
			continue
		}
		if len(s.cfg.Metadata) == 0 {
			out[name] = text
			continue
		}
		global := s.cfg.MetaField(name)
		if global == nil {
			return nil, &apiError{status: http.StatusBadRequest, code: keyfactor.CodeUnknownName, msg: field + ": no such metadata field"}
		}
		eff := tmpl.MetaField(global)
		f := &eff
		field = "Metadata." + f.Name
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
		norm, err := metadata.Check(rule(f), text)
		if err != nil {
			return nil, badField(field, "%v", err)
		}
		out[f.Name] = norm
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
			norm, err := metadata.Check(rule(f), f.DefaultValue)
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
				return nil, &apiError{status: http.StatusBadRequest, code: keyfactor.CodeUnknownName, msg: fmt.Sprintf("%s: template %s has no enrollment fields", field, tmpl.Name)}
			}
			return nil, &apiError{status: http.StatusBadRequest, code: keyfactor.CodeUnknownName, msg: fmt.Sprintf("%s: template %s has no such enrollment field (it has %s)", field, tmpl.Name, strings.Join(known, ", "))}
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

// handleEnrollCSR is POST /Enrollment/CSR.
func (s *Server) handleEnrollCSR(w http.ResponseWriter, r *http.Request) {
	caller := identity(r)
	e, err := s.decodeEnrollment(r, caller)
	if err == nil {
		e.keyID = pki.CSRKeyID(e.csr)
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if req, ok := s.accept(w, r, e); ok {
		s.writeEnrollment(w, r, req, "")
	}
}

// accept runs a decoded submit: it picks the workflow, stores and enqueues
// the request and, unless the client prefers an asynchronous answer, waits
// for it to settle (Prefer: wait=N, else api.sync_wait). It answers the
// client itself only when the request was refused (ok false). Every kind
// of submit (CSR, renewal, …) goes through here.
func (s *Server) accept(w http.ResponseWriter, r *http.Request, e *enrollment) (req *store.Request, ok bool) {
	in := s.input(e)
	if err := s.checkPolicy(e, in, identity(r)); err != nil {
		writeError(w, r, s.log, err)
		return nil, false
	}
	if err := s.selectFor(e, in); err != nil {
		writeError(w, r, s.log, err)
		return nil, false
	}
	// A CSR sent, made for a renewal or generated by certflow: the create
	// refuses its key if it was revoked for key compromise. A PFX
	// enrollment's key does not exist yet (the issue step checks it).
	if len(e.req.CSR) > 0 {
		id, err := pki.PublicKeyID(e.csr.PublicKey)
		if err != nil {
			writeError(w, r, s.log, &apiError{status: http.StatusBadRequest, code: keyfactor.CodeInvalidCSR, msg: "CSR: its public key cannot be encoded: " + err.Error()})
			return nil, false
		}
		e.barredKey = id
	}
	wait, async := parsePrefer(r.Header.Values("Prefer"), s.cfg.API.SyncWait, s.cfg.API.MaxSyncWait)
	var waiter *store.Waiter
	req, existing, err := s.submit(r.Context(), e, func(id int64) {
		if !async && wait > 0 {
			// Listen before the request can settle: the announcement
			// then answers without polling the store.
			if waiter != nil {
				waiter.Close() // an id withdrawn for another
			}
			waiter = s.waiters.Register(id)
		}
	})
	if waiter != nil {
		defer waiter.Close()
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return nil, false
	}
	// From here on the request is accepted: whatever fails, the answer is
	// never an error (a client would retry and get a second certificate),
	// but at worst 202 with the Location to poll.
	if waiter != nil && !req.Disposition.Settled() {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		var latest *store.Request
		var werr error
		if existing {
			latest, werr = s.waiters.Wait(ctx, req.ID) // a repeat: it may have settled long ago
		} else {
			latest, werr = waiter.Wait(ctx)
		}
		cancel()
		if latest != nil {
			req = latest
		}
		if werr != nil && !errors.Is(werr, context.DeadlineExceeded) && !errors.Is(werr, context.Canceled) {
			s.log.Warn("waiting for an accepted request failed; answering 202", "request", req.ID, "err", werr)
		}
	}
	return req, true
}

// submit stores and enqueues a new request (or returns the one an
// Idempotency-Key already names, with existing set). A request whose
// enqueue fails is deleted: a rejected submit leaves nothing behind.
// allocated is called with the new request's id before it is enqueued
// (again, with another id, if the first was withdrawn).
//
// A CSR whose key certflow generated (a pending CSR) is found by the
// create itself (store.ErrGeneratedKey): only then is the pending CSR read
// and its key married to the request, under a new id.
func (s *Server) submit(ctx context.Context, e *enrollment, allocated func(id int64)) (req *store.Request, existing bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	defer cancel()
	if e.req.IdempotencyKey != "" && e.req.IdempotencyFingerprint == "" {
		e.req.IdempotencyFingerprint = s.submitFingerprint(e) // before a generated key is married
	}
	req, existing, err = s.create(ctx, e, e.keyID, allocated)
	if !errors.Is(err, store.ErrGeneratedKey) {
		return req, existing, err
	}
	pending, err := s.store.PendingCSRByKey(ctx, e.keyID)
	if errors.Is(err, store.ErrNotFound) {
		// Enrolled or deleted since: an ordinary CSR now.
		return s.create(ctx, e, "", allocated)
	}
	if err != nil {
		return nil, false, err
	}
	if err := s.marryGeneratedKey(e, pending); err != nil {
		return nil, false, err
	}
	if err := s.claimGeneratedKey(ctx, e); err != nil {
		return nil, false, err
	}
	if e.pending != nil {
		defer func() {
			if err != nil || existing {
				// Not accepted: the generated CSR stays pending, free
				// for the next enrollment.
				s.store.ReleasePendingCSR(context.WithoutCancel(ctx), e.pending)
			}
		}()
	}
	req, existing, err = s.create(ctx, e, "", allocated)
	if err == nil && !existing && e.pending != nil {
		// The key now lives on the request; the pending CSR goes. Should
		// that fail, the CSR stays listed, and enrolling it again with
		// forceEnroll would marry the same key to a second request.
		if err := s.store.DeletePendingCSR(ctx, e.pending); err != nil {
			s.log.Warn("enrolled a generated CSR but could not delete it from the pending CSRs", "request", req.ID, "csr", e.pending.ID, "err", err)
		}
	}
	return req, existing, err
}

// create gives e's request an id and stores and enqueues it
// (store.CreateQueued, unless its CSR's key is unlessKey's generated one,
// or was revoked for key compromise).
// An id Redis forgot it gave (store.ErrIDTaken) is replaced.
func (s *Server) create(ctx context.Context, e *enrollment, unlessKey string, allocated func(id int64)) (req *store.Request, existing bool, err error) {
	req = &e.req
	for attempt := 0; ; attempt++ {
		id, err := s.store.NewID(ctx)
		if err != nil {
			return nil, false, err
		}
		req.ID, req.Instance.ID = id, s.store.InstanceID(id)
		allocated(id)
		req.PrivateKey, req.PFXPassword = nil, nil
		if e.privateKey != nil {
			req.PrivateKey = s.kek.Seal(e.privateKey, pki.RequestKeyAAD(id))
		}
		if e.pfxPassword != "" {
			req.PFXPassword = s.kek.Seal([]byte(e.pfxPassword), pki.PFXPasswordAAD(id))
		}
		var prevID int64
		prevID, existing, err = s.store.CreateQueued(ctx, req, s.cfg.API.IdempotencyTTL, s.firstRun(req), store.KeyChecks{Barred: e.barredKey, UnlessGenerated: unlessKey})
		if errors.Is(err, store.ErrKeyCompromised) {
			return nil, false, errKeyCompromised
		}
		if errors.Is(err, store.ErrIDTaken) && attempt < 3 {
			s.log.Warn("request id already taken (Redis lost its id counter?); taking another", "request", id)
			continue
		}
		if err != nil {
			return nil, false, err
		}
		if existing {
			prev, err := s.firstRequest(ctx, prevID)
			if err != nil {
				return nil, false, err
			}
			if !sameSubmit(prev, req) {
				return nil, false, newError(http.StatusConflict, keyfactor.CodeConflict, "Idempotency-Key header: already used for a different request (%d)", prevID)
			}
			return prev, true, nil
		}
		s.log.Info("request accepted", "request", id, "instance", req.Instance.ID, "requester", req.Requester.Name, "template", req.Input.Template)
		return req, false, nil
	}
}

// firstRun enqueues req's first run, its record riding with the task
// (store.CreateQueued).
func (s *Server) firstRun(req *store.Request) store.Enqueue {
	return func(ctx context.Context, writes func(redis.Pipeliner)) error {
		return s.queue.EnqueueRunAfter(ctx, req.ID, req.Generation, writes)
	}
}

// firstRequest loads the request an Idempotency-Key names. The first
// submit may still be writing it (the key is claimed first), so a missing
// record is read again for a moment before giving up.
func (s *Server) firstRequest(ctx context.Context, id int64) (*store.Request, error) {
	for i := 0; ; i++ {
		r, err := s.store.Get(ctx, id)
		if !errors.Is(err, store.ErrNotFound) {
			return r, err
		}
		if i == 20 {
			return nil, newError(http.StatusConflict, keyfactor.CodeConflict, "Idempotency-Key header: the first request with this key is still being created or was refused; retry")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// certificateOf returns an issued request's certificate: the one read with
// the record, else (a record from before it was issued) read now.
func (s *Server) certificateOf(ctx context.Context, req *store.Request) (*store.Certificate, error) {
	if c, err := req.Certificate(); c != nil || err != nil {
		return c, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	defer cancel()
	return s.store.CertificateOf(ctx, req.ID)
}

// parsePrefer reads RFC 7240 Prefer: respond-async, wait=N. As the RFC
// asks, a preference it cannot understand is ignored, not an error.
func parsePrefer(values []string, def, max time.Duration) (wait time.Duration, async bool) {
	wait = def
	for _, v := range values {
		for _, pref := range strings.Split(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(pref), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "respond-async":
				async = true
			case "wait":
				if n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64); err == nil && n >= 0 {
					wait = min(time.Duration(min(n, int64(max/time.Second)))*time.Second, max)
				}
			}
		}
	}
	return wait, async
}

// writeEnrollment answers with the request: 200 once it settled, 202 with
// Location while it runs.
func (s *Server) writeEnrollment(w http.ResponseWriter, r *http.Request, req *store.Request, format pki.Format) {
	s.writeAccepted(w, r, req, func(cert *store.Certificate) (any, error) {
		return keyfactor.NewEnrollmentResponse(req, cert, format, roles(identity(r)))
	})
}

// writeAccepted answers an accepted request with the body render makes of
// it and its certificate (nil until issued): 200 once it settled, else
// 202 with the Location to poll. An issued certificate that cannot be read
// now also answers 202: the client should poll, not submit again.
func (s *Server) writeAccepted(w http.ResponseWriter, r *http.Request, req *store.Request, render func(*store.Certificate) (any, error)) {
	var cert *store.Certificate
	status := http.StatusOK
	if req.Disposition == store.Issued {
		c, err := s.certificateOf(r.Context(), req)
		if err != nil {
			s.log.Warn("could not load an issued certificate; answering 202", "request", req.ID, "err", err)
			status = http.StatusAccepted
		}
		cert = c
	}
	resp, err := render(cert)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if status == http.StatusAccepted || !req.Disposition.Settled() {
		status = http.StatusAccepted
		w.Header().Set("Location", basePath(r)+"/Enrollment/Requests/"+strconv.FormatInt(req.ID, 10))
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, resp)
}

// handleGetRequest is GET /Enrollment/Requests/{id}.
func (s *Server) handleGetRequest(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "request")
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	var format pki.Format
	if h := r.Header.Get("x-certificateformat"); h != "" {
		if format, err = pki.ParseFormat(h); err != nil {
			writeError(w, r, s.log, badField("x-certificateformat header", "%v", err))
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	req, err := s.store.Get(ctx, id)
	caller := identity(r)
	// Someone else's request answers 404, not 403: ids are sequential and
	// must not reveal what others requested. Its deciders may read it.
	if errors.Is(err, store.ErrNotFound) || (err == nil && !visible(req, caller)) {
		writeError(w, r, s.log, newError(http.StatusNotFound, keyfactor.CodeNotFound, "request %d: not found", id))
		return
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	var cert *store.Certificate
	if req.Disposition == store.Issued {
		if cert, err = s.certificateOf(ctx, req); err != nil {
			writeError(w, r, s.log, err)
			return
		}
	}
	st, err := keyfactor.NewRequestStatus(req, cert, format, roles(caller))
	if err == nil {
		st.CertificateInformation.Pkcs12Blob, err = s.pfxBlobFor(ctx, req, cert, caller)
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

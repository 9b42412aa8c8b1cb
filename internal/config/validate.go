package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/metadata"
	"golang.org/x/crypto/bcrypt"

	"github.com/certflow/certflow/internal/pki"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks the whole configuration; its errors name the setting.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.RedisURL != "" {
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			bad("redis_url: want redis://host:port/db or rediss://…")
		}
	}
	if c.CRLBaseURL != "" {
		if u, err := url.Parse(c.CRLBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			bad("crl_base_url: want an absolute http:// or https:// URL without query, e.g. http://pki.example.com")
		}
	}
	if !nameRE.MatchString(c.KeyPrefix) {
		bad("key_prefix: %q is not a valid name", c.KeyPrefix)
	}
	if !nameRE.MatchString(c.Queue) {
		bad("queue: %q is not a valid name", c.Queue)
	}
	if c.API.MaxBodyBytes < 1024 {
		bad("api.max_body_bytes: must be at least 1024")
	}
	if c.API.RateLimit < 0 || (c.API.RateLimit > 0 && c.API.RateBurst < 1) {
		bad("api.rate_limit: must be 0 (off) or positive, with api.rate_burst at least 1")
	}
	if c.API.MaxSANs < 1 || c.API.MaxSANs > 10000 {
		bad("api.max_sans: must be between 1 and 10000")
	}
	if c.API.MaxPendingCSRs < 1 {
		bad("api.max_pending_csrs: must be at least 1")
	}
	if c.API.KeyGenerationConcurrency < 1 {
		bad("api.key_generation_concurrency: must be at least 1")
	}
	if c.API.RenewalGrace < 0 || c.API.RenewalGrace > c.Worker.Retention {
		bad("api.renewal_grace: must be between 0 and worker.retention (%s)", c.Worker.Retention)
	}
	if c.API.AuthFailuresPerMinute < 1 {
		bad("api.auth_failures_per_minute: must be at least 1")
	}
	if c.API.AuthFailuresPerUserPerHour < 1 {
		bad("api.auth_failures_per_user_per_hour: must be at least 1")
	}
	if c.API.AuthMaxLockout < time.Second {
		bad("api.auth_max_lockout: must be at least 1s")
	}
	if c.API.SyncWait < 0 || c.API.MaxSyncWait < c.API.SyncWait {
		bad("api.sync_wait: must be between 0 and api.max_sync_wait")
	}
	if c.Worker.ReconcileAfter <= c.Worker.TaskTimeout {
		bad("worker.reconcile_after: must be longer than worker.task_timeout (%s), or a running task would be started again", c.Worker.TaskTimeout)
	}
	if c.Worker.Concurrency < 1 {
		bad("worker.concurrency: must be at least 1")
	}
	if c.Worker.Servers < 1 {
		bad("worker.servers: must be at least 1")
	}
	if c.Worker.MaxRetry < 1 {
		bad("worker.max_retry: must be at least 1 (a crashed worker counts as a retry)")
	}
	if len(c.Callbacks.Schedule) == 0 {
		bad("callbacks.schedule: must list at least one retry delay")
	}
	for i, d := range c.Callbacks.Schedule {
		if d <= 0 {
			bad("callbacks.schedule[%d]: must be positive", i)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"api.idempotency_ttl", c.API.IdempotencyTTL},
		{"api.redis_timeout", c.API.RedisTimeout},
		{"worker.task_timeout", c.Worker.TaskTimeout},
		{"worker.shutdown_timeout", c.Worker.ShutdownTimeout},
		{"worker.reconcile_after", c.Worker.ReconcileAfter},
		{"worker.poll_interval", c.Worker.PollInterval},
		{"worker.retention", c.Worker.Retention},
		{"callbacks.timeout", c.Callbacks.Timeout},
		{"smtp.timeout", c.SMTP.Timeout},
	} {
		if d.v <= 0 {
			bad("%s: must be positive", d.name)
		}
	}
	if !slices.Contains([]string{"starttls", "implicit", "none"}, c.SMTP.TLS) {
		bad("smtp.tls: %q (want starttls, implicit or none)", c.SMTP.TLS)
	}
	if c.SMTP.Addr != "" {
		host, port, err := net.SplitHostPort(c.SMTP.Addr)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			bad("smtp.addr: %q is not host:port", c.SMTP.Addr)
		} else if ip := net.ParseIP(host); c.SMTP.TLS == "none" && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			bad("smtp.tls: none is only allowed for a loopback smtp.addr, not %q", host)
		}
		if _, err := mail.ParseAddress(c.SMTP.From); err != nil {
			bad("smtp.from: %q is not a mail address", c.SMTP.From)
		}
	}
	seenUser := map[string]bool{}
	for i, u := range c.Auth.Users {
		field := fmt.Sprintf("auth.users[%d]", i)
		switch {
		case u.Name == "":
			bad("%s.name: required", field)
		case u.Name == AdminName:
			bad("%s.name: %q is reserved for CERTFLOW_ADMIN_TOKEN's identity", field, u.Name)
		case seenUser[u.Name]:
			bad("%s.name: %q appears twice", field, u.Name)
		}
		seenUser[u.Name] = true
		if (u.Token == "") == (u.PasswordHash == "") {
			bad("%s: set exactly one of token and password_hash", field)
		}
		if u.PasswordHash != "" && u.Token == "" {
			if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
				bad("%s.password_hash: not a bcrypt hash ($2a$, $2b$ or $2y$)", field)
			}
		}
		if sum, ok := strings.CutPrefix(u.Token, "sha256:"); ok {
			if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
				bad("%s.token: sha256: must be followed by 64 hex characters", field)
			}
		}
		for _, r := range u.Roles {
			builtin := slices.ContainsFunc([]string{RoleRequester, RoleApprover, RoleAdmin}, func(b string) bool { return strings.EqualFold(b, r) })
			switch {
			case !roleRE.MatchString(r):
				bad("%s.roles: %q is not a role name (letters, digits, -, _ and .; built in: requester, approver, admin)", field, r)
			case builtin && r != strings.ToLower(r):
				bad("%s.roles: %q: the built-in roles are spelt requester, approver and admin", field, r)
			}
		}
	}
	caNames := map[string]bool{}
	for i, ca := range c.CAs {
		field := fmt.Sprintf("certificate_authorities[%d]", i)
		checkName(field, ca.Name, caNames, bad)
		if !nameRE.MatchString(ca.Host) {
			bad("%s.host: %q is not a valid host name", field, ca.Host)
		}
		if ca.Type != "builtin" {
			bad("%s.type: %q is not supported (want builtin)", field, ca.Type)
		}
		if !slices.Contains([]string{"ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"}, ca.KeyType) {
			bad("%s.key_type: %q (want ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096)", field, ca.KeyType)
		}
		if ca.MaxValidity <= 0 {
			bad("%s.max_validity: must be positive", field)
		}
		validatePolicy(field, &ca.Policy, bad)
	}
	tmplNames := map[string]bool{}
	for i, t := range c.Templates {
		field := fmt.Sprintf("templates[%d]", i)
		checkName(field, t.Name, tmplNames, bad)
		if len(t.CAs) == 0 {
			bad("%s.certificate_authorities: at least one is required", field)
		}
		for _, n := range t.CAs {
			if !caNames[strings.ToLower(n)] {
				bad("%s.certificate_authorities: unknown authority %q", field, n)
			} else if ca, _ := c.CA(n); ca.Standalone {
				// A request without CertificateAuthority gets one of the
				// template's CAs; a standalone CA must be named.
				bad("%s.certificate_authorities: %s is standalone: it serves requests that name it, without a template", field, n)
			}
		}
		validatePolicy(field, &t.Policy, bad)
		if t.Validity <= 0 {
			bad("%s.validity: must be positive", field)
		}
		for _, u := range t.KeyUsages {
			if _, ok := pki.KeyUsages[u]; !ok {
				bad("%s.key_usages: unknown key usage %q (known: %s)", field, u, strings.Join(slices.Sorted(maps.Keys(pki.KeyUsages)), ", "))
			}
		}
		for _, u := range t.ExtKeyUsages {
			if _, ok := pki.ExtKeyUsages[u]; !ok {
				bad("%s.extended_key_usages: unknown extended key usage %q (known: %s)", field, u, strings.Join(slices.Sorted(maps.Keys(pki.ExtKeyUsages)), ", "))
			}
		}
	}
	c.validateMetadataFields(bad)
	c.validateSecurityRoles(bad)
	for i := range c.Templates {
		c.validateTemplateFields(fmt.Sprintf("templates[%d]", i), &c.Templates[i], bad)
	}
	return errors.Join(errs...)
}

// validatePolicy checks the key and name policy a template or a CA
// (field) sets, and the roles it lets enroll.
func validatePolicy(field string, p *Policy, bad func(format string, args ...any)) {
	for _, bits := range p.RSAKeySizes {
		if bits < pki.MinRSABits || bits > pki.MaxRSABits {
			bad("%s.rsa_key_sizes: %d is outside %d–%d", field, bits, pki.MinRSABits, pki.MaxRSABits)
		}
	}
	for _, curve := range p.ECCCurves {
		if !slices.Contains([]string{"P-256", "P-384", "P-521"}, curve) {
			bad("%s.ecc_curves: unknown curve %q (want P-256, P-384 or P-521)", field, curve)
		}
	}
	for _, t := range p.SANTypes {
		if !slices.Contains(SANTypes, t) {
			bad("%s.san_types: unknown type %q (want %s)", field, t, strings.Join(SANTypes, ", "))
		}
	}
	for _, r := range p.AllowedRequesters {
		if !roleRE.MatchString(r) {
			bad("%s.allowed_requesters: %q is not a role name", field, r)
		}
	}
}

// validateSecurityRoles checks security_roles: ids from MinSecurityRoleID,
// names well-formed, neither repeated nor a built-in role's.
func (c *Config) validateSecurityRoles(bad func(format string, args ...any)) {
	ids, names := map[int64]bool{}, map[string]bool{}
	for _, b := range BuiltinRoles {
		names[b.Name] = true
	}
	for i, r := range c.SecurityRoles {
		field := fmt.Sprintf("security_roles[%d]", i)
		switch {
		case r.ID < MinSecurityRoleID:
			bad("%s.id: %d; configured roles' ids start at %d (smaller ones are the built-in roles')", field, r.ID, MinSecurityRoleID)
		case ids[r.ID]:
			bad("%s.id: %d appears twice", field, r.ID)
		}
		ids[r.ID] = true
		switch {
		case !roleRE.MatchString(r.Name):
			bad("%s.name: %q is not a role name (letters, digits, -, _ and .)", field, r.Name)
		case slices.ContainsFunc(BuiltinRoles, func(b SecurityRole) bool { return strings.EqualFold(b.Name, r.Name) }):
			bad("%s.name: %q is a built-in role; it has id %d already", field, r.Name, c.roleByName(r.Name).ID)
		case names[strings.ToLower(r.Name)]:
			bad("%s.name: %q appears twice", field, r.Name)
		}
		names[strings.ToLower(r.Name)] = true
	}
}

// validateTemplateFields checks a template's metadata field overrides and enrollment fields, normalizing their spelling.
func (c *Config) validateTemplateFields(field string, t *Template, bad func(format string, args ...any)) {
	seen := map[string]bool{}
	for j := range t.MetadataFields {
		o := &t.MetadataFields[j]
		f := fmt.Sprintf("%s.metadata_fields[%d]", field, j)
		mf := c.MetaField(o.Name)
		if mf == nil {
			bad("%s.name: %q is not one of metadata_fields", f, o.Name)
			continue
		}
		o.Name = mf.Name
		if seen[mf.Name] {
			bad("%s.name: %q appears twice", f, o.Name)
		}
		seen[mf.Name] = true
		if o.Enrollment != "" {
			if k := slices.IndexFunc(metadata.Enrollments, func(e string) bool { return strings.EqualFold(e, o.Enrollment) }); k >= 0 {
				o.Enrollment = metadata.Enrollments[k]
			} else {
				bad("%s.enrollment: %q (want %s)", f, o.Enrollment, strings.Join(metadata.Enrollments, ", "))
			}
		}
		checkable := true
		if o.Validation != "" || o.Message != "" {
			if mf.Type != metadata.String {
				bad("%s.validation: only String fields have a validation pattern (%s is %s)", f, mf.Name, mf.Type)
				checkable = false
			} else if _, err := regexp.Compile(o.Validation); err != nil {
				bad("%s.validation: %v", f, err)
				checkable = false
			}
		}
		if o.DefaultValue != "" && checkable {
			eff := t.MetaField(mf)
			v, err := metadata.Check(metadata.Field{Type: eff.Type, Validation: eff.Validation, Message: eff.Message, Options: eff.Options}, o.DefaultValue)
			if err != nil {
				bad("%s.default_value: %v", f, err)
			} else {
				o.DefaultValue = v
			}
		}
	}
	seen = map[string]bool{}
	for j := range t.EnrollmentFields {
		e := &t.EnrollmentFields[j]
		f := fmt.Sprintf("%s.enrollment_fields[%d]", field, j)
		checkName(f, e.Name, seen, bad)
		switch {
		case e.Type == "" || strings.EqualFold(e.Type, EnrollmentFieldString):
			e.Type = EnrollmentFieldString
			if len(e.Options) > 0 {
				bad("%s.options: only MultipleChoice fields have options", f)
			}
		case strings.EqualFold(e.Type, EnrollmentFieldMultipleChoice):
			e.Type = EnrollmentFieldMultipleChoice
			if len(e.Options) == 0 {
				bad("%s.options: a MultipleChoice field needs at least one option", f)
			}
			for k, o := range e.Options {
				if strings.TrimSpace(o) == "" || slices.Contains(e.Options[:k], o) {
					bad("%s.options: %q is empty or repeated", f, o)
				}
			}
		default:
			bad("%s.type: %q (want String or MultipleChoice)", f, e.Type)
		}
	}
}

// validateMetadataFields checks metadata_fields, filling in the default type
// and enrollment and Keyfactor's spelling of both, and normalizing default
// values as a request's values are.
func (c *Config) validateMetadataFields(bad func(format string, args ...any)) {
	seen := map[string]bool{}
	for i := range c.Metadata {
		f := &c.Metadata[i]
		field := fmt.Sprintf("metadata_fields[%d]", i)
		checkName(field, f.Name, seen, bad)
		if f.DisplayOrder < 0 {
			bad("%s.display_order: must be positive (or 0, for the field's position)", field)
		}
		typ, typeOK := metadata.TypeName(f.Type)
		if typeOK {
			f.Type = typ
		} else {
			bad("%s.type: %q is not a metadata field type (want %s)", field, f.Type, strings.Join(metadata.Types, ", "))
		}
		if f.Enrollment == "" {
			f.Enrollment = metadata.Optional
		}
		if j := slices.IndexFunc(metadata.Enrollments, func(e string) bool { return strings.EqualFold(e, f.Enrollment) }); j >= 0 {
			f.Enrollment = metadata.Enrollments[j]
		} else {
			bad("%s.enrollment: %q (want %s)", field, f.Enrollment, strings.Join(metadata.Enrollments, ", "))
		}
		checkable := typeOK // whether default_value can be checked
		if f.Validation != "" {
			if _, err := regexp.Compile(f.Validation); err != nil {
				bad("%s.validation: %v", field, err)
				checkable = false
			}
			if typeOK && f.Type != metadata.String {
				bad("%s.validation: only String fields have a validation pattern", field)
			}
		}
		if typeOK && f.Type == metadata.MultipleChoice && len(f.Options) == 0 {
			bad("%s.options: a MultipleChoice field needs at least one option", field)
			checkable = false
		}
		if typeOK && f.Type != metadata.MultipleChoice && len(f.Options) > 0 {
			bad("%s.options: only MultipleChoice fields have options", field)
		}
		if f.DefaultValue != "" && checkable {
			v, err := metadata.Check(metadata.Field{Type: f.Type, Validation: f.Validation, Message: f.Message, Options: f.Options}, f.DefaultValue)
			if err != nil {
				bad("%s.default_value: %v", field, err)
			} else {
				f.DefaultValue = v
			}
		}
	}
}

// checkName checks an entry's name: well-formed, and not used by an
// earlier entry of the same list (names compare without case, as
// Keyfactor's do).
func checkName(field, name string, seen map[string]bool, bad func(string, ...any)) {
	if !nameRE.MatchString(name) {
		bad("%s.name: %q is not a valid name", field, name)
	}
	if seen[strings.ToLower(name)] {
		bad("%s.name: %q appears twice", field, name)
	}
	seen[strings.ToLower(name)] = true
}

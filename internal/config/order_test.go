package config

import (
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/metadata"
)

// brokenEverywhere breaks nearly every rule Validate checks, at least one
// in each section, so that the order of its messages is pinned.
func brokenEverywhere() Config {
	c := Default()
	c.RedisURL = "http://x"
	c.CRLBaseURL = "ftp://x"
	c.KeyPrefix = "bad prefix"
	c.Queue = "bad queue"
	c.API = API{RateLimit: -1, RenewalGrace: -time.Second, SyncWait: 2, MaxSyncWait: 1}
	c.Worker = Worker{}
	c.Callbacks = Callbacks{Schedule: []time.Duration{0}}
	c.SMTP = SMTP{TLS: "none", Addr: "mail.example.com:25", From: "not an address"}
	c.Auth.Users = []User{
		{Name: "", Token: "sha256:zz", Roles: []string{"bad role", "Admin"}},
		{Name: AdminName, PasswordHash: "plain"},
		{Name: "bob", Token: "t", PasswordHash: "h"},
		{Name: "bob", Token: "t"},
	}
	c.CAs = append(c.CAs, CA{Name: "bad name", Host: "bad host", Type: "adcs", KeyType: "rsa-1024",
		Policy: Policy{RSAKeySizes: []int{1024}, ECCCurves: []string{"x"}, SANTypes: []string{"x"}, AllowedRequesters: []string{"bad role"}}},
		CA{Name: "Alone", Host: "h", Type: "builtin", KeyType: "ecdsa-p256", MaxValidity: time.Hour, Standalone: true})
	c.Templates = append(c.Templates, Template{Name: "Bad Name", CAs: []string{"NoSuchCA", "Alone"},
		Policy: Policy{RSAKeySizes: []int{1024}}, KeyUsages: []string{"Nope"}, ExtKeyUsages: []string{"Nope"},
		MetadataFields:   []TemplateMetaField{{Name: "Missing"}, {Name: "Env", Enrollment: "x", Validation: "("}, {Name: "env"}},
		EnrollmentFields: []EnrollmentField{{Name: "a", Type: "Bool"}, {Name: "b", Options: []string{"x"}}, {Name: "c", Type: "multiplechoice"}}},
		Template{Name: "NoCA", CAs: []string{}, Validity: time.Hour})
	c.Metadata = []MetaField{{Name: "Env", Type: metadata.Integer, Validation: "(", Options: []string{"x"}, DisplayOrder: -1, Enrollment: "x"},
		{Name: "env", Type: "Float"}}
	c.SecurityRoles = []SecurityRole{{ID: 1, Name: "requester"}, {ID: 10, Name: "bad role"}, {ID: 10, Name: "Ops"}, {ID: 11, Name: "ops"}}
	return c
}

// Validate's messages come in the order they always have: the file's
// top-level settings, then each section in the file's order, the checks
// every duration shares after the callbacks, and the templates' metadata
// and enrollment fields last.
func TestValidateKeepsTheOrderOfItsMessages(t *testing.T) {
	t.Parallel()
	c := brokenEverywhere()
	var got []string
	for _, err := range joined(c.Validate()) {
		got = append(got, err.Error())
	}
	if strings.Join(got, "\n") != strings.Join(wantOrder, "\n") {
		t.Errorf("Validate's messages:\n%s\n\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantOrder, "\n"))
	}
}

var wantOrder = []string{
	"redis_url: want redis://host:port/db or rediss://…",
	"crl_base_url: want an absolute http:// or https:// URL without query, e.g. http://pki.example.com",
	"key_prefix: \"bad prefix\" is not a valid name",
	"queue: \"bad queue\" is not a valid name",
	"api.max_body_bytes: must be at least 1024",
	"api.rate_limit: must be 0 (off) or positive, with api.rate_burst at least 1",
	"api.max_sans: must be between 1 and 10000",
	"api.max_scan: must be between 1 and 1000000",
	"api.max_index_read: must be between 1000 and 100000000",
	"api.max_pending_csrs: must be at least 1",
	"api.key_generation_concurrency: must be at least 1",
	"api.renewal_grace: must be between 0 and worker.retention (0s)",
	"api.auth_failures_per_minute: must be at least 1",
	"api.auth_failures_per_user_per_hour: must be at least 1",
	"api.auth_max_lockout: must be at least 1s",
	"api.sync_wait: must be between 0 and api.max_sync_wait",
	"worker.reconcile_after: must be longer than worker.task_timeout (0s), or a running task would be started again",
	"worker.concurrency: must be at least 1",
	"worker.servers: must be at least 1",
	"worker.max_retry: must be at least 1 (a crashed worker counts as a retry)",
	"callbacks.schedule[0]: must be positive",
	"api.idempotency_ttl: must be positive",
	"api.redis_timeout: must be positive",
	"worker.task_timeout: must be positive",
	"worker.shutdown_timeout: must be positive",
	"worker.reconcile_after: must be positive",
	"worker.poll_interval: must be positive",
	"worker.scheduled_interval: must be positive",
	"worker.retention: must be positive",
	"callbacks.timeout: must be positive",
	"smtp.timeout: must be positive",
	"smtp.tls: none is only allowed for a loopback smtp.addr, not \"mail.example.com\"",
	"smtp.from: \"not an address\" is not a mail address",
	"auth.users[0].name: required",
	"auth.users[0].token: sha256: must be followed by 64 hex characters",
	"auth.users[0].roles: \"bad role\" is not a role name (letters, digits, -, _ and .; built in: requester, approver, admin)",
	"auth.users[0].roles: \"Admin\": the built-in roles are spelt requester, approver and admin",
	"auth.users[1].name: \"admin\" is reserved for CERTFLOW_ADMIN_TOKEN's identity",
	"auth.users[1].password_hash: not a bcrypt hash ($2a$, $2b$ or $2y$)",
	"auth.users[2]: set exactly one of token and password_hash",
	"auth.users[3].name: \"bob\" appears twice",
	"certificate_authorities[1].name: \"bad name\" is not a valid name",
	"certificate_authorities[1].host: \"bad host\" is not a valid host name",
	"certificate_authorities[1].type: \"adcs\" is not supported (want builtin or acme)",
	"certificate_authorities[1].key_type: \"rsa-1024\" (want ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096)",
	"certificate_authorities[1].max_validity: must be positive",
	"certificate_authorities[1].rsa_key_sizes: 1024 is outside 2048–8192",
	"certificate_authorities[1].ecc_curves: unknown curve \"x\" (want P-256, P-384 or P-521)",
	"certificate_authorities[1].san_types: unknown type \"x\" (want dns, ip, email, uri)",
	"certificate_authorities[1].allowed_requesters: \"bad role\" is not a role name",
	"templates[1].name: \"Bad Name\" is not a valid name",
	"templates[1].certificate_authorities: unknown authority \"NoSuchCA\"",
	"templates[1].certificate_authorities: Alone is standalone: it serves requests that name it, without a template",
	"templates[1].rsa_key_sizes: 1024 is outside 2048–8192",
	"templates[1].validity: must be positive",
	"templates[1].key_usages: unknown key usage \"Nope\" (known: ContentCommitment, DataEncipherment, DigitalSignature, KeyAgreement, KeyEncipherment)",
	"templates[1].extended_key_usages: unknown extended key usage \"Nope\" (known: ClientAuth, CodeSigning, EmailProtection, OCSPSigning, ServerAuth, TimeStamping)",
	"templates[2].certificate_authorities: at least one is required",
	"metadata_fields[0].display_order: must be positive (or 0, for the field's position)",
	"metadata_fields[0].enrollment: \"x\" (want Optional, Required, Hidden)",
	"metadata_fields[0].validation: error parsing regexp: missing closing ): `(`",
	"metadata_fields[0].validation: only String fields have a validation pattern",
	"metadata_fields[0].options: only MultipleChoice fields have options",
	"metadata_fields[1].name: \"env\" appears twice",
	"metadata_fields[1].type: \"Float\" is not a metadata field type (want String, Integer, Date, Boolean, MultipleChoice, BigText, Email)",
	"security_roles[0].id: 1; configured roles' ids start at 10 (smaller ones are the built-in roles')",
	"security_roles[0].name: \"requester\" is a built-in role; it has id 1 already",
	"security_roles[1].name: \"bad role\" is not a role name (letters, digits, -, _ and .)",
	"security_roles[2].id: 10 appears twice",
	"security_roles[3].name: \"ops\" appears twice",
	"templates[1].metadata_fields[0].name: \"Missing\" is not one of metadata_fields",
	"templates[1].metadata_fields[1].enrollment: \"x\" (want Optional, Required, Hidden)",
	"templates[1].metadata_fields[1].validation: only String fields have a validation pattern (Env is Integer)",
	"templates[1].metadata_fields[2].name: \"Env\" appears twice",
	"templates[1].enrollment_fields[0].type: \"Bool\" (want String or MultipleChoice)",
	"templates[1].enrollment_fields[1].options: only MultipleChoice fields have options",
	"templates[1].enrollment_fields[2].options: a MultipleChoice field needs at least one option",
}

// api.trusted_proxies takes IP addresses and CIDR prefixes; anything else
// is refused naming the entry.
func TestTrustedProxiesAreAddressesOrPrefixes(t *testing.T) {
	t.Parallel()
	c := Default()
	c.API.TrustedProxies = []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::ffff:10.1.1.1"}
	if err := c.Validate(); err != nil {
		t.Fatalf("good proxies refused: %v", err)
	}
	for _, bad := range []string{"proxy.example.com", "10.0.0.0/33", "", "10.0.0.1:8080"} {
		c.API.TrustedProxies = []string{"10.0.0.0/8", bad}
		err := c.Validate()
		if want := `api.trusted_proxies[1]: "` + bad + `" is not an IP address or a CIDR prefix`; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", bad, err, want)
		}
	}
}

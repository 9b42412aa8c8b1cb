package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

// idemSubmit is one submit of an Idempotency-Key table: where it goes,
// its body and its headers (besides the key, Prefer and Authorization).
type idemSubmit struct {
	name    string
	path    string
	body    map[string]any
	headers []string
}

// requestRecord matches a request record's key, and nothing else of it.
var requestRecord = regexp.MustCompile(`:request:\{\d+\}$`)

// requestCount is how many request records cf's Redis holds.
func requestCount(t *testing.T, cf *testutil.Certflow) int {
	t.Helper()
	n := 0
	for _, k := range testutil.Keys(t, cf.Redis, cf.Prefix) {
		if requestRecord.MatchString(k) {
			n++
		}
	}
	return n
}

// submitIdem sends s with key as Idempotency-Key, as auth, asking for an
// asynchronous answer; it returns the answer and the request id in it (0
// when refused). The id is KeyfactorRequestId, at the top of a renewal's
// answer and in CertificateInformation of the others.
func submitIdem(t *testing.T, cf *testutil.Certflow, s idemSubmit, key, auth string) (*testutil.Response, int64) {
	t.Helper()
	h := append([]string{"Idempotency-Key", key, "Prefer", "respond-async", "Authorization", auth}, s.headers...)
	r := cf.Do(t, "POST", s.path, s.body, h...)
	if r.Status != http.StatusOK && r.Status != http.StatusAccepted {
		return r, 0
	}
	var ans struct {
		KeyfactorRequestId     int64
		CertificateInformation struct{ KeyfactorRequestId int64 }
	}
	if err := json.Unmarshal(r.Body, &ans); err != nil {
		t.Fatalf("%s: %v: %s", s.name, err, r.Body)
	}
	return r, max(ans.KeyfactorRequestId, ans.CertificateInformation.KeyfactorRequestId)
}

// assertIdempotencyTable submits first under a key, then each of differ
// under the same key (each asks for something else in one field: 409
// naming Idempotency-Key, and no request added to Redis), then each of
// same (what a client's retry may change without asking for anything
// else: the first request again).
func assertIdempotencyTable(t *testing.T, cf *testutil.Certflow, auth, key string, first idemSubmit, differ, same []idemSubmit) {
	t.Helper()
	r, id := submitIdem(t, cf, first, key, auth)
	if id == 0 {
		t.Fatalf("%s: %d %s", first.name, r.Status, r.Body)
	}
	records := requestCount(t, cf)
	for _, s := range differ {
		t.Run("refused/"+s.name, func(t *testing.T) {
			r, got := submitIdem(t, cf, s, key, auth)
			if got != 0 {
				t.Fatalf("a repeat that asks for something else was answered %d with request %d (the first is %d)", r.Status, got, id)
			}
			assertError(t, r, http.StatusConflict, keyfactor.CodeConflict, "Idempotency-Key header:")
			if n := requestCount(t, cf); n != records {
				t.Fatalf("%d request records after the refused repeat, %d before", n, records)
			}
			// The same body under a key of its own is a valid submit: the
			// 409 is the key's doing, not a refusal of the body.
			if r, got := submitIdem(t, cf, s, key+"/"+s.name, auth); got == 0 {
				t.Fatalf("the row's body is refused on its own: %d %s", r.Status, r.Body)
			}
			records = requestCount(t, cf)
		})
	}
	for _, s := range same {
		t.Run("same/"+s.name, func(t *testing.T) {
			r, got := submitIdem(t, cf, s, key, auth)
			if got != id {
				t.Fatalf("a retry of the same ask answered %d with request %d, want the first, %d: %s", r.Status, got, id, r.Body)
			}
			if n := requestCount(t, cf); n != records {
				t.Fatalf("%d request records after the retry, %d before", n, records)
			}
		})
	}
}

// TestPolicyIdempotencyKeyEnrollment: a reused Idempotency-Key returns
// the first request only to a submit that asks for the same thing; any
// field that changes the ask (SANs, metadata, enrollment fields, owner,
// callback, formats, the CSR) is a 409, not a quiet answer with the first
// request. What a retry may legitimately change (the Timestamp, the order
// of SANs, a CSR signed again with the same key, a default spelled out, a
// role named instead of numbered) is the same request.
func TestPolicyIdempotencyKeyEnrollment(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, catalogConfig(t))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := testutil.CSRWithKey(t, key, "idem.example.com", "idem.example.com")
	resigned := testutil.CSRWithKey(t, key, "idem.example.com", "idem.example.com") // ECDSA: another signature
	other, _ := testutil.CSR(t, "idem.example.com", "idem.example.com")
	body := func(c []byte, change map[string]any) map[string]any {
		b := internalBody(c, map[string]any{
			"SANs":                       map[string]any{"dns": []string{"a.example.com", "b.example.com"}},
			"Metadata":                   map[string]any{"CostCenter": 7, "Env": "Prod"},
			"AdditionalEnrollmentFields": map[string]any{"Ticket": "CHG-1", "Zone": "dmz"},
		})
		for k, v := range change {
			if v == nil {
				delete(b, k)
			} else {
				b[k] = v
			}
		}
		return b
	}
	row := func(name string, change map[string]any, headers ...string) idemSubmit {
		return idemSubmit{name: name, path: "/Enrollment/CSR", body: body(csr, change), headers: append([]string{"x-certificateformat", "PEM"}, headers...)}
	}
	first := row("first", nil)
	differ := []idemSubmit{
		{name: "another key's CSR", path: "/Enrollment/CSR", body: body(other, nil), headers: []string{"x-certificateformat", "PEM"}},
		row("a SAN added", map[string]any{"SANs": map[string]any{"dns": []string{"a.example.com", "b.example.com", "evil.example.com"}}}),
		row("a SAN replaced", map[string]any{"SANs": map[string]any{"dns": []string{"a.example.com", "evil.example.com"}}}),
		row("a SAN dropped", map[string]any{"SANs": map[string]any{"dns": []string{"a.example.com"}}}),
		row("an IP SAN added", map[string]any{"SANs": map[string]any{"dns": []string{"a.example.com", "b.example.com"}, "ip4": []string{"10.0.0.1"}}}),
		row("a metadata value changed", map[string]any{"Metadata": map[string]any{"CostCenter": 8, "Env": "Prod"}}),
		row("a metadata choice changed", map[string]any{"Metadata": map[string]any{"CostCenter": 7, "Env": "Test"}}),
		row("an enrollment field changed", map[string]any{"AdditionalEnrollmentFields": map[string]any{"Ticket": "CHG-2", "Zone": "dmz"}}),
		row("an enrollment field dropped", map[string]any{"AdditionalEnrollmentFields": map[string]any{"Ticket": "CHG-1"}}),
		row("another owner", map[string]any{"OwnerRoleId": 10}),
		row("a callback added", map[string]any{"CallbackUrl": "https://hooks.example.com/done"}),
		row("the chain asked for", map[string]any{"IncludeChain": true}),
		row("no subject header", map[string]any{"IncludeSubjectHeader": false}),
		row("the CA named", map[string]any{"CertificateAuthority": cf.Config.CAs[0].QualifiedName()}),
		{name: "another format", path: "/Enrollment/CSR", body: body(csr, nil), headers: []string{"x-certificateformat", "DER"}},
		{name: "forceEnroll", path: "/Enrollment/CSR?forceEnroll=true", body: body(csr, nil), headers: []string{"x-certificateformat", "PEM"}},
	}
	later := time.Now().UTC().Add(90 * time.Second).Format(time.RFC3339)
	same := []idemSubmit{
		row("a new Timestamp", map[string]any{"Timestamp": later}),
		row("the SANs in another order, the kind in capitals", map[string]any{"SANs": map[string]any{"DNS": []string{"b.example.com", "a.example.com"}}}),
		{name: "the CSR signed again with the same key", path: "/Enrollment/CSR", body: body(resigned, nil), headers: []string{"x-certificateformat", "PEM"}},
		row("a default left out", map[string]any{"Metadata": map[string]any{"CostCenter": 7}}),
		row("the owner by name", map[string]any{"OwnerRoleId": nil, "OwnerRoleName": "web-owners"}),
	}
	assertIdempotencyTable(t, cf, bearer(ownerToken), "enroll-1", first, differ, same)
}

// TestPolicyIdempotencyKeyPFX: the same for PFX enrollment, whose ask
// includes the subject and key to generate and the archive's password.
func TestPolicyIdempotencyKeyPFX(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	row := func(name string, change map[string]any) idemSubmit {
		return idemSubmit{name: name, path: "/Enrollment/PFX", body: pfxBody(change), headers: []string{"x-certificateformat", "PFX"}}
	}
	differ := []idemSubmit{
		row("another subject", map[string]any{"Subject": "CN=other.example.com,O=Certflow Tests"}),
		row("another password", map[string]any{"Password": "another-password-1"}),
		row("a SAN added", map[string]any{"SANs": map[string]any{"dns": []string{"pfx.example.com", "evil.example.com"}}}),
		row("another key size", map[string]any{"KeyType": "RSA", "KeyLength": 3072}),
		row("another key type", map[string]any{"KeyType": "ECC", "Curve": "P-256"}),
		row("a friendly name", map[string]any{"CustomFriendlyName": "mine"}),
		row("another chain order", map[string]any{"ChainOrder": "RootFirst"}),
		row("the chain asked for", map[string]any{"IncludeChain": true}),
	}
	same := []idemSubmit{
		row("a new Timestamp", map[string]any{"Timestamp": time.Now().UTC().Add(time.Minute).Format(time.RFC3339)}),
		row("the default key spelled out", map[string]any{"KeyType": "RSA", "KeyLength": 2048}),
		row("the default chain order spelled out", map[string]any{"ChainOrder": "EndEntityFirst"}),
	}
	assertIdempotencyTable(t, cf, bearer(testutil.AliceToken), "pfx-1", row("first", nil), differ, same)
}

// TestPolicyIdempotencyKeyRenewal: the same for renewal, with the
// retained key (whose CSR certflow makes afresh for every submit) and
// with a new CSR.
func TestPolicyIdempotencyKeyRenewal(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		tmpl := c.Templates[0]
		tmpl.Name, tmpl.KeyRetention = "Retained", true
		also := tmpl
		also.Name = "AlsoRetained"
		c.Templates = append(c.Templates, tmpl, also)
	})
	alice := bearer(testutil.AliceToken)
	csr, key := testutil.CSR(t, "renew-idem.example.com", "renew-idem.example.com")
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	_, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "Retained", "PrivateKey": base64.StdEncoding.EncodeToString(pkcs8)}), "Authorization", alice)
	id := er.CertificateInformation.KeyfactorID
	if id == 0 {
		t.Fatalf("enroll: %+v", er.CertificateInformation)
	}
	fresh, _ := testutil.CSR(t, "renew-idem.example.com", "renew-idem.example.com")
	row := func(name string, change map[string]any) idemSubmit {
		b := map[string]any{"CertificateId": id}
		for k, v := range change {
			b[k] = v
		}
		return idemSubmit{name: name, path: "/Enrollment/Renew", body: b}
	}
	differ := []idemSubmit{
		row("a new CSR instead of the retained key", map[string]any{"CSR": base64.StdEncoding.EncodeToString(fresh)}),
		row("into another template", map[string]any{"Template": "AlsoRetained"}),
		row("the chain asked for", map[string]any{"IncludeChain": true}),
		row("a callback added", map[string]any{"CallbackUrl": "https://hooks.example.com/renewed"}),
		{name: "another format", path: "/Enrollment/Renew", body: map[string]any{"CertificateId": id}, headers: []string{"x-certificateformat", "DER"}},
	}
	same := []idemSubmit{
		row("a Timestamp added", map[string]any{"Timestamp": time.Now().UTC().Format(time.RFC3339)}),
		row("the template named as it is", map[string]any{"Template": "Retained"}),
	}
	assertIdempotencyTable(t, cf, alice, "renew-1", row("first", nil), differ, same)
}

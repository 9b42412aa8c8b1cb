package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/app"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

// fuzzMaxBody is the body limit while fuzzing: small, so that 413 is
// within the fuzzer's reach.
const fuzzMaxBody = 4096

// fieldNames are the names a refusal may start with: the body's JSON
// fields, the body itself, and the headers and query of the submit.
func fieldNames() map[string]bool {
	names := map[string]bool{"request body": true, "x-certificateformat header": true, "Idempotency-Key header": true, "forceEnroll": true}
	rt := reflect.TypeFor[keyfactor.EnrollmentCSRRequest]()
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		names[name] = true
	}
	return names
}

// FuzzEnrollmentBody sends arbitrary bodies to POST /Enrollment/CSR
// through the API's real handler (authentication, body limit, decoding,
// validation, definition selection, store and queue in a real Redis).
// Properties: nothing panics and nothing answers 500; every refusal is
// 400 or 413 with exactly Keyfactor's {"ErrorCode","Message"}, a code of
// its status, and a message that starts with the field it is about; an
// accepted body is answered 202 QUEUED with its Location and is stored as
// a well-formed request: the CSR it sent, a configured template, known
// SAN kinds, configured metadata fields, the caller as requester.
func FuzzEnrollmentBody(f *testing.F) {
	_, prefix := testutil.Redis(f)
	cfg := testutil.TestConfig(f, prefix)
	cfg.API.RateLimit = 0
	cfg.API.MaxBodyBytes = fuzzMaxBody
	cfg.Metadata = []config.MetaField{
		{Name: "RequestedBy"}, {Name: "Workflow"},
		{Name: "Team", Type: "String", Validation: `[a-z][a-z0-9-]*`, Message: "lower-case letters, digits and dashes"},
		{Name: "CostCenter", Type: "Integer"},
		{Name: "Expires", Type: "Date"},
		{Name: "Reviewed", Type: "Boolean", DefaultValue: "TRUE"},
		{Name: "Env", Type: "MultipleChoice", Options: []string{"Prod", "Test"}},
		{Name: "Owner", Type: "Email"},
		{Name: "ApprovedBy", Enrollment: "Hidden"},
	}
	// The seeds' owner role and additional fields exist, so that the
	// valid seeds are accepted.
	cfg.SecurityRoles = []config.SecurityRole{{ID: 10, Name: "ops"}}
	for _, name := range []string{"x", "n", "b", "s", "z"} {
		cfg.Templates[0].EnrollmentFields = append(cfg.Templates[0].EnrollmentFields, config.EnrollmentField{Name: name})
	}
	cfg.Templates[0].EnrollmentFields = append(cfg.Templates[0].EnrollmentFields, config.EnrollmentField{Name: "Zone", Type: "MultipleChoice", Options: []string{"dmz", "lan"}})
	// Every SAN type, so that the seed with every field is accepted.
	cfg.Templates[0].SANTypes = config.SANTypes
	if err := cfg.Validate(); err != nil {
		f.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	a, err := app.Open(cfg, app.RoleAPI, testutil.AdminToken, slog.New(slog.NewTextHandler(logs, nil)), io.Discard)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(a.Close)
	handler := a.APIServer().Handler()
	names := fieldNames()

	csr, _ := testutil.CSR(f, "fuzz.example.com", "www.fuzz.example.com")
	b64 := base64.StdEncoding.EncodeToString(csr)
	ts := "2026-01-02T03:04:05Z"
	for _, body := range []string{
		fmt.Sprintf(`{"CSR":%q,"Template":"WebServer","Timestamp":%q}`, b64, ts),
		fmt.Sprintf(`{"CSR":%q,"Template":"WebServer","Timestamp":%q,"IncludeChain":true,"SANs":{"dns":["a.fuzz.example.com"],"ip4":["192.0.2.1"]},"Metadata":{"Team":"web","CostCenter":42,"Env":"Prod"},"OwnerRoleName":"ops","AdditionalEnrollmentFields":{"x":1}}`, b64, ts),
		fmt.Sprintf(`{"CSR":%q,"Template":"WebServer","Timestamp":%q,"SANs":{"dns":"x"}}`, b64, ts),
		fmt.Sprintf(`{"CSR":%q,"Template":"WebServer","Timestamp":%q,"Metadata":{"Env":"prod"}}`, b64, ts),
		fmt.Sprintf(`{"CSR":%q,"Template":"Nope","Timestamp":%q}`, b64, ts),
		fmt.Sprintf(`{"CSR":%q,"Template":"WebServer","Timestamp":"yesterday"}`, b64),
		fmt.Sprintf(`{"CSR":%q,"Template":"WebServer","Timestamp":%q,"OwnerRoleId":1,"OwnerRoleName":"x"}`, b64, ts),
		fmt.Sprintf(`{"CSR":%q,"Template":"WebServer","Timestamp":%q,"OwnerRoleId":10,"AdditionalEnrollmentFields":{"zone":"lan","X":true}}`, b64, ts),
		fmt.Sprintf(`{"CSR":%q,"Template":"WebServer","Timestamp":%q,"OwnerRoleId":99,"AdditionalEnrollmentFields":{"Zone":"DMZ","Colour":1}}`, b64, ts),
		fmt.Sprintf(`{"CSR":%q,"Template":"WebServer","Timestamp":%q,"Pad":%q}`, b64, ts, strings.Repeat("x", fuzzMaxBody)),
		fmt.Sprintf(`{"CSR":%q,"Template":"WebServer","Timestamp":%q}{}`, b64, ts),
		`{"CSR":"MII=","Template":"WebServer","Timestamp":"2026-01-02T03:04:05Z"}`,
		``, `null`, `[]`, `{"CSR":1}`, `{"IncludeChain":"yes"}`,
	} {
		f.Add(body)
	}

	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/Enrollment/CSR", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testutil.AliceToken)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-certificateformat", "PEM")
		req.Header.Set("Prefer", "respond-async")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusAccepted:
			checkAccepted(t, a.Store, cfg, body, rec)
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			checkRefusal(t, names, rec)
		default:
			t.Fatalf("answered %d %s\nlog:\n%s", rec.Code, rec.Body.String(), logs.String())
		}
	})
}

func checkRefusal(t *testing.T, names map[string]bool, rec *httptest.ResponseRecorder) {
	t.Helper()
	var e map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || len(e) != 2 {
		t.Fatalf("%d with a body that is not Keyfactor's error shape: %s (%v)", rec.Code, rec.Body.String(), err)
	}
	code, _ := e["ErrorCode"].(string)
	msg, _ := e["Message"].(string)
	want := map[int][]string{
		http.StatusBadRequest:            {keyfactor.CodeInvalidField, keyfactor.CodeInvalidCSR, keyfactor.CodeUnknownName, keyfactor.CodeNoWorkflow, keyfactor.CodePolicy},
		http.StatusRequestEntityTooLarge: {keyfactor.CodeTooLarge},
	}[rec.Code]
	if !contains(want, code) {
		t.Fatalf("%d with ErrorCode %q, want one of %v: %s", rec.Code, code, want, rec.Body.String())
	}
	field, _, ok := strings.Cut(msg, ": ")
	top := field
	if i := strings.IndexAny(top, ".["); i >= 0 {
		top = top[:i]
	}
	if !ok || !names[top] {
		t.Fatalf("%d %s: the message does not start with the field it is about", rec.Code, rec.Body.String())
	}
}

func checkAccepted(t *testing.T, st *store.Store, cfg *config.Config, body string, rec *httptest.ResponseRecorder) {
	t.Helper()
	var answer struct {
		CertificateInformation struct {
			KeyfactorRequestId int64
			RequestDisposition string
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
		t.Fatalf("202 that is not JSON: %v: %s", err, rec.Body.String())
	}
	id := answer.CertificateInformation.KeyfactorRequestId
	if id <= 0 || answer.CertificateInformation.RequestDisposition != "QUEUED" ||
		rec.Header().Get("Location") != fmt.Sprintf("/Enrollment/Requests/%d", id) {
		t.Fatalf("202 without a queued request to poll: %s (Location %q)", rec.Body.String(), rec.Header().Get("Location"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := st.Get(ctx, id)
	if err != nil {
		t.Fatalf("accepted request %d is not stored: %v", id, err)
	}
	var sent struct{ CSR string }
	json.Unmarshal([]byte(body), &sent) // it was accepted: it decodes
	der, _, err := pki.DecodeCSR(sent.CSR)
	if err != nil || !bytes.Equal(der, r.CSR) {
		t.Fatalf("request %d stores a CSR other than the one sent (%v)", id, err)
	}
	in := r.Input
	if _, ok := cfg.Template(in.Template); !ok {
		t.Fatalf("request %d has template %q, which is not configured", id, in.Template)
	}
	if r.Disposition != store.Queued || r.Trigger != "enrollment" || r.Requester.Name != "alice" ||
		in.ID != id || in.Format != "PEM" || in.Timestamp.IsZero() {
		t.Fatalf("request %d is not a well-formed queued enrollment: %+v", id, r)
	}
	for kind, values := range in.SANs {
		if !workflow.SANKind(kind) || len(values) == 0 {
			t.Fatalf("request %d has SANs %q: %v", id, kind, values)
		}
	}
	tmpl, _ := cfg.Template(in.Template)
	for name, v := range in.AdditionalEnrollmentFields {
		f := tmpl.EnrollmentField(name)
		if f == nil || f.Name != name {
			t.Fatalf("request %d has enrollment field %q, which is not one of the template's", id, name)
		}
		if text, ok := v.(string); !ok || (f.Options != nil && !contains(f.Options, text)) {
			t.Fatalf("request %d has enrollment field %s = %#v: not text, or not an option", id, name, v)
		}
	}
	if in.OwnerRoleId != 0 || in.OwnerRoleName != "" {
		if r, ok := cfg.RoleByID(in.OwnerRoleId); !ok || r.Name != in.OwnerRoleName {
			t.Fatalf("request %d has owner %d %q, which is not a security role", id, in.OwnerRoleId, in.OwnerRoleName)
		}
	}
	for name := range in.Metadata {
		found := false
		for _, m := range cfg.Metadata {
			found = found || m.Name == name
		}
		if !found {
			t.Fatalf("request %d has metadata %q, which is not a configured field", id, name)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

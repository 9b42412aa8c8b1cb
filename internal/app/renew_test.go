package app_test

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

type renewResponse struct {
	KeyfactorId          int64
	KeyfactorRequestId   int64
	Thumbprint           string
	SerialNumber         string
	IssuerDN             string
	RequestDisposition   string
	DispositionMessage   string
	WorkflowInstanceId   string
	Certificates         []string
	RenewedCertificateId int64
}

func renew(t *testing.T, cf *testutil.Certflow, body map[string]any, headers ...string) (*testutil.Response, renewResponse) {
	t.Helper()
	resp := cf.Do(t, "POST", "/Enrollment/Renew", body, headers...)
	var rr renewResponse
	if resp.Status == http.StatusOK || resp.Status == http.StatusAccepted {
		resp.JSON(t, &rr)
	}
	return resp, rr
}

// retainingCertflow has a second template, Retained, that keeps keys.
func retainingCertflow(t *testing.T) *testutil.Certflow {
	return testutil.StartCertflow(t, func(c *config.Config) {
		tmpl := c.Templates[0]
		tmpl.Name, tmpl.KeyRetention = "Retained", true
		c.Templates = append(c.Templates, tmpl)
		c.SecurityRoles = append(c.SecurityRoles, config.SecurityRole{ID: 10, Name: "web-owners"})
	})
}

func leafOf(t *testing.T, entries []string) *x509.Certificate {
	t.Helper()
	if len(entries) == 0 {
		t.Fatal("no certificate in the answer")
	}
	return pemChain(t, entries[:1], true)[0]
}

func TestRenewalWithTheRetainedKeyKeepsKeyAndNames(t *testing.T) {
	t.Parallel()
	cf := retainingCertflow(t)
	csr, key := testutil.CSR(t, "renew.example.com", "renew.example.com", "alt.example.com")
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{
		"Template": "Retained", "PrivateKey": base64.StdEncoding.EncodeToString(pkcs8),
		"Metadata": map[string]any{"Team": "web"}, "OwnerRoleName": "web-owners",
	}), "Authorization", "Bearer "+testutil.AliceToken)
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	old := er.CertificateInformation
	oldLeaf := leafOf(t, old.Certificates)

	for _, by := range []map[string]any{
		{"CertificateId": old.KeyfactorID},
		{"Thumbprint": old.Thumbprint},
	} {
		by["IncludeChain"] = true
		resp, rr := renew(t, cf, by, "Authorization", "Bearer "+testutil.AliceToken, "x-certificateformat", "PEM")
		if resp.Status != http.StatusOK || rr.RequestDisposition != "ISSUED" {
			t.Fatalf("renew by %v: %d %s", by, resp.Status, resp.Body)
		}
		if rr.KeyfactorId == old.KeyfactorID || rr.Thumbprint == old.Thumbprint || rr.SerialNumber == old.SerialNumber || rr.RenewedCertificateId != old.KeyfactorID {
			t.Fatalf("the renewal did not issue a new certificate for the old one: %+v", rr)
		}
		chain := pemChain(t, rr.Certificates, true)
		verifyChain(t, chain, "alt.example.com")
		leaf := chain[0]
		if !bytes.Equal(leaf.RawSubject, oldLeaf.RawSubject) || !slices.Equal(leaf.DNSNames, oldLeaf.DNSNames) {
			t.Fatalf("renewed subject %s %v, want %s %v", leaf.Subject, leaf.DNSNames, oldLeaf.Subject, oldLeaf.DNSNames)
		}
		if !bytes.Equal(leaf.RawSubjectPublicKeyInfo, oldLeaf.RawSubjectPublicKeyInfo) {
			t.Fatal("a renewal with the retained key certified another key")
		}
		// The new request retains the same key, under its own id.
		stored, err := cf.App.Store.Get(t.Context(), rr.KeyfactorRequestId)
		if err != nil {
			t.Fatal(err)
		}
		opened, err := cf.App.KEK.Open(stored.PrivateKey, []byte("certflow-request/"+strconv.FormatInt(rr.KeyfactorRequestId, 10)))
		if err != nil || !bytes.Equal(opened, pkcs8) {
			t.Fatalf("the renewal does not retain the key under its own request id: %v", err)
		}
		if stored.Trigger != "renewal" || stored.Instance.Definition != "renewal-default" || stored.Requester.Name != "alice" {
			t.Fatalf("renewal ran as trigger %q, definition %q, requester %q", stored.Trigger, stored.Instance.Definition, stored.Requester.Name)
		}
		if stored.Input.Metadata["Team"] != "web" || stored.Input.OwnerRoleName != "web-owners" || stored.Input.OwnerRoleId != 10 || stored.Input.Template != "Retained" {
			t.Fatalf("the renewal did not carry the old request's metadata, owner and template: %+v", stored.Input)
		}
		if md := stored.Instance.Metadata; md["Workflow"] != "renewal-default" || stored.Input.RenewalCertificateId != old.KeyfactorID {
			t.Fatalf("renewal-default tagged %v; the request renews %d", md, stored.Input.RenewalCertificateId)
		}
	}
}

func TestRenewalWithANewCSR(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	csr, _ := testutil.CSR(t, "rekey.example.com")
	_, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", "Bearer "+testutil.AliceToken)
	old := er.CertificateInformation
	if old.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll: %+v", old)
	}

	// No retained key: a CSR is needed.
	r, _ := renew(t, cf, map[string]any{"CertificateId": old.KeyfactorID}, "Authorization", "Bearer "+testutil.AliceToken)
	assertError(t, r, 400, keyfactor.CodeInvalidField, "CSR: required")
	// Another subject is not a renewal.
	other, _ := testutil.CSR(t, "other.example.com")
	r, _ = renew(t, cf, map[string]any{"CertificateId": old.KeyfactorID, "CSR": base64.StdEncoding.EncodeToString(other)}, "Authorization", "Bearer "+testutil.AliceToken)
	assertError(t, r, 400, keyfactor.CodeInvalidField, "CSR: its subject")

	fresh, newKey := testutil.CSR(t, "rekey.example.com")
	pemCSR := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: fresh}))
	resp, rr := renew(t, cf, map[string]any{"CertificateId": old.KeyfactorID, "CSR": pemCSR}, "Authorization", "Bearer "+testutil.AliceToken)
	if resp.Status != http.StatusOK || rr.RequestDisposition != "ISSUED" {
		t.Fatalf("renew: %d %s", resp.Status, resp.Body)
	}
	leaf := leafOf(t, rr.Certificates)
	spki, _ := x509.MarshalPKIXPublicKey(newKey.Public())
	if !bytes.Equal(leaf.RawSubjectPublicKeyInfo, spki) || leaf.Subject.CommonName != "rekey.example.com" {
		t.Fatalf("the renewal did not certify the new CSR's key for the same subject")
	}
	if rr.KeyfactorId == old.KeyfactorID || rr.RenewedCertificateId != old.KeyfactorID {
		t.Fatalf("renewal answer %+v", rr)
	}

	// Asynchronously: 202 with a Location, then ISSUED by polling.
	again, _ := testutil.CSR(t, "rekey.example.com")
	resp, rr = renew(t, cf, map[string]any{"Thumbprint": old.Thumbprint, "CSR": base64.StdEncoding.EncodeToString(again)},
		"Authorization", "Bearer "+testutil.AliceToken, "Prefer", "respond-async")
	if resp.Status != http.StatusAccepted || resp.Header.Get("Location") == "" {
		t.Fatalf("async renew: %d %s", resp.Status, resp.Body)
	}
	if st := pollSettled(t, cf, resp.Header.Get("Location"), "Bearer "+testutil.AliceToken); st.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("async renewal settled %+v", st.CertificateInformation)
	}
}

func TestRenewalIdempotencyKeyReturnsTheFirstRenewal(t *testing.T) {
	t.Parallel()
	cf := retainingCertflow(t)
	csr, key := testutil.CSR(t, "once.example.com")
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	_, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "Retained", "PrivateKey": base64.StdEncoding.EncodeToString(pkcs8)}))
	old := er.CertificateInformation
	body := map[string]any{"CertificateId": old.KeyfactorID}
	_, first := renew(t, cf, body, "Idempotency-Key", "renew-once")
	_, second := renew(t, cf, body, "Idempotency-Key", "renew-once")
	if first.RequestDisposition != "ISSUED" || first.KeyfactorRequestId != second.KeyfactorRequestId || first.KeyfactorId != second.KeyfactorId {
		t.Fatalf("a retried renewal made a second request: %+v then %+v", first, second)
	}
}

func TestRenewalRefusals(t *testing.T) {
	t.Parallel()
	cf := retainingCertflow(t)
	csr, _ := testutil.CSR(t, "mine.example.com")
	_, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", "Bearer "+testutil.AliceToken)
	alices := er.CertificateInformation
	if alices.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll: %+v", alices)
	}
	// A request that was denied has no certificate to renew.
	denied := submitDenied(t, cf, "Bearer "+testutil.AliceToken)
	fresh, _ := testutil.CSR(t, "mine.example.com")
	freshB64 := base64.StdEncoding.EncodeToString(fresh)
	alice := "Bearer " + testutil.AliceToken
	carol := "Basic " + base64.StdEncoding.EncodeToString([]byte("carol:"+testutil.CarolPassword))
	const E, N = keyfactor.CodeInvalidField, keyfactor.CodeNotFound
	cases := []struct {
		name   string
		body   any
		auth   string
		status int
		code   string
		field  string
	}{
		{"neither CertificateId nor Thumbprint", map[string]any{"CSR": freshB64}, alice, 400, E, "CertificateId: required"},
		{"both CertificateId and Thumbprint", map[string]any{"CertificateId": alices.KeyfactorID, "Thumbprint": alices.Thumbprint}, alice, 400, E, "CertificateId: give"},
		{"CertificateId not positive", map[string]any{"CertificateId": -1}, alice, 400, E, "CertificateId"},
		{"CertificateId not an integer", map[string]any{"CertificateId": "one"}, alice, 400, E, "CertificateId"},
		{"Thumbprint not hex", map[string]any{"Thumbprint": "xyz"}, alice, 400, E, "Thumbprint"},
		{"unknown CertificateId", map[string]any{"CertificateId": 999999, "CSR": freshB64}, alice, 404, N, "CertificateId"},
		{"unknown Thumbprint", map[string]any{"Thumbprint": "0000000000000000000000000000000000000000", "CSR": freshB64}, alice, 404, N, "Thumbprint"},
		{"a request without a certificate", map[string]any{"CertificateId": denied.CertificateInformation.KeyfactorRequestId, "CSR": freshB64}, alice, 404, N, "CertificateId"},
		{"another's certificate", map[string]any{"CertificateId": alices.KeyfactorID, "CSR": freshB64}, carol, 404, N, "CertificateId"},
		{"unknown Template", map[string]any{"CertificateId": alices.KeyfactorID, "CSR": freshB64, "Template": "NoSuch"}, alice, 400, keyfactor.CodeUnknownName, "Template"},
		{"a retained-key renewal under a template that keeps no keys", map[string]any{"CertificateId": alices.KeyfactorID}, alice, 400, E, "CSR: required"},
		{"garbled CSR", map[string]any{"CertificateId": alices.KeyfactorID, "CSR": "garbage"}, alice, 400, keyfactor.CodeInvalidCSR, "CSR"},
		{"malformed Timestamp", map[string]any{"CertificateId": alices.KeyfactorID, "CSR": freshB64, "Timestamp": "soon"}, alice, 400, E, "Timestamp"},
		{"private CallbackUrl scheme", map[string]any{"CertificateId": alices.KeyfactorID, "CSR": freshB64, "CallbackUrl": "ftp://x.example.com/"}, alice, 400, E, "CallbackUrl"},
		{"not JSON", `{"CertificateId":`, alice, 400, E, "request body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := cf.Do(t, "POST", "/Enrollment/Renew", tc.body, "Authorization", tc.auth)
			assertError(t, r, tc.status, tc.code, tc.field)
		})
	}
	// An approver may read any request but renews only its own.
	r := cf.Do(t, "POST", "/Enrollment/Renew", map[string]any{"CertificateId": alices.KeyfactorID, "CSR": freshB64}, "Authorization", "Bearer "+testutil.BobToken)
	if r.Status != http.StatusForbidden && r.Status != http.StatusNotFound {
		t.Fatalf("an approver renewed another's certificate: %d %s", r.Status, r.Body)
	}
	// Nothing was stored for any refusal: only the two enrollments exist.
	ids, err := cf.App.Store.CertificateIDs(t.Context(), 0, 100)
	if err != nil || len(ids) != 1 {
		t.Fatalf("certificates after the refusals: %v, %v; want only alice's", ids, err)
	}
	var records []string
	for _, k := range testutil.Keys(t, cf.Redis, cf.Prefix) {
		if strings.Contains(k, ":request:{") && strings.HasSuffix(k, "}") {
			records = append(records, k)
		}
	}
	if len(records) != 2 {
		t.Fatalf("request records after refusals: %v; want the two enrollments'", records)
	}
}

// submitDenied enrolls a request the default workflow denies (its rule on
// the common name's length; policy would refuse it at submit instead).
func submitDenied(t *testing.T, cf *testutil.Certflow, auth string) enrollResponse {
	t.Helper()
	csr, _ := testutil.CSR(t, strings.Repeat("a", 60)+".example.com")
	_, denied := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", auth)
	if denied.CertificateInformation.RequestDisposition != "DENIED" {
		t.Fatalf("the long common name was not denied: %+v", denied.CertificateInformation)
	}
	return denied
}

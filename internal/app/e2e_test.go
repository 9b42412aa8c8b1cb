package app_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/api"
	"github.com/certflow/certflow/internal/app"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/queue"
)

// enrollResponse decodes the answer with integer ids, as Keyfactor's
// clients do: a string or fractional id fails the decode.
type enrollResponse struct {
	CertificateInformation struct {
		SerialNumber        string
		IssuerDN            string
		Thumbprint          string
		KeyfactorID         int64
		KeyfactorRequestId  int64
		Certificates        []string
		RequestDisposition  string
		DispositionMessage  string
		EnrollmentContext   map[string]any
		WorkflowInstanceId  string
		WorkflowReferenceId int64
	}
	Metadata map[string]string
}

type requestStatus struct {
	enrollResponse
	Request struct {
		Id             int64
		Definition     string
		InstanceStatus string
	}
	Timeline []struct {
		StepId  string
		Outcome string
		Message string
	}
	Callbacks []struct {
		Attempt   int
		Status    int
		Delivered bool
		MessageId string
	}
}

func enroll(t *testing.T, cf *testutil.Certflow, body map[string]any, headers ...string) (*testutil.Response, enrollResponse) {
	t.Helper()
	h := append([]string{"x-certificateformat", "PEM"}, headers...)
	resp := cf.Do(t, "POST", "/Enrollment/CSR", body, h...)
	var er enrollResponse
	if resp.Status == http.StatusOK || resp.Status == http.StatusAccepted {
		resp.JSON(t, &er)
	}
	return resp, er
}

// pemChain strips the subject headers and parses the PEM certificates.
func pemChain(t *testing.T, entries []string, wantHeader bool) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for i, e := range entries {
		header, rest, _ := strings.Cut(e, "\n")
		if wantHeader {
			if !strings.HasPrefix(header, "subject=") {
				t.Fatalf("certificate %d: first line %q, want a subject= header", i, header)
			}
		} else {
			if strings.HasPrefix(e, "subject=") {
				t.Fatalf("certificate %d has a subject header though IncludeSubjectHeader is false", i)
			}
			rest = e
		}
		block, _ := pem.Decode([]byte(rest))
		if block == nil || block.Type != "CERTIFICATE" {
			t.Fatalf("certificate %d is not PEM: %q", i, e)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if wantHeader && header != "subject="+c.Subject.String() {
			t.Fatalf("certificate %d header %q does not name its subject %q", i, header, c.Subject)
		}
		out = append(out, c)
	}
	return out
}

// verifyChain checks leaf → issuing → root with crypto/x509 and with the
// openssl CLI, the way the issue asks: openssl verify -CAfile <last>
// -untrusted <middle> <first>.
func verifyChain(t *testing.T, chain []*x509.Certificate, dnsName string) {
	t.Helper()
	if len(chain) != 3 {
		t.Fatalf("chain has %d certificates, want leaf, issuing, root", len(chain))
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(chain[2])
	inter.AddCert(chain[1])
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: dnsName}); err != nil {
		t.Fatalf("crypto/x509 does not verify the chain: %v", err)
	}
	dir := t.TempDir()
	names := []string{"leaf.pem", "issuing.pem", "root.pem"}
	for i, c := range chain {
		os.WriteFile(filepath.Join(dir, names[i]), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644)
	}
	out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(dir, "root.pem"),
		"-untrusted", filepath.Join(dir, "issuing.pem"), filepath.Join(dir, "leaf.pem")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}

func TestSynchronousEnrollmentIssuesAVerifiableChain(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	csr, key := testutil.CSR(t, "www.example.com", "api.example.com")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"IncludeChain": true, "Metadata": map[string]any{"Team": "web"}}))
	if resp.Status != http.StatusOK {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	info := er.CertificateInformation
	if info.RequestDisposition != "ISSUED" || info.KeyfactorID <= 0 || info.KeyfactorRequestId <= 0 || info.WorkflowReferenceId <= 0 || info.WorkflowInstanceId == "" {
		t.Fatalf("answer: %+v", info)
	}
	if !strings.Contains(string(resp.Body), fmt.Sprintf(`"KeyfactorRequestId":%d`, info.KeyfactorRequestId)) {
		t.Fatalf("KeyfactorRequestId is not a bare JSON integer: %s", resp.Body)
	}
	chain := pemChain(t, info.Certificates, true)
	verifyChain(t, chain, "api.example.com")
	leaf := chain[0]
	if !pki.SamePublicKey(leaf.PublicKey, key.Public()) {
		t.Fatal("the certificate does not carry the CSR's public key")
	}
	// RFC 2818 enforcement: the CN joins the SANs.
	if got := strings.Join(leaf.DNSNames, ","); got != "api.example.com,www.example.com" {
		t.Fatalf("DNS SANs = %s", got)
	}
	if info.Thumbprint == "" || info.SerialNumber != fmt.Sprintf("%X", leaf.SerialNumber.Bytes()) || info.IssuerDN != leaf.Issuer.String() {
		t.Fatalf("serial/issuer/thumbprint do not describe the leaf: %+v", info)
	}
	if er.Metadata["Team"] != "web" || er.Metadata["RequestedBy"] != "admin" {
		t.Fatalf("metadata = %v: want the request's Team and the workflow's RequestedBy", er.Metadata)
	}
	if leaf.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
		t.Fatal("an ECDSA certificate got keyEncipherment")
	}
}

func TestEnrollmentFormatsAndOptions(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)

	t.Run("DER entries are base64 DER, leaf first", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "der.example.com")
		resp := cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, map[string]any{"IncludeChain": true}), "x-certificateformat", "DER")
		var er enrollResponse
		resp.JSON(t, &er)
		var chain []*x509.Certificate
		for _, e := range er.CertificateInformation.Certificates {
			der, err := base64.StdEncoding.DecodeString(e)
			if err != nil {
				t.Fatalf("DER entry is not base64: %q", e)
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			chain = append(chain, c)
		}
		verifyChain(t, chain, "der.example.com")
	})
	t.Run("without IncludeChain only the leaf", func(t *testing.T) {
		csr, _ := testutil.RSACSR(t, 2048, "rsa.example.com")
		_, er := enroll(t, cf, testutil.EnrollBody(csr, nil))
		chain := pemChain(t, er.CertificateInformation.Certificates, true)
		if len(chain) != 1 || chain[0].Subject.CommonName != "rsa.example.com" {
			t.Fatalf("got %d certificates", len(chain))
		}
		if chain[0].KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
			t.Fatal("an RSA certificate lacks the template's keyEncipherment")
		}
	})
	t.Run("IncludeSubjectHeader false drops the header", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "plain.example.com")
		_, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"IncludeSubjectHeader": false, "IncludeChain": true}))
		pemChain(t, er.CertificateInformation.Certificates, false)
	})
	t.Run("PEM CSR, /KeyfactorAPI base and any case", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "case.example.com")
		body := testutil.EnrollBody(csr, nil)
		body["CSR"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))
		resp := cf.Do(t, "POST", "/KeyfactorAPI/enrollment/csr", body, "X-CertificateFormat", "pem")
		if resp.Status != http.StatusOK {
			t.Fatalf("status %d: %s", resp.Status, resp.Body)
		}
	})
	t.Run("CertificateAuthority by host\\logical and by logical name", func(t *testing.T) {
		for _, name := range []string{`certflow\CertflowIssuingCA`, `certflow\\CertflowIssuingCA`, "CertflowIssuingCA"} {
			csr, _ := testutil.CSR(t, "ca.example.com")
			resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"CertificateAuthority": name}))
			if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
				t.Fatalf("CertificateAuthority %q: %d %s", name, resp.Status, resp.Body)
			}
		}
	})
	t.Run("Basic auth of a configured user", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "basic.example.com")
		req := "Basic " + base64.StdEncoding.EncodeToString([]byte(`CORP\carol:`+testutil.CarolPassword))
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", req)
		if resp.Status != http.StatusOK || er.Metadata["RequestedBy"] != "carol" {
			t.Fatalf("status %d: %s", resp.Status, resp.Body)
		}
	})
}

func TestAsynchronousEnrollmentAndPolling(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	csr, _ := testutil.CSR(t, "async.example.com")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Prefer", "respond-async", "Authorization", "Bearer "+testutil.AliceToken)
	if resp.Status != http.StatusAccepted {
		t.Fatalf("status %d, want 202: %s", resp.Status, resp.Body)
	}
	loc := resp.Header.Get("Location")
	if loc != fmt.Sprintf("/Enrollment/Requests/%d", er.CertificateInformation.KeyfactorRequestId) {
		t.Fatalf("Location = %q", loc)
	}
	if d := er.CertificateInformation.RequestDisposition; d != "QUEUED" && d != "RUNNING" {
		t.Fatalf("disposition %s in a 202", d)
	}
	st := pollSettled(t, cf, loc, "Bearer "+testutil.AliceToken)
	if st.CertificateInformation.RequestDisposition != "ISSUED" || len(st.CertificateInformation.Certificates) != 1 {
		t.Fatalf("settled as %+v", st.CertificateInformation)
	}
	var steps []string
	for _, s := range st.Timeline {
		steps = append(steps, s.StepId+":"+s.Outcome)
	}
	if got := strings.Join(steps, " "); got != "policy:Completed issue:Completed tag:Completed tell:Completed" {
		t.Fatalf("timeline = %s", got)
	}
	if st.Request.Definition != "enrollment-default" || st.Request.InstanceStatus != "Complete" {
		t.Fatalf("request summary %+v", st.Request)
	}
	t.Run("another requester cannot see it", func(t *testing.T) {
		other := cf.Do(t, "GET", loc, nil, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("carol:"+testutil.CarolPassword)))
		if other.Status != http.StatusNotFound {
			t.Fatalf("carol reading alice's request: %d", other.Status)
		}
	})
	t.Run("the poll can ask for DER", func(t *testing.T) {
		r := cf.Do(t, "GET", loc, nil, "x-certificateformat", "DER")
		var s requestStatus
		r.JSON(t, &s)
		der, err := base64.StdEncoding.DecodeString(s.CertificateInformation.Certificates[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x509.ParseCertificate(der); err != nil {
			t.Fatal(err)
		}
	})
}

func pollSettled(t *testing.T, cf *testutil.Certflow, loc string, auth string) requestStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := cf.Do(t, "GET", loc, nil, "Authorization", auth)
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", loc, r.Status, r.Body)
		}
		var st requestStatus
		r.JSON(t, &st)
		if d := st.CertificateInformation.RequestDisposition; d != "QUEUED" && d != "RUNNING" {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s did not settle: %s", loc, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAPreferenceThatCannotBeUnderstoodIsIgnored(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	csr, _ := testutil.CSR(t, "prefer.example.com")
	for _, p := range []string{"wait=soon", "wait=99999999999999999999", "handling=lenient"} {
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Prefer", p)
		if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("Prefer: %s answered %d %s; want the default wait and 200", p, resp.Status, resp.Body)
		}
	}
}

func TestWaitZeroAnswers202(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	csr, _ := testutil.CSR(t, "wait.example.com")
	resp, _ := enroll(t, cf, testutil.EnrollBody(csr, nil), "Prefer", "wait=0")
	if resp.Status != http.StatusAccepted || resp.Header.Get("Location") == "" {
		t.Fatalf("Prefer: wait=0 answered %d (Location %q)", resp.Status, resp.Header.Get("Location"))
	}
	pollSettled(t, cf, resp.Header.Get("Location"), "Bearer "+testutil.AdminToken)
}

func TestIdempotencyKeyReturnsTheFirstRequest(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	csr, _ := testutil.CSR(t, "idem.example.com")
	body := testutil.EnrollBody(csr, nil)
	r1, e1 := enroll(t, cf, body, "Idempotency-Key", "k-123")
	r2, e2 := enroll(t, cf, body, "Idempotency-Key", "k-123")
	if r1.Status != http.StatusOK || r2.Status != http.StatusOK {
		t.Fatalf("statuses %d %d", r1.Status, r2.Status)
	}
	a, b := e1.CertificateInformation, e2.CertificateInformation
	if a.KeyfactorRequestId != b.KeyfactorRequestId || a.KeyfactorID != b.KeyfactorID || a.SerialNumber != b.SerialNumber {
		t.Fatalf("a retried submit made a second request or certificate: %+v vs %+v", a, b)
	}
	other, _ := testutil.CSR(t, "other.example.com")
	r3, _ := enroll(t, cf, testutil.EnrollBody(other, nil), "Idempotency-Key", "k-123")
	assertError(t, r3, http.StatusConflict, keyfactor.CodeConflict, "Idempotency-Key")
	r4, _ := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"IncludeChain": true}), "Idempotency-Key", "k-123")
	assertError(t, r4, http.StatusConflict, keyfactor.CodeConflict, "Idempotency-Key")
}

func TestAPolicyRefusalIsAnsweredAtSubmitAndStoresNothing(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	csr, _ := testutil.CSR(t, "wild.example.com", "*.example.com")
	resp, _ := enroll(t, cf, testutil.EnrollBody(csr, nil))
	assertError(t, resp, http.StatusBadRequest, keyfactor.CodePolicy, `CSR: dns name "*.example.com": wildcard names are not allowed`)
	assertNothingStored(t, cf)
}

func assertError(t *testing.T, r *testutil.Response, status int, code, inMessage string) {
	t.Helper()
	var e keyfactor.Error
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("status %d with a body that is not Keyfactor's error shape: %s", r.Status, r.Body)
	}
	if r.Status != status || e.ErrorCode != code || !strings.Contains(e.Message, inMessage) {
		t.Fatalf("got %d %s %q; want %d %s with %q in the message", r.Status, e.ErrorCode, e.Message, status, code, inMessage)
	}
}

func TestBadInputIsRefusedAndLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.CAs = append(c.CAs, config.CA{Name: "Standalone", Host: "certflow", Type: "builtin", KeyType: "ecdsa-p256", Standalone: true, MaxValidity: time.Hour})
	})
	csr, _ := testutil.CSR(t, "bad.example.com")
	good := func(extra map[string]any) map[string]any { return testutil.EnrollBody(csr, extra) }
	tampered := append([]byte(nil), csr...)
	tampered[len(tampered)-5] ^= 0xff // inside the signature
	const E, C, U = keyfactor.CodeInvalidField, keyfactor.CodeInvalidCSR, keyfactor.CodeUnknownName
	cases := []struct {
		name    string
		body    any
		headers []string
		status  int
		code    string
		field   string
	}{
		{"broken JSON", `{"CSR": `, nil, 400, E, "request body"},
		{"empty body", ``, nil, 400, E, "request body"},
		{"JSON that is not an object", `[1,2]`, nil, 400, E, "request body: want an object, got a JSON array"},
		{"missing CSR", good(map[string]any{"CSR": nil}), nil, 400, E, "CSR"},
		{"garbled CSR", good(map[string]any{"CSR": "not a csr!"}), nil, 400, C, "CSR"},
		{"base64 of something else", good(map[string]any{"CSR": base64.StdEncoding.EncodeToString([]byte("hello"))}), nil, 400, C, "CSR"},
		{"CSR signature does not verify", good(map[string]any{"CSR": base64.StdEncoding.EncodeToString(tampered)}), nil, 400, C, "signature"},
		{"CSR of the wrong type", good(map[string]any{"CSR": 42}), nil, 400, E, "CSR"},
		{"missing Timestamp", good(map[string]any{"Timestamp": nil}), nil, 400, E, "Timestamp"},
		{"malformed Timestamp", good(map[string]any{"Timestamp": "yesterday"}), nil, 400, E, "Timestamp"},
		{"missing x-certificateformat", good(nil), []string{"x-certificateformat", ""}, 400, E, "x-certificateformat"},
		{"unknown x-certificateformat", good(nil), []string{"x-certificateformat", "PFX"}, 400, E, "x-certificateformat"},
		{"unknown Template", good(map[string]any{"Template": "NoSuch"}), nil, 400, U, "Template"},
		{"no Template and no standalone CA", good(map[string]any{"Template": nil}), nil, 400, E, "Template"},
		{"unknown CertificateAuthority", good(map[string]any{"CertificateAuthority": "Nope"}), nil, 400, U, "CertificateAuthority"},
		{"CA that does not serve the template", good(map[string]any{"CertificateAuthority": "Standalone"}), nil, 400, E, "CertificateAuthority"},
		{"CA with the wrong host", good(map[string]any{"CertificateAuthority": `otherhost\CertflowIssuingCA`}), nil, 400, U, "CertificateAuthority"},
		{"IncludeChain not a boolean", good(map[string]any{"IncludeChain": "yes"}), nil, 400, E, "IncludeChain"},
		{"OwnerRoleId and OwnerRoleName both", good(map[string]any{"OwnerRoleId": 3, "OwnerRoleName": "Web"}), nil, 400, E, "OwnerRoleId"},
		{"OwnerRoleId not positive", good(map[string]any{"OwnerRoleId": 0}), nil, 400, E, "OwnerRoleId"},
		{"OwnerRoleId not an integer", good(map[string]any{"OwnerRoleId": "three"}), nil, 400, E, "OwnerRoleId"},
		{"unknown SAN type", good(map[string]any{"SANs": map[string]any{"upn": []string{"a@b"}}}), nil, 400, E, "SANs.upn"},
		{"bad dns SAN", good(map[string]any{"SANs": map[string]any{"dns": []string{"ok.example.com", "bad name"}}}), nil, 400, E, "SANs.dns[1]"},
		{"bad ip4 SAN", good(map[string]any{"SANs": map[string]any{"ip4": []string{"::1"}}}), nil, 400, E, "SANs.ip4[0]"},
		{"SANs not arrays", good(map[string]any{"SANs": map[string]any{"dns": "a.example.com"}}), nil, 400, E, "SANs"},
		{"Metadata value an object", good(map[string]any{"Metadata": map[string]any{"Owner": map[string]any{"x": 1}}}), nil, 400, E, "Metadata.Owner"},
		{"AdditionalEnrollmentFields value an array", good(map[string]any{"AdditionalEnrollmentFields": map[string]any{"X": []int{1}}}), nil, 400, E, "AdditionalEnrollmentFields.X"},
		{"PrivateKey for a template without key retention", good(map[string]any{"PrivateKey": "MIIB"}), nil, 400, E, "PrivateKey"},
		{"forceEnroll not a boolean", good(nil), []string{"query", "forceEnroll=maybe"}, 400, E, "forceEnroll"},
		{"CallbackUrl with a scheme other than http(s)", good(map[string]any{"CallbackUrl": "ftp://example.com/x"}), nil, 400, E, "CallbackUrl"},
		{"CallbackUrl that is not absolute", good(map[string]any{"CallbackUrl": "/relative"}), nil, 400, E, "CallbackUrl"},
		{"body over the size limit", `{"CSR": "` + strings.Repeat("A", 2<<20) + `"}`, nil, 413, keyfactor.CodeTooLarge, "request body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := "/Enrollment/CSR"
			headers := []string{"x-certificateformat", "PEM"}
			for i := 0; i+1 < len(tc.headers); i += 2 {
				if tc.headers[i] == "query" {
					path += "?" + tc.headers[i+1]
					continue
				}
				headers = append(headers, tc.headers[i], tc.headers[i+1])
			}
			resp := cf.Do(t, "POST", path, tc.body, headers...)
			assertError(t, resp, tc.status, tc.code, tc.field)
		})
	}
	assertNothingStored(t, cf)
}

// assertNothingStored fails if any request state exists under cf's prefix:
// refused submits must leave nothing behind.
func assertNothingStored(t *testing.T, cf *testutil.Certflow) {
	t.Helper()
	for _, k := range testutil.Keys(t, cf.Redis, cf.Prefix) {
		for _, kind := range []string{":request:", ":idempotency:", ":open"} {
			if strings.Contains(k, kind) {
				t.Errorf("a refused submit left %s behind", k)
			}
		}
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	csr, _ := testutil.CSR(t, "auth.example.com")
	body := testutil.EnrollBody(csr, nil)
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, tc := range []struct {
		name, auth string
		status     int
		code       string
	}{
		{"no credentials", "", 401, keyfactor.CodeUnauthorized},
		{"unknown bearer token", "Bearer nope", 401, keyfactor.CodeUnauthorized},
		{"wrong Basic password", basic("carol", "wrong"), 401, keyfactor.CodeUnauthorized},
		{"unknown Basic user", basic("mallory", "x"), 401, keyfactor.CodeUnauthorized},
		{"a token user's token as Basic password for another user", basic("carol", testutil.AliceToken), 401, keyfactor.CodeUnauthorized},
		{"an approver may not request", "Bearer " + testutil.BobToken, 403, keyfactor.CodeForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := cf.Do(t, "POST", "/Enrollment/CSR", body, "x-certificateformat", "PEM", "Authorization", tc.auth)
			assertError(t, resp, tc.status, tc.code, "")
		})
	}
	t.Run("a token user may present the token as Basic password", func(t *testing.T) {
		resp := cf.Do(t, "POST", "/Enrollment/CSR", body, "x-certificateformat", "PEM", "Authorization", basic("alice", testutil.AliceToken))
		if resp.Status != http.StatusOK {
			t.Fatalf("status %d: %s", resp.Status, resp.Body)
		}
	})
	t.Run("healthz and readyz are public and say nothing more, the rest is not", func(t *testing.T) {
		if r := cf.Do(t, "GET", "/healthz", nil, "Authorization", ""); r.Status != 200 {
			t.Fatalf("healthz: %d", r.Status)
		}
		if r := cf.Do(t, "GET", "/readyz", nil, "Authorization", ""); r.Status != 200 || strings.TrimSpace(string(r.Body)) != `{"status":"ready"}` {
			t.Fatalf("readyz without credentials: %d %s", r.Status, r.Body)
		}
		for _, p := range []string{"/Status", "/Status/Endpoints", "/Enrollment/Requests/1"} {
			if r := cf.Do(t, "GET", p, nil, "Authorization", ""); r.Status != 401 {
				t.Fatalf("%s without credentials: %d", p, r.Status)
			}
		}
	})
	t.Run("Status says where records are kept", func(t *testing.T) {
		r := cf.Do(t, "GET", "/Status", nil, "Authorization", "Bearer "+testutil.BobToken)
		var st struct{ Store api.StoreStatus }
		r.JSON(t, &st)
		if r.Status != 200 || !st.Store.Persistent || st.Store.RestartLoses != "" || !strings.Contains(st.Store.Redis, "configured") {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
	})
	t.Run("Status/Endpoints lists the surface", func(t *testing.T) {
		r := cf.Do(t, "GET", "/Status/Endpoints", nil, "Authorization", "Bearer "+testutil.BobToken)
		var eps []string
		r.JSON(t, &eps)
		if r.Header.Get("x-keyfactor-product-version") == "" || !contains(eps, "POST /Enrollment/CSR") {
			t.Fatalf("endpoints %v, version header %q", eps, r.Header.Get("x-keyfactor-product-version"))
		}
	})
	t.Run("unknown paths are 404 and wrong methods 405, in Keyfactor's shape", func(t *testing.T) {
		assertError(t, cf.Do(t, "GET", "/No/Such/Thing", nil), 404, keyfactor.CodeNotFound, "")
		assertError(t, cf.Do(t, "GET", "/Enrollment/CSR", nil), 405, keyfactor.CodeMethodNotAllow, "")
		assertError(t, cf.Do(t, "GET", "/Enrollment/Requests/abc", nil), 400, keyfactor.CodeInvalidField, "id")
		assertError(t, cf.Do(t, "GET", "/Enrollment/Requests/987654", nil), 404, keyfactor.CodeNotFound, "987654")
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestRedisOutageAnswers503(t *testing.T) {
	t.Parallel()
	redisSrv := testutil.StartRedisServer(t)
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.RedisURL = redisSrv.URL() })
	csr, _ := testutil.CSR(t, "outage.example.com")
	if r, _ := enroll(t, cf, testutil.EnrollBody(csr, nil)); r.Status != 200 {
		t.Fatalf("before the outage: %d %s", r.Status, r.Body)
	}
	redisSrv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", cf.URL+"/Enrollment/CSR", strings.NewReader(mustJSON(testutil.EnrollBody(csr, nil))))
	req.Header.Set("Authorization", "Bearer "+testutil.AdminToken)
	req.Header.Set("x-certificateformat", "PEM")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("a submit during the outage got no answer within 5 s: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("submit during the outage: %d, want 503", resp.StatusCode)
	}
	assertError(t, cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, nil), "x-certificateformat", "PEM"), 503, keyfactor.CodeUnavailable, "unavailable")
	if r := cf.Do(t, "GET", "/readyz", nil); r.Status != 503 {
		t.Fatalf("readyz during the outage: %d", r.Status)
	}
	redisSrv.Start()
	// go-redis answers with its last dial error until its background
	// re-dial (once a second) gets through: ready within a few seconds.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := cf.Do(t, "GET", "/readyz", nil)
		if r.Status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz 5 s after Redis came back: %d %s", r.Status, r.Body)
		}
	}
	if r, er := enroll(t, cf, testutil.EnrollBody(csr, nil)); r.Status != 200 || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("after the outage, without restarting certflow: %d %s", r.Status, r.Body)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestANamedKEKFileMustExist(t *testing.T) {
	t.Parallel()
	_, prefix := testutil.Redis(t)
	cfg := testutil.TestConfig(t, prefix)
	cfg.KEKFile = filepath.Join(t.TempDir(), "mounted", "kek")
	_, err := app.Open(cfg, app.RoleBoth, testutil.AdminToken, slog.New(slog.DiscardHandler), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "kek") {
		t.Fatalf("Open with a missing named KEK file: %v; want an error", err)
	}
	if _, statErr := os.Stat(cfg.KEKFile); statErr == nil {
		t.Fatal("a key was generated at the named path")
	}
}

func TestAGeneratedAdminTokenStopsWorkingOnceUsersAreConfigured(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	os.WriteFile(filepath.Join(dataDir, "admin-token"), []byte("cf_old_generated_token\n"), 0o600)
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.DataDir = dataDir; c.KEKFile = filepath.Join(dataDir, "kek") })
	if r := cf.Do(t, "GET", "/Status/Endpoints", nil, "Authorization", "Bearer cf_old_generated_token"); r.Status != 401 {
		t.Fatalf("the old generated token still answers %d", r.Status)
	}
}

// TestASubmitAnswers503Within5sWhenRedisHangsMidSubmit freezes Redis at
// the exact command of a submit — the write of the new request (HSET),
// then the enqueue of its task (asynq's EVALSHA) — with every connection
// left open: each time the submit must answer 503 in Keyfactor's shape
// within 5 s, though the clean-up of the half-made request cannot reach
// Redis either; once Redis answers again submits work, nothing restarted.
func TestASubmitAnswers503Within5sWhenRedisHangsMidSubmit(t *testing.T) {
	t.Parallel()
	opts, err := redis.ParseURL(testutil.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := testutil.StartFreezeProxy(t, opts.Addr)
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.RedisURL = proxy.URL() })
	t.Cleanup(proxy.Close) // runs before certflow stops: see FreezeProxy.Close
	csr, _ := testutil.CSR(t, "hang.example.com")
	if r, _ := enroll(t, cf, testutil.EnrollBody(csr, nil)); r.Status != 200 {
		t.Fatalf("before the hang: %d %s", r.Status, r.Body)
	}
	for _, at := range []struct{ what, command, key string }{
		{"the request's write", "EVAL", cf.Prefix + ":request:{"},
		{"the task's enqueue", "EVALSHA", queue.TaskKey(cf.Prefix, "run:")},
	} {
		proxy.FreezeAt(at.command, at.key)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "POST", cf.URL+"/Enrollment/CSR", strings.NewReader(mustJSON(testutil.EnrollBody(csr, nil))))
		req.Header.Set("Authorization", "Bearer "+testutil.AdminToken)
		req.Header.Set("x-certificateformat", "PEM")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("Redis hung at %s: no answer within 5 s: %v (frozen: %v)", at.what, err, proxy.Frozen())
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if !proxy.Frozen() {
			t.Fatalf("the proxy never saw %s (%s)", at.what, at.command)
		}
		assertError(t, &testutil.Response{Status: resp.StatusCode, Body: body}, 503, keyfactor.CodeUnavailable, "unavailable")
		t.Logf("Redis hung at %s: 503 after %v", at.what, time.Since(start).Round(time.Millisecond))
		proxy.Unfreeze()
		if r, er := enroll(t, cf, testutil.EnrollBody(csr, nil)); r.Status != 200 || er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("after Redis hung at %s: %d %s", at.what, r.Status, r.Body)
		}
	}
}

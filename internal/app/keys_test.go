package app_test

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/testutil"
)

const pfxPassword = "pfx-secret-Zq8!rW"

// csrContents is POST /CSRGeneration/Generate's answer.
type csrContents struct {
	CSR, CSRText string
	Id           int64
}

type pendingCSR struct {
	Id          int64
	CSR         string
	RequestTime time.Time
	Subject     []string
	Requester   string
	Template    string
	KeyType     string
}

// pfxResponse decodes POST /Enrollment/PFX by Keyfactor's field names.
type pfxResponse struct {
	CertificateInformation struct {
		SerialNumber, IssuerDN, Thumbprint string
		KeyfactorId                        int64
		KeyfactorRequestId                 int64
		Pkcs12Blob                         string
		Password                           *string
		WorkflowInstanceId                 string
		RequestDisposition                 string
		DispositionMessage                 string
		StoreIdsInvalidForRenewal          []string
	}
	Metadata map[string]string
}

func generateCSR(t *testing.T, cf *testutil.Certflow, body map[string]any, headers ...string) (*testutil.Response, csrContents) {
	t.Helper()
	r := cf.Do(t, "POST", "/CSRGeneration/Generate", body, headers...)
	var c csrContents
	if r.Status == http.StatusOK {
		r.JSON(t, &c)
	}
	return r, c
}

func pfxBody(extra map[string]any) map[string]any {
	b := map[string]any{
		"Subject":   "CN=pfx.example.com,O=Certflow Tests",
		"Password":  pfxPassword,
		"Template":  config.DefaultTemplate,
		"Timestamp": time.Now().UTC().Format(time.RFC3339),
		"SANs":      map[string]any{"dns": []string{"pfx.example.com"}},
	}
	for k, v := range extra {
		if v == nil {
			delete(b, k)
		} else {
			b[k] = v
		}
	}
	return b
}

func enrollPFX(t *testing.T, cf *testutil.Certflow, body map[string]any, headers ...string) (*testutil.Response, pfxResponse) {
	t.Helper()
	r := cf.Do(t, "POST", "/Enrollment/PFX", body, append([]string{"x-certificateformat", "PFX"}, headers...)...)
	var pr pfxResponse
	if r.Status == http.StatusOK || r.Status == http.StatusAccepted {
		r.JSON(t, &pr)
	}
	return r, pr
}

// opensslReadPKCS12 opens a base64 PKCS#12 with the openssl CLI and
// returns the key and certificates it printed; err is openssl's refusal.
func opensslReadPKCS12(t *testing.T, blob, password string) (key any, certs []*x509.Certificate, out string, err error) {
	t.Helper()
	der, derr := base64.StdEncoding.DecodeString(blob)
	if derr != nil || len(der) == 0 {
		t.Fatalf("Pkcs12Blob is not base64: %v", derr)
	}
	path := filepath.Join(t.TempDir(), "cert.p12")
	os.WriteFile(path, der, 0o600)
	b, err := exec.Command("openssl", "pkcs12", "-in", path, "-passin", "pass:"+password, "-nodes").CombinedOutput()
	out = string(b)
	if err != nil {
		return nil, nil, out, err
	}
	rest := b
	for {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		switch block.Type {
		case "PRIVATE KEY":
			if key, err = x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
				t.Fatal(err)
			}
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			certs = append(certs, c)
		}
	}
	if key == nil || len(certs) == 0 {
		t.Fatalf("openssl printed no key or no certificate:\n%s", out)
	}
	return key, certs, out, nil
}

// assertPKCS12 checks an archive the way its user would: openssl reads it
// with the password (key, certificate, and the chain when asked), the key
// is the certificate's, a wrong password is refused.
func assertPKCS12(t *testing.T, blob, password string, wantCerts int, wantCN string) (any, []*x509.Certificate) {
	t.Helper()
	key, certs, out, err := opensslReadPKCS12(t, blob, password)
	if err != nil {
		t.Fatalf("openssl pkcs12 does not read the archive: %v\n%s", err, out)
	}
	if len(certs) != wantCerts {
		t.Fatalf("the archive holds %d certificates, want %d", len(certs), wantCerts)
	}
	var leaf *x509.Certificate
	for _, c := range certs {
		if c.Subject.CommonName == wantCN {
			leaf = c
		}
	}
	if leaf == nil || !pki.SamePublicKey(pki.PublicKeyOf(key), leaf.PublicKey) {
		t.Fatalf("the archive's key is not its %s certificate's", wantCN)
	}
	if _, _, out, err := opensslReadPKCS12(t, blob, "not-the-password"); err == nil {
		t.Fatalf("openssl opened the archive with a wrong password:\n%s", out)
	}
	return key, certs
}

// assertNotInRedis fails if any value under cf's prefix holds one of the
// secrets, raw, in base64 or in hex.
func assertNotInRedis(t *testing.T, cf *testutil.Certflow, secrets map[string][]byte) {
	t.Helper()
	ctx := t.Context()
	var values []string
	for _, k := range testutil.Keys(t, cf.Redis, cf.Prefix) {
		switch cf.Redis.Type(ctx, k).Val() {
		case "string":
			values = append(values, cf.Redis.Get(ctx, k).Val())
		case "hash":
			for _, v := range cf.Redis.HGetAll(ctx, k).Val() {
				values = append(values, v)
			}
		}
	}
	if len(values) == 0 {
		t.Fatal("nothing stored: the check would prove nothing")
	}
	for name, secret := range secrets {
		b64, hx := base64.StdEncoding.EncodeToString(secret), hex.EncodeToString(secret)
		for _, form := range []string{string(secret), b64[4 : len(b64)-4], hx[:min(len(hx), 96)]} {
			for _, v := range values {
				if strings.Contains(v, form) {
					t.Errorf("%s is stored in Redis in the clear", name)
				}
			}
		}
	}
}

func TestCSRGenerationAndForceEnroll(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	alice := []string{"Authorization", bearer(testutil.AliceToken)}
	r, gen := generateCSR(t, cf, map[string]any{
		"Subject": "CN=gen.example.com,O=Certflow Tests", "KeyType": "ecc", "Curve": "1.2.840.10045.3.1.7",
		"Template": config.DefaultTemplate, "SANs": map[string]any{"dns": []string{"gen.example.com", "www.gen.example.com"}},
	}, alice...)
	if r.Status != http.StatusOK {
		t.Fatalf("generate: %d %s", r.Status, r.Body)
	}
	der, csr, err := pki.DecodeCSR(gen.CSR)
	if err != nil || gen.CSRText != gen.CSR || gen.Id <= 0 {
		t.Fatalf("answer %+v: %v", gen, err)
	}
	if csr.CheckSignature() != nil || csr.Subject.CommonName != "gen.example.com" || pki.CurveName(csr.PublicKey) != "P-256" || len(csr.DNSNames) != 2 {
		t.Fatalf("generated CSR: subject %s, curve %s, DNS %v", csr.Subject, pki.CurveName(csr.PublicKey), csr.DNSNames)
	}

	// Listed to its requester and the admin, not to others.
	list := func(auth string) []pendingCSR {
		r := cf.Do(t, "GET", "/CSRGeneration/Pending", nil, "Authorization", auth)
		if r.Status != http.StatusOK {
			t.Fatalf("list: %d %s", r.Status, r.Body)
		}
		var l []pendingCSR
		r.JSON(t, &l)
		return l
	}
	if l := list(bearer(testutil.AliceToken)); len(l) != 1 || l[0].Id != gen.Id || l[0].Requester != "alice" || l[0].KeyType != "ECC P-256" ||
		strings.Join(l[0].Subject, ",") != "CN=gen.example.com,O=Certflow Tests" || l[0].RequestTime.IsZero() {
		t.Fatalf("alice's pending CSRs: %+v", l)
	}
	if l := list(carolBasic); len(l) != 0 {
		t.Fatalf("carol sees alice's pending CSRs: %+v", l)
	}
	if l := list(bearer(testutil.AdminToken)); len(l) != 1 {
		t.Fatalf("the admin sees %d pending CSRs, want 1", len(l))
	}
	path := "/CSRGeneration/Pending/" + strconv.FormatInt(gen.Id, 10)
	if r := cf.Do(t, "GET", path, nil, alice...); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"CSRText":"-----BEGIN CERTIFICATE REQUEST-----`) {
		t.Fatalf("GET pending CSR: %d %s", r.Status, r.Body)
	}
	if r := cf.Do(t, "GET", path, nil, "Authorization", carolBasic); r.Status != http.StatusNotFound {
		t.Fatalf("carol GETs alice's pending CSR: %d, want 404", r.Status)
	}
	// The sealed key in Redis is not the key in the clear.
	stored, err := cf.App.Store.PendingCSR(t.Context(), gen.Id)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := cf.App.KEK.Open(stored.PrivateKey, pki.PendingCSRAAD(gen.Id))
	if err != nil {
		t.Fatalf("the pending key does not open under its own id: %v", err)
	}
	if bytes.Contains(stored.PrivateKey, pkcs8[len(pkcs8)-40:]) {
		t.Fatal("the pending key is stored in the clear")
	}
	if _, err := cf.App.KEK.Open(stored.PrivateKey, pki.PendingCSRAAD(gen.Id+1)); err == nil {
		t.Fatal("the pending key opens under another CSR's id")
	}
	assertNotInRedis(t, cf, map[string][]byte{"the generated key": pkcs8})

	// Enrolled without forceEnroll: refused, and nothing written.
	body := testutil.EnrollBody(der, nil)
	r = cf.Do(t, "POST", "/Enrollment/CSR", body, append([]string{"x-certificateformat", "PEM"}, alice...)...)
	assertError(t, r, 400, keyfactor.CodeInvalidField, "forceEnroll")
	// Someone else, even with forceEnroll: refused.
	r = cf.Do(t, "POST", "/Enrollment/CSR?forceEnroll=true", body, "x-certificateformat", "PEM", "Authorization", carolBasic)
	assertError(t, r, 403, keyfactor.CodeForbidden, "CSR")
	// Each refusal withdrew the id its submit had queued a run for (the
	// generated key is found by the create itself); the worker drops
	// those runs and their ids' markers.
	waitForWithdrawnRuns(t, cf)
	assertNothingStored(t, cf)
	if _, err := cf.App.Store.PendingCSR(t.Context(), gen.Id); err != nil {
		t.Fatalf("a refused enrollment removed the pending CSR: %v", err)
	}

	// With forceEnroll: issued and married to the stored key.
	r = cf.Do(t, "POST", "/Enrollment/CSR?forceEnroll=true", body, append([]string{"x-certificateformat", "PEM"}, alice...)...)
	var er enrollResponse
	r.JSON(t, &er)
	if r.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("forceEnroll: %d %s", r.Status, r.Body)
	}
	id := er.CertificateInformation.KeyfactorRequestId
	req, err := cf.App.Store.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	married, err := cf.App.KEK.Open(req.PrivateKey, pki.RequestKeyAAD(id))
	if err != nil || !bytes.Equal(married, pkcs8) || !req.Input.HasPrivateKey {
		t.Fatalf("the request does not hold the generated key under its own id: %v", err)
	}
	if _, err := cf.App.KEK.Open(req.PrivateKey, pki.RequestKeyAAD(id+1)); err == nil {
		t.Fatal("the married key opens under another request's id")
	}
	assertNotInRedis(t, cf, map[string][]byte{"the married key": pkcs8})
	if _, err := cf.App.Store.PendingCSR(t.Context(), gen.Id); err == nil {
		t.Fatal("the pending CSR is still there after its enrollment")
	}
	if l := list(bearer(testutil.AliceToken)); len(l) != 0 {
		t.Fatalf("still listed after enrollment: %+v", l)
	}
	st := getRequest(t, cf, id)
	if !strings.Contains(string(cf.Do(t, "GET", requestPath(id), nil).Body), `"HasPrivateKey":true`) {
		t.Fatalf("GET request %d does not say HasPrivateKey: %+v", id, st.Request)
	}

	// Recovered by its requester: the generated key with the certificate.
	r = cf.Do(t, "POST", "/Certificates/Recover", map[string]any{"CertID": er.CertificateInformation.KeyfactorID, "Password": pfxPassword, "IncludeChain": true},
		append([]string{"x-certificateformat", "PFX"}, alice...)...)
	if r.Status != http.StatusOK {
		t.Fatalf("recover: %d %s", r.Status, r.Body)
	}
	var rec struct{ PFX, FileName string }
	r.JSON(t, &rec)
	key, certs := assertPKCS12(t, rec.PFX, pfxPassword, 3, "gen.example.com")
	// The default order, which Keyfactor 10+ clients decode: the leaf
	// first, the root last.
	if certs[0].Subject.CommonName != "gen.example.com" || !bytes.Equal(certs[2].RawSubject, certs[2].RawIssuer) {
		t.Fatalf("archive order: %s, %s, %s; want the leaf first, the root last", certs[0].Subject, certs[1].Subject, certs[2].Subject)
	}
	if d, _ := x509.MarshalPKCS8PrivateKey(key); !bytes.Equal(d, pkcs8) || rec.FileName != "gen.example.com.pfx" {
		t.Fatalf("recovered another key, or file name %q", rec.FileName)
	}
	verifyChain(t, leafFirst(certs, "gen.example.com"), "gen.example.com")
}

// leafFirst orders openssl's certificates leaf, issuing CA, root.
func leafFirst(certs []*x509.Certificate, cn string) []*x509.Certificate {
	var leaf, root, mid *x509.Certificate
	for _, c := range certs {
		switch {
		case c.Subject.CommonName == cn:
			leaf = c
		case bytes.Equal(c.RawSubject, c.RawIssuer):
			root = c
		default:
			mid = c
		}
	}
	return []*x509.Certificate{leaf, mid, root}
}

func TestCSRGenerationRefusalsLeaveNothingBehind(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		tmpl := c.Templates[0]
		tmpl.Name, tmpl.AllowedRequesters = "AdminsOnly", []string{"pki-admins"}
		c.Templates = append(c.Templates, tmpl)
	})
	good := func(extra map[string]any) map[string]any {
		b := map[string]any{"Subject": "CN=a.example.com", "KeyType": "RSA", "KeyLength": 2048, "Template": config.DefaultTemplate}
		for k, v := range extra {
			if v == nil {
				delete(b, k)
			} else {
				b[k] = v
			}
		}
		return b
	}
	const E, U = keyfactor.CodeInvalidField, keyfactor.CodeUnknownName
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"missing Subject", good(map[string]any{"Subject": nil}), 400, E, "Subject: required"},
		{"Subject with an unknown attribute", good(map[string]any{"Subject": "CN=a,XY=b"}), 400, E, "Subject: unknown attribute"},
		{"Subject that is no DN", good(map[string]any{"Subject": "just a name"}), 400, E, "Subject"},
		{"missing KeyType", good(map[string]any{"KeyType": nil}), 400, E, "KeyType"},
		{"unknown KeyType", good(map[string]any{"KeyType": "DSA"}), 400, E, "KeyType"},
		{"RSA without KeyLength", good(map[string]any{"KeyLength": nil}), 400, E, "KeyLength"},
		{"RSA 1024", good(map[string]any{"KeyLength": 1024}), 400, E, "KeyLength"},
		{"KeyLength not a number", good(map[string]any{"KeyLength": "2048"}), 400, E, "KeyLength"},
		{"unknown Curve", good(map[string]any{"KeyType": "ECC", "KeyLength": nil, "Curve": "1.2.3.4"}), 400, E, "Curve"},
		{"RSA size the template forbids", good(map[string]any{"KeyLength": 8192}), 400, E, "KeyLength: template WebServer does not allow RSA 8192"},
		{"curve the template forbids", good(map[string]any{"KeyType": "ECC", "KeyLength": nil, "Curve": "1.3.132.0.35"}), 400, E, "Curve: template WebServer does not allow ECC curve P-521"},
		{"Ed25519 the template forbids", good(map[string]any{"KeyType": "Ed25519", "KeyLength": nil}), 400, E, "KeyType: template WebServer does not allow Ed25519"},
		{"unknown Template", good(map[string]any{"Template": "NoSuch"}), 400, U, "Template"},
		{"bad SAN", good(map[string]any{"SANs": map[string]any{"dns": []string{"bad name"}}}), 400, E, "SANs.dns[0]"},
		{"not an object", `[1]`, 400, E, "request body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertError(t, cf.Do(t, "POST", "/CSRGeneration/Generate", tc.body), tc.status, tc.code, tc.field)
		})
	}
	assertError(t, cf.Do(t, "POST", "/CSRGeneration/Generate", good(map[string]any{"Template": "AdminsOnly"}), "Authorization", bearer(testutil.AliceToken)), 403, keyfactor.CodeForbidden, "Template: alice may not enroll with template AdminsOnly")
	if r := cf.Do(t, "POST", "/CSRGeneration/Generate", good(nil), "Authorization", bearer(testutil.BobToken)); r.Status != http.StatusForbidden {
		t.Fatalf("an approver without the requester role generated a CSR: %d", r.Status)
	}
	for _, k := range testutil.Keys(t, cf.Redis, cf.Prefix) {
		if strings.Contains(k, ":csr") {
			t.Errorf("a refused generation left %s behind", k)
		}
	}
}

func TestPendingCSRDeletion(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	alice := []string{"Authorization", bearer(testutil.AliceToken)}
	body := map[string]any{"Subject": "CN=del.example.com", "KeyType": "RSA", "KeyLength": 2048}
	_, a := generateCSR(t, cf, body, alice...)
	_, b := generateCSR(t, cf, body, alice...)
	_, c := generateCSR(t, cf, body, alice...)
	path := func(id int64) string { return "/CSRGeneration/Pending/" + strconv.FormatInt(id, 10) }
	// Paged, oldest first, and filtered by the queryString.
	for q, want := range map[string][]int64{
		"pq.returnLimit=2&pq.pageReturned=1":                         {a.Id, b.Id},
		"pq.returnLimit=2&pq.pageReturned=2":                         {c.Id},
		"pq.queryString=" + url.QueryEscape(`Requester -eq "alice"`): {a.Id, b.Id, c.Id},
		"pq.queryString=" + url.QueryEscape(`Requester -eq "carol"`): {},
	} {
		r := cf.Do(t, "GET", "/CSRGeneration/Pending?"+q, nil)
		var l []pendingCSR
		r.JSON(t, &l)
		got := []int64{}
		for _, p := range l {
			got = append(got, p.Id)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("GET /CSRGeneration/Pending?%s: %v, want %v", q, got, want)
		}
	}
	assertError(t, cf.Do(t, "GET", "/CSRGeneration/Pending?pq.queryString="+url.QueryEscape(`Color -eq "red"`), nil), 400, keyfactor.CodeInvalidField, "pq.queryString")
	if r := cf.Do(t, "DELETE", path(a.Id), nil, "Authorization", carolBasic); r.Status != http.StatusNotFound {
		t.Fatalf("carol deletes alice's pending CSR: %d, want 404", r.Status)
	}
	if r := cf.Do(t, "DELETE", path(a.Id), nil, alice...); r.Status != http.StatusNoContent {
		t.Fatalf("alice deletes her pending CSR: %d %s", r.Status, r.Body)
	}
	if r := cf.Do(t, "GET", path(a.Id), nil, alice...); r.Status != http.StatusNotFound {
		t.Fatalf("a deleted pending CSR answers %d", r.Status)
	}
	if r := cf.Do(t, "DELETE", "/CSRGeneration/Pending", []int64{b.Id, 999999}, alice...); r.Status != http.StatusNotFound {
		t.Fatalf("bulk delete with an unknown id: %d, want 404", r.Status)
	}
	if _, err := cf.App.Store.PendingCSR(t.Context(), b.Id); err != nil {
		t.Fatal("a refused bulk delete deleted some")
	}
	if r := cf.Do(t, "DELETE", "/CSRGeneration/Pending", []int64{b.Id, c.Id}); r.Status != http.StatusNoContent {
		t.Fatalf("the admin bulk-deletes alice's: %d %s", r.Status, r.Body)
	}
	for _, k := range testutil.Keys(t, cf.Redis, cf.Prefix) {
		if strings.Contains(k, ":csr:") || strings.Contains(k, ":csr-key:") || strings.Contains(k, ":csrs-of:") {
			t.Errorf("deleted pending CSRs left %s behind", k)
		}
	}
	// A deleted CSR is an ordinary CSR again: no forceEnroll needed.
	der, _, _ := pki.DecodeCSR(a.CSR)
	if resp, er := enroll(t, cf, testutil.EnrollBody(der, nil), alice...); resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll a deleted pending CSR: %d %s", resp.Status, resp.Body)
	}
}

func TestPFXEnrollmentIssuesAReadableArchive(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	alice := []string{"Authorization", bearer(testutil.AliceToken)}
	for _, tc := range []struct {
		name      string
		extra     map[string]any
		wantCerts int
		wantKey   string
	}{
		{"RSA 3072 leaf only", map[string]any{"KeyType": "RSA", "KeyLength": 3072}, 1, "RSA 3072"},
		{"ECC by OID with chain and friendly name", map[string]any{"KeyType": "ECC", "Curve": "1.3.132.0.34", "IncludeChain": true, "CustomFriendlyName": "pfx prod"}, 3, "ECC P-384"},
		{"the template's first key kind when none is named", nil, 1, "RSA 2048"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, pr := enrollPFX(t, cf, pfxBody(tc.extra), alice...)
			info := pr.CertificateInformation
			if r.Status != http.StatusOK || info.RequestDisposition != "ISSUED" || info.Pkcs12Blob == "" || info.KeyfactorId != info.KeyfactorRequestId ||
				info.Password != nil || info.StoreIdsInvalidForRenewal == nil || !strings.Contains(string(r.Body), `"KeyfactorId":`) {
				t.Fatalf("PFX enrollment: %d %s", r.Status, r.Body)
			}
			key, certs := assertPKCS12(t, info.Pkcs12Blob, pfxPassword, tc.wantCerts, "pfx.example.com")
			if got := pki.SpecOf(pki.PublicKeyOf(key)).String(); got != tc.wantKey {
				t.Fatalf("generated key %s, want %s", got, tc.wantKey)
			}
			leaf := leafFirst(certs, "pfx.example.com")[0]
			if pki.Thumbprint(leaf.Raw) != info.Thumbprint || leaf.Subject.String() != "CN=pfx.example.com,O=Certflow Tests" {
				t.Fatalf("archive certificate %s does not match the answer's %s", leaf.Subject, info.Thumbprint)
			}
			if certs[0] != leaf {
				t.Fatalf("the archive starts with %s: the default ChainOrder puts the leaf first", certs[0].Subject)
			}
			if tc.wantCerts == 3 {
				verifyChain(t, certs, "pfx.example.com")
			}
			if name, _ := tc.extra["CustomFriendlyName"].(string); name != "" {
				der, _ := base64.StdEncoding.DecodeString(info.Pkcs12Blob)
				blocks, err := pkcs12.ToPEM(der, pfxPassword)
				if err != nil {
					t.Fatal(err)
				}
				found := false
				for _, b := range blocks {
					found = found || b.Headers["friendlyName"] == name
				}
				if !found {
					t.Fatalf("no bag carries friendlyName %q", name)
				}
			}
			// The requester gets the archive again when polling; an
			// approver, who may read the request, does not.
			id := info.KeyfactorRequestId
			var st struct {
				CertificateInformation struct{ Pkcs12Blob string }
				Request                struct{ HasPrivateKey bool }
			}
			cf.Do(t, "GET", requestPath(id), nil, alice...).JSON(t, &st)
			if st.CertificateInformation.Pkcs12Blob == "" || !st.Request.HasPrivateKey {
				t.Fatalf("GET request %d as its requester: no Pkcs12Blob or HasPrivateKey", id)
			}
			assertPKCS12(t, st.CertificateInformation.Pkcs12Blob, pfxPassword, tc.wantCerts, "pfx.example.com")
			if r := cf.Do(t, "GET", requestPath(id), nil, "Authorization", bearer(testutil.BobToken)); r.Status != http.StatusOK || strings.Contains(string(r.Body), "Pkcs12Blob") {
				t.Fatalf("an approver reads request %d: %d, with the archive: %v", id, r.Status, strings.Contains(string(r.Body), "Pkcs12Blob"))
			}
			// Stored: the key sealed under the request's id, the password
			// sealed under its own associated data.
			req, err := cf.App.Store.Get(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			kd, _ := x509.MarshalPKCS8PrivateKey(key)
			if opened, err := cf.App.KEK.Open(req.PrivateKey, pki.RequestKeyAAD(id)); err != nil || !bytes.Equal(opened, kd) {
				t.Fatalf("the request's sealed key is not the archive's: %v", err)
			}
			if pw, err := cf.App.KEK.Open(req.PFXPassword, pki.PFXPasswordAAD(id)); err != nil || string(pw) != pfxPassword {
				t.Fatalf("the sealed password: %v", err)
			}
			if _, err := cf.App.KEK.Open(req.PFXPassword, pki.RequestKeyAAD(id)); err == nil {
				t.Fatal("the sealed password opens under the key's associated data")
			}
			assertNotInRedis(t, cf, map[string][]byte{"the PFX password": []byte(pfxPassword), "the generated key": kd})
		})
	}
}

func TestPFXEnrollmentRefusalsLeaveNothingBehind(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		tmpl := c.Templates[0]
		tmpl.Name, tmpl.RSAKeySizes, tmpl.ECCCurves = "OnlyP384", []int{}, []string{"P-384"}
		c.Templates = append(c.Templates, tmpl)
	})
	const E, U = keyfactor.CodeInvalidField, keyfactor.CodeUnknownName
	for _, tc := range []struct {
		name    string
		body    any
		headers []string
		status  int
		code    string
		field   string
	}{
		{"missing Password", pfxBody(map[string]any{"Password": nil}), nil, 400, E, "Password: required"},
		{"short Password", pfxBody(map[string]any{"Password": "1234567"}), nil, 400, E, "Password: must be at least 8"},
		{"missing Subject", pfxBody(map[string]any{"Subject": nil}), nil, 400, E, "Subject: required"},
		{"bad Subject", pfxBody(map[string]any{"Subject": "CN=a,C=Germany"}), nil, 400, E, "Subject: C must be a two-letter"},
		{"a CSR in a PFX enrollment", pfxBody(map[string]any{"CSR": "MIIB"}), nil, 400, E, "CSR"},
		{"RenewalCertificateId", pfxBody(map[string]any{"RenewalCertificateId": 3}), nil, 400, E, "RenewalCertificateId"},
		{"PopulateMissingValuesFromAD", pfxBody(map[string]any{"PopulateMissingValuesFromAD": true}), nil, 400, E, "PopulateMissingValuesFromAD"},
		{"P-256 where the template allows only P-384", pfxBody(map[string]any{"Template": "OnlyP384", "KeyType": "ECC", "Curve": "P-256"}), nil, 400, E, "Curve: template OnlyP384 does not allow ECC curve P-256"},
		{"RSA where the template allows none", pfxBody(map[string]any{"Template": "OnlyP384", "KeyType": "RSA", "KeyLength": 2048}), nil, 400, E, "KeyLength: template OnlyP384"},
		{"unknown KeyType", pfxBody(map[string]any{"KeyType": "DSA"}), nil, 400, E, "KeyType"},
		{"unknown Template", pfxBody(map[string]any{"Template": "NoSuch"}), nil, 400, U, "Template"},
		{"missing Timestamp", pfxBody(map[string]any{"Timestamp": nil}), nil, 400, E, "Timestamp"},
		{"unknown ChainOrder", pfxBody(map[string]any{"ChainOrder": "LeafLast"}), nil, 400, E, "ChainOrder"},
		{"friendly name too long", pfxBody(map[string]any{"CustomFriendlyName": strings.Repeat("n", 200)}), nil, 400, E, "CustomFriendlyName"},
		{"x-certificateformat PEM", pfxBody(nil), []string{"x-certificateformat", "PEM"}, 400, E, "x-certificateformat"},
		{"no x-certificateformat", pfxBody(nil), []string{"x-certificateformat", ""}, 400, E, "x-certificateformat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := append([]string{"x-certificateformat", "PFX"}, tc.headers...)
			assertError(t, cf.Do(t, "POST", "/Enrollment/PFX", tc.body, headers...), tc.status, tc.code, tc.field)
		})
	}
	assertNothingStored(t, cf)
	// The template's own policy with a key it allows: issued.
	if r, pr := enrollPFX(t, cf, pfxBody(map[string]any{"Template": "OnlyP384"})); r.Status != http.StatusOK || pr.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("OnlyP384 with its default key: %d %s", r.Status, r.Body)
	}
}

// TestPFXEnrollmentWaitsForApproval: the key is made before the workflow,
// the request waits PENDING with its answer's blob empty, and after the
// approval the requester polls the archive.
func TestPFXEnrollmentWaitsForApproval(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, gated("gated", 0, "{roles: [approver]}"))
	alice := []string{"Authorization", bearer(testutil.AliceToken)}
	r, pr := enrollPFX(t, cf, pfxBody(map[string]any{"Subject": "CN=gated.example.com", "SANs": nil, "IncludeChain": true}), alice...)
	info := pr.CertificateInformation
	if r.Status != http.StatusOK || info.RequestDisposition != "PENDING" || info.Pkcs12Blob != "" {
		t.Fatalf("gated PFX enrollment: %d %s", r.Status, r.Body)
	}
	// The key exists already, sealed, and the CSR the approver sees is it.
	req, err := cf.App.Store.Get(t.Context(), info.KeyfactorRequestId)
	if err != nil || len(req.CSR) == 0 || len(req.PrivateKey) == 0 || req.CommonName != "gated.example.com" {
		t.Fatalf("the pending PFX request has no CSR or key yet: %v", err)
	}
	mustSignal(t, cf, info.WorkflowInstanceId, daveToken, approveData("ok"))
	pollDisposition(t, cf, info.KeyfactorRequestId, "ISSUED")
	var st struct {
		CertificateInformation struct{ Pkcs12Blob string }
	}
	cf.Do(t, "GET", requestPath(info.KeyfactorRequestId), nil, alice...).JSON(t, &st)
	assertPKCS12(t, st.CertificateInformation.Pkcs12Blob, pfxPassword, 3, "gated.example.com")
}

// TestPFXEnrollmentAsynchronously: respond-async answers 202 with the
// Location to poll, as CSR enrollment does.
func TestPFXEnrollmentAsynchronously(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	r, pr := enrollPFX(t, cf, pfxBody(nil), "Prefer", "respond-async")
	if r.Status != http.StatusAccepted || !strings.HasSuffix(r.Header.Get("Location"), requestPath(pr.CertificateInformation.KeyfactorRequestId)) {
		t.Fatalf("respond-async: %d %s (Location %q)", r.Status, r.Body, r.Header.Get("Location"))
	}
	pollFinal(t, cf, pr.CertificateInformation.KeyfactorRequestId)
	var st struct {
		CertificateInformation struct{ Pkcs12Blob string }
	}
	cf.Do(t, "GET", requestPath(pr.CertificateInformation.KeyfactorRequestId), nil).JSON(t, &st)
	key, certs := assertPKCS12(t, st.CertificateInformation.Pkcs12Blob, pfxPassword, 1, "pfx.example.com")
	// A PFX enrollment's key is recoverable like any retained key, under
	// a new password.
	r = cf.Do(t, "POST", "/Certificates/Recover", map[string]any{"Thumbprint": pki.Thumbprint(certs[0].Raw), "Password": "a-new-password", "IncludeChain": true}, "x-certificateformat", "PFX")
	var rec struct{ PFX string }
	r.JSON(t, &rec)
	again, _ := assertPKCS12(t, rec.PFX, "a-new-password", 3, "pfx.example.com")
	if !pki.SamePublicKey(pki.PublicKeyOf(key), pki.PublicKeyOf(again)) {
		t.Fatal("recovery returned another key than the PFX enrollment")
	}
}

func TestKeyRecovery(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		tmpl := c.Templates[0]
		tmpl.Name, tmpl.KeyRetention = "Retained", true
		c.Templates = append(c.Templates, tmpl)
	})
	alice := []string{"Authorization", bearer(testutil.AliceToken)}
	csr, key := testutil.CSR(t, "kept.example.com")
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	_, kept := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "Retained", "PrivateKey": base64.StdEncoding.EncodeToString(pkcs8)}), alice...)
	plainCSR, _ := testutil.CSR(t, "plain.example.com")
	_, plain := enroll(t, cf, testutil.EnrollBody(plainCSR, nil), alice...)
	ki := kept.CertificateInformation
	if ki.RequestDisposition != "ISSUED" || plain.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("setup: %+v %+v", ki, plain.CertificateInformation)
	}
	recover := func(body map[string]any, headers ...string) *testutil.Response {
		return cf.Do(t, "POST", "/Certificates/Recover", body, append([]string{"x-certificateformat", "PFX"}, headers...)...)
	}
	// By each way of naming the certificate, by its requester and the admin.
	for name, body := range map[string]map[string]any{
		"CertID":                 {"CertID": ki.KeyfactorID},
		"CertId (the Go client)": {"CertId": ki.KeyfactorID},
		"Thumbprint":             {"Thumbprint": strings.ToLower(ki.Thumbprint)},
		"SerialNumber+IssuerDN":  {"SerialNumber": ki.SerialNumber, "IssuerDN": strings.ReplaceAll(ki.IssuerDN, ",", ", ")},
	} {
		for who, auth := range map[string][]string{"requester": alice, "admin": nil} {
			t.Run(name+" by the "+who, func(t *testing.T) {
				body["Password"] = pfxPassword
				r := recover(body, auth...)
				if r.Status != http.StatusOK {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
				var rec struct{ PFX string }
				r.JSON(t, &rec)
				got, _ := assertPKCS12(t, rec.PFX, pfxPassword, 1, "kept.example.com")
				if d, _ := x509.MarshalPKCS8PrivateKey(got); !bytes.Equal(d, pkcs8) {
					t.Fatal("recovered another key")
				}
			})
		}
	}
	// ChainOrder: the leaf first by default and with EndEntityFirst; the
	// root first, the leaf last, with RootFirst.
	for order, wantFirst := range map[string]string{"": "kept.example.com", "EndEntityFirst": "kept.example.com", "rootfirst": config.DefaultCAName + " Root"} {
		r := recover(map[string]any{"CertID": ki.KeyfactorID, "Password": pfxPassword, "IncludeChain": true, "ChainOrder": order}, alice...)
		var rec struct{ PFX string }
		r.JSON(t, &rec)
		if _, certs := assertPKCS12(t, rec.PFX, pfxPassword, 3, "kept.example.com"); certs[0].Subject.CommonName != wantFirst {
			t.Fatalf("ChainOrder %q: the archive starts with %s, want %s", order, certs[0].Subject, wantFirst)
		}
	}
	const E = keyfactor.CodeInvalidField
	for _, tc := range []struct {
		name   string
		body   map[string]any
		auth   []string
		status int
		code   string
		field  string
	}{
		{"someone else's certificate", map[string]any{"CertID": ki.KeyfactorID, "Password": pfxPassword}, []string{"Authorization", carolBasic}, 404, keyfactor.CodeNotFound, "CertID"},
		{"an unknown certificate", map[string]any{"CertID": 99999, "Password": pfxPassword}, alice, 404, keyfactor.CodeNotFound, "CertID"},
		{"an unknown thumbprint", map[string]any{"Thumbprint": strings.Repeat("AB", 20), "Password": pfxPassword}, alice, 404, keyfactor.CodeNotFound, "Thumbprint"},
		{"a certificate without a retained key", map[string]any{"CertID": plain.CertificateInformation.KeyfactorID, "Password": pfxPassword}, alice, 400, E, "CertID: certificate"},
		{"no password", map[string]any{"CertID": ki.KeyfactorID}, alice, 400, E, "Password: required"},
		{"a short password", map[string]any{"CertID": ki.KeyfactorID, "Password": "short"}, alice, 400, E, "Password"},
		{"no certificate named", map[string]any{"Password": pfxPassword}, alice, 400, E, "CertID: required"},
		{"a serial number without issuer", map[string]any{"SerialNumber": ki.SerialNumber, "Password": pfxPassword}, alice, 400, E, "SerialNumber"},
		{"a malformed thumbprint", map[string]any{"Thumbprint": "xyz", "Password": pfxPassword}, alice, 400, E, "Thumbprint"},
		{"an unknown ChainOrder", map[string]any{"CertID": ki.KeyfactorID, "Password": pfxPassword, "ChainOrder": "Sideways"}, alice, 400, E, "ChainOrder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertError(t, recover(tc.body, tc.auth...), tc.status, tc.code, tc.field)
		})
	}
	assertError(t, cf.Do(t, "POST", "/Certificates/Recover", map[string]any{"CertID": ki.KeyfactorID, "Password": pfxPassword}, "x-certificateformat", "PEM"), 400, E, "x-certificateformat")
}

// TestPFXIdempotencyKey: a repeated PFX submit returns the first request
// (one key, one certificate) when it asks the same with the same
// password, and is refused when it asks for another subject or brings
// another password.
func TestPFXIdempotencyKey(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	body := pfxBody(nil)
	r1, first := enrollPFX(t, cf, body, "Idempotency-Key", "pfx-1")
	r2, again := enrollPFX(t, cf, body, "Idempotency-Key", "pfx-1")
	if r1.Status != http.StatusOK || r2.Status != http.StatusOK || again.CertificateInformation.KeyfactorRequestId != first.CertificateInformation.KeyfactorRequestId {
		t.Fatalf("repeat: %d request %d / %d request %d %.300s", r1.Status, first.CertificateInformation.KeyfactorRequestId, r2.Status, again.CertificateInformation.KeyfactorRequestId, r2.Body)
	}
	k1, _ := assertPKCS12(t, first.CertificateInformation.Pkcs12Blob, pfxPassword, 1, "pfx.example.com")
	k2, _ := assertPKCS12(t, again.CertificateInformation.Pkcs12Blob, pfxPassword, 1, "pfx.example.com")
	if !pki.SamePublicKey(pki.PublicKeyOf(k1), pki.PublicKeyOf(k2)) {
		t.Fatal("the repeat carries another key")
	}
	r := cf.Do(t, "POST", "/Enrollment/PFX", pfxBody(map[string]any{"Subject": "CN=other.example.com"}), "x-certificateformat", "PFX", "Idempotency-Key", "pfx-1")
	assertError(t, r, 409, keyfactor.CodeConflict, "Idempotency-Key")
	// The password is part of what the submit asks (its fingerprint).
	r = cf.Do(t, "POST", "/Enrollment/PFX", pfxBody(map[string]any{"Password": "another-password"}), "x-certificateformat", "PFX", "Idempotency-Key", "pfx-1")
	assertError(t, r, 409, keyfactor.CodeConflict, "Idempotency-Key")
}

// TestPFXEnrollmentRunsTheDefinitionsRules: the generated CSR goes through
// the definition's validate step like a client's; a rule on the key (here
// stricter than the template) denies a PFX request whose key breaks it,
// and a definition can tell PFX requests apart by request.PFX.
func TestPFXEnrollmentRunsTheDefinitionsRules(t *testing.T) {
	t.Parallel()
	dir := defsDir(t, map[string]string{"pfx.yaml": `name: pfx-strict
trigger: enrollment
match: request.PFX != nil
priority: 10
steps:
  - id: rules
    uses: validate
    with:
      rules:
        - check: csr.KeyType != "RSA" || csr.KeyBits >= 3072
          message: PFX keys must be RSA 3072 or stronger
        - check: csr.CommonName == request.PFX.Subject[3:]
          message: the CSR is not the one ordered
  - id: issue
    uses: issue
`, "default.yaml": `name: others
trigger: enrollment
steps:
  - id: issue
    uses: issue
`})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	r, pr := enrollPFX(t, cf, pfxBody(map[string]any{"Subject": "CN=pfx.example.com", "KeyType": "RSA", "KeyLength": 2048}))
	if info := pr.CertificateInformation; r.Status != http.StatusOK || info.RequestDisposition != "DENIED" || info.DispositionMessage != "PFX keys must be RSA 3072 or stronger" || info.Pkcs12Blob != "" {
		t.Fatalf("RSA 2048 PFX under a 3072 rule: %d %s", r.Status, r.Body)
	}
	r, pr = enrollPFX(t, cf, pfxBody(map[string]any{"Subject": "CN=pfx.example.com", "KeyType": "RSA", "KeyLength": 3072}))
	if info := pr.CertificateInformation; r.Status != http.StatusOK || info.RequestDisposition != "ISSUED" {
		t.Fatalf("RSA 3072 PFX: %d %s", r.Status, r.Body)
	}
	assertPKCS12(t, pr.CertificateInformation.Pkcs12Blob, pfxPassword, 1, "pfx.example.com")
	st := getRequest(t, cf, pr.CertificateInformation.KeyfactorRequestId)
	if st.Request.Definition != "pfx-strict" {
		t.Fatalf("the PFX request ran %q, want pfx-strict", st.Request.Definition)
	}
}

// TestConcurrentForceEnrollsMarryTheKeyOnce: a generated CSR enrolled with
// forceEnroll by several submits at once gives its key to one request;
// the others are refused while it is claimed (409), or, once it is gone
// from the pending CSRs, enroll it as the ordinary CSR it has become.
func TestConcurrentForceEnrollsMarryTheKeyOnce(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	_, gen := generateCSR(t, cf, map[string]any{"Subject": "CN=once.example.com", "KeyType": "ECC", "KeyLength": 256})
	der, _, _ := pki.DecodeCSR(gen.CSR)
	const n = 6
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], _, _ = rawPostPEM(cf.URL, "/Enrollment/CSR?forceEnroll=true", testutil.EnrollBody(der, nil))
		}()
	}
	wg.Wait()
	withKey := 0
	for id := int64(1); id <= 3*n; id++ { // withdrawn ids leave gaps
		if r, err := cf.App.Store.Get(t.Context(), id); err == nil && len(r.PrivateKey) > 0 {
			withKey++
		}
	}
	for _, st := range statuses {
		if st != http.StatusOK && st != http.StatusConflict {
			t.Fatalf("statuses %v: want 200s and 409s only", statuses)
		}
	}
	if withKey != 1 {
		t.Fatalf("%d requests hold the generated key (statuses %v), want 1", withKey, statuses)
	}
	for _, k := range testutil.Keys(t, cf.Redis, cf.Prefix) {
		if strings.Contains(k, ":csr:") || strings.Contains(k, ":csr-key:") {
			t.Errorf("the enrolled CSR left %s behind", k)
		}
	}
}

// rawPostPEM posts an enrollment as the admin without failing the test
// (it runs in goroutines).
func rawPostPEM(base, path string, body any) (int, []byte, error) {
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", base+path, bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+testutil.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-certificateformat", "PEM")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func TestPendingCSRsPerRequesterAreBounded(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.API.MaxPendingCSRs = 2 })
	alice := []string{"Authorization", bearer(testutil.AliceToken)}
	carol := []string{"Authorization", carolBasic}
	body := map[string]any{"Subject": "CN=bound.example.com", "KeyType": "ECC", "Curve": "P-256"}
	_, a := generateCSR(t, cf, body, alice...)
	_, b := generateCSR(t, cf, body, alice...)
	if a.Id == 0 || b.Id == 0 {
		t.Fatalf("the first two were refused: %+v %+v", a, b)
	}
	seq, _ := cf.Redis.Get(t.Context(), cf.Prefix+":seq:csr").Int64()
	assertError(t, cf.Do(t, "POST", "/CSRGeneration/Generate", body, alice...), 409, keyfactor.CodeConflict, "CSRGeneration: alice has 2 pending CSRs")
	if now, _ := cf.Redis.Get(t.Context(), cf.Prefix+":seq:csr").Int64(); now != seq {
		t.Fatalf("a refused generation allocated a CSR id (%d → %d)", seq, now)
	}
	// The bound is each requester's own.
	if r, c := generateCSR(t, cf, body, carol...); r.Status != http.StatusOK || c.Id == 0 {
		t.Fatalf("carol refused because of alice's CSRs: %d %s", r.Status, r.Body)
	}
	// Deleting one makes room; so does a CSR whose delete was cut short
	// after its record went (its id is pruned from the count).
	if r := cf.Do(t, "DELETE", "/CSRGeneration/Pending/"+strconv.FormatInt(a.Id, 10), nil, alice...); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if r, _ := generateCSR(t, cf, body, alice...); r.Status != http.StatusOK {
		t.Fatalf("after a delete: %d %s", r.Status, r.Body)
	}
	assertError(t, cf.Do(t, "POST", "/CSRGeneration/Generate", body, alice...), 409, keyfactor.CodeConflict, "max_pending_csrs")
	if err := cf.Redis.Del(t.Context(), fmt.Sprintf("%s:csr:{%d}", cf.Prefix, b.Id)).Err(); err != nil {
		t.Fatal(err)
	}
	if r, _ := generateCSR(t, cf, body, alice...); r.Status != http.StatusOK {
		t.Fatalf("after a half-done delete: %d %s", r.Status, r.Body)
	}
}

// waitForWithdrawnRuns waits (up to 10 s) until no request id is left
// withdrawn: the worker has dropped the runs their submits had queued.
func waitForWithdrawnRuns(t *testing.T, cf *testutil.Certflow) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		withdrawn := 0
		for _, k := range testutil.Keys(t, cf.Redis, cf.Prefix) {
			if v, _ := cf.Redis.HGet(t.Context(), k, "v").Result(); strings.Contains(k, ":request:{") && v == "0" {
				withdrawn++
			}
		}
		if withdrawn == 0 {
			if strings.Contains(cf.Logs.String(), "does not exist") {
				t.Error("a withdrawn id's run was dropped as a missing request (a warning), not as withdrawn")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d withdrawn request ids still marked after 10 s: their runs were not dropped", withdrawn)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

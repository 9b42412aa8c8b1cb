package app_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/testutil"
)

// certRecord decodes GET /Certificates/{id} the way Keyfactor's Go client
// does (integers as integers), plus the fields the tests check.
type certRecord struct {
	Id                       int64
	Thumbprint               string
	SerialNumber             string
	IssuedDN                 string
	IssuedCN                 string
	ImportDate               string
	NotBefore                string
	NotAfter                 string
	IssuerDN                 string
	PrincipalId              *string
	TemplateId               int
	CertState                int
	KeySizeInBits            int
	KeyType                  int
	KeyUsage                 int
	SigningAlgorithm         string
	CertStateString          string
	KeyTypeString            string
	RevocationEffDate        *string
	RevocationReason         *int
	RevocationComment        *string
	CertificateAuthorityId   int
	CertificateAuthorityName string
	TemplateName             string
	HasPrivateKey            bool
	CertRequestId            int64
	RequesterName            string
	ContentBytes             string
	ExtendedKeyUsages        []struct {
		Id               int
		Oid, DisplayName string
	}
	SubjectAltNameElements []struct {
		Id        int
		Value     string
		Type      int
		ValueHash string
	}
	Metadata      map[string]string
	OwnerRoleId   *int64
	OwnerRoleName *string
}

const (
	alice = "Bearer " + testutil.AliceToken
	bob   = "Bearer " + testutil.BobToken
)

// issueAs enrolls a P-256 CSR for cn as the caller and returns the
// certificate id and the response's chain (PEM, leaf first).
func issueAs(t *testing.T, cf *testutil.Certflow, auth, cn string, extra map[string]any) (int64, []*x509.Certificate) {
	t.Helper()
	csr, _ := testutil.CSR(t, cn, cn)
	if extra == nil {
		extra = map[string]any{}
	}
	extra["IncludeChain"] = true
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, extra), "Authorization", auth)
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll %s: %d %s", cn, resp.Status, resp.Body)
	}
	return er.CertificateInformation.KeyfactorID, pemChain(t, er.CertificateInformation.Certificates, true)
}

func getCert(t *testing.T, cf *testutil.Certflow, auth string, id int64, query string) (*testutil.Response, certRecord) {
	t.Helper()
	resp := cf.Do(t, "GET", fmt.Sprintf("/Certificates/%d%s", id, query), nil, "Authorization", auth)
	var rec certRecord
	if resp.Status == http.StatusOK {
		resp.JSON(t, &rec)
	}
	return resp, rec
}

// wantError checks a Keyfactor-shaped refusal: status, code, and a message
// that starts with the field at fault.
func wantError(t *testing.T, resp *testutil.Response, status int, code, prefix string) {
	t.Helper()
	var e struct{ ErrorCode, Message string }
	if resp.Status != status {
		t.Fatalf("status %d, want %d: %s", resp.Status, status, resp.Body)
	}
	resp.JSON(t, &e)
	if e.ErrorCode != code || !strings.HasPrefix(e.Message, prefix) {
		t.Fatalf("error %+v, want code %s and a message starting %q", e, code, prefix)
	}
}

func TestCertificateRecordHasKeyfactorsFields(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.SecurityRoles = []config.SecurityRole{{ID: 12, Name: "WebAdmins"}}
	})
	id, chain := issueAs(t, cf, alice, "rec.example.com", map[string]any{
		"Metadata": map[string]any{"Team": "web"}, "OwnerRoleName": "WebAdmins",
		"SANs": map[string]any{"ip4": []string{"192.0.2.7"}},
	})
	resp, rec := getCert(t, cf, alice, id, "")
	if resp.Status != http.StatusOK {
		t.Fatalf("GET: %d %s", resp.Status, resp.Body)
	}
	leaf := chain[0]
	der, _ := base64.StdEncoding.DecodeString(rec.ContentBytes)
	switch {
	case rec.Id != id || rec.CertRequestId != id:
		t.Errorf("Id %d, CertRequestId %d, want %d", rec.Id, rec.CertRequestId, id)
	case rec.IssuedCN != "rec.example.com" || rec.IssuedDN != leaf.Subject.String() || rec.IssuerDN != leaf.Issuer.String():
		t.Errorf("names: %q %q %q", rec.IssuedCN, rec.IssuedDN, rec.IssuerDN)
	case rec.SerialNumber != fmt.Sprintf("%X", leaf.SerialNumber.Bytes()) || len(rec.Thumbprint) != 40:
		t.Errorf("serial %s thumbprint %s", rec.SerialNumber, rec.Thumbprint)
	case string(der) != string(leaf.Raw):
		t.Error("ContentBytes is not the leaf's DER")
	case rec.CertState != 1 || rec.CertStateString != "Active" || rec.RevocationReason != nil || rec.RevocationEffDate != nil:
		t.Errorf("state %d %q, revocation %v", rec.CertState, rec.CertStateString, rec.RevocationReason)
	case rec.KeyType != 3 || rec.KeyTypeString != "ECC" || rec.KeySizeInBits != 256:
		t.Errorf("key %d %q %d, want 3 ECC 256", rec.KeyType, rec.KeyTypeString, rec.KeySizeInBits)
	case rec.KeyUsage != 128 || rec.SigningAlgorithm != "ECDSA-SHA256":
		t.Errorf("KeyUsage %d (want .NET DigitalSignature 128; KeyEncipherment is dropped for EC), signing %q", rec.KeyUsage, rec.SigningAlgorithm)
	case rec.TemplateName != config.DefaultTemplate || rec.TemplateId != 1 || rec.CertificateAuthorityId != 1 || !strings.HasSuffix(rec.CertificateAuthorityName, config.DefaultCAName):
		t.Errorf("template %q/%d, CA %q/%d", rec.TemplateName, rec.TemplateId, rec.CertificateAuthorityName, rec.CertificateAuthorityId)
	case rec.RequesterName != "alice" || rec.HasPrivateKey || rec.PrincipalId != nil:
		t.Errorf("requester %q, HasPrivateKey %v, PrincipalId %v", rec.RequesterName, rec.HasPrivateKey, rec.PrincipalId)
	case rec.Metadata["Team"] != "web" || rec.Metadata["RequestedBy"] != "alice":
		t.Errorf("Metadata %v, want the request's and the workflow's", rec.Metadata)
	case rec.OwnerRoleName == nil || *rec.OwnerRoleName != "WebAdmins" || rec.OwnerRoleId == nil || *rec.OwnerRoleId != 12:
		t.Errorf("OwnerRoleName %v, OwnerRoleId %v; want WebAdmins, 12", rec.OwnerRoleName, rec.OwnerRoleId)
	}
	if nb, err := time.Parse(time.RFC3339, rec.NotBefore); err != nil || !nb.Equal(leaf.NotBefore) {
		t.Errorf("NotBefore %q, want %s", rec.NotBefore, leaf.NotBefore)
	}
	var sans []string
	for _, s := range rec.SubjectAltNameElements {
		sans = append(sans, fmt.Sprintf("%d:%s", s.Type, s.Value))
		if s.Id <= 0 || len(s.ValueHash) != 64 {
			t.Errorf("SAN element %+v", s)
		}
	}
	if strings.Join(sans, " ") != "2:rec.example.com 7:192.0.2.7" {
		t.Errorf("SubjectAltNameElements %v, want DNS (2) and IP (7)", sans)
	}
	var ekus []string
	for _, e := range rec.ExtendedKeyUsages {
		ekus = append(ekus, e.Oid+"="+e.DisplayName)
	}
	if strings.Join(ekus, ",") != "1.3.6.1.5.5.7.3.1=Server Authentication,1.3.6.1.5.5.7.3.2=Client Authentication" {
		t.Errorf("ExtendedKeyUsages %v", ekus)
	}
	// Integers are bare JSON integers, as Keyfactor's clients parse them.
	if !strings.Contains(string(resp.Body), fmt.Sprintf(`"Id":%d,`, id)) || !strings.Contains(string(resp.Body), `"PrincipalId":null`) {
		t.Errorf("body: %s", resp.Body)
	}

	t.Run("an RSA certificate", func(t *testing.T) {
		csr, _ := testutil.RSACSR(t, 2048, "rsa.example.com", "rsa.example.com")
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", alice)
		if resp.Status != http.StatusOK {
			t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
		}
		_, rec := getCert(t, cf, alice, er.CertificateInformation.KeyfactorID, "")
		if rec.KeyType != 1 || rec.KeyTypeString != "RSA" || rec.KeySizeInBits != 2048 || rec.KeyUsage != 128|32 || rec.SigningAlgorithm != "ECDSA-SHA256" {
			t.Errorf("key %d %q %d, KeyUsage %d (want DigitalSignature|KeyEncipherment 160), signed %q", rec.KeyType, rec.KeyTypeString, rec.KeySizeInBits, rec.KeyUsage, rec.SigningAlgorithm)
		}
	})
	t.Run("includeMetadata=false leaves Metadata empty", func(t *testing.T) {
		_, rec := getCert(t, cf, alice, id, "?includeMetadata=false")
		if len(rec.Metadata) != 0 {
			t.Errorf("Metadata %v", rec.Metadata)
		}
	})
	t.Run("an approver sees any certificate", func(t *testing.T) {
		if resp, _ := getCert(t, cf, bob, id, ""); resp.Status != http.StatusOK {
			t.Errorf("bob: %d", resp.Status)
		}
	})
	for _, tt := range []struct {
		name, auth, path string
		status           int
		code, prefix     string
	}{
		{"another requester's certificate is not found", carolBasic, fmt.Sprintf("/Certificates/%d", id), 404, "0xA0030001", "certificate"},
		{"an unknown id is not found", alice, "/Certificates/999999", 404, "0xA0030001", "certificate 999999"},
		{"a zero id", alice, "/Certificates/0", 400, "0xA0010001", "id:"},
		{"an id that is not a number", alice, "/Certificates/abc", 400, "0xA0010001", "id:"},
		{"includeMetadata must be a boolean", alice, fmt.Sprintf("/Certificates/%d?includeMetadata=sometimes", id), 400, "0xA0010001", "includeMetadata:"},
		{"verbose must be an integer", alice, fmt.Sprintf("/Certificates/%d?verbose=lots", id), 400, "0xA0010001", "verbose:"},
		{"no credentials", "", fmt.Sprintf("/Certificates/%d", id), 401, "0xA0020001", "authentication required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, cf.Do(t, "GET", tt.path, nil, "Authorization", tt.auth), tt.status, tt.code, tt.prefix)
		})
	}
}

func TestListCertificatesByQuery(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	a1, c1 := issueAs(t, cf, alice, "alpha1.example.com", nil)
	a2, _ := issueAs(t, cf, alice, "alpha2.example.com", nil)
	b1, _ := issueAs(t, cf, alice, "beta.example.com", nil)
	carolID, carolChain := issueAs(t, cf, carolBasic, "alpha-carol.example.com", nil)
	list := func(t *testing.T, auth, query string) []int64 {
		t.Helper()
		return certIDs(t, cf.Do(t, "GET", "/Certificates?"+query, nil, "Authorization", auth))
	}
	q := queryString
	tp := func(c *x509.Certificate) string { return testutilThumbprint(c) }
	tests := []struct {
		name, auth, query string
		want              []int64
	}{
		{"a requester lists only her own", alice, "", []int64{a1, a2, b1}},
		{"an administrator lists all", "Bearer " + testutil.AdminToken, "", []int64{a1, a2, b1, carolID}},
		{"an approver lists all", bob, "", []int64{a1, a2, b1, carolID}},
		{"CertRequestId -eq is a direct lookup", alice, q(fmt.Sprintf("CertRequestId -eq %d", a2)), []int64{a2}},
		{"Id -eq with quotes", alice, q(fmt.Sprintf(`Id -eq "%d"`, b1)), []int64{b1}},
		{"Thumbprint -eq in lower case", alice, q(fmt.Sprintf(`Thumbprint -eq "%s"`, strings.ToLower(tp(c1[0])))), []int64{a1}},
		{"another's thumbprint finds nothing", alice, q(fmt.Sprintf(`Thumbprint -eq "%s"`, tp(carolChain[0]))), []int64{}},
		{"another's id finds nothing", alice, q(fmt.Sprintf("CertRequestId -eq %d", carolID)), []int64{}},
		{"IssuedCN -contains walks the inventory", alice, q(`IssuedCN -contains "alpha"`), []int64{a1, a2}},
		{"terms joined with AND", alice, q(`IssuedCN -contains "alpha" AND IssuedCN -ne "alpha1.example.com"`), []int64{a2}},
		{"SerialNumber -eq", alice, q(fmt.Sprintf(`SerialNumber -eq "%X"`, c1[0].SerialNumber.Bytes())), []int64{a1}},
		{"CertState -eq 1 is every active one", alice, q("CertState -eq 1"), []int64{a1, a2, b1}},
		{"TemplateName and RequesterName", "Bearer " + testutil.AdminToken, q(`TemplateName -eq "WebServer" AND RequesterName -eq "carol"`), []int64{carolID}},
		{"paging: page 2 of 2 per page", alice, "pq.pageReturned=2&pq.returnLimit=2", []int64{b1}},
		{"paging past the end", alice, "pq.pageReturned=3&pq.returnLimit=2", []int64{}},
		{"an unknown thumbprint", alice, q(`Thumbprint -eq "00"`), []int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := list(t, tt.auth, tt.query); !slices.Equal(got, tt.want) {
				t.Errorf("ids %v, want %v", got, tt.want)
			}
		})
	}
	for _, tt := range []struct{ name, query, prefix string }{
		{"an unknown field", q(`Owner -eq "x"`), `pq.queryString: unknown field "Owner"`},
		{"a clause without a value", q(`IssuedCN -eq`), "pq.queryString"},
		{"a limit that is not a number", "pq.returnLimit=lots", "pq.returnLimit"},
		{"includeHasPrivateKey must be a boolean", "includeHasPrivateKey=2x", "includeHasPrivateKey"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, cf.Do(t, "GET", "/Certificates?"+tt.query, nil, "Authorization", alice), 400, "0xA0010001", tt.prefix)
		})
	}
}

func testutilThumbprint(c *x509.Certificate) string { return pki.Thumbprint(c.Raw) }

// certIDs are the ids of a GET /Certificates answer, which must be 200 and
// a bare JSON array, as Keyfactor's.
func certIDs(t *testing.T, resp *testutil.Response) []int64 {
	t.Helper()
	if resp.Status != http.StatusOK {
		t.Fatalf("list: %d %s", resp.Status, resp.Body)
	}
	if !strings.HasPrefix(string(resp.Body), "[") {
		t.Fatalf("the answer is not a bare JSON array: %s", resp.Body)
	}
	var rows []certRecord
	resp.JSON(t, &rows)
	ids := []int64{}
	for _, r := range rows {
		ids = append(ids, r.Id)
	}
	return ids
}

// queryString is a pq.queryString parameter for s.
func queryString(s string) string { return "pq.queryString=" + url.QueryEscape(s) }

// openssl runs the openssl CLI, failing the test when it fails.
func openssl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestDownloadCertificateInEveryFormat(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	id, chain := issueAs(t, cf, alice, "dl.example.com", nil)
	dir := t.TempDir()
	download := func(t *testing.T, auth, format string, body map[string]any) []byte {
		t.Helper()
		resp := cf.Do(t, "POST", "/Certificates/Download", body, "Authorization", auth, "x-certificateformat", format)
		if resp.Status != http.StatusOK {
			t.Fatalf("download: %d %s", resp.Status, resp.Body)
		}
		var out struct{ Content string }
		resp.JSON(t, &out)
		data, err := base64.StdEncoding.DecodeString(out.Content)
		if err != nil {
			t.Fatalf("Content is not base64: %v", err)
		}
		return data
	}
	subjects := func(pemText []byte) []string {
		var out []string
		for rest := pemText; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				return out
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c.Subject.CommonName)
		}
	}
	leafFirst := []string{chain[0].Subject.CommonName, chain[1].Subject.CommonName, chain[2].Subject.CommonName}
	rootFirst := slices.Clone(leafFirst)
	slices.Reverse(rootFirst)

	t.Run("PEM with the chain, end entity first, reads in openssl", func(t *testing.T) {
		data := download(t, alice, "PEM", map[string]any{"CertID": id, "IncludeChain": true, "ChainOrder": "EndEntityFirst"})
		if got := subjects(data); !slices.Equal(got, leafFirst) {
			t.Fatalf("subjects %v, want %v", got, leafFirst)
		}
		path := filepath.Join(dir, "dl.pem")
		os.WriteFile(path, data, 0o644)
		if out := openssl(t, "x509", "-in", path, "-noout", "-subject"); !strings.Contains(out, "dl.example.com") {
			t.Errorf("openssl x509: %s", out)
		}
	})
	t.Run("PEM root first by thumbprint", func(t *testing.T) {
		data := download(t, alice, "pem", map[string]any{"Thumbprint": testutilThumbprint(chain[0]), "IncludeChain": true, "ChainOrder": "RootFirst"})
		if got := subjects(data); !slices.Equal(got, rootFirst) {
			t.Fatalf("subjects %v, want %v", got, rootFirst)
		}
	})
	t.Run("PEM without the chain by serial number and Keyfactor-spelt issuer DN", func(t *testing.T) {
		issuer := strings.ReplaceAll(chain[0].Issuer.String(), ",", ", ")
		data := download(t, alice, "PEM", map[string]any{"SerialNumber": fmt.Sprintf("%X", chain[0].SerialNumber.Bytes()), "IssuerDN": issuer})
		if got := subjects(data); !slices.Equal(got, leafFirst[:1]) {
			t.Fatalf("subjects %v, want the leaf", got)
		}
	})
	t.Run("DER is the leaf", func(t *testing.T) {
		data := download(t, alice, "DER", map[string]any{"CertID": id, "IncludeChain": true})
		if string(data) != string(chain[0].Raw) {
			t.Fatal("DER content is not the leaf")
		}
	})
	t.Run("P7B holds the chain and openssl pkcs7 prints it", func(t *testing.T) {
		data := download(t, alice, "P7B", map[string]any{"CertID": id, "IncludeChain": true})
		path := filepath.Join(dir, "dl.p7b")
		os.WriteFile(path, data, 0o644)
		out := openssl(t, "pkcs7", "-inform", "DER", "-in", path, "-print_certs", "-noout")
		var got []string
		for _, line := range strings.Split(out, "\n") {
			if s, ok := strings.CutPrefix(strings.TrimSpace(line), "subject="); ok {
				got = append(got, s)
			}
		}
		if len(got) != 3 || !strings.Contains(got[0], "dl.example.com") || !strings.Contains(got[2], "Root") {
			t.Fatalf("openssl pkcs7 -print_certs: %q\n%s", got, out)
		}
	})
	for _, tt := range []struct {
		name, auth, format string
		body               map[string]any
		status             int
		code, prefix       string
	}{
		{"no identifier", alice, "PEM", map[string]any{"IncludeChain": true}, 400, "0xA0010001", "CertID: required"},
		{"a serial number without its issuer", alice, "PEM", map[string]any{"SerialNumber": "01"}, 400, "0xA0010001", "IssuerDN: required"},
		{"an unknown chain order", alice, "PEM", map[string]any{"CertID": id, "ChainOrder": "Sideways"}, 400, "0xA0010001", "ChainOrder:"},
		{"an unknown format", alice, "PFX", map[string]any{"CertID": id}, 400, "0xA0010001", "x-certificateformat header:"},
		{"a negative id", alice, "PEM", map[string]any{"CertID": -1}, 400, "0xA0010001", "CertID:"},
		{"an id of the wrong type", alice, "PEM", map[string]any{"CertID": "one"}, 400, "0xA0010001", "CertID:"},
		{"another requester's certificate", carolBasic, "PEM", map[string]any{"CertID": id}, 404, "0xA0030001", "certificate"},
		{"another requester's certificate by thumbprint", carolBasic, "PEM", map[string]any{"Thumbprint": testutilThumbprint(chain[0])}, 404, "0xA0030001", "certificate with thumbprint"},
		{"an unknown serial number", alice, "PEM", map[string]any{"SerialNumber": "0BAD", "IssuerDN": chain[0].Issuer.String()}, 404, "0xA0030001", "certificate with serial number"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, cf.Do(t, "POST", "/Certificates/Download", tt.body, "Authorization", tt.auth, "x-certificateformat", tt.format), tt.status, tt.code, tt.prefix)
		})
	}
}

// revocationResponse is Keyfactor's answer to POST /Certificates/Revoke.
type revocationResponse struct {
	RevokedIds     []int64
	SuspendedCerts []struct {
		CertId             int64
		WorkflowId         string
		Message            string
		KeyfactorRequestId int64
		RequestDisposition string
	}
	Refused []struct {
		CertId             int64
		RequestDisposition string
		Message            string
	}
}

func revoke(t *testing.T, cf *testutil.Certflow, auth string, body map[string]any) (*testutil.Response, revocationResponse) {
	t.Helper()
	resp := cf.Do(t, "POST", "/Certificates/Revoke", body, "Authorization", auth)
	var rr revocationResponse
	if resp.Status == http.StatusOK {
		resp.JSON(t, &rr)
	}
	return resp, rr
}

// fetchCRL gets a CA's CRL without credentials, checks it with
// crypto/x509 against the issuing CA, and writes it as PEM for openssl.
func fetchCRL(t *testing.T, cf *testutil.Certflow, path string, issuing *x509.Certificate, pemPath string) *x509.RevocationList {
	t.Helper()
	resp := cf.Do(t, "GET", path, nil, "Authorization", "")
	if resp.Status != http.StatusOK || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("GET %s: %d %s %s", path, resp.Status, resp.Header.Get("Content-Type"), resp.Body)
	}
	crl, err := x509.ParseRevocationList(resp.Body)
	if err != nil {
		t.Fatalf("the CRL does not parse: %v", err)
	}
	if err := crl.CheckSignatureFrom(issuing); err != nil {
		t.Fatalf("the CRL is not signed by the issuing CA: %v", err)
	}
	if !crl.NextUpdate.After(time.Now().Add(24 * time.Hour)) {
		t.Errorf("nextUpdate %s is too close", crl.NextUpdate)
	}
	if pemPath != "" {
		os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: resp.Body}), 0o644)
		der := pemPath + ".der"
		os.WriteFile(der, resp.Body, 0o644)
		if out := openssl(t, "crl", "-inform", "DER", "-in", der, "-noout", "-text"); !strings.Contains(out, "Certificate Revocation List") {
			t.Fatalf("openssl crl: %s", out)
		}
	}
	return crl
}

// opensslVerify runs openssl verify -crl_check on leaf and returns its
// output and whether it passed.
func opensslVerify(t *testing.T, dir string, chain []*x509.Certificate, crlPEM string) (string, bool) {
	t.Helper()
	write := func(name string, c *x509.Certificate) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644)
		return p
	}
	root, issuing, leaf := write("root.pem", chain[2]), write("issuing.pem", chain[1]), write(chain[0].SerialNumber.String()+".pem", chain[0])
	out, err := exec.Command("openssl", "verify", "-crl_check", "-CRLfile", crlPEM, "-CAfile", root, "-untrusted", issuing, leaf).CombinedOutput()
	return string(out), err == nil && strings.Contains(string(out), ": OK")
}

func TestRevokeRunsTheRevocationWorkflowAndTheCRLHonoursIt(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	dir := t.TempDir()
	kept, keptChain := issueAs(t, cf, alice, "kept.example.com", nil)
	gone, goneChain := issueAs(t, cf, alice, "gone.example.com", nil)
	issuing := goneChain[1]
	crlPath := "/CRL/" + config.DefaultCAName
	// The worker published an empty CRL when it started.
	waitFor(t, "the first CRL", func() bool {
		return cf.Do(t, "GET", crlPath, nil, "Authorization", "").Status == http.StatusOK
	})
	first := fetchCRL(t, cf, crlPath, issuing, "")
	if len(first.RevokedCertificateEntries) != 0 {
		t.Fatalf("the first CRL lists %d certificates", len(first.RevokedCertificateEntries))
	}

	// An earlier date, after the certificate's NotBefore (backdated a
	// minute): the CRL entry's invalidityDate, not its revocation date.
	eff := time.Now().UTC().Add(-30 * time.Second).Truncate(time.Second)
	start := time.Now().UTC().Truncate(time.Second)
	resp, rr := revoke(t, cf, alice, map[string]any{
		"CertificateIds": []int64{gone}, "Reason": 1, "Comment": "laptop stolen", "EffectiveDate": eff.Format(time.RFC3339),
	})
	if resp.Status != http.StatusOK || !slices.Equal(rr.RevokedIds, []int64{gone}) || len(rr.SuspendedCerts) != 0 {
		t.Fatalf("revoke: %d %s", resp.Status, resp.Body)
	}
	_, rec := getCert(t, cf, alice, gone, "")
	if rec.CertState != 2 || rec.CertStateString != "Revoked" || rec.RevocationReason == nil || *rec.RevocationReason != 1 ||
		rec.RevocationComment == nil || *rec.RevocationComment != "laptop stolen" || rec.RevocationEffDate == nil {
		t.Fatalf("revoked record: state %d %q reason %v comment %v date %v", rec.CertState, rec.CertStateString, rec.RevocationReason, rec.RevocationComment, rec.RevocationEffDate)
	}
	if d, _ := time.Parse(time.RFC3339, *rec.RevocationEffDate); !d.Equal(eff) {
		t.Errorf("RevocationEffDate %s, want %s", *rec.RevocationEffDate, eff)
	}
	if _, rec := getCert(t, cf, alice, kept, ""); rec.CertState != 1 {
		t.Errorf("the other certificate is %d", rec.CertState)
	}
	// The revocation ran as a workflow instance of its own.
	var insts []struct {
		Definition         struct{ DefinitionId, WorkflowType string }
		RequestDisposition string
	}
	cf.Do(t, "GET", "/Workflow/Instances/My?"+"pq.queryString="+url.QueryEscape(`RequestDisposition -eq "REVOKED"`), nil, "Authorization", alice).JSON(t, &insts)
	if len(insts) != 1 || insts[0].Definition.DefinitionId != "revocation-default" || insts[0].Definition.WorkflowType != "revocation" {
		t.Fatalf("revocation instances: %+v", insts)
	}

	crlPEM := filepath.Join(dir, "crl.pem")
	crl := fetchCRL(t, cf, strings.ToLower(crlPath)+".crl", issuing, crlPEM)
	if crl.Number.Cmp(first.Number) <= 0 {
		t.Errorf("CRL number %s after %s", crl.Number, first.Number)
	}
	if len(crl.RevokedCertificateEntries) != 1 {
		t.Fatalf("CRL lists %d certificates, want 1", len(crl.RevokedCertificateEntries))
	}
	e := crl.RevokedCertificateEntries[0]
	if e.SerialNumber.Cmp(goneChain[0].SerialNumber) != 0 || e.ReasonCode != 1 || e.RevocationTime.Before(start) || e.RevocationTime.After(time.Now()) {
		t.Errorf("CRL entry %+v, want serial %s reason 1 revoked since %s", e, goneChain[0].SerialNumber, start)
	}
	if d, ok := invalidityDateOf(t, e); !ok || !d.Equal(eff) {
		t.Errorf("CRL entry's invalidityDate %s (%v), want %s", d, ok, eff)
	}
	if out, ok := opensslVerify(t, dir, goneChain, crlPEM); ok || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify -crl_check of the revoked certificate: %s", out)
	}
	if out, ok := opensslVerify(t, dir, keptChain, crlPEM); !ok {
		t.Errorf("openssl verify -crl_check of the unrevoked certificate: %s", out)
	}

	t.Run("revoking it again is a conflict", func(t *testing.T) {
		resp, _ := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{gone}, "Reason": 4, "Comment": "again"})
		wantError(t, resp, 409, "0xA0040001", "CertificateIds[0]: certificate")
	})
	t.Run("the CRL of an unknown CA is not found", func(t *testing.T) {
		wantError(t, cf.Do(t, "GET", "/CRL/NoSuchCA.crl", nil, "Authorization", ""), 404, "0xA0030001", "certificate authority")
	})
}

// TestRevokeRefusesBadInputAndWritesNothing: every refusal names the
// field, and leaves no request, claim or revocation behind.
func TestRevokeRefusesBadInputAndWritesNothing(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Auth.Users = append(c.Auth.Users, config.User{Name: "frank", Token: frankToken, Roles: []string{config.RoleRequester, config.RoleApprover}})
	})
	own, _ := issueAs(t, cf, alice, "own.example.com", nil)
	done, _ := issueAs(t, cf, alice, "done.example.com", nil)
	if resp, rr := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{done}, "Reason": 5, "Comment": "retired"}); resp.Status != 200 || len(rr.RevokedIds) != 1 {
		t.Fatalf("revoke: %d %s", resp.Status, resp.Body)
	}
	ctx := context.Background()
	snapshot := func() string {
		seq, _ := cf.Redis.Get(ctx, cf.Prefix+":seq:request").Result()
		reqs, _ := cf.Redis.Keys(ctx, cf.Prefix+":request:*").Result()
		claim, _ := cf.Redis.HGet(ctx, fmt.Sprintf("%s:request:{%d}", cf.Prefix, own), "rv").Result()
		return fmt.Sprintf("seq=%s requests=%d claim=%q", seq, len(reqs), claim)
	}
	before := snapshot()
	future := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		name         string
		auth         string
		body         any
		status       int
		code, prefix string
	}{
		{"no ids", alice, map[string]any{"CertificateIds": []int64{}, "Comment": "x"}, 400, "0xA0010001", "CertificateIds: required"},
		{"a zero id", alice, map[string]any{"CertificateIds": []int64{0}, "Comment": "x"}, 400, "0xA0010001", "CertificateIds[0]:"},
		{"ids that are not numbers", alice, map[string]any{"CertificateIds": []string{"a"}, "Comment": "x"}, 400, "0xA0010001", "CertificateIds"},
		{"a reason above 6", alice, map[string]any{"CertificateIds": []int64{own}, "Reason": 7, "Comment": "x"}, 400, "0xA0010001", "Reason:"},
		{"a negative reason", alice, map[string]any{"CertificateIds": []int64{own}, "Reason": -1, "Comment": "x"}, 400, "0xA0010001", "Reason:"},
		{"no comment", alice, map[string]any{"CertificateIds": []int64{own}, "Reason": 1}, 400, "0xA0010001", "Comment: required"},
		{"an effective date that is no date", alice, map[string]any{"CertificateIds": []int64{own}, "Comment": "x", "EffectiveDate": "yesterday"}, 400, "0xA0010001", "EffectiveDate:"},
		{"an effective date in the future", alice, map[string]any{"CertificateIds": []int64{own}, "Comment": "x", "EffectiveDate": future}, 400, "0xA0010001", "EffectiveDate:"},
		{"an unknown certificate", alice, map[string]any{"CertificateIds": []int64{999999}, "Comment": "x"}, 404, "0xA0030001", "CertificateIds[0]: certificate 999999"},
		{"one unknown among known ones refuses all", alice, map[string]any{"CertificateIds": []int64{own, 999999}, "Comment": "x"}, 404, "0xA0030001", "CertificateIds[1]:"},
		{"another requester's certificate", carolBasic, map[string]any{"CertificateIds": []int64{own}, "Comment": "x"}, 404, "0xA0030001", "CertificateIds[0]:"},
		{"an approver who is no requester", bob, map[string]any{"CertificateIds": []int64{own}, "Comment": "x"}, 403, "0xA0020002", "bob may not"},
		{"a requester and approver revoking another's certificate", bearer(frankToken), map[string]any{"CertificateIds": []int64{own}, "Comment": "x"}, 403, "0xA0020002", "CertificateIds[0]: frank may not revoke"},
		{"a certificate revoked already, with a fresh one", alice, map[string]any{"CertificateIds": []int64{own, done}, "Comment": "x"}, 409, "0xA0040001", "CertificateIds[1]: certificate"},
		{"not an object", alice, "[1,2]", 400, "0xA0010001", "request body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := cf.Do(t, "POST", "/Certificates/Revoke", tt.body, "Authorization", tt.auth)
			wantError(t, resp, tt.status, tt.code, tt.prefix)
			if after := snapshot(); after != before {
				t.Fatalf("a refused revoke wrote: %s, was %s", after, before)
			}
			if _, rec := getCert(t, cf, alice, own, ""); rec.CertState != 1 {
				t.Fatalf("certificate %d is %s", own, rec.CertStateString)
			}
		})
	}
}

// gatedRevocation approval-gates revocations for CA compromise (reason 2).
const gatedRevocation = `name: revocation-gated
trigger: revocation
match: request.Revocation.Reason == 2
priority: 10
steps:
  - id: approve
    uses: approval
    with: { roles: [approver] }
`

func TestRevocationCanBeApprovalGated(t *testing.T) {
	t.Parallel()
	shipped := func(name string) string {
		b, err := os.ReadFile(filepath.Join(testutil.DefinitionsDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	dir := defsDir(t, map[string]string{
		"enrollment-default.yaml": shipped("enrollment-default.yaml"),
		"revocation-default.yaml": shipped("revocation-default.yaml"),
		"revocation-gated.yaml":   gatedRevocation,
	})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	id, chain := issueAs(t, cf, alice, "gated.example.com", nil)
	other, _ := issueAs(t, cf, alice, "denied.example.com", nil)

	resp, rr := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{id}, "Reason": 2, "Comment": "CA key leaked"})
	if resp.Status != http.StatusOK || len(rr.RevokedIds) != 0 || len(rr.SuspendedCerts) != 1 || rr.SuspendedCerts[0].CertId != id || rr.SuspendedCerts[0].RequestDisposition != "PENDING" {
		t.Fatalf("gated revoke: %d %s", resp.Status, resp.Body)
	}
	wf := rr.SuspendedCerts[0].WorkflowId
	if _, rec := getCert(t, cf, alice, id, ""); rec.CertState != 1 {
		t.Fatalf("a pending revocation revoked: %s", rec.CertStateString)
	}
	t.Run("a second revocation while one waits is a conflict", func(t *testing.T) {
		resp, _ := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{id}, "Reason": 1, "Comment": "hurry"})
		wantError(t, resp, 409, "0xA0040001", "CertificateIds[0]: a revocation of certificate")
	})
	t.Run("the requester cannot approve it", func(t *testing.T) {
		resp := cf.Do(t, "POST", "/Workflow/Instances/"+wf+"/Signals", map[string]any{"SignalKey": "approve.ApprovalStatus", "Data": map[string]any{"Approved": true}}, "Authorization", alice)
		if resp.Status != http.StatusForbidden {
			t.Fatalf("alice's approval: %d %s", resp.Status, resp.Body)
		}
	})
	sig := cf.Do(t, "POST", "/Workflow/Instances/"+wf+"/Signals", map[string]any{"SignalKey": "approve.ApprovalStatus", "Data": map[string]any{"Approved": "True"}}, "Authorization", bob)
	if sig.Status != http.StatusNoContent {
		t.Fatalf("bob's approval: %d %s", sig.Status, sig.Body)
	}
	waitFor(t, "the approved revocation", func() bool {
		_, rec := getCert(t, cf, alice, id, "")
		return rec.CertState == 2
	})
	st := pollDisposition(t, cf, rr.SuspendedCerts[0].KeyfactorRequestId, "REVOKED")
	if st.Request.Definition != "revocation-gated" {
		t.Errorf("definition %q", st.Request.Definition)
	}
	crlPEM := filepath.Join(t.TempDir(), "crl.pem")
	crl := fetchCRL(t, cf, "/CRL/"+config.DefaultCAName, chain[1], crlPEM)
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].ReasonCode != 2 {
		t.Fatalf("CRL entries %+v", crl.RevokedCertificateEntries)
	}

	t.Run("a denied revocation leaves the certificate active, and a later one may revoke it", func(t *testing.T) {
		_, rr := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{other}, "Reason": 2, "Comment": "maybe"})
		if len(rr.SuspendedCerts) != 1 {
			t.Fatalf("revoke: %+v", rr)
		}
		deny := cf.Do(t, "POST", "/Workflow/Instances/"+rr.SuspendedCerts[0].WorkflowId+"/Signals", map[string]any{"SignalKey": "approve.ApprovalStatus", "Data": map[string]any{"Approved": false, "Comment": "not compromised"}}, "Authorization", bob)
		if deny.Status != http.StatusNoContent {
			t.Fatalf("deny: %d %s", deny.Status, deny.Body)
		}
		pollDisposition(t, cf, rr.SuspendedCerts[0].KeyfactorRequestId, "DENIED")
		if _, rec := getCert(t, cf, alice, other, ""); rec.CertState != 1 {
			t.Fatalf("denied revocation revoked: %s", rec.CertStateString)
		}
		resp, again := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{other}, "Reason": 4, "Comment": "superseded"})
		if resp.Status != http.StatusOK || !slices.Equal(again.RevokedIds, []int64{other}) {
			t.Fatalf("revoke after a denial: %d %s", resp.Status, resp.Body)
		}
	})
}

// TestCRLIsResignedBeforeItGoesStale: a fresh CRL is left alone; one with
// less than half its validity left is re-signed with a higher number.
func TestCRLIsResignedBeforeItGoesStale(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	path := "/CRL/" + config.DefaultCAName
	waitFor(t, "the first CRL", func() bool { return cf.Do(t, "GET", path, nil, "Authorization", "").Status == http.StatusOK })
	auth, _ := cf.App.CAs.Get(config.DefaultCAName)
	r := auth.(ca.Revoker)
	issuing := auth.(*ca.Builtin).Issuing()
	first := fetchCRL(t, cf, path, issuing, "")
	ctx := context.Background()
	if published, err := ca.RefreshCRL(ctx, cf.App.Store, r, time.Now()); err != nil || published {
		t.Fatalf("a fresh CRL was re-signed (%v, %v)", published, err)
	}
	later := time.Now().Add(ca.CRLValidity - ca.CRLRefreshBefore + time.Hour)
	if published, err := ca.RefreshCRL(ctx, cf.App.Store, r, later); err != nil || !published {
		t.Fatalf("an ageing CRL was not re-signed (%v, %v)", published, err)
	}
	resp := cf.Do(t, "GET", path, nil, "Authorization", "")
	crl, err := x509.ParseRevocationList(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if crl.Number.Cmp(first.Number) <= 0 || !crl.NextUpdate.After(first.NextUpdate) {
		t.Fatalf("re-signed CRL number %s next %s, was %s next %s", crl.Number, crl.NextUpdate, first.Number, first.NextUpdate)
	}
}

func TestCRLDistributionPointComesFromConfig(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.CRLBaseURL = "http://pki.example.com/certflow/" })
	id, chain := issueAs(t, cf, alice, "cdp.example.com", nil)
	want := "http://pki.example.com/certflow/CRL/" + config.DefaultCAName + ".crl"
	if !slices.Equal(chain[0].CRLDistributionPoints, []string{want}) {
		t.Fatalf("CRLDistributionPoints %v, want %s", chain[0].CRLDistributionPoints, want)
	}
	resp := cf.Do(t, "GET", fmt.Sprintf("/Certificates/%d", id), nil, "Authorization", alice)
	var rec struct {
		CRLDistributionPoints []struct {
			Id           int
			Url, UrlHash string
		}
	}
	resp.JSON(t, &rec)
	if len(rec.CRLDistributionPoints) != 1 || rec.CRLDistributionPoints[0].Url != want || rec.CRLDistributionPoints[0].Id != 1 {
		t.Fatalf("record CRLDistributionPoints %+v", rec.CRLDistributionPoints)
	}
	// Without the setting, none.
	plain := testutil.StartCertflow(t, nil)
	if _, chain := issueAs(t, plain, alice, "nocdp.example.com", nil); len(chain[0].CRLDistributionPoints) != 0 {
		t.Fatalf("a CDP without crl_base_url: %v", chain[0].CRLDistributionPoints)
	}
}

// checkedRevocation refuses certificateHold and reads the certificate, csr
// and sans as enrollment definitions do.
const checkedRevocation = `name: revocation-checked
trigger: revocation
priority: 0
steps:
  - id: rules
    uses: validate
    with:
      rules:
        - check: certificate.SerialNumber != "" && csr.CommonName == "held.example.com" && sans.DNS == ["held.example.com"] && csr.KeyType == "ECC"
          message: the environment does not describe the certificate
        - check: request.Revocation.Reason != 6
          message: certificateHold is not offered; revoke for good
`

func TestRevocationExpressionsSeeTheCertificate(t *testing.T) {
	t.Parallel()
	shipped, err := os.ReadFile(filepath.Join(testutil.DefinitionsDir(), "enrollment-default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := defsDir(t, map[string]string{"enrollment-default.yaml": string(shipped), "revocation-checked.yaml": checkedRevocation})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	id, _ := issueAs(t, cf, alice, "held.example.com", nil)
	resp, rr := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{id}, "Reason": 6, "Comment": "on hold"})
	if resp.Status != http.StatusOK || len(rr.Refused) != 1 || rr.Refused[0].RequestDisposition != "DENIED" ||
		!strings.Contains(rr.Refused[0].Message, "certificateHold is not offered") {
		t.Fatalf("a hold: %d %s", resp.Status, resp.Body)
	}
	if _, rec := getCert(t, cf, alice, id, ""); rec.CertState != 1 {
		t.Fatalf("a denied revocation revoked: %s", rec.CertStateString)
	}
	resp, rr = revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{id}, "Reason": 3, "Comment": "left the company"})
	if resp.Status != http.StatusOK || !slices.Equal(rr.RevokedIds, []int64{id}) {
		t.Fatalf("revoke: %d %s", resp.Status, resp.Body)
	}
}

func TestCertificateRecordShowsARetainedKey(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		tmpl := c.Templates[0]
		tmpl.Name, tmpl.DisplayName, tmpl.KeyRetention = "Retained", "Retained", true
		c.Templates = append(c.Templates, tmpl)
	})
	csr, key := testutil.CSR(t, "kept-key.example.com", "kept-key.example.com")
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "Retained", "PrivateKey": base64.StdEncoding.EncodeToString(der)}), "Authorization", alice)
	if resp.Status != http.StatusOK {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	id := er.CertificateInformation.KeyfactorID
	if _, rec := getCert(t, cf, alice, id, ""); !rec.HasPrivateKey || rec.TemplateName != "Retained" || rec.TemplateId != 2 {
		t.Fatalf("HasPrivateKey %v template %q/%d", rec.HasPrivateKey, rec.TemplateName, rec.TemplateId)
	}
	if _, rec := getCert(t, cf, alice, id, "?includeHasPrivateKey=false"); rec.HasPrivateKey {
		t.Fatal("includeHasPrivateKey=false still reports the key")
	}
	if strings.Contains(string(cf.Do(t, "GET", fmt.Sprintf("/Certificates/%d", id), nil, "Authorization", alice).Body), base64.StdEncoding.EncodeToString(der)[:40]) {
		t.Fatal("the record carries the private key")
	}
}

// A revocation call that Redis fails part-way answers what it accepted:
// the revocations stored before the failure run, and the rest are
// reported refused and can be asked for again.
func TestARevocationCallCutShortByRedisAnswersWhatItAccepted(t *testing.T) {
	t.Parallel()
	opts, err := redis.ParseURL(testutil.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := testutil.StartFreezeProxy(t, opts.Addr)
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.RedisURL = proxy.URL()
		c.API.RedisTimeout = time.Second
	})
	t.Cleanup(proxy.Close) // runs before certflow stops: see FreezeProxy.Close
	first, _ := issueAs(t, cf, alice, "cut1.example.com", nil)
	second, _ := issueAs(t, cf, alice, "cut2.example.com", nil)
	// The revocation requests get the next two ids (certificate ids are
	// their requests'); Redis hangs at the second one's write.
	proxy.FreezeAt("EVAL", fmt.Sprintf("%s:request:{%d}", cf.Prefix, second+2))
	// The worker waits until Redis answers again: a run of the first
	// revocation started just before the freeze would lose its writes to
	// it and wait out asynq's lease (30 s and more) before running again.
	queue := asynq.NewInspectorFromRedisClient(cf.Redis)
	if err := queue.PauseQueue(cf.Config.Queue); err != nil {
		t.Fatal(err)
	}
	resp := cf.Do(t, "POST", "/Certificates/Revoke", map[string]any{"CertificateIds": []int64{first, second}, "Reason": 4, "Comment": "superseded"},
		"Authorization", alice, "Prefer", "respond-async")
	if !proxy.Frozen() {
		t.Fatal("the proxy never saw the second revocation's write")
	}
	proxy.Unfreeze()
	if err := queue.UnpauseQueue(cf.Config.Queue); err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("a revocation accepted in part answered %d %s; its accepted part runs, so it must be reported", resp.Status, resp.Body)
	}
	var rr revocationResponse
	resp.JSON(t, &rr)
	if len(rr.SuspendedCerts)+len(rr.RevokedIds) != 1 || len(rr.Refused) != 1 || rr.Refused[0].CertId != second || !strings.Contains(rr.Refused[0].Message, "not submitted") {
		t.Fatalf("answer %+v; want certificate %d accepted and %d refused as not submitted", rr, first, second)
	}
	// The accepted one is revoked; the refused one can be asked again.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, rec := getCert(t, cf, alice, first, "")
		if rec.CertState == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the accepted revocation never completed: state %d", rec.CertState)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r2, again := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{second}, "Reason": 4, "Comment": "superseded"})
	if r2.Status != http.StatusOK || len(again.RevokedIds) != 1 || again.RevokedIds[0] != second {
		t.Fatalf("asking again for the refused revocation: %d %s", r2.Status, r2.Body)
	}
}

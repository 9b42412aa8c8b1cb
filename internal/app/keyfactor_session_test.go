package app_test

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"testing"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/testutil"
)

// TestKeyfactorClientSessionOverHTTPS is a Keyfactor client's session,
// as its users run it, against certflow's own HTTPS listener (no proxy):
// the server certificate verified against the CA bundle certflow wrote,
// under /KeyfactorAPI with Keyfactor's headers, HTTP Basic for the
// requester as Keyfactor deployments configure it. Login check, enroll a
// CSR and a PFX (decoded as Keyfactor 10+ clients do: the first
// certificate is the leaf), read, download, recover, revoke (and the CRL
// shows it), list what is pending with the returnLimit those clients
// always send, approve.
func TestKeyfactorClientSessionOverHTTPS(t *testing.T) {
	t.Parallel()
	// The shipped definitions, and one that gates common names under
	// "gated." behind an approval.
	files := map[string]string{"gated.yaml": gated("gated", 5, "{roles: [approver]}")}
	shipped, _ := fs.Glob(os.DirFS(testutil.DefinitionsDir()), "*.yaml")
	for _, f := range shipped {
		data, err := os.ReadFile(testutil.DefinitionsDir() + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		files[f] = string(data)
	}
	defs := defsDir(t, files)
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = defs
		retained := c.Templates[0]
		retained.Name, retained.DisplayName, retained.KeyRetention = "Retained", "Retained", true
		c.Templates = append(c.Templates, retained)
	})
	if cf.HTTPSURL == "" {
		t.Fatal("no HTTPS listener")
	}
	client := cf.HTTPSClient(t)
	base := cf.HTTPSURL + "/KeyfactorAPI"
	carol := "Basic " + base64.StdEncoding.EncodeToString([]byte("carol:"+testutil.CarolPassword))
	kf := func(auth string, more ...string) []string {
		return append([]string{"Authorization", auth, "x-keyfactor-requested-with", "APIClient", "x-keyfactor-api-version", "1.0"}, more...)
	}
	do := func(method, path string, body any, headers ...string) *testutil.Response {
		t.Helper()
		return testutil.DoWith(t, client, base, method, path, body, headers...)
	}
	ok := func(r *testutil.Response, what string) {
		t.Helper()
		if r.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", what, r.Status, r.Body)
		}
	}

	// The login check: the server's certificate verifies against the
	// bundle (the client refuses it otherwise), the protocol is HTTP/2.
	req, _ := http.NewRequest("GET", base+"/Status/Endpoints", nil)
	req.Header.Set("Authorization", carol)
	req.Header.Set("x-keyfactor-requested-with", "APIClient")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("login check over HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/2.0" || len(resp.TLS.VerifiedChains) != 1 || resp.TLS.VerifiedChains[0][0].ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Fatalf("login check: %d over %s, %d verified chains", resp.StatusCode, resp.Proto, len(resp.TLS.VerifiedChains))
	}
	var endpoints []string
	r := do("GET", "/Status/Endpoints", nil, kf(carol)...)
	ok(r, "GET /Status/Endpoints")
	r.JSON(t, &endpoints)
	for _, want := range []string{"POST /Enrollment/CSR", "POST /Enrollment/PFX", "POST /Certificates/Recover", "GET /Workflow/Certificates/Pending"} {
		if !slices.Contains(endpoints, want) {
			t.Errorf("/Status/Endpoints lacks %q", want)
		}
	}
	if r := do("GET", "/Status/Endpoints", nil, kf("Basic "+base64.StdEncoding.EncodeToString([]byte("carol:wrong")))...); r.Status != http.StatusUnauthorized {
		t.Fatalf("a wrong password: %d", r.Status)
	}

	// Enroll a CSR.
	csr, _ := testutil.CSR(t, "app.example.com", "app.example.com")
	r = do("POST", "/Enrollment/CSR", testutil.EnrollBody(csr, map[string]any{"IncludeChain": true}), kf(carol, "x-certificateformat", "PEM")...)
	ok(r, "enroll a CSR")
	var er enrollResponse
	r.JSON(t, &er)
	if er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll a CSR: %s", r.Body)
	}
	csrCert := er.CertificateInformation.KeyfactorID
	verifyChain(t, pemChain(t, er.CertificateInformation.Certificates, true), "app.example.com")

	// Enroll a PFX: the archive decoded as Keyfactor 10+ clients do.
	r = do("POST", "/Enrollment/PFX", pfxBody(map[string]any{"IncludeChain": true}), kf(carol, "x-certificateformat", "PFX")...)
	ok(r, "enroll a PFX")
	var pr pfxResponse
	r.JSON(t, &pr)
	decodeLeafFirst(t, pr.CertificateInformation.Pkcs12Blob, pfxPassword, "pfx.example.com")

	// Read it, then download it with its chain.
	var rec certRecord
	r = do("GET", fmt.Sprintf("/Certificates/%d", csrCert), nil, kf(carol)...)
	ok(r, "read the certificate")
	r.JSON(t, &rec)
	if rec.Id != csrCert || rec.IssuedCN != "app.example.com" || rec.CertState != 1 {
		t.Fatalf("the certificate read: %+v", rec)
	}
	r = do("POST", "/Certificates/Download", map[string]any{"CertID": csrCert, "IncludeChain": true}, kf(carol, "x-certificateformat", "PEM")...)
	ok(r, "download")
	var dl struct{ Content string }
	r.JSON(t, &dl)
	pemText, err := base64.StdEncoding.DecodeString(dl.Content)
	if err != nil {
		t.Fatal(err)
	}
	var downloaded []*x509.Certificate
	for block, rest := pem.Decode(pemText); block != nil; block, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		downloaded = append(downloaded, c)
	}
	if len(downloaded) != 3 || pki.Thumbprint(downloaded[0].Raw) != rec.Thumbprint {
		t.Fatalf("downloaded %d certificates, the first not the one asked for", len(downloaded))
	}

	// Recover a certificate of a key-retaining template.
	keptCSR, keptKey := testutil.CSR(t, "kept.example.com")
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(keptKey)
	r = do("POST", "/Enrollment/CSR", testutil.EnrollBody(keptCSR, map[string]any{"Template": "Retained", "PrivateKey": base64.StdEncoding.EncodeToString(pkcs8)}), kf(carol, "x-certificateformat", "PEM")...)
	ok(r, "enroll with a retained key")
	var kept enrollResponse
	r.JSON(t, &kept)
	r = do("POST", "/Certificates/Recover", map[string]any{"CertID": kept.CertificateInformation.KeyfactorID, "Password": "recover-password", "IncludeChain": true}, kf(carol, "x-certificateformat", "PFX")...)
	ok(r, "recover")
	var recovered struct{ PFX, FileName string }
	r.JSON(t, &recovered)
	if key := decodeLeafFirst(t, recovered.PFX, "recover-password", "kept.example.com"); !pki.SamePublicKey(pki.PublicKeyOf(key), keptKey.Public()) {
		t.Fatal("recovered another key")
	}

	// Revoke; the CRL, fetched over HTTPS without credentials, lists it.
	r = do("POST", "/Certificates/Revoke", map[string]any{"CertificateIds": []int64{csrCert}, "Reason": 1, "Comment": "key compromised"}, kf(carol)...)
	ok(r, "revoke")
	var rr revocationResponse
	r.JSON(t, &rr)
	if !slices.Equal(rr.RevokedIds, []int64{csrCert}) {
		t.Fatalf("revoke: %s", r.Body)
	}
	waitFor(t, "the CRL listing the revoked certificate", func() bool {
		r := testutil.DoWith(t, client, cf.HTTPSURL, "GET", "/CRL/"+config.DefaultCAName, nil, "Authorization", "")
		crl, err := x509.ParseRevocationList(r.Body)
		if r.Status != http.StatusOK || err != nil {
			return false
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(downloaded[0].SerialNumber) == 0 {
				return crl.CheckSignatureFrom(downloaded[1]) == nil
			}
		}
		return false
	})

	// An approval-gated request: PENDING, listed with returnLimit=1000,
	// approved, then issued.
	gatedCSR, _ := testutil.CSR(t, "gated.example.com")
	r = do("POST", "/Enrollment/CSR", testutil.EnrollBody(gatedCSR, nil), kf(carol, "x-certificateformat", "PEM")...)
	ok(r, "enroll a gated CSR")
	var pending enrollResponse
	r.JSON(t, &pending)
	id := pending.CertificateInformation.KeyfactorRequestId
	if pending.CertificateInformation.RequestDisposition != "PENDING" {
		t.Fatalf("a gated enrollment: %s", r.Body)
	}
	bob := kf("Bearer " + testutil.BobToken)
	r = do("GET", "/Workflow/Certificates/Pending?pq.returnLimit=1000&pq.pageReturned=1", nil, bob...)
	ok(r, "list pending with returnLimit=1000")
	var rows []certRequest
	r.JSON(t, &rows)
	if !slices.ContainsFunc(rows, func(c certRequest) bool { return c.Id == id && c.CommonName == "gated.example.com" }) {
		t.Fatalf("the pending request %d is not listed: %s", id, r.Body)
	}
	r = do("POST", "/Workflow/Certificates/Approve", []int64{id}, bob...)
	ok(r, "approve")
	var res approveDenyResult
	r.JSON(t, &res)
	if _, found := entry(res.Successes, id); !found || len(res.Failures) != 0 {
		t.Fatalf("approve: %s", r.Body)
	}
	waitFor(t, "the approved request issued", func() bool {
		var st requestStatus
		r := do("GET", fmt.Sprintf("/Enrollment/Requests/%d", id), nil, kf(carol)...)
		r.JSON(t, &st)
		return st.CertificateInformation.RequestDisposition == "ISSUED"
	})
	// The plain listener, loopback, still answers the same API.
	if r := cf.Do(t, "GET", "/Status/Endpoints", nil); r.Status != http.StatusOK {
		t.Fatalf("plain HTTP on loopback: %d", r.Status)
	}
}

// decodeLeafFirst decodes a base64 PKCS#12 archive as Keyfactor 10+ clients do
// (go-pkcs12's DecodeChain: the first certificate is the leaf), and checks
// that the leaf is the end-entity certificate for cn, its key the
// archive's, and the rest its chain. It returns the key.
func decodeLeafFirst(t *testing.T, blob, password, cn string) any {
	t.Helper()
	der, err := base64.StdEncoding.DecodeString(blob)
	if err != nil {
		t.Fatalf("the archive is not base64: %v", err)
	}
	key, leaf, cas, err := pkcs12.DecodeChain(der, password)
	if err != nil {
		t.Fatalf("DecodeChain: %v", err)
	}
	if leaf.Subject.CommonName != cn || leaf.IsCA || !pki.SamePublicKey(pki.PublicKeyOf(key), leaf.PublicKey) {
		t.Fatalf("the archive's first certificate is %s (CA %v), not the end-entity %s with the archive's key", leaf.Subject, leaf.IsCA, cn)
	}
	if len(cas) != 2 {
		t.Fatalf("the archive holds %d CA certificates, want 2", len(cas))
	}
	verifyChain(t, []*x509.Certificate{leaf, cas[0], cas[1]}, cn)
	return key
}

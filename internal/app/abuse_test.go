package app_test

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/testutil"
)

func TestRateLimitsPerIdentity(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.API.RateLimit, c.API.RateBurst = 0.5, 2 })
	for i := 0; i < 2; i++ {
		if r := cf.Do(t, "GET", "/Status/Endpoints", nil, "Authorization", "Bearer "+testutil.AliceToken); r.Status != 200 {
			t.Fatalf("request %d within the burst: %d", i, r.Status)
		}
	}
	r := cf.Do(t, "GET", "/Status/Endpoints", nil, "Authorization", "Bearer "+testutil.AliceToken)
	assertError(t, r, http.StatusTooManyRequests, keyfactor.CodeRateLimited, "alice")
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q, want whole seconds", r.Header.Get("Retry-After"))
	}
	// Another identity has its own budget.
	if r := cf.Do(t, "GET", "/Status/Endpoints", nil, "Authorization", "Bearer "+testutil.BobToken); r.Status != 200 {
		t.Fatalf("bob limited by alice's use: %d", r.Status)
	}
}

func TestFailedAuthenticationsAreLimitedPerAddress(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.API.AuthFailuresPerMinute = 3 })
	for i := 0; i < 3; i++ {
		if r := cf.Do(t, "GET", "/Status/Endpoints", nil, "Authorization", "Bearer guess-"+strconv.Itoa(i)); r.Status != 401 {
			t.Fatalf("guess %d: %d", i, r.Status)
		}
	}
	r := cf.Do(t, "GET", "/Status/Endpoints", nil, "Authorization", "Bearer guess-again")
	assertError(t, r, http.StatusTooManyRequests, keyfactor.CodeRateLimited, "failed authentications")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	// The limiter comes before any credential is checked: while the
	// address is locked out, a valid token is refused too (see
	// TestPolicyLoginThrottling for the way back).
	r = cf.Do(t, "GET", "/Status/Endpoints", nil, "Authorization", "Bearer "+testutil.AliceToken)
	assertError(t, r, http.StatusTooManyRequests, keyfactor.CodeRateLimited, "from this address")
}

func TestOversizedHeadersAreRefused(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	r := cf.Do(t, "GET", "/Status/Endpoints", nil, "X-Padding", strings.Repeat("a", 128<<10))
	if r.Status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("128 KiB of headers: %d, want 431", r.Status)
	}
}

// TestNoSecretReachesTheLog runs a session that handles every kind of
// secret certflow sees and greps its whole log for each.
func TestNoSecretReachesTheLog(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		tmpl := c.Templates[0]
		tmpl.Name, tmpl.KeyRetention = "Retained", true
		c.Templates = append(c.Templates, tmpl)
	})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer hook.Close()
	csr, key := testutil.CSR(t, "secrets.example.com")
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	keyB64 := base64.StdEncoding.EncodeToString(pkcs8)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("carol:"+testutil.CarolPassword))
	enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "Retained", "PrivateKey": keyB64, "CallbackUrl": hook.URL}))
	enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", basic)
	enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", "Bearer "+testutil.AliceToken)
	cf.Do(t, "GET", "/Status/Endpoints", nil, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("carol:wrong-"+testutil.CarolPassword)))
	cf.Do(t, "GET", "/Status/Endpoints", nil, "Authorization", "Bearer not-"+testutil.AliceToken)
	waitFor(t, "a callback attempt", func() bool { return strings.Contains(cf.Logs.String(), "callback failed") })
	// The keys certflow generates, and the passwords that protect them.
	const recoverPassword = "recover-secret-Jx4"
	_, pfx := enrollPFX(t, cf, pfxBody(map[string]any{"IncludeChain": true}))
	pfxKey, _, _, err := opensslReadPKCS12(t, pfx.CertificateInformation.Pkcs12Blob, pfxPassword)
	if err != nil {
		t.Fatal(err)
	}
	pfxPKCS8, _ := x509.MarshalPKCS8PrivateKey(pfxKey)
	_, gen := generateCSR(t, cf, map[string]any{"Subject": "CN=gen.secrets.example.com", "KeyType": "RSA", "KeyLength": 2048})
	genDER, _, _ := pki.DecodeCSR(gen.CSR)
	var forced enrollResponse
	r := cf.Do(t, "POST", "/Enrollment/CSR?forceEnroll=true", testutil.EnrollBody(genDER, nil), "x-certificateformat", "PEM")
	r.JSON(t, &forced)
	r = cf.Do(t, "POST", "/Certificates/Recover", map[string]any{"CertID": forced.CertificateInformation.KeyfactorID, "Password": recoverPassword}, "x-certificateformat", "PFX")
	var rec struct{ PFX string }
	r.JSON(t, &rec)
	genKey, _, _, err := opensslReadPKCS12(t, rec.PFX, recoverPassword)
	if err != nil {
		t.Fatal(err)
	}
	genPKCS8, _ := x509.MarshalPKCS8PrivateKey(genKey)

	kek, _ := os.ReadFile(filepath.Join(cf.Config.DataDir, "kek"))
	webhook, _ := os.ReadFile(filepath.Join(cf.Config.DataDir, "webhook-secret"))
	logs := cf.Logs.String()
	for name, secret := range map[string]string{
		"admin token":           testutil.AdminToken,
		"alice's token":         testutil.AliceToken,
		"carol's password":      testutil.CarolPassword,
		"the private key":       keyB64[40:120],
		"the private key hex":   hex.EncodeToString(pkcs8)[40:120],
		"the KEK":               strings.TrimSpace(string(kek)),
		"the webhook secret":    strings.TrimPrefix(strings.TrimSpace(string(webhook)), "whsec_"),
		"the PFX password":      pfxPassword,
		"the recovery password": recoverPassword,
		"a PFX key":             base64.StdEncoding.EncodeToString(pfxPKCS8)[40:120],
		"a PFX key hex":         hex.EncodeToString(pfxPKCS8)[40:120],
		"a generated CSR's key": base64.StdEncoding.EncodeToString(genPKCS8)[40:120],
		"a generated key hex":   hex.EncodeToString(genPKCS8)[40:120],
	} {
		if secret == "" {
			t.Fatalf("%s: nothing to look for", name)
		}
		if strings.Contains(logs, secret) {
			t.Errorf("%s appears in the log", name)
		}
	}
	if !strings.Contains(logs, "request accepted") {
		t.Fatal("the log is empty: the test would prove nothing")
	}
}

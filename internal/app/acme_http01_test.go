package app_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/testutil"
)

// The http-01 path is public and served before routing: it answers a
// stored token exactly (case-sensitive), and no path trick through it
// reaches another route without authentication, or reads anything but an
// http-01 answer.
func TestTheHTTP01PathServesOnlyAnswers(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	ctx := context.Background()
	if err := cf.App.Store.PutHTTP01(ctx, "TokEN_1-x", "TokEN_1-x.thumbprint", time.Minute); err != nil {
		t.Fatal(err)
	}
	get := func(method, path string) (int, string) {
		req, err := http.NewRequest(method, cf.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.RawPath = "" // sent as written
		req.URL.Opaque = "//" + req.URL.Host + path
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		return resp.StatusCode, string(b)
	}
	if st, body := get("GET", "/.well-known/acme-challenge/TokEN_1-x"); st != 200 || body != "TokEN_1-x.thumbprint" {
		t.Fatalf("the stored token: %d %q", st, body)
	}
	if st, body := get("HEAD", "/.well-known/acme-challenge/TokEN_1-x"); st != 200 || body != "" {
		t.Fatalf("HEAD of the stored token: %d %q", st, body)
	}
	for _, path := range []string{
		"/.well-known/acme-challenge/token_1-x",                 // case matters
		"/.WELL-KNOWN/acme-challenge/TokEN_1-x",                 // so does the prefix's
		"/KeyfactorAPI/.well-known/acme-challenge/TokEN_1-x",    // lower-cased there
		"/.well-known/acme-challenge/../../Enrollment/Requests", // no way out to the API
		"/.well-known/acme-challenge/..%2f..%2fEnrollment%2fRequests",
		"/.well-known/acme-challenge/%2e%2e/Certificates",
		"/.well-known/acme-challenge//TokEN_1-x",
		"/.well-known/acme-challenge/TokEN_1-x/",
		"/.well-known/acme-challenge/*",
		"/.well-known/acme-challenge/" + strings.Repeat("a", 129),
		"/.well-known/acme-challenge/",
	} {
		st, body := get("GET", path)
		if st == 200 || strings.Contains(body, "thumbprint") || strings.Contains(body, "CertificateRequests") || strings.Contains(body, "\"Id\"") {
			t.Errorf("GET %s: %d %.200q; want no answer and nothing of the API", path, st, body)
		}
	}
	if st, _ := get("POST", "/.well-known/acme-challenge/TokEN_1-x"); st != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d; want 405", st)
	}
}

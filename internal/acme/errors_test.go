package acme_test

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/ca"
)

// A CA answering with an error and a Retry-After: the directory is where
// the first exchange goes.
func TestTheCAsRetryAfterAndRateLimitsBecomeRetryAfterErrors(t *testing.T) {
	for _, c := range []struct {
		name, body string
		status     int
		after      time.Duration
		problem    string
	}{
		{"503", "unavailable", http.StatusServiceUnavailable, 7 * time.Second, ""},
		{"rate limited", `{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many orders","status":429}`, http.StatusTooManyRequests, 42 * time.Second, "too many orders"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", strings.TrimSuffix(c.after.String(), "s"))
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(c.status)
				w.Write([]byte(c.body))
			}))
			defer srv.Close()
			bundle := t.TempDir() + "/ca.pem"
			os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
			e := newEnv(t)
			a := e.open(t, "busy", acmeConfig(srv.URL+"/dir", bundle))
			_, err := a.Place(context.Background(), request(t, "a.example.test", "a.example.test"))
			var ra *ca.RetryAfterError
			if !errors.As(err, &ra) || ra.After != c.after {
				t.Fatalf("Place: %v; want a RetryAfterError of %s", err, c.after)
			}
			var p *ca.Problem
			if c.problem != "" && (!errors.As(err, &p) || p.Detail != c.problem) {
				t.Fatalf("Place: %v; want the CA's problem inside", err)
			}
			if c.problem == "" && errors.As(err, &p) {
				t.Fatalf("Place: %v; a 5xx is no problem document", err)
			}
		})
	}
}

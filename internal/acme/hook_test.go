package acme_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/acme"
	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
)

func TestHookSubstitutesEscapedValuesAndSendsHeaders(t *testing.T) {
	type call struct {
		path, auth, custom, ctype string
		body                      map[string]string
	}
	var mu sync.Mutex
	var calls []call
	var status atomic.Int32
	status.Store(http.StatusNoContent)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]string
		if err := json.Unmarshal(b, &body); err != nil {
			t.Errorf("hook body %q is not JSON: %v", b, err)
		}
		mu.Lock()
		calls = append(calls, call{r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("X-Zone"), r.Header.Get("Content-Type"), body})
		mu.Unlock()
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	secret := t.TempDir() + "/token"
	os.WriteFile(secret, []byte("Bearer s3cret\n"), 0o600)
	h, err := acme.NewHook(config.DNSHook{
		Present:      config.DNSHookCall{URL: srv.URL + "/present", Body: `{"name":"{fqdn}","txt":"{value}","zone":"{domain}","note":"say \"{domain}\""}`},
		Cleanup:      config.DNSHookCall{URL: srv.URL + "/cleanup", Body: `{"name":"{fqdn}"}`},
		Headers:      map[string]string{"X-Zone": "internal"},
		HeaderFiles:  map[string]string{"Authorization": secret},
		AllowPrivate: true,
	}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Present(context.Background(), "*.Wild.example.test", "tok", "tok.thumb"); err != nil {
		t.Fatalf("Present: %v", err)
	}
	if err := h.CleanUp(context.Background(), "*.Wild.example.test", "tok", "tok.thumb"); err != nil {
		t.Fatalf("CleanUp: %v", err)
	}
	fqdn, value := acme.TXTRecord("*.Wild.example.test", "tok.thumb")
	if fqdn != "_acme-challenge.Wild.example.test." {
		t.Fatalf("fqdn %q", fqdn)
	}
	mu.Lock()
	got := slices.Clone(calls)
	mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("%d calls", len(got))
	}
	p, c := got[0], got[1]
	if p.path != "/present" || p.body["name"] != fqdn || p.body["txt"] != value || p.body["zone"] != "Wild.example.test" || p.body["note"] != `say "Wild.example.test"` {
		t.Fatalf("present call %+v", p)
	}
	if p.auth != "Bearer s3cret" || p.custom != "internal" || p.ctype != "application/json" {
		t.Fatalf("present headers %+v", p)
	}
	if c.path != "/cleanup" || c.body["name"] != fqdn {
		t.Fatalf("cleanup call %+v", c)
	}
	status.Store(http.StatusInternalServerError)
	err = h.Present(context.Background(), "a.example.test", "tok", "tok.thumb")
	if err == nil || !strings.Contains(err.Error(), "answered 500") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Present to a failing hook: %v", err)
	}
}

func TestHookRefusesPrivateAddressesWhenDialling(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("the hook reached a loopback server")
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	// A host name passes the URL check and is checked when dialled: this
	// machine's name resolves to a loopback or private address.
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	h, err := acme.NewHook(config.DNSHook{
		Present: config.DNSHookCall{URL: "http://" + host + port + "/p"},
		Cleanup: config.DNSHookCall{URL: "http://" + host + port + "/c"},
	}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.CleanUp(context.Background(), "a.example.test", "t", "t.k"); !errors.Is(err, callback.ErrForbiddenAddress) {
		t.Fatalf("CleanUp through %s: %v; want ErrForbiddenAddress", host, err)
	}
}

func TestHTTP01Handler(t *testing.T) {
	e := newEnv(t)
	h := acme.HTTP01Handler(e.st)
	if err := e.st.PutHTTP01(context.Background(), "tok_EN-1", "tok_EN-1.thumb", time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/.well-known/acme-challenge/tok_EN-1", 200, "tok_EN-1.thumb"},
		{"HEAD", "/.well-known/acme-challenge/tok_EN-1", 200, ""},
		{"GET", "/.well-known/acme-challenge/unknown", 404, ""},
		{"GET", "/.well-known/acme-challenge/", 404, ""},
		{"GET", "/.well-known/acme-challenge/tok.EN", 404, ""},
		{"GET", "/.well-known/acme-challenge/tok%2FEN", 404, ""},
		{"GET", "/.well-known/acme-challenge/" + strings.Repeat("a", 129), 404, ""},
		{"GET", "/elsewhere/tok_EN-1", 404, ""},
		{"POST", "/.well-known/acme-challenge/tok_EN-1", 405, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.status || (c.body != "" && rec.Body.String() != c.body) {
			t.Errorf("%s %s: %d %q; want %d %q", c.method, c.path, rec.Code, rec.Body, c.status, c.body)
		}
		if c.status == 200 && rec.Header().Get("Content-Type") != "text/plain" {
			t.Errorf("%s %s: Content-Type %q", c.method, c.path, rec.Header().Get("Content-Type"))
		}
	}
	if err := e.st.DeleteHTTP01(context.Background(), "tok_EN-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.HTTP01(context.Background(), "tok_EN-1"); err != store.ErrNotFound {
		t.Fatalf("after delete: %v", err)
	}
}

package acme_test

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/certflow/certflow/internal/acme"
	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
)

// hostileCA is a tiny ACME server that answers what a malicious or broken
// CA might: an order whose authorizations (as many as it likes) are for
// names the order was not placed for. It checks no JWS: it only needs to
// be believed by the client.
type hostileCA struct {
	srv        *httptest.Server
	authzNames func(i int) string // the identifier of authorization i
	authzs     int                // how many the order lists
	authzGets  atomic.Int64
	authzBase  string // where the order says its authorizations are ("": the CA itself)
	authzPad   int    // bytes of padding in each authorization's answer
}

func startHostileCA(t *testing.T, authzs int, authzNames func(int) string) *hostileCA {
	h := &hostileCA{authzNames: authzNames, authzs: authzs}
	var nonce atomic.Int64
	mux := http.NewServeMux()
	base := func() string { return h.srv.URL }
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Replay-Nonce", fmt.Sprintf("nonce-%d", nonce.Add(1)))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	order := func() map[string]any {
		urls := make([]string, h.authzs)
		for i := range urls {
			urls[i] = fmt.Sprintf("%s/authz/%d", cmp.Or(h.authzBase, base()), i)
		}
		return map[string]any{"status": "pending", "identifiers": []map[string]string{{"type": "dns", "value": "www.certflow.test"}},
			"authorizations": urls, "finalize": base() + "/finalize/1"}
	}
	mux.HandleFunc("GET /dir", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]string{"newNonce": base() + "/nonce", "newAccount": base() + "/acct", "newOrder": base() + "/order",
			"revokeCert": base() + "/revoke", "keyChange": base() + "/key"})
	})
	mux.HandleFunc("/nonce", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Replay-Nonce", fmt.Sprintf("nonce-%d", nonce.Add(1)))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /acct", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", base()+"/acct/1")
		reply(w, 201, map[string]any{"status": "valid"})
	})
	mux.HandleFunc("POST /order", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", base()+"/order/1")
		reply(w, 201, order())
	})
	mux.HandleFunc("POST /order/1", func(w http.ResponseWriter, r *http.Request) { reply(w, 200, order()) })
	mux.HandleFunc("POST /authz/{i}", func(w http.ResponseWriter, r *http.Request) {
		h.authzGets.Add(1)
		var i int
		fmt.Sscan(r.PathValue("i"), &i)
		reply(w, 200, map[string]any{"status": "pending", "identifier": map[string]string{"type": "dns", "value": h.authzNames(i)},
			"challenges": []map[string]string{{"type": "dns-01", "url": fmt.Sprintf("%s/chall/%d", base(), i), "token": fmt.Sprintf("token%d", i), "status": "pending"}},
			"padding":    strings.Repeat("x", h.authzPad)})
	})
	mux.HandleFunc("POST /chall/{i}", func(w http.ResponseWriter, r *http.Request) { reply(w, 200, map[string]any{"status": "processing"}) })
	h.srv = httptest.NewTLSServer(mux)
	t.Cleanup(h.srv.Close)
	return h
}

// recordingPresenter records the names it was asked to present.
type recordingPresenter struct {
	mu    sync.Mutex
	names []string
}

func (p *recordingPresenter) Present(_ context.Context, domain, _, _ string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.names = append(p.names, domain)
	return nil
}

func (p *recordingPresenter) CleanUp(context.Context, string, string, string) error { return nil }

func (h *hostileCA) open(t *testing.T, e env, p acme.Presenter) *acme.Authority {
	t.Helper()
	cfg := acmeConfig(h.srv.URL+"/dir", "")
	cfg.Challenge, cfg.DNS = config.ChallengeDNS01, config.ACMEDNS{Provider: "exec"}
	roots := x509.NewCertPool()
	roots.AddCert(h.srv.Certificate())
	a, err := acme.Open(&config.CA{Name: "Hostile", Type: config.CATypeACME, ACME: cfg}, acme.Deps{Store: e.st, KEK: e.kek, Version: "test", Roots: roots, Presenter: p})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A CA cannot make certflow present challenges for names the request did
// not ask for (a TXT record in the operator's zone for any name the CA
// picks, through the DNS provider's credentials), nor make it fetch and
// present thousands of authorizations on each look: the order's
// authorizations are for the request's names, one each, or the order
// fails, naming what the CA did.
func TestAHostileCAsAuthorizationsAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	req := request(t, "www.certflow.test", "www.certflow.test")

	for _, tc := range []struct {
		name   string
		authzs int
		named  func(int) string
		pad    int    // bytes of padding in each authorization
		want   string // in the error
		// problem: the error is a *ca.Problem (the CA's order refused),
		// not a failure to read the CA.
		problem bool
		// maxSeen bounds the authorizations fetched and records presented.
		maxSeen int
	}{
		{"an authorization for another name", 1, func(int) string { return "victim.example.org" }, 0, "victim.example.org", true, 1},
		{"thousands of authorizations", 5000, func(int) string { return "www.certflow.test" }, 0, "5000 authorizations", true, 1},
		{"an authorization of 4 MiB", 1, func(int) string { return "www.certflow.test" }, 4 << 20, "larger than 1048576 bytes", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHostileCA(t, tc.authzs, tc.named)
			h.authzPad = tc.pad
			p := &recordingPresenter{}
			a := h.open(t, e, p)
			o, err := a.Place(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			_, err = a.Advance(ctx, req, o)
			if _, ok := err.(*ca.Problem); err == nil || ok != tc.problem || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Advance: %v; want it refused (a CA problem: %v), naming %s", err, tc.problem, tc.want)
			}
			for _, n := range p.names {
				if n != "www.certflow.test" {
					t.Fatalf("presented records for %v, which the request did not ask for", p.names)
				}
			}
			if n := h.authzGets.Load(); n > int64(tc.maxSeen) || len(p.names) > tc.maxSeen {
				t.Fatalf("fetched %d authorizations and presented %d records for a one-name request", n, len(p.names))
			}
		})
	}
}

// A CA cannot send certflow's account-signed requests anywhere else than
// to itself: an order whose URLs point at another host (an internal
// service, a cloud metadata address) is not followed there, and the
// other host's answer never reaches the request's DispositionMessage.
func TestAHostileCAsURLsToAnotherHostAreNotFollowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var hits atomic.Int64
	internal := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("internal-secret"))
	}))
	t.Cleanup(internal.Close)
	h := startHostileCA(t, 1, func(int) string { return "www.certflow.test" })
	h.authzBase = internal.URL
	a := h.open(t, e, &recordingPresenter{})
	req := request(t, "www.certflow.test", "www.certflow.test")
	o, err := a.Place(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Advance(ctx, req, o)
	if err == nil || strings.Contains(err.Error(), "internal-secret") {
		t.Fatalf("Advance: %v; want an error that does not carry the other host's answer", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the other host got %d requests from certflow", n)
	}
}

package acme

import (
	"errors"
	"net/http"
	"strings"

	"github.com/certflow/certflow/internal/store"
)

// HTTP01Path is where the CA asks for an http-01 answer (RFC 8555 §8.3).
const HTTP01Path = "/.well-known/acme-challenge/"

// HTTP01Handler answers http-01 challenges from the key authorizations
// the ACME authorities stored in Redis: GET (or HEAD)
// /.well-known/acme-challenge/{token} is the token's key authorization,
// text/plain; an unknown or malformed token (base64url, at most 128
// characters) is 404. It asks for no authentication, by design: the CA
// must reach it anonymously, on port 80 of the names being validated;
// what it serves is meant to be public and only lives while an order is
// being validated. Mount it on the API router and on the port-80 listener.
func HTTP01Handler(st *store.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		token, ok := strings.CutPrefix(r.URL.Path, HTTP01Path)
		if !ok || !validToken(token) {
			http.NotFound(w, r)
			return
		}
		keyAuth, err := st.HTTP01(r.Context(), token)
		switch {
		case errors.Is(err, store.ErrNotFound):
			http.NotFound(w, r)
			return
		case err != nil:
			http.Error(w, "challenge store unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Cache-Control", "no-store")
		w.Write([]byte(keyAuth))
	})
}

// validToken reports whether s is a token as ACME makes them: base64url
// characters, 1 to 128 of them.
func validToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

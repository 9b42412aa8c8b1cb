// Command idp is the OAuth 2.0 / OpenID Connect identity provider
// certflow's bearer-JWT tests run as a process of their own. It serves,
// over TLS with the certificate the test made (or plain HTTP without one):
//
//	GET  /.well-known/openid-configuration  the discovery document
//	GET  /jwks                               the published signing keys
//	POST /token                              the client-credentials grant
//	                                         (client_id/secret by Basic or form)
//
// and, for the test to drive it:
//
//	POST /admin/rotate  a new signing key signs from now on; the old stays published
//	POST /admin/retire  only the current signing key stays published
//	POST /admin/mint    a token as /token would issue it, with the JSON body's
//	                    changes: {"client", "expires_in" (seconds, may be
//	                    negative), "aud", "iss", "claims", "typ" (the
//	                    header typ; default at+jwt, "-" for none)}
//	POST /admin/jwks    how /jwks answers from now on: {"mode": "serve"}, "fail"
//	                    (503) or "hang" (no answer until the mode changes)
//	GET  /admin/stats   {"jwks_fetches": n, "jwks_hanging": n}
//
// Tokens are RS256 JWTs signed with go-jose: iss, aud, sub, azp,
// client_id, iat, nbf, exp, jti and the client's own claims.
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Client is one entry of the -clients file.
type Client struct {
	ID     string         `json:"id"`
	Secret string         `json:"secret"`
	Claims map[string]any `json:"claims"` // added to its tokens (sub among them, to override)
}

var (
	addr     = flag.String("addr", "127.0.0.1:0", "listen address")
	issuer   = flag.String("issuer", "", "issuer URL (default: https://<addr>, or http:// without -cert)")
	audience = flag.String("audience", "certflow", "aud of the tokens issued")
	certFile = flag.String("cert", "", "server certificate (PEM); none: plain HTTP")
	keyFile  = flag.String("key", "", "server key (PEM)")
	clients  = flag.String("clients", "", "JSON file: a list of Client")
	ttl      = flag.Duration("ttl", 5*time.Minute, "lifetime of the tokens issued")
)

type server struct {
	clients map[string]Client
	fetches atomic.Int64
	hanging atomic.Int64 // /jwks requests held by the "hang" mode

	mu        sync.Mutex
	signing   jose.JSONWebKey   // private
	published []jose.JSONWebKey // public, the signing key's among them
	jwksMode  string            // "serve" (""), "fail" or "hang"
	release   chan struct{}     // closed when "hang" ends
}

func main() {
	flag.Parse()
	s := &server{clients: map[string]Client{}}
	if *clients != "" {
		b, err := os.ReadFile(*clients)
		if err != nil {
			log.Fatal(err)
		}
		var list []Client
		if err := json.Unmarshal(b, &list); err != nil {
			log.Fatalf("%s: %v", *clients, err)
		}
		for _, c := range list {
			s.clients[c.ID] = c
		}
	}
	if *issuer == "" {
		scheme := "https://"
		if *certFile == "" {
			scheme = "http://"
		}
		*issuer = scheme + *addr
	}
	s.rotate()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", s.discovery)
	mux.HandleFunc("GET /jwks", s.jwks)
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /admin/rotate", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"kid": s.rotate()}) })
	mux.HandleFunc("POST /admin/retire", s.retire)
	mux.HandleFunc("POST /admin/mint", s.mint)
	mux.HandleFunc("POST /admin/jwks", s.setJWKSMode)
	mux.HandleFunc("GET /admin/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]int64{"jwks_fetches": s.fetches.Load(), "jwks_hanging": s.hanging.Load()})
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	var err error
	if *certFile != "" {
		err = srv.ListenAndServeTLS(*certFile, *keyFile)
	} else {
		err = srv.ListenAndServe()
	}
	log.Fatal(err)
}

// rotate makes a new RSA signing key, published besides the old ones.
func (s *server) rotate() string {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		log.Fatal(err)
	}
	kid := randomHex(8)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signing = jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: string(jose.RS256), Use: "sig"}
	s.published = append(s.published, s.signing.Public())
	return kid
}

func (s *server) retire(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.published = []jose.JSONWebKey{s.signing.Public()}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) discovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{
		"issuer":                                *issuer,
		"jwks_uri":                              *issuer + "/jwks",
		"token_endpoint":                        *issuer + "/token",
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
	})
}

// setJWKSMode sets how /jwks answers; leaving "hang" lets the held
// requests through.
func (s *server) setJWKSMode(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Mode string `json:"mode"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || (req.Mode != "serve" && req.Mode != "fail" && req.Mode != "hang") {
		writeJSON(w, 400, map[string]string{"error": "want {\"mode\": serve|fail|hang}"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jwksMode == "hang" && req.Mode != "hang" {
		close(s.release)
	}
	if s.jwksMode != "hang" && req.Mode == "hang" {
		s.release = make(chan struct{})
	}
	s.jwksMode = req.Mode
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) jwks(w http.ResponseWriter, r *http.Request) {
	s.fetches.Add(1)
	s.mu.Lock()
	mode, release := s.jwksMode, s.release
	s.mu.Unlock()
	switch mode {
	case "fail":
		writeJSON(w, 503, map[string]string{"error": "temporarily_unavailable"})
		return
	case "hang":
		s.hanging.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		s.hanging.Add(-1)
	}
	s.mu.Lock()
	set := jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey(nil), s.published...)}
	s.mu.Unlock()
	writeJSON(w, 200, set)
}

// token is the client-credentials grant (RFC 6749 section 4.4).
func (s *server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	c, known := s.clients[id]
	if !known || subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		writeJSON(w, 401, map[string]string{"error": "invalid_client"})
		return
	}
	tok, err := s.sign(s.claims(c, *ttl), "at+jwt")
	if err != nil {
		writeJSON(w, 500, map[string]string{"error": "server_error"})
		return
	}
	writeJSON(w, 200, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(ttl.Seconds())})
}

// claims are the claims of a token for c, valid for ttl from now.
func (s *server) claims(c Client, ttl time.Duration) map[string]any {
	now := time.Now()
	claims := map[string]any{
		"iss": *issuer, "aud": *audience, "sub": "service-account-" + c.ID,
		"azp": c.ID, "client_id": c.ID, "jti": randomHex(16),
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
	}
	for k, v := range c.Claims {
		claims[k] = v
	}
	return claims
}

// sign signs claims with the current key, with header typ ("-": none).
func (s *server) sign(claims map[string]any, typ string) (string, error) {
	s.mu.Lock()
	key := s.signing
	s.mu.Unlock()
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), key.KeyID)
	if typ != "-" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, opts)
	if err != nil {
		return "", err
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

// mint issues a token as /token would, changed as the body says.
func (s *server) mint(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Client    string         `json:"client"`
		ExpiresIn *int           `json:"expires_in"`
		Aud       string         `json:"aud"`
		Iss       string         `json:"iss"`
		Claims    map[string]any `json:"claims"`
		Typ       string         `json:"typ"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, 400, map[string]string{"error": err.Error()})
		return
	}
	c, ok := s.clients[req.Client]
	if !ok {
		writeJSON(w, 400, map[string]string{"error": "unknown client"})
		return
	}
	life := *ttl
	if req.ExpiresIn != nil {
		life = time.Duration(*req.ExpiresIn) * time.Second
	}
	claims := s.claims(c, life)
	if req.Aud != "" {
		claims["aud"] = req.Aud
	}
	if req.Iss != "" {
		claims["iss"] = req.Iss
	}
	for k, v := range req.Claims {
		claims[k] = v
	}
	if req.Typ == "" {
		req.Typ = "at+jwt"
	}
	tok, err := s.sign(claims, req.Typ)
	if err != nil {
		writeJSON(w, 500, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, 200, map[string]string{"access_token": tok})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

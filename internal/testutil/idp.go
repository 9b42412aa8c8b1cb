package testutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/certflow/certflow/internal/config"
)

// IdPClient is an OAuth client the identity provider knows: its
// credentials and the claims its tokens carry besides the standard ones
// (sub defaults to "service-account-<id>").
type IdPClient struct {
	ID     string         `json:"id"`
	Secret string         `json:"secret"`
	Claims map[string]any `json:"claims"`
}

// IdP is a running internal/api/testdata/idp process: an OpenID Connect
// identity provider with the client-credentials grant, over TLS.
type IdP struct {
	Issuer   string // https://127.0.0.1:<port>
	Addr     string
	Audience string
	CAFile   string // the CA that signed its certificate (PEM)
	start    func()
	stop     func()
}

// IdPAudience is the aud of StartIdP's tokens.
const IdPAudience = "certflow-api"

var idpBinary = sync.OnceValues(func() (string, error) { return buildTestdata("api", "idp") })

// ReserveIdP picks an address and a certificate for an identity provider
// without starting it (Start does), for tests of a provider that is down.
func ReserveIdP(t testing.TB, clients ...IdPClient) *IdP {
	t.Helper()
	dir := t.TempDir()
	caFile, certFile, keyFile := writeSMTPCerts(t, dir)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	b, err := json.Marshal(clients)
	if err != nil {
		t.Fatal(err)
	}
	clientsFile := filepath.Join(dir, "clients.json")
	if err := os.WriteFile(clientsFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := &IdP{Issuer: "https://" + addr, Addr: addr, Audience: IdPAudience, CAFile: caFile}
	p.start = func() {
		bin, err := idpBinary()
		if err != nil {
			t.Fatal(err)
		}
		p.stop = runServer(t, "idp", exec.Command(bin, "-addr", addr, "-cert", certFile, "-key", keyFile,
			"-clients", clientsFile, "-audience", IdPAudience), addr)
	}
	return p
}

// StartIdP starts an identity provider for clients; it is killed when
// the test ends.
func StartIdP(t testing.TB, clients ...IdPClient) *IdP {
	t.Helper()
	p := ReserveIdP(t, clients...)
	p.Start()
	return p
}

// Start starts a provider ReserveIdP reserved.
func (p *IdP) Start() { p.start() }

// Stop kills the provider's process (it loses its keys and state).
func (p *IdP) Stop() { p.stop() }

// Config is auth.oidc for p, trusting its CA, with the defaults for the rest.
func (p *IdP) Config() config.OIDC {
	o := config.Default().Auth.OIDC
	o.Issuer, o.Audience, o.CAFile = p.Issuer, p.Audience, p.CAFile
	return o
}

// HTTPClient trusts p's certificate.
func (p *IdP) HTTPClient(t testing.TB) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
}

// Token gets an access token with the client-credentials grant, as a
// Keyfactor client configured for OAuth does.
func (p *IdP) Token(t testing.TB, clientID, secret string) string {
	t.Helper()
	cc := clientcredentials.Config{ClientID: clientID, ClientSecret: secret, TokenURL: p.Issuer + "/token"}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, p.HTTPClient(t))
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatalf("client credentials of %s: %v", clientID, err)
	}
	return tok.AccessToken
}

// IdPMint is how Mint changes a token from what /token issues.
type IdPMint struct {
	Client    string         `json:"client"`
	ExpiresIn *int           `json:"expires_in,omitempty"` // seconds; negative: expired
	Aud       string         `json:"aud,omitempty"`
	Iss       string         `json:"iss,omitempty"`
	Claims    map[string]any `json:"claims,omitempty"` // a nil value: the claim is null
	Typ       string         `json:"typ,omitempty"`    // the header typ; default at+jwt, "-" for none
}

// Mint has p sign a token for m.Client, changed as m says.
func (p *IdP) Mint(t testing.TB, m IdPMint) string {
	t.Helper()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	p.admin(t, "POST", "/admin/mint", m, &out)
	return out.AccessToken
}

// Rotate makes a new signing key; the old one stays published.
func (p *IdP) Rotate(t testing.TB) { p.admin(t, "POST", "/admin/rotate", nil, nil) }

// Retire publishes only the current signing key.
func (p *IdP) Retire(t testing.TB) { p.admin(t, "POST", "/admin/retire", nil, nil) }

// JWKSFetches is how many times the JWKS was asked for.
func (p *IdP) JWKSFetches(t testing.TB) int {
	t.Helper()
	return p.stats(t).Fetches
}

// JWKSHanging is how many JWKS requests the "hang" mode holds.
func (p *IdP) JWKSHanging(t testing.TB) int {
	t.Helper()
	return p.stats(t).Hanging
}

func (p *IdP) stats(t testing.TB) (out struct {
	Fetches int `json:"jwks_fetches"`
	Hanging int `json:"jwks_hanging"`
}) {
	t.Helper()
	p.admin(t, "GET", "/admin/stats", nil, &out)
	return out
}

// SetJWKS sets how the provider answers for its JWKS from now on: "serve",
// "fail" (503) or "hang" (no answer until the mode changes).
func (p *IdP) SetJWKS(t testing.TB, mode string) {
	t.Helper()
	p.admin(t, "POST", "/admin/jwks", map[string]string{"mode": mode}, nil)
}

// JWKS is the published key set, as it is served.
func (p *IdP) JWKS(t testing.TB) []byte {
	t.Helper()
	resp, err := p.HTTPClient(t).Get(p.Issuer + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (p *IdP) admin(t testing.TB, method, path string, body, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(method, p.Issuer+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.HTTPClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("idp %s: %d %s", path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("idp %s: %v", path, err)
		}
	}
}

package app_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

// The identity provider's clients in the bearer-JWT tests: their roles sit
// where Keycloak puts them (realm_access.roles), as the provider's own
// names, which role_map turns into certflow's.
var (
	idpEnroller  = testutil.IdPClient{ID: "pki-enroller", Secret: "enroller-Secret-7c1", Claims: realmRoles("pki-requesters")}
	idpApprover  = testutil.IdPClient{ID: "pki-approver", Secret: "approver-Secret-9d2", Claims: realmRoles("pki-approvers", "unrelated")}
	idpNobody    = testutil.IdPClient{ID: "no-roles", Secret: "nobody-Secret-3e4", Claims: realmRoles("unrelated")}
	idpLookalike = testutil.IdPClient{ID: "lookalike", Secret: "lookalike-Secret-5f6",
		Claims: map[string]any{"sub": "admin", "realm_access": map[string]any{"roles": []string{"pki-requesters"}}}}
	idpClients = []testutil.IdPClient{idpEnroller, idpApprover, idpNobody, idpLookalike}
)

func realmRoles(roles ...string) map[string]any {
	return map[string]any{"realm_access": map[string]any{"roles": roles}}
}

// oidcConfig is auth.oidc for idp as these tests use it.
func oidcConfig(idp *testutil.IdP) config.OIDC {
	o := idp.Config()
	o.RolesClaim = "realm_access.roles"
	o.RoleMap = map[string]string{"pki-requesters": config.RoleRequester, "pki-approvers": config.RoleApprover}
	return o
}

// startOIDC starts an identity provider and a certflow that accepts its
// tokens, with an approval gate for "gate." names and the shipped
// enrollment definition for the rest; changes change its auth.oidc.
func startOIDC(t *testing.T, changes ...func(o *config.OIDC)) (*testutil.Certflow, *testutil.IdP) {
	t.Helper()
	idp := testutil.StartIdP(t, idpClients...)
	def, err := os.ReadFile(filepath.Join(testutil.DefinitionsDir(), "enrollment-default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := defsDir(t, map[string]string{"gate.yaml": gated("gate", 10, "{roles: [approver]}"), "default.yaml": string(def)})
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.Auth.OIDC = oidcConfig(idp)
		for _, change := range changes {
			change(&c.Auth.OIDC)
		}
	})
	return cf, idp
}

// clientToken gets c's access token from idp with the client-credentials grant.
func clientToken(t *testing.T, idp *testutil.IdP, c testutil.IdPClient) string {
	t.Helper()
	return idp.Token(t, c.ID, c.Secret)
}

// acceptedToken is idpEnroller's token, once cf has accepted it (and so
// fetched the provider's keys).
func acceptedToken(t *testing.T, cf *testutil.Certflow, idp *testutil.IdP) string {
	t.Helper()
	tok := clientToken(t, idp, idpEnroller)
	if r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(tok)); r.Status != http.StatusOK {
		t.Fatalf("the provider's token: %d %s", r.Status, r.Body)
	}
	return tok
}

// assertNotLogged fails when any of secrets is in certflow's logs.
func assertNotLogged(t *testing.T, cf *testutil.Certflow, secrets ...string) {
	t.Helper()
	logs := cf.Logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Fatalf("a token is in the logs")
		}
	}
}

func TestOIDCTokensEnrollAndTheirRolesMap(t *testing.T) {
	t.Parallel()
	cf, idp := startOIDC(t)
	enroller, approver := clientToken(t, idp, idpEnroller), clientToken(t, idp, idpApprover)
	const enrollerName = "oidc:service-account-pki-enroller"

	t.Run("a requester's token enrolls, as the user its claim names", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "oidc.example.com", "oidc.example.com")
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", bearer(enroller))
		if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
		}
		rec, err := cf.App.Store.Get(t.Context(), er.CertificateInformation.KeyfactorRequestId)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Requester.Name != enrollerName {
			t.Fatalf("request's requester %q, want %q", rec.Requester.Name, enrollerName)
		}
		r := cf.Do(t, "GET", "/Certificates/"+strconv.FormatInt(er.CertificateInformation.KeyfactorID, 10), nil, "Authorization", bearer(enroller))
		var cert struct{ Metadata map[string]string }
		r.JSON(t, &cert)
		if r.Status != http.StatusOK || cert.Metadata["RequestedBy"] != enrollerName {
			t.Fatalf("the token user reading its certificate: %d, RequestedBy %q", r.Status, cert.Metadata["RequestedBy"])
		}
	})

	t.Run("a requester cannot approve; an approver can", func(t *testing.T) {
		id := submitPending(t, cf, "gate.example.com", enroller).CertificateInformation.KeyfactorRequestId
		res := approveDeny(t, cf, "/Workflow/Certificates/Approve", enroller, []int64{id})
		if f, ok := entry(res.Failures, id); !ok || len(res.Successes) != 0 || !strings.Contains(f.Comment, "may not decide") {
			t.Fatalf("the requester's token approving: %+v", res)
		}
		if rows := listCertRequests(t, cf, "Pending", bearer(approver)); rows[id].Requester != enrollerName {
			t.Fatalf("the approver's pending list: %+v", rows)
		}
		res = approveDeny(t, cf, "/Workflow/Certificates/Approve", approver, []int64{id})
		if _, ok := entry(res.Successes, id); !ok {
			t.Fatalf("the approver's token approving: %+v", res)
		}
		assertIssuedOnce(t, cf, pollFinal(t, cf, id))
		in := getInstance(t, cf, getRequest(t, cf, id).CertificateInformation.WorkflowInstanceId, bearer(testutil.AdminToken))
		if len(in.Decisions) != 1 || in.Decisions[0].By != "oidc:service-account-pki-approver" {
			t.Fatalf("decisions: %+v", in.Decisions)
		}
	})

	t.Run("a token with no certflow role is refused where a role is needed", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "none.example.com", "none.example.com")
		resp, _ := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", bearer(clientToken(t, idp, idpNobody)))
		assertError(t, resp, http.StatusForbidden, keyfactor.CodeForbidden, "oidc:service-account-no-roles may not")
	})

	t.Run("a token whose sub is admin is not the admin", func(t *testing.T) {
		tok := clientToken(t, idp, idpLookalike)
		id := submitPending(t, cf, "gate.lookalike.example.com", tok).CertificateInformation.KeyfactorRequestId
		rec, err := cf.App.Store.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Requester.Name != "oidc:admin" {
			t.Fatalf("requester %q, want oidc:admin", rec.Requester.Name)
		}
		res := approveDeny(t, cf, "/Workflow/Certificates/Approve", tok, []int64{id})
		if len(res.Successes) != 0 {
			t.Fatalf("a token named admin approved: %+v", res)
		}
		if rows := listCertRequests(t, cf, "Pending", bearer(tok)); len(rows) != 1 {
			t.Fatalf("a token named admin sees %d pending requests, want its own 1", len(rows))
		}
	})

	t.Run("configured tokens and passwords still work", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "static.example.com", "static.example.com")
		if resp, _ := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", bearer(testutil.AliceToken)); resp.Status != http.StatusOK {
			t.Fatalf("alice: %d %s", resp.Status, resp.Body)
		}
		if r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", carolBasic); r.Status != http.StatusOK {
			t.Fatalf("carol: %d %s", r.Status, r.Body)
		}
	})
	assertNotLogged(t, cf, enroller, approver)
}

// signJWT signs claims with key (RS256) under kid, outside the provider.
func signJWT(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// goodClaims are the claims the provider would give idpEnroller.
func goodClaims(idp *testutil.IdP) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": idp.Issuer, "aud": idp.Audience, "sub": "service-account-pki-enroller",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "realm_access": map[string]any{"roles": []string{"pki-requesters"}},
	}
}

// b64 is base64url without padding, as JWS parts are written.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// publishedKey is the provider's current public signing key and its kid.
func publishedKey(t *testing.T, idp *testutil.IdP) (*rsa.PublicKey, string) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(idp.JWKS(t), &set); err != nil {
		t.Fatal(err)
	}
	k := set.Keys[len(set.Keys)-1]
	return k.Key.(*rsa.PublicKey), k.KeyID
}

func TestOIDCRefusesBadTokens(t *testing.T) {
	t.Parallel()
	cf, idp := startOIDC(t)
	good := clientToken(t, idp, idpEnroller)
	pub, kid := publishedKey(t, idp)
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	claims, _ := json.Marshal(goodClaims(idp))
	parts := strings.Split(good, ".")
	forged, _ := json.Marshal(map[string]any{"sub": "someone-else"})
	seconds := func(n int) *int { return &n }
	mint := func(m testutil.IdPMint) string { m.Client = idpEnroller.ID; return idp.Mint(t, m) }
	with := func(extra map[string]any) map[string]any {
		c := goodClaims(idp)
		for k, v := range extra {
			c[k] = v
		}
		return c
	}

	for _, tc := range []struct {
		name, token, why string
	}{
		{"expired beyond the clock skew", mint(testutil.IdPMint{ExpiresIn: seconds(-120)}), "bearer token: expired"},
		{"for another audience", mint(testutil.IdPMint{Aud: "another-api"}), "bearer token: not issued for this audience"},
		{"from another issuer", mint(testutil.IdPMint{Iss: "https://idp.evil.example"}), "bearer token: issued by another issuer"},
		{"not valid yet", mint(testutil.IdPMint{Claims: map[string]any{"nbf": time.Now().Add(time.Hour).Unix()}}), "bearer token: not valid yet"},
		{"issued in the future", mint(testutil.IdPMint{Claims: map[string]any{"iat": time.Now().Add(time.Hour).Unix()}}), "bearer token: issued in the future"},
		{"a user name claim too long", mint(testutil.IdPMint{Claims: map[string]any{"sub": strings.Repeat("x", 129)}}), `bearer token: claim "sub" is not a user name`},
		{"signed by an unknown key", signJWT(t, jose.RS256, stranger, "stranger", goodClaims(idp)), "bearer token: signed by an unknown key"},
		{"signed by an unknown key under the provider's kid", signJWT(t, jose.RS256, stranger, kid, goodClaims(idp)), "bearer token: signed by an unknown key"},
		{"signed without a kid by an unknown key", signJWT(t, jose.RS256, stranger, "", goodClaims(idp)), "bearer token: signed by an unknown key"},
		{"claims changed after signing", parts[0] + "." + b64(string(forged)) + "." + parts[2], "bearer token: signed by an unknown key"},
		{"alg none", b64(`{"alg":"none","typ":"JWT"}`) + "." + b64(string(claims)) + ".", "bearer token: signature algorithm not accepted"},
		{"HS256 keyed with the provider's public key", signJWT(t, jose.HS256, pubPEM, kid, goodClaims(idp)), "bearer token: signature algorithm not accepted"},
		{"HS256 keyed with the public key's DER", signJWT(t, jose.HS256, der, kid, with(nil)), "bearer token: signature algorithm not accepted"},
		{"malformed", "eyJhbGciOiJSUzI1NiJ9.e30.%%%", "bearer token: malformed"},
		{"an ID token's header typ", mint(testutil.IdPMint{Typ: "id_token+jwt"}), "bearer token: not an access token (header typ)"},
		{"a logout token's header typ", mint(testutil.IdPMint{Typ: "application/logout+jwt"}), "bearer token: not an access token (header typ)"},
		{"an empty header typ", mint(testutil.IdPMint{Typ: " "}), "bearer token: not an access token (header typ)"},
		{"a nonce", mint(testutil.IdPMint{Claims: map[string]any{"nonce": "n-0S6_WzA2Mj"}}), "bearer token: an ID token, not an access token (claim nonce)"},
		{"an at_hash", mint(testutil.IdPMint{Claims: map[string]any{"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}}), "bearer token: an ID token, not an access token (claim at_hash)"},
		{"Keycloak's claim typ ID", mint(testutil.IdPMint{Claims: map[string]any{"typ": "ID"}}), "bearer token: an ID token, not an access token (claim typ)"},
		{"Keycloak's ID token", mint(testutil.IdPMint{Typ: "JWT", Claims: map[string]any{"typ": "ID", "nonce": "n-0S6_WzA2Mj", "azp": "certflow-web", "at_hash": "77QmUPtjPfzWtF2AnpK9RQ"}}), "bearer token: an ID token, not an access token"},
		{"oversized", "eyJ" + strings.Repeat("A", 20000) + ".e30.sig", "bearer token: longer than 16384 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(tc.token))
			assertError(t, r, http.StatusUnauthorized, keyfactor.CodeUnauthorized, tc.why)
			if strings.Contains(string(r.Body), tc.token[:min(len(tc.token), 40)]) {
				t.Fatal("the answer echoes the token")
			}
			if !strings.Contains(cf.Logs.String(), strings.Trim(strconv.Quote("login refused: "+tc.why), `"`)) {
				t.Fatalf("no log line says %q", tc.why)
			}
			assertNotLogged(t, cf, tc.token)
		})
	}
	if r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(good)); r.Status != http.StatusOK {
		t.Fatalf("the provider's own token after the bad ones: %d %s", r.Status, r.Body)
	}
	for _, typ := range []string{"-", "JWT", "jwt", "AT+JWT", "application/at+jwt", "Application/JWT"} {
		tok := mint(testutil.IdPMint{Typ: typ, Claims: map[string]any{"typ": "Bearer"}})
		if r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(tok)); r.Status != http.StatusOK {
			t.Fatalf("an access token with header typ %q: %d %s", typ, r.Status, r.Body)
		}
	}
	lately := mint(testutil.IdPMint{ExpiresIn: seconds(-20)})
	if r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(lately)); r.Status != http.StatusOK {
		t.Fatalf("a token expired 20s ago, within the 1m clock skew: %d %s", r.Status, r.Body)
	}
	assertNotLogged(t, cf, good, lately)

	// Refused JWTs spend the address's failed-login budget like wrong
	// static tokens: a guesser is locked out, the right token included.
	forgedToken := signJWT(t, jose.RS256, stranger, kid, goodClaims(idp))
	status := 0
	for range config.DefaultAuthFailuresPerMinute {
		status = cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(forgedToken)).Status
	}
	if status != http.StatusTooManyRequests {
		t.Fatalf("after %d more forged tokens: %d, want 429", config.DefaultAuthFailuresPerMinute, status)
	}
	if r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(good)); r.Status != http.StatusTooManyRequests {
		t.Fatalf("the right token while locked out: %d, want 429", r.Status)
	}
}

// stepClock freezes cf's authentication clock (which paces the key set's
// fetches and ages it) and returns a function that moves it on.
func stepClock(cf *testutil.Certflow) func(d time.Duration) {
	now := time.Now()
	step := func(d time.Duration) {
		now = now.Add(d)
		at := now
		cf.App.Auth.SetClock(func() time.Time { return at })
	}
	step(0)
	return step
}

func TestOIDCFollowsKeyRotation(t *testing.T) {
	t.Parallel()
	cf, idp := startOIDC(t)
	step := stepClock(cf)
	accepted := func(tok string) bool {
		t.Helper()
		r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(tok))
		if r.Status != http.StatusOK && r.Status != http.StatusUnauthorized {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		return r.Status == http.StatusOK
	}
	old := clientToken(t, idp, idpEnroller)
	if !accepted(old) {
		t.Fatal("a token before any rotation is refused")
	}
	fetches := idp.JWKSFetches(t)

	step(time.Minute)
	idp.Rotate(t)
	second := clientToken(t, idp, idpEnroller)
	if !accepted(second) {
		t.Fatal("a token signed by the new key is refused")
	}
	if n := idp.JWKSFetches(t); n != fetches+1 {
		t.Fatalf("the JWKS was fetched %d times for the new key, want once", n-fetches)
	}
	if !accepted(old) {
		t.Fatal("a token of the old key, still published, is refused")
	}

	// The provider withdraws the old key and rotates again: the new key
	// makes certflow fetch the set, which no longer holds the old key.
	step(time.Minute)
	idp.Retire(t)
	idp.Rotate(t)
	if third := clientToken(t, idp, idpEnroller); !accepted(third) {
		t.Fatal("a token of the third key is refused")
	}
	if accepted(old) {
		t.Fatal("a token of a withdrawn key is accepted after the key set was fetched again")
	}

	// Withdrawn with no new key to make certflow look: the key set is
	// fetched anew once it is older than its time to live.
	idp.Retire(t)
	if !accepted(second) {
		t.Fatal("the second key's token is refused while the held set has its key")
	}
	step(11 * time.Minute)
	if accepted(second) {
		t.Fatal("a withdrawn key's token is accepted after the key set's time to live")
	}
	if r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(second)); !strings.Contains(string(r.Body), "unknown key") {
		t.Fatalf("a withdrawn key's token: %s", r.Body)
	}
}

func TestOIDCUnknownKeysCostTheProviderOneFetchAPause(t *testing.T) {
	t.Parallel()
	cf, idp := startOIDC(t)
	if r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(clientToken(t, idp, idpEnroller))); r.Status != http.StatusOK {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	step := stepClock(cf)
	step(time.Minute)
	fetches := idp.JWKSFetches(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		tok := signJWT(t, jose.RS256, key, "unknown-"+strconv.Itoa(i), goodClaims(idp))
		assertError(t, cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(tok)), http.StatusUnauthorized, keyfactor.CodeUnauthorized, "unknown key")
	}
	if n := idp.JWKSFetches(t) - fetches; n != 1 {
		t.Fatalf("10 tokens naming unknown keys made %d fetches of the JWKS, want 1", n)
	}
}

func TestOIDCProviderDownAfterDiscovery(t *testing.T) {
	t.Parallel()
	cf, idp := startOIDC(t)
	tok := acceptedToken(t, cf, idp)
	idp.Stop()
	step := stepClock(cf)
	step(11 * time.Minute) // the held set is past its time to live; fetching it fails
	if r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(tok)); r.Status != http.StatusOK {
		t.Fatalf("a token of a known key while the provider is down: %d %s", r.Status, r.Body)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	step(time.Minute)
	unknown := signJWT(t, jose.RS256, key, "unknown", goodClaims(idp))
	r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(unknown))
	assertError(t, r, http.StatusServiceUnavailable, keyfactor.CodeUnavailable, "bearer token: the identity provider is unreachable")
	if !strings.Contains(cf.Logs.String(), "could not fetch its signing keys; keeping the ones held") {
		t.Fatal("the failed fetch is not logged")
	}
}

func TestOIDCProviderDownAtStart(t *testing.T) {
	t.Parallel()
	idp := testutil.ReserveIdP(t, idpClients...)
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Auth.OIDC = oidcConfig(idp) })
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwtShaped := signJWT(t, jose.RS256, key, "k", goodClaims(idp))
	// More than the address's failed-login budget: an unreachable
	// provider is not the caller's failure, and must not lock it out.
	for i := range config.DefaultAuthFailuresPerMinute + 5 {
		r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(jwtShaped))
		assertError(t, r, http.StatusServiceUnavailable, keyfactor.CodeUnavailable, "bearer token: the identity provider is unreachable")
		if i == 0 && r.Header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
	}
	if r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(testutil.AliceToken)); r.Status != http.StatusOK {
		t.Fatalf("a configured token while the provider is down: %d %s", r.Status, r.Body)
	}
	if !strings.Contains(cf.Logs.String(), "identity provider: discovery failed") {
		t.Fatal("the failed discovery is not logged")
	}

	idp.Start()
	tok := clientToken(t, idp, idpEnroller)
	// Past the pause between discoveries, the next token asks again.
	cf.App.Auth.SetClock(func() time.Time { return time.Now().Add(time.Minute) })
	if r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(tok)); r.Status != http.StatusOK {
		t.Fatalf("a token once the provider is up: %d %s", r.Status, r.Body)
	}
	assertNotLogged(t, cf, tok, jwtShaped)
}

// An unsigned token whose header alg is the text of one of go-oidc's
// errors ("fetching keys" once made certflow take it for an unreachable
// provider: 503, the failed-login budget refunded, an error-level log
// line) is a token with an algorithm not accepted: 401, counted.
func TestOIDCAttackerTextChoosesNoReason(t *testing.T) {
	t.Parallel()
	cf, idp := startOIDC(t)
	claims, _ := json.Marshal(goodClaims(idp))
	texts := []string{"fetching keys", "expected audience", "different provider", "nbf", "RS256 fetching keys"}
	for _, alg := range texts {
		head, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
		tok := b64(string(head)) + "." + b64(string(claims)) + ".c2ln"
		r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(tok))
		assertError(t, r, http.StatusUnauthorized, keyfactor.CodeUnauthorized, "bearer token: signature algorithm not accepted")
	}
	if strings.Contains(cf.Logs.String(), "level=ERROR") {
		t.Fatal("a forged token made an error-level log line")
	}
	head, _ := json.Marshal(map[string]string{"alg": "fetching keys", "typ": "JWT"})
	tok := b64(string(head)) + "." + b64(string(claims)) + ".c2ln"
	status := 0
	for range config.DefaultAuthFailuresPerMinute + 1 - len(texts) {
		status = cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(tok)).Status
	}
	if status != http.StatusTooManyRequests {
		t.Fatalf("after %d such tokens: %d, want 429 (the budget was not spent)", config.DefaultAuthFailuresPerMinute+1, status)
	}
}

func TestOIDCAllowedClients(t *testing.T) {
	t.Parallel()
	cf, idp := startOIDC(t, func(o *config.OIDC) { o.AllowedClients = []string{idpEnroller.ID, "ci-bot"} })
	for _, tc := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"a listed client's token", clientToken(t, idp, idpEnroller), true},
		{"another client's token", clientToken(t, idp, idpApprover), false},
		{"a listed client by client_id, without azp", idp.Mint(t, testutil.IdPMint{Client: idpApprover.ID, Claims: map[string]any{"azp": nil, "client_id": "ci-bot"}}), true},
		{"azp decides over client_id", idp.Mint(t, testutil.IdPMint{Client: idpEnroller.ID, Claims: map[string]any{"azp": "certflow-web"}}), false},
		{"neither azp nor client_id", idp.Mint(t, testutil.IdPMint{Client: idpEnroller.ID, Claims: map[string]any{"azp": nil, "client_id": nil}}), false},
		{"a listed id as a number", idp.Mint(t, testutil.IdPMint{Client: idpEnroller.ID, Claims: map[string]any{"azp": nil, "client_id": 7}}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(tc.token))
			if tc.ok {
				if r.Status != http.StatusOK {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
				return
			}
			assertError(t, r, http.StatusUnauthorized, keyfactor.CodeUnauthorized, "bearer token: issued to a client not allowed (azp or client_id)")
		})
	}
}

// A JWKS fetch that hangs (a token naming a key certflow lacks made it
// ask) holds up only the tokens that need it: a token of a key held is
// answered while the fetch still hangs (its client gives up long before
// the fetch's own 10s timeout), and the waiting token gets its answer
// from that one fetch once the provider answers.
func TestOIDCKnownKeysDoNotWaitForAHangingFetch(t *testing.T) {
	t.Parallel()
	cf, idp := startOIDC(t)
	known := acceptedToken(t, cf, idp)
	stepClock(cf)(time.Minute) // past the pause between fetches; the set held is still fresh
	fetches := idp.JWKSFetches(t)
	idp.SetJWKS(t, "hang")
	t.Cleanup(func() { idp.SetJWKS(t, "serve") })
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	unknown := signJWT(t, jose.RS256, key, "made-up", goodClaims(idp))
	answered := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", cf.URL+"/Workflow/Certificates/Pending", nil)
		req.Header.Set("Authorization", bearer(unknown))
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	for idp.JWKSHanging(t) == 0 { // until the unknown key's fetch reaches the provider
		select {
		case status := <-answered:
			t.Fatalf("the unknown key's token was answered (%d) without a fetch", status)
		case <-time.After(20 * time.Millisecond):
		}
	}

	r := testutil.DoWith(t, &http.Client{Timeout: 3 * time.Second}, cf.URL, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(known))
	if r.Status != http.StatusOK {
		t.Fatalf("a known key's token while a fetch hangs: %d %s", r.Status, r.Body)
	}
	select {
	case status := <-answered:
		t.Fatalf("the unknown key's token was answered (%d) before the provider answered", status)
	default:
	}
	if n := idp.JWKSHanging(t); n != 1 {
		t.Fatalf("%d fetches hang, want the one", n)
	}

	idp.SetJWKS(t, "serve")
	if status := <-answered; status != http.StatusUnauthorized {
		t.Fatalf("the unknown key's token once the provider answered: %d, want 401", status)
	}
	if n := idp.JWKSFetches(t) - fetches; n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

// Keys held are trusted while the provider is unreachable, but not for
// ever: past auth.oidc.max_key_age since the last fetch that succeeded
// they are dropped, and tokens get 503 until a fetch succeeds again.
func TestOIDCKeysHeldExpireAfterMaxKeyAge(t *testing.T) {
	t.Parallel()
	cf, idp := startOIDC(t, func(o *config.OIDC) { o.MaxKeyAge = time.Hour })
	tok := acceptedToken(t, cf, idp)
	get := func() *testutil.Response {
		return cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(tok))
	}
	step := stepClock(cf)
	idp.SetJWKS(t, "fail")
	step(30 * time.Minute)
	if r := get(); r.Status != http.StatusOK {
		t.Fatalf("a known key's token, the keys 30m old and the provider failing: %d %s", r.Status, r.Body)
	}
	step(31 * time.Minute)
	assertError(t, get(), http.StatusServiceUnavailable, keyfactor.CodeUnavailable, "bearer token: the identity provider is unreachable")
	if !strings.Contains(cf.Logs.String(), "older than auth.oidc.max_key_age; dropped") {
		t.Fatal("dropping the keys is not logged")
	}
	step(time.Second) // within the pause: no fetch, and no keys to fall back on
	assertError(t, get(), http.StatusServiceUnavailable, keyfactor.CodeUnavailable, "bearer token: the identity provider is unreachable")
	idp.SetJWKS(t, "serve")
	step(10 * time.Second)
	if r := get(); r.Status != http.StatusOK {
		t.Fatalf("a known key's token once a fetch succeeds again: %d %s", r.Status, r.Body)
	}
}

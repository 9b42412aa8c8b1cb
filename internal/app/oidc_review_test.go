package app_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

// An unsigned token whose header alg is the text "fetching keys" is a
// malformed token, answered 401 and counted against the address's
// failed-login budget. refusalOf matches go-oidc's error text by
// substring, and go-jose quotes the attacker's alg in its error, so the
// token passes for "the identity provider is unreachable": 503, logged
// at error level, and the budget is refunded, so it never locks out.
func TestReviewAttackerTextIsNotAnUnreachableProvider(t *testing.T) {
	t.Parallel()
	cf, idp := startOIDC(t)
	claims, _ := json.Marshal(goodClaims(idp))
	tok := b64(`{"alg":"fetching keys","typ":"JWT"}`) + "." + b64(string(claims)) + ".c2ln"
	r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(tok))
	assertError(t, r, http.StatusUnauthorized, keyfactor.CodeUnauthorized, "bearer token: signature algorithm not accepted")
	status := 0
	for range config.DefaultAuthFailuresPerMinute + 1 {
		status = cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(tok)).Status
	}
	if status != http.StatusTooManyRequests {
		t.Fatalf("after %d more such tokens: %d, want 429 (the budget was not spent)", config.DefaultAuthFailuresPerMinute+1, status)
	}
}

// A Keycloak ID token (claim typ "ID", a nonce, azp another client) for
// the configured audience is not an access token (RFC 9068 section 4;
// RFC 8725 section 3.11): a web front end's ID token must not be
// replayable against the API.
func TestReviewIDTokenIsNotAnAccessToken(t *testing.T) {
	t.Parallel()
	cf, idp := startOIDC(t)
	tok := idp.Mint(t, testutil.IdPMint{Client: idpEnroller.ID, Claims: map[string]any{
		"typ": "ID", "nonce": "n-0S6_WzA2Mj", "azp": "certflow-web", "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
	}})
	r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(tok))
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("an ID token as a bearer token: %d %s, want 401", r.Status, r.Body)
	}
}

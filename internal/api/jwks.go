package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/certflow/certflow/internal/redact"
)

// keySet is the issuer's JWKS as certflow trusts it, the oidc.KeySet that
// go-oidc's verifier checks signatures with (go-jose does the
// cryptography). It differs from go-oidc's RemoteKeySet in what happens
// around the fetches:
//
//   - a token naming a key the set lacks makes it fetch the JWKS again
//     (key rotation), but at most every keyRefetchPause, so a stream of
//     tokens naming unknown keys costs the issuer one request a pause;
//   - a set older than keyCacheTTL is fetched anew before it is used, so a
//     key the issuer withdraws stops verifying within that time;
//   - a failed fetch keeps the set it had, so that an identity provider
//     that is down does not stop tokens of keys already known.
type keySet struct {
	url    string
	client *http.Client
	algs   []jose.SignatureAlgorithm
	now    func() time.Time
	log    *slog.Logger

	mu        sync.Mutex // held through a fetch: callers wait for the one under way
	keys      []jose.JSONWebKey
	fetchedAt time.Time // of the set held
	triedAt   time.Time // the last fetch, failed or not
}

const (
	// keyCacheTTL is how long a fetched key set is trusted without asking
	// the issuer again (it is asked sooner for a key it does not hold).
	keyCacheTTL = 10 * time.Minute
	// keyRefetchPause is the least time between two fetches of the JWKS.
	keyRefetchPause = 5 * time.Second
)

// verifyNote is what VerifySignature tells the check that called it
// (through the context, as go-oidc's verifier stands between them):
// whether a key verified the signature, and whether the keys could not be
// fetched. Only keysUnavailable makes a token "could not be checked": no
// text of an error, which may quote the token, decides that.
type verifyNote struct{ signed, keysUnavailable bool }

type verifyNoteKey struct{}

// noteOf is ctx's note, or a throwaway one.
func noteOf(ctx context.Context) *verifyNote {
	if n, ok := ctx.Value(verifyNoteKey{}).(*verifyNote); ok {
		return n
	}
	return &verifyNote{}
}

// errKeysUnavailable: the JWKS could not be fetched and no key held
// verifies the token.
var errKeysUnavailable = errors.New("fetching keys: the issuer's JWKS could not be fetched")

// VerifySignature returns jwt's payload if a key of the set verifies it.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, k.algs)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	kid := jws.Signatures[0].Header.KeyID
	note := noteOf(ctx)
	keys, err := k.current(ctx, false)
	if payload, ok := verifyWith(jws, keys, kid); ok {
		note.signed = true
		return payload, nil
	}
	if err == nil {
		keys, err = k.current(ctx, true)
		if payload, ok := verifyWith(jws, keys, kid); ok {
			note.signed = true
			return payload, nil
		}
	}
	if err != nil {
		note.keysUnavailable = true
		return nil, err
	}
	return nil, errors.New("failed to verify signature: no key of the issuer's verifies it")
}

func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) ([]byte, bool) {
	for _, key := range keys {
		if kid == "" || key.KeyID == kid {
			if payload, err := jws.Verify(&key); err == nil {
				return payload, true
			}
		}
	}
	return nil, false
}

// current is the key set, fetched first when it is older than keyCacheTTL
// or, with unknownKey, when a token named a key it lacks; never twice
// within keyRefetchPause. Its error is errKeysUnavailable when a fetch
// was needed and failed.
func (k *keySet) current(ctx context.Context, unknownKey bool) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	stale := k.fetchedAt.IsZero() || now.Sub(k.fetchedAt) > keyCacheTTL
	if !stale && !unknownKey || now.Sub(k.triedAt) < keyRefetchPause {
		if stale && k.keys == nil {
			return nil, errKeysUnavailable
		}
		return k.keys, nil
	}
	k.triedAt = now
	keys, err := k.fetch(ctx)
	if err != nil {
		k.log.Warn("identity provider: could not fetch its signing keys; keeping the ones held", "jwks_uri", redact.URL(k.url), "held", len(k.keys), "err", truncate(err.Error(), 300))
		return k.keys, errKeysUnavailable
	}
	k.keys, k.fetchedAt = keys, now
	return keys, nil
}

// fetch reads the JWKS, keeping the public signing keys go-jose knows
// (RFC 7517 section 5: keys of a type not understood are ignored).
func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), idpTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, redact.Error(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", redact.URL(k.url), resp.Status)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%s: not a JWKS: %w", redact.URL(k.url), err)
	}
	var keys []jose.JSONWebKey
	for _, r := range raw.Keys {
		var key jose.JSONWebKey
		if json.Unmarshal(r, &key) != nil || !key.Valid() || !key.IsPublic() || key.Use == "enc" {
			continue
		}
		keys = append(keys, key)
	}
	return keys, nil
}

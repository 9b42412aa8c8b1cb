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
	"sync/atomic"
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
//     that is down does not stop tokens of keys already known;
//   - keys older than maxAge (no fetch has succeeded since) are dropped:
//     tokens are answered 503 until a fetch succeeds, so a key the
//     issuer withdrew while unreachable does not verify for ever;
//   - no lock is held through a fetch: a token whose key the set holds
//     is verified without waiting, even while a fetch hangs; one that
//     needs a fetch waits for the one under way (at most idpTimeout, or
//     until its request ends) rather than starting another.
type keySet struct {
	url    string
	client *http.Client
	algs   []jose.SignatureAlgorithm
	now    func() time.Time
	log    *slog.Logger
	maxAge time.Duration // auth.oidc.max_key_age

	held   atomic.Pointer[heldKeys] // replaced whole by a fetch that succeeds
	failed atomic.Bool              // the last fetch failed

	fetches flight    // its lock guards triedAt
	triedAt time.Time // the last fetch, failed or not
}

// heldKeys is a fetched key set and when it was fetched.
type heldKeys struct {
	keys      []jose.JSONWebKey
	fetchedAt time.Time
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
	if h := k.held.Load(); h != nil && k.now().Sub(h.fetchedAt) <= keyCacheTTL {
		if payload, ok := verifyWith(jws, h.keys, kid); ok {
			note.signed = true
			return payload, nil
		}
	}
	// The set is stale, or lacks the key: fetch it (or wait for the
	// fetch under way), then try the keys held after it.
	keys, err := k.refresh(ctx)
	if payload, ok := verifyWith(jws, keys, kid); ok {
		note.signed = true
		return payload, nil
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

// refresh fetches the key set, unless a fetch was tried within
// keyRefetchPause, and returns the keys held after it. Its error is
// errKeysUnavailable when the fetch failed (the keys held are kept), when
// none are held, or when ctx ended while waiting.
func (k *keySet) refresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	var started time.Time
	ran := k.fetches.do(ctx, func() bool {
		started = k.now()
		if started.Sub(k.triedAt) < keyRefetchPause {
			return false
		}
		k.triedAt = started
		return true
	}, func() { k.fetchAndKeep(ctx, started) })
	h := k.held.Load()
	if h != nil && k.now().Sub(h.fetchedAt) > k.maxAge && k.held.CompareAndSwap(h, nil) {
		k.log.Warn("identity provider: the signing keys held are older than auth.oidc.max_key_age; dropped, bearer JWTs are answered 503 until a fetch succeeds",
			"jwks_uri", redact.URL(k.url), "fetched", h.fetchedAt, "max_key_age", k.maxAge)
		h = nil
	}
	var keys []jose.JSONWebKey
	if h != nil {
		keys = h.keys
	}
	if ran && k.failed.Load() || ctx.Err() != nil || h == nil {
		return keys, errKeysUnavailable
	}
	return keys, nil
}

// fetchAndKeep fetches the set, begun at started, and keeps it if the
// fetch succeeds.
func (k *keySet) fetchAndKeep(ctx context.Context, started time.Time) {
	keys, err := k.fetch(ctx)
	k.failed.Store(err != nil)
	if err != nil {
		held := 0
		if h := k.held.Load(); h != nil {
			held = len(h.keys)
		}
		k.log.Warn("identity provider: could not fetch its signing keys; keeping the ones held", "jwks_uri", redact.URL(k.url), "held", held, "err", truncate(err.Error(), 300))
		return
	}
	k.held.Store(&heldKeys{keys: keys, fetchedAt: started})
}

// flight is one call to the identity provider at a time, with no lock
// held through it: a caller that finds one under way waits for its end
// (or for its own context's) instead of starting another.
type flight struct {
	mu   sync.Mutex
	done chan struct{} // closed when the call under way ends; nil: none
}

// do waits for the call under way or, when there is none and start (run
// under f's lock, to pace the calls) says so, starts fn in the background
// and waits for it. It reports whether it saw a call end.
func (f *flight) do(ctx context.Context, start func() bool, fn func()) bool {
	f.mu.Lock()
	done := f.done
	if done == nil {
		if !start() {
			f.mu.Unlock()
			return false
		}
		done = make(chan struct{})
		f.done = done
		go func() {
			defer close(done)
			fn()
			f.mu.Lock()
			f.done = nil
			f.mu.Unlock()
		}()
	}
	f.mu.Unlock()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
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

package testutil

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/callback"
)

// NewSigningSecret is a fresh Standard Webhooks secret, as text (for a
// configuration) and parsed.
func NewSigningSecret(t testing.TB) (string, callback.Secret) {
	t.Helper()
	raw := make([]byte, 32)
	rand.Read(raw)
	text := "whsec_" + base64.StdEncoding.EncodeToString(raw)
	s, err := callback.ParseSecret(text)
	if err != nil {
		t.Fatal(err)
	}
	return text, s
}

// SignedHooks is a webhook endpoint that verifies each delivery's
// Standard Webhooks signature (and a timestamp within 5 minutes) with
// Secret and keeps the verified bodies; a delivery that does not verify
// is answered 401 and counted.
type SignedHooks struct {
	Secret callback.Secret
	mu     sync.Mutex
	bodies []map[string]any
	bad    int
}

func (h *SignedHooks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts, err := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
	ok := err == nil && time.Since(time.Unix(ts, 0)).Abs() < 5*time.Minute &&
		h.Secret.Verify(r.Header.Get("webhook-id"), ts, body, r.Header.Get("webhook-signature"))
	h.mu.Lock()
	defer h.mu.Unlock()
	if !ok {
		h.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var m map[string]any
	json.Unmarshal(body, &m)
	h.bodies = append(h.bodies, m)
}

// Verified returns the verified bodies so far and how many deliveries
// did not verify.
func (h *SignedHooks) Verified() ([]map[string]any, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.bodies...), h.bad
}

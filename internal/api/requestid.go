package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"regexp"
)

// RequestIDHeader carries each request's id, on every response: the client
// quotes it, the log line of a refusal carries it.
const RequestIDHeader = "X-Request-Id"

// requestIDRE is what an incoming X-Request-Id may be for certflow to keep
// it (a proxy's or client's id, to correlate their logs with ours): short
// and of characters that cannot forge a log line or a header. Anything
// else is replaced, not refused: the id is for correlation, never trusted.
var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

type requestKey struct{}

// request is what the middleware learned of a request before routing
// rewrote its path.
type request struct {
	id   string
	path string // as the client sent it, without the query
}

// withRequestID gives r its id (the client's when sane, else a fresh one),
// answers it in X-Request-Id, and keeps the path as sent for the log.
func withRequestID(w http.ResponseWriter, r *http.Request) *http.Request {
	id := r.Header.Get(RequestIDHeader)
	if !requestIDRE.MatchString(id) {
		id = newRequestID()
	}
	w.Header().Set(RequestIDHeader, id)
	return r.WithContext(context.WithValue(r.Context(), requestKey{}, request{id: id, path: r.URL.Path}))
}

// newRequestID is 16 random bytes in hex.
func newRequestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// requestID is r's id ("" outside the middleware).
func requestID(r *http.Request) string {
	v, _ := r.Context().Value(requestKey{}).(request)
	return v.id
}

// loggedPath is the path the client sent (routing lower-cases it and
// strips /KeyfactorAPI), without the query.
func loggedPath(r *http.Request) string {
	if v, ok := r.Context().Value(requestKey{}).(request); ok {
		return v.path
	}
	return r.URL.Path
}

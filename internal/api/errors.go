package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/certflow/certflow/internal/store"
)

// Error is Keyfactor's error body.
type Error struct {
	ErrorCode string `json:"ErrorCode"`
	Message   string `json:"Message"`
}

// Error codes: stable, documented in API.md; clients may branch on them.
const (
	CodeInvalidField      = "0xA0010001" // a field is missing or malformed
	CodeInvalidCSR        = "0xA0010002" // the CSR does not decode or verify
	CodeUnknownName       = "0xA0010003" // unknown template, CA, metadata field …
	CodeNoWorkflow        = "0xA0010004" // no workflow definition takes the request
	CodeInvalidDefinition = "0xA0010005" // definitions that do not lint
	CodeUnauthorized      = "0xA0020001"
	CodeForbidden         = "0xA0020002"
	CodeNotFound          = "0xA0030001"
	CodeConflict          = "0xA0040001"
	CodeTooLarge          = "0xA0050001"
	CodeRateLimited       = "0xA0060001"
	CodeUnavailable       = "0xA0070001"
	CodeInternal          = "0xA0080001"
	CodeMethodNotAllow    = "0xA0090001"
)

// apiError is an error with its HTTP answer.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badField(field, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: CodeInvalidField, msg: field + ": " + fmt.Sprintf(format, args...)}
}

func newError(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// writeError is the one place errors become responses. Known errors keep
// their message; anything else is logged in full and answered as a bare
// 500 (or 503 when Redis is unreachable): internal text never reaches the
// client.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var ae *apiError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &mbe):
		ae = newError(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body: larger than the %d-byte limit", mbe.Limit)
	case store.Unavailable(err), errors.Is(err, store.ErrIDTaken): // the latter: Redis lost data; a retry gets a fresh id
		log.Error("store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = newError(http.StatusServiceUnavailable, CodeUnavailable, "the certificate store is unavailable; retry later")
		w.Header().Set("Retry-After", "5")
	default:
		log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = newError(http.StatusInternalServerError, CodeInternal, "internal error")
	}
	writeJSON(w, ae.status, Error{ErrorCode: ae.code, Message: ae.msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

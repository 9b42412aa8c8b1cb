package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"unicode/utf8"

	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
)

// apiError is an error with its HTTP answer.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badField(field, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: keyfactor.CodeInvalidField, msg: field + ": " + fmt.Sprintf(format, args...)}
}

func newError(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// kindStatus answers each kind of enroll.Error.
var kindStatus = map[enroll.Kind]int{
	enroll.Invalid:   http.StatusBadRequest,
	enroll.Forbidden: http.StatusForbidden,
	enroll.NotFound:  http.StatusNotFound,
	enroll.Conflict:  http.StatusConflict,
	enroll.TooMany:   http.StatusTooManyRequests,
	enroll.NotYet:    http.StatusServiceUnavailable,
}

// writeError is the one place errors become responses. Known errors (an
// apiError, an enroll.Error of a kind in kindStatus) keep their message;
// anything else is logged in full and answered as a bare 500 (or 503 when
// Redis is unavailable): internal text never reaches the client. Every
// refusal is logged with its reason and the request id the client got in
// X-Request-Id (refuse).
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var ae *apiError
	var ee *enroll.Error
	var mbe *http.MaxBytesError
	var internal error // what the client is not told
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &ee) && kindStatus[ee.Kind] != 0:
		ae = newError(kindStatus[ee.Kind], ee.Code, "%s", ee.Message)
		if ee.Kind == enroll.TooMany || ee.Kind == enroll.NotYet {
			setRetryAfter(w, ee.RetryAfter)
		}
	case errors.As(err, &mbe):
		ae = newError(http.StatusRequestEntityTooLarge, keyfactor.CodeTooLarge, "request body: larger than the %d-byte limit", mbe.Limit)
	case store.Unavailable(err), errors.Is(err, store.ErrIDTaken): // the latter: Redis lost data; a retry gets a fresh id
		internal = err
		ae = newError(http.StatusServiceUnavailable, keyfactor.CodeUnavailable, "the certificate store is unavailable; retry later")
		w.Header().Set("Retry-After", "5")
	default:
		internal = err
		ae = newError(http.StatusInternalServerError, keyfactor.CodeInternal, "internal error")
	}
	refuse(log, r, ae, internal)
	writeJSON(w, ae.status, keyfactor.Error{ErrorCode: ae.code, Message: ae.msg})
}

// maxLogged bounds a refusal's message and path in the log: messages
// quote what the client sent, which an attacker may make as long as a
// body, and a path may be as long as the headers.
const maxLogged = 512

// bounded cuts s to maxLogged bytes (at a rune boundary), marking the cut.
func bounded(s string) string {
	if len(s) <= maxLogged {
		return s
	}
	cut := maxLogged
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// refuse logs a refusal: at info level (the client's mistake or a limit),
// at error level from 500 on (certflow's or Redis's, with the internal
// error the client was not told). The path is logged without its query,
// which may carry anything the client typed; credentials are never logged.
func refuse(log *slog.Logger, r *http.Request, ae *apiError, internal error) {
	level := slog.LevelInfo
	if ae.status >= 500 {
		level = slog.LevelError
	}
	attrs := []slog.Attr{
		slog.String("request_id", requestID(r)), slog.String("method", r.Method), slog.String("path", bounded(loggedPath(r))),
		slog.Int("status", ae.status), slog.String("code", ae.code), slog.String("message", bounded(ae.msg)),
	}
	if id := identity(r); id != nil {
		attrs = append(attrs, slog.String("user", id.Name))
	}
	if internal != nil {
		attrs = append(attrs, slog.Any("err", internal))
	}
	log.LogAttrs(r.Context(), level, "refused", attrs...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

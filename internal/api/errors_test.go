package api

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
)

// TestWriteErrorAnswersEachEnrollKind: every kind of enroll.Error becomes
// its status, with its code and message in Keyfactor's error body, also
// when wrapped; a refusal for want of capacity says when to retry, in
// whole seconds and at least one.
func TestWriteErrorAnswersEachEnrollKind(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		err        *enroll.Error
		status     int
		retryAfter string
	}{
		{&enroll.Error{Kind: enroll.Invalid, Code: keyfactor.CodeInvalidField, Field: "CSR", Message: "CSR: required"}, http.StatusBadRequest, ""},
		{&enroll.Error{Kind: enroll.Forbidden, Code: keyfactor.CodeForbidden, Message: "no"}, http.StatusForbidden, ""},
		{&enroll.Error{Kind: enroll.NotFound, Code: keyfactor.CodeNotFound, Message: "request 7: not found"}, http.StatusNotFound, ""},
		{&enroll.Error{Kind: enroll.Conflict, Code: keyfactor.CodeConflict, Message: "again"}, http.StatusConflict, ""},
		{&enroll.Error{Kind: enroll.TooMany, Code: keyfactor.CodeRateLimited, Message: "busy", RetryAfter: 2500 * time.Millisecond}, http.StatusTooManyRequests, "3"},
		{&enroll.Error{Kind: enroll.TooMany, Code: keyfactor.CodeRateLimited, Message: "busy"}, http.StatusTooManyRequests, "1"},
		{&enroll.Error{Kind: enroll.NotYet, Code: keyfactor.CodeUnavailable, Message: "building", RetryAfter: 10 * time.Second}, http.StatusServiceUnavailable, "10"},
	} {
		for _, err := range []error{tc.err, fmt.Errorf("wrapped: %w", tc.err)} {
			rec := httptest.NewRecorder()
			writeError(rec, httptest.NewRequest("POST", "/x", nil), log, err)
			var body keyfactor.Error
			if jerr := json.Unmarshal(rec.Body.Bytes(), &body); jerr != nil {
				t.Fatalf("%v: body %q: %v", err, rec.Body, jerr)
			}
			if rec.Code != tc.status || body.ErrorCode != tc.err.Code || body.Message != tc.err.Message {
				t.Errorf("%v: got %d %+v, want %d %s %q", err, rec.Code, body, tc.status, tc.err.Code, tc.err.Message)
			}
			if got := rec.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("%v: Retry-After %q, want %q", err, got, tc.retryAfter)
			}
		}
	}
	// A kind writeError does not know is an internal error, never a
	// status of zero.
	rec := httptest.NewRecorder()
	writeError(rec, httptest.NewRequest("POST", "/x", nil), log, &enroll.Error{Kind: 99, Code: "x", Message: "secret"})
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("unknown kind: %d %s", rec.Code, rec.Body)
	}
}

package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

// TestRefusalsAreLoggedAtTheirLevel: a refusal of the client's request is
// logged at info with its reason, bounded in length; a 500 or 503 at error
// level with the internal error the client was not told.
func TestRefusalsAreLoggedAtTheirLevel(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for _, tc := range []struct {
		err       error
		want      []string
		clientMsg string
	}{
		{badField("CSR", "want base64, got %q", strings.Repeat("é", 4096)), []string{"level=INFO", "status=400", "message=\"CSR: want base64", "…\"", "path=/xxxxx"}, "CSR: want base64"},
		{errors.New("dial tcp 10.0.0.5:6379: boom"), []string{"level=ERROR", "status=500", "message=\"internal error\"", "err=\"dial tcp 10.0.0.5:6379: boom\""}, "internal error"},
	} {
		logs.Reset()
		rec := httptest.NewRecorder()
		path := "/x"
		if tc.clientMsg != "internal error" {
			path = "/" + strings.Repeat("x", 8192)
		}
		writeError(rec, httptest.NewRequest("POST", path+"?password=hunter2", nil), log, tc.err)
		line := logs.String()
		for _, want := range tc.want {
			if !strings.Contains(line, want) {
				t.Errorf("%v: log lacks %q: %s", tc.err, want, line)
			}
		}
		if len(line) > 1536 || strings.Contains(line, "hunter2") || !utf8.ValidString(line) {
			t.Errorf("%v: log line unbounded, or with the query: %s", tc.err, line)
		}
		if !strings.HasPrefix(rec.Body.String(), `{"ErrorCode"`) || !strings.Contains(rec.Body.String(), tc.clientMsg) || strings.Contains(rec.Body.String(), "10.0.0.5") {
			t.Errorf("%v: answered %s", tc.err, rec.Body)
		}
	}
}

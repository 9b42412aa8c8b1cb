package enroll

import (
	"fmt"
	"time"

	"github.com/certflow/certflow/internal/keyfactor"
)

// Kind is what sort of refusal an Error is; the HTTP layer answers each
// kind with its status.
type Kind int

// The kinds of refusal.
const (
	// Invalid: the request is malformed, names what does not exist in
	// the configuration, or breaks policy (400).
	Invalid Kind = iota + 1
	// Forbidden: the caller may not do this (403).
	Forbidden
	// NotFound: no such thing, or none the caller may see (404).
	NotFound
	// Conflict: the state of what it names does not allow it now (409).
	Conflict
	// TooMany: no capacity now; retry after RetryAfter (429).
	TooMany
	// NotYet: the service cannot answer this yet (the inventory's
	// indexes are being built); retry after RetryAfter (503).
	NotYet
)

// Error is a refusal: its kind, Keyfactor's error code, the request field
// it is about ("" when none), and the message the client reads, which
// starts with that field.
type Error struct {
	Kind    Kind
	Code    string
	Field   string
	Message string
	// RetryAfter is when to try again (TooMany, NotYet).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// badField refuses field as malformed (Invalid, CodeInvalidField).
func badField(field, format string, args ...any) *Error {
	return fieldError(Invalid, keyfactor.CodeInvalidField, field, format, args...)
}

// fieldError is a refusal about field: its message is "field: …".
func fieldError(kind Kind, code, field, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Field: field, Message: field + ": " + fmt.Sprintf(format, args...)}
}

// newError is a refusal about no one field.
func newError(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// TooBroad refuses a listing that read its bound (api.max_scan) of
// records without filling its page while more remained unread: what it
// found so far would look like the whole answer.
func TooBroad(read int) *Error {
	return fieldError(Invalid, keyfactor.CodeTooBroad, "pq.queryString",
		"the listing read %d records (api.max_scan) without filling its page, and more remain unread; narrow the query (certificates by Id, CertRequestId or Thumbprint -eq are looked up directly) or ask for a smaller page (pq.returnLimit)", read)
}

// tooMany refuses for want of capacity, as "what; retry after wait".
func tooMany(wait time.Duration, what string) *Error {
	return &Error{Kind: TooMany, Code: keyfactor.CodeRateLimited, Message: fmt.Sprintf("%s; retry after %s", what, wait.Round(time.Second)), RetryAfter: wait}
}

// Package keyfactor holds Keyfactor Command's REST dialect as certflow
// speaks it: the JSON bodies clients send and the answers they get, field
// for field and in Keyfactor's order (enrollment, renewal, revocation,
// CSR generation, recovery and download, certificates, the catalogue,
// workflow instances and definitions), the error body and its codes, and
// the rendering of a stored request into those answers
// (NewEnrollmentResponse, NewRequestStatus, which the worker also uses for
// callback bodies).
//
// What does not belong here: HTTP (routing, headers, status codes,
// authentication: internal/api), and deciding anything about a request
// (checks, policy, storing, approvals: internal/enroll). This package only
// describes shapes and fills them from what it is given; who may see what
// is passed in as the viewer's roles.
package keyfactor

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

// CodePolicy: the request is well formed but breaks the policy of its
// template or standalone CA (internal/policy).
const CodePolicy = "0xA0010006"

// CodeTooBroad refuses a listing or search that would read more records
// than api.max_scan allows before its page is full: answering with what it
// found so far would look like the whole answer.
const CodeTooBroad = "0xA0010007"

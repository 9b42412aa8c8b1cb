package ca

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Orderer is a certificate authority that issues by order, taking seconds
// to minutes (ACME): the issue step places one order per request, records
// it before acting on it, and asks the CA about it again on later runs
// until it is done, without holding a worker in between.
type Orderer interface {
	Authority
	// Place creates an order for req (req.CSR is what the order will be
	// finalized with). The caller records the order before it calls
	// Advance with it: a crash after Place resumes that order.
	Place(ctx context.Context, req *Request) (Order, error)
	// Advance moves the order on as far as it goes now (presents and
	// answers challenges, finalizes once ready, fetches the certificate
	// once valid) and says where it stands. It is safe to call again with
	// the same order at any point, from any process. An error is either a
	// *Problem (the CA refused: asking again will not help), a
	// *RetryAfterError (the CA asked to be left alone for a while), or
	// anything else (the CA could not be reached, answered 5xx, timed
	// out): try again later.
	Advance(ctx context.Context, req *Request, o Order) (Progress, error)
}

// Abandoner is an Orderer that can give an order up (take down what it
// presented for it, deactivate what the CA still validates) when its
// request will not wait for it any longer. Best effort. An order the CA
// has issued already cannot be taken back: Abandon returns its leaf
// (DER), for the caller, which knows whether it released it, to revoke
// (RemoteRevoker).
type Abandoner interface {
	Abandon(ctx context.Context, o Order) (issued []byte, err error)
}

// Order is an Orderer's order for one request: what it needs to be asked
// about it again. The issue step stores it with the request.
type Order struct {
	// URL is the CA's name for the order.
	URL string `json:"URL"`
	// State is the CA's own notes on its progress (the challenges it
	// presented, when), opaque to the caller.
	State json.RawMessage `json:"State,omitempty"`
}

// Progress is where an order stands after Advance.
type Progress struct {
	// Order is the order as it now stands; the caller records it when it
	// changed.
	Order Order
	// Status is the CA's word for the order's state (ACME: pending, ready,
	// processing, valid).
	Status string
	// Finishing: the CA has the order finalized and is issuing, or has
	// issued, its certificate (ACME: processing, valid). Given up now, the
	// certificate would come to be neither released nor revoked.
	Finishing bool
	// Issued is the certificate, once the CA issued it. Its leaf's public
	// key is the request's, checked by the Orderer.
	Issued *Issued
	// RetryAfter is when the CA asked to be asked again (zero: it did
	// not say; the caller's backoff decides).
	RetryAfter time.Duration
}

// Problem is a CA's refusal, in RFC 8555's problem-document terms (RFC
// 7807): its type, its detail and, for a compound problem, the problems
// of each identifier.
type Problem struct {
	Type        string       `json:"type"`
	Detail      string       `json:"detail,omitempty"`
	Status      int          `json:"status,omitempty"`
	Subproblems []Subproblem `json:"subproblems,omitempty"`
	// Validation marks a problem that reports the CA's failure to
	// validate control of a name (a challenge's error): whatever its type
	// (Let's Encrypt and Pebble say unauthorized for an http-01 answer
	// they did not find), it is no refusal of what was asked.
	Validation bool `json:"-"`
}

// Subproblem is one identifier's problem within a Problem.
type Subproblem struct {
	Type       string `json:"type"`
	Detail     string `json:"detail,omitempty"`
	Identifier string `json:"identifier,omitempty"`
}

// ACME problem types that refuse what was asked for, rather than fail to
// validate it: a request refused so is DENIED; other problems leave it
// FAILED.
var refusalTypes = []string{
	"rejectedIdentifier", "unauthorized", "caa", "badCSR", "unsupportedIdentifier",
	"badRevocationReason", "externalAccountRequired", "invalidProfile",
}

const acmeErrorNS = "urn:ietf:params:acme:error:"

// Refusal reports whether the problem refuses what was asked for (the
// names, the CSR, the account's rights) rather than a failure to prove
// control of the names.
func (p *Problem) Refusal() bool {
	if p.Validation {
		return false
	}
	t := strings.TrimPrefix(p.Type, acmeErrorNS)
	for _, r := range refusalTypes {
		if t == r {
			return true
		}
	}
	return false
}

// Error renders the problem for DispositionMessage: its type, detail and
// subproblems, as the CA gave them, bounded (a CA's detail is not ours to
// let grow a record without end: each text to 512 bytes, 10 subproblems).
func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(clip(cmp.Or(p.Type, "about:blank")))
	if p.Detail != "" {
		b.WriteString(": " + clip(p.Detail))
	}
	for i, s := range p.Subproblems {
		if i == maxSubproblems {
			fmt.Fprintf(&b, "; and %d more", len(p.Subproblems)-i)
			break
		}
		b.WriteString("; ")
		if s.Identifier != "" {
			b.WriteString(clip(s.Identifier) + ": ")
		}
		b.WriteString(clip(s.Type))
		if s.Detail != "" {
			b.WriteString(": " + clip(s.Detail))
		}
	}
	return b.String()
}

const (
	maxProblemText = 512
	maxSubproblems = 10
)

// clip bounds one of a CA's texts, on a rune boundary.
func clip(s string) string {
	if len(s) <= maxProblemText {
		return s
	}
	cut := maxProblemText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// RetryAfterError is a CA asking to be left alone for After (a rate
// limit, a Retry-After on an error): the caller tries again then.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (the CA asks to try again in %s)", e.Err, e.After.Round(time.Second))
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// RemoteRevoker is a certificate authority that keeps its own revocation
// status (ACME): certflow asks it to revoke. A certificate the CA reports
// revoked already counts as revoked; an error that is a *Problem is a
// refusal (a reason the CA does not accept), anything else is worth a
// retry.
type RemoteRevoker interface {
	RevokeAtCA(ctx context.Context, leaf []byte, reason int) error
}

// RenewalInfo is a CA's advice on when to renew a certificate (ACME
// Renewal Information, RFC 9773).
type RenewalInfo struct {
	Start, End time.Time
	// ExplanationURL, when the CA gives one, says why the window is what
	// it is (an incident that moved it forward).
	ExplanationURL string
	// RetryAfter is when to ask again.
	RetryAfter time.Duration
}

// RenewalAdvisor is a CA that offers renewal information.
type RenewalAdvisor interface {
	// RenewalInfo asks the CA about leaf; ErrNoRenewalInfo: it offers
	// none.
	RenewalInfo(ctx context.Context, leaf *x509.Certificate) (*RenewalInfo, error)
}

// ErrNoRenewalInfo says a CA offers no renewal information.
var ErrNoRenewalInfo = errors.New("the certificate authority offers no renewal information")

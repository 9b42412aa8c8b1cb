// Package redact renders URLs for logs, errors and records: what a reader
// needs to tell one endpoint from another, without the parts that carry
// credentials (user-info, query, fragment).
package redact

import (
	"errors"
	"net/url"
	"strings"
)

// URL returns raw without its user-info, query and fragment: scheme, host
// and path, then "?…" when a query was dropped, so that a reader knows
// there was one. A string that does not parse as a URL is cut at its first
// '?' or '#', and anything up to an '@' in its authority is dropped.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return cut(raw)
	}
	hadQuery := u.RawQuery != "" || u.ForceQuery
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	// An opaque URL ("mailto:a@example.com") has no user-info: its '@'
	// belongs to the address.
	s := u.String()
	if hadQuery {
		s += "?…"
	}
	return s
}

// cut is URL for what url.Parse refused.
func cut(s string) string {
	q := false
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		q = s[i] == '?'
		s = s[:i]
	}
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		end := strings.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
			s = s[:i+3] + rest[at+1:]
		}
	} else if at := strings.LastIndexByte(s, '@'); at >= 0 {
		// No authority we can find: keep nothing that may be a password.
		s = s[at+1:]
	}
	if q {
		s += "?…"
	}
	return s
}

// Error redacts, in place, the URL of every *url.Error in err's chain (what
// net/http's client and url.Parse wrap their failures in, quoting the whole
// URL) and returns err. Call it on the error as the client returned it:
// fmt.Errorf fixes a wrapping error's text when it is made.
func Error(err error) error {
	for e := err; e != nil; {
		var ue *url.Error
		if !errors.As(e, &ue) {
			break
		}
		ue.URL = URL(ue.URL)
		e = ue.Err
	}
	return err
}

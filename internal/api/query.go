package api

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Paging and query parameters of Keyfactor's list endpoints. Keyfactor's
// clients send them as pq.queryString, pq.pageReturned, pq.returnLimit (or
// query.…, or bare); names match without regard to case. A returnLimit
// over maxReturnLimit is answered with maxReturnLimit records per page.
const (
	defaultReturnLimit = 50
	maxReturnLimit     = 500
)

// page is a decoded paging request.
type page struct {
	number, limit int
	terms         []term
}

// term is one `Field -op "value"` clause of a queryString: field
// lower-case, name as the caller spelled it.
type term struct {
	field, op, value, name string
}

// termRE reads one clause from the start of the rest of a queryString: a
// quoted value may hold anything but a quote, AND included.
var termRE = regexp.MustCompile(`(?i)^\s*([A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z0-9_-]+)?)\s+-([a-z]+)\s+(?:"([^"]*)"|([^\s"]+))`)

// andRE reads the AND between two clauses.
var andRE = regexp.MustCompile(`(?i)^\s+AND\s+`)

// isDigits reports whether s is ASCII digits only.
func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// queryParam returns the value of a paging parameter under any of
// Keyfactor's spellings.
func queryParam(q url.Values, name string) string {
	for k, v := range q {
		k = strings.ToLower(k)
		for _, p := range []string{"pq.", "query.", "pagedquery.", ""} {
			if k == p+strings.ToLower(name) && len(v) > 0 {
				return v[0]
			}
		}
	}
	return ""
}

// parsePage reads paging and the queryString, accepting only the fields
// in fields (lower-case names) and the operators -eq, -ne, -contains and
// -startswith; with no fields, any field and operator, for the caller to
// check. Errors name the parameter.
func parsePage(r *http.Request, fields ...string) (page, error) {
	q := r.URL.Query()
	p := page{number: 1, limit: defaultReturnLimit}
	for _, f := range []struct {
		name string
		dst  *int
		max  int
		// clamp answers a larger number with max instead of refusing it:
		// Keyfactor's clients always send pq.returnLimit=1000, and a
		// shorter page is what a client that pages expects anyway.
		clamp bool
	}{{"pageReturned", &p.number, 1 << 20, false}, {"returnLimit", &p.limit, maxReturnLimit, true}} {
		v := queryParam(q, f.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil && f.clamp && isDigits(v) {
			n, err = f.max, nil // too large for an int: still only digits
		}
		if err != nil || n < 1 || (n > f.max && !f.clamp) {
			if f.clamp {
				return p, badField("pq."+f.name, "want a positive integer (at most %d are answered), got %q", f.max, v)
			}
			return p, badField("pq."+f.name, "want an integer from 1 to %d, got %q", f.max, v)
		}
		*f.dst = min(n, f.max)
	}
	qs := strings.TrimSpace(queryParam(q, "queryString"))
	if qs == "" {
		return p, nil
	}
	for rest := qs; rest != ""; {
		m := termRE.FindStringSubmatch(rest)
		if m == nil {
			return p, badField("pq.queryString", "%q is not a clause of the form Field -eq \"value\" (terms joined by AND)", rest)
		}
		clause := strings.TrimSpace(m[0])
		if rest = rest[len(m[0]):]; rest != "" {
			and := andRE.FindString(rest)
			if and == "" {
				return p, badField("pq.queryString", "%q follows %q: clauses are joined by AND", rest, clause)
			}
			if rest = rest[len(and):]; rest == "" {
				return p, badField("pq.queryString", "AND ends the query: a clause must follow it")
			}
		}
		t := term{field: strings.ToLower(m[1]), op: strings.ToLower(m[2]), value: m[3] + m[4], name: m[1]}
		if len(fields) == 0 {
			p.terms = append(p.terms, t)
			continue
		}
		if !slices.Contains([]string{"eq", "ne", "contains", "startswith"}, t.op) {
			return p, badField("pq.queryString", "unknown operator -%s in %q (operators: -eq, -ne, -contains, -startswith)", t.op, clause)
		}
		known := false
		for _, f := range fields {
			known = known || f == t.field
		}
		if !known {
			return p, badField("pq.queryString", "unknown field %q (known: %s)", m[1], strings.Join(fields, ", "))
		}
		p.terms = append(p.terms, t)
	}
	return p, nil
}

// match reports whether the record's field values satisfy every term.
// Comparisons ignore case, as Keyfactor's do.
func (p page) match(value func(field string) string) bool {
	for _, t := range p.terms {
		v, want := strings.ToLower(value(t.field)), strings.ToLower(t.value)
		ok := false
		switch t.op {
		case "eq":
			ok = v == want
		case "ne":
			ok = v != want
		case "contains":
			ok = strings.Contains(v, want)
		case "startswith":
			ok = strings.HasPrefix(v, want)
		}
		if !ok {
			return false
		}
	}
	return true
}

// collector gathers one page of matches from a walk over records.
type collector[T any] struct {
	p       page
	skipped int
	out     []T
}

// add offers a match; it reports false once the page is full.
func (c *collector[T]) add(v T) bool {
	if c.skipped < (c.p.number-1)*c.p.limit {
		c.skipped++
		return true
	}
	c.out = append(c.out, v)
	return len(c.out) < c.p.limit
}

// writePage answers one page of a listing: walk offers the rows the caller
// may see, in the listing's order, until offer says the page is full; the
// rows whose field values match p's queryString are paged and written as
// a JSON array, as Keyfactor's (empty, never null).
func writePage[T any](s *Server, w http.ResponseWriter, r *http.Request, p page, field func(*T) func(string) string, walk func(offer func(T) bool) error) {
	c := &collector[T]{p: p}
	err := walk(func(row T) bool {
		if !p.match(field(&row)) {
			return true
		}
		return c.add(row)
	})
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if c.out == nil {
		c.out = []T{}
	}
	writeJSON(w, http.StatusOK, c.out)
}

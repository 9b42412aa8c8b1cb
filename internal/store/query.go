package store

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A certificate search: Keyfactor's query language (terms joined by AND)
// answered from the inventory's indexes (inventory.go).
//
// Every term an index answers becomes a source of candidate ids; the
// others are checked on the records. Of the sources, the plan takes:
//
//   - one source whose order is the answer's (or none: the inventory by
//     id) and no other term: the page is read by rank, and the count is
//     the source's (direct);
//   - else the smallest source, when it is small (gatherMax ids, or a
//     -contains scan of up to MaxIndex names): all its ids, narrowed by
//     the other sources (ZMSCORE, or intersection), then by the records
//     when a term needs them; sorted, counted, paged (gather);
//   - else the answer's order index walked in order, each chunk narrowed
//     as above, until the page is full (walk).
//
// Index reads are bounded by MaxIndex and record reads by MaxRecords;
// when a bound is reached before the answer is known the query fails
// with a *TooBroadError: never a partial answer that looks whole.

// Query is a certificate search.
type Query struct {
	Terms []Term
	// Sort is the field the answer is ordered by (SortFields; "": Id),
	// ascending unless Descending. Ties are ordered by id; in the date
	// orders, as Redis orders equal scores, by the id's decimal digits
	// (10 before 9).
	Sort       string
	Descending bool
	// Offset and Limit select the page.
	Offset, Limit int
	// MaxIndex bounds the index entries one search reads; MaxRecords the
	// records it loads to check terms no index answers.
	MaxIndex, MaxRecords int
	// Owner, if set, restricts the search to the certificates that
	// requester (exactly) asked for, and makes its every choice depend on
	// them alone (see QueryCertificates).
	Owner string
	// Visible, if set, is what the caller may see of the matches: a
	// match it refuses is passed over (a defence in depth: Owner is what
	// narrows a requester's search).
	Visible func(*Request) bool
}

// Term is one `Field -op "value"` clause. Field is lower-case (Fields;
// "metadata.<name>" for a metadata field); Op is without its dash.
type Term struct {
	Field, Op, Value string
}

// Match is one certificate found, with its request.
type Match struct {
	Request     *Request
	Certificate *Certificate
}

// QueryResult is a page of a search and, when it is known, how many
// certificates match in all (-1 when counting them would read more than
// the bounds allow).
type QueryResult struct {
	Matches []Match
	Total   int64
}

// TooBroadError refuses a search that would read more than its bounds
// before its page is known.
type TooBroadError struct {
	// Bound is what was reached: "index" (Query.MaxIndex) or "records"
	// (Query.MaxRecords); Read how many of them were read.
	Bound string
	Read  int
}

func (e *TooBroadError) Error() string {
	return fmt.Sprintf("the search read %d %s entries (its bound) before its page was complete", e.Read, e.Bound)
}

// ErrTooBroad is what a *TooBroadError is (errors.Is).
var ErrTooBroad = errors.New("search too broad")

func (e *TooBroadError) Is(target error) bool { return target == ErrTooBroad }

// fieldKind is how a field's values compare.
type fieldKind int

const (
	kindString fieldKind = iota
	kindNumber
	kindDate
)

// Fields are the fields a search may name, with their kinds; metadata
// fields are named "metadata.<name>" (strings).
var Fields = map[string]fieldKind{
	"id": kindNumber, "certrequestid": kindNumber, "keysizeinbits": kindNumber, "certstate": kindNumber,
	"thumbprint": kindString, "serialnumber": kindString, "issueddn": kindString, "issuedcn": kindString,
	"issuerdn": kindString, "issuedou": kindString, "issuedemail": kindString, "certstatestring": kindString,
	"templatename": kindString, "requestername": kindString, "certificateauthorityname": kindString,
	"keytypestring": kindString, "san": kindString,
	"notbefore": kindDate, "notafter": kindDate,
}

// SortFields are the orders a search can be answered in, each read from
// an index.
var SortFields = []string{"id", "certrequestid", "notafter", "notbefore", "issuedcn", "issueddn", "serialnumber"}

// Operators by field kind.
var (
	stringOps = []string{"eq", "ne", "contains", "notcontains", "startswith", "endswith"}
	numberOps = []string{"eq", "ne", "gt", "ge", "lt", "le", "contains", "startswith"}
	dateOps   = []string{"eq", "ne", "gt", "ge", "lt", "le"}
)

func kindOf(field string) (fieldKind, bool) {
	if name, ok := strings.CutPrefix(field, "metadata."); ok {
		return kindString, name != ""
	}
	k, ok := Fields[field]
	return k, ok
}

// OpsOf returns the operators a field takes (nil: no such field).
func OpsOf(field string) []string {
	k, ok := kindOf(field)
	switch {
	case !ok:
		return nil
	case k == kindNumber:
		return numberOps
	case k == kindDate:
		return dateOps
	}
	return stringOps
}

// ParseDate reads a date term's value: RFC 3339, or a day (2006-01-02,
// UTC), which -eq and -ne take as the whole day.
func ParseDate(v string) (t time.Time, day bool, err error) {
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return t, true, nil
	}
	t, err = time.Parse(time.RFC3339, v)
	return t, false, err
}

// CheckTerm reports what is wrong with a term, naming its field: an
// unknown field, an operator the field does not take, a value of the
// wrong kind.
func CheckTerm(t Term) error {
	ops := OpsOf(t.Field)
	if ops == nil {
		return fmt.Errorf("unknown field %q", t.Field)
	}
	if !slices.Contains(ops, t.Op) {
		return fmt.Errorf("field %s takes -%s, not -%s", t.Field, strings.Join(ops, ", -"), t.Op)
	}
	if i := strings.IndexFunc(t.Value, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		return fmt.Errorf("field %s: the value holds a control character (%q)", t.Field, t.Value[i])
	}
	k, _ := kindOf(t.Field)
	switch {
	case k == kindDate:
		if _, _, err := ParseDate(t.Value); err != nil {
			return fmt.Errorf("field %s: %q is not a date (want 2006-01-02 or RFC 3339)", t.Field, t.Value)
		}
	case k == kindNumber && t.Op != "contains" && t.Op != "startswith":
		if _, err := strconv.ParseInt(t.Value, 10, 64); err != nil {
			return fmt.Errorf("field %s: %q is not an integer", t.Field, t.Value)
		}
	}
	return nil
}

// normalize is the form a field's values are compared (and indexed) in:
// without regard to case, serial numbers without colons or leading
// zeros, DNs without spaces around separators; requester names are
// identities, compared exactly.
func normalize(field, v string) string {
	switch field {
	case "serialnumber":
		return NormalizeSerial(v)
	case "issueddn", "issuerdn":
		return NormalizeDN(v)
	case "thumbprint":
		return strings.ToLower(strings.ReplaceAll(v, ":", ""))
	case "requestername":
		return v
	}
	return strings.ToLower(v)
}

// MatchesEverything reports whether t is a -contains, -startswith or
// -endswith whose value is empty (or only spaces) as the inventory
// compares it, normalized (a serial number's "0" or ":", a thumbprint's
// ":"): it matches every certificate.
func MatchesEverything(t Term) bool {
	if k, _ := kindOf(t.Field); k != kindString || (t.Op != "contains" && t.Op != "startswith" && t.Op != "endswith") {
		return false
	}
	return strings.TrimSpace(normalizeFor(t.Field, t.Op, t.Value)) == ""
}

// normalizeFor is normalize for a term's value under its operator: a
// serial number's -contains and -endswith keep the value's zeros (they
// are digits of what is looked for, not padding).
func normalizeFor(field, op, v string) string {
	if field == "serialnumber" && (op == "contains" || op == "notcontains" || op == "endswith") {
		return strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(v), ":", ""))
	}
	return normalize(field, v)
}

// stateNamed is the state a CertState or CertStateString value names:
// "active", "revoked", or "" for none.
func stateNamed(field, v string) string {
	if field == "certstate" {
		switch n, _ := strconv.ParseInt(v, 10, 64); n {
		case 1:
			return "active"
		case 2:
			return "revoked"
		}
		return ""
	}
	switch strings.ToLower(v) {
	case "active", "revoked":
		return strings.ToLower(v)
	}
	return ""
}

// values are a certificate's values of a field (several for SAN).
func values(field string, r *Request, c *Certificate) []string {
	one := func(s string) []string { return []string{s} }
	if name, ok := strings.CutPrefix(field, "metadata."); ok {
		// Names compare lower-cased, as the index holds them; two names
		// that differ only in case are two values of the field.
		var out []string
		for k, v := range r.Metadata() {
			if strings.ToLower(k) == strings.ToLower(name) && v != "" {
				out = append(out, v)
			}
		}
		if out == nil {
			return one("")
		}
		return out
	}
	switch field {
	case "id", "certrequestid":
		return one(strconv.FormatInt(c.ID, 10))
	case "keysizeinbits":
		return one(strconv.Itoa(c.KeySizeInBits))
	case "certstate":
		if c.Revocation != nil {
			return one("2")
		}
		return one("1")
	case "certstatestring":
		if c.Revocation != nil {
			return one("Revoked")
		}
		return one("Active")
	case "thumbprint":
		return one(c.Thumbprint)
	case "serialnumber":
		return one(c.SerialNumber)
	case "issueddn":
		return one(c.SubjectDN)
	case "issuedcn":
		return one(c.IssuedCN)
	case "issuerdn":
		return one(c.IssuerDN)
	case "issuedou":
		return one(c.IssuedOU)
	case "issuedemail":
		return one(c.IssuedEmail)
	case "templatename":
		return one(c.Template)
	case "requestername":
		return one(c.Requester)
	case "certificateauthorityname":
		return one(c.Authority)
	case "keytypestring":
		return one(c.KeyType)
	case "san":
		out := make([]string, len(c.SANs))
		for i, s := range c.SANs {
			out[i] = s.Value
		}
		return out
	case "notbefore":
		return one(strconv.FormatInt(c.NotBefore.Unix(), 10))
	case "notafter":
		return one(strconv.FormatInt(c.NotAfter.Unix(), 10))
	}
	return one("")
}

// Matches reports whether certificate c of request r satisfies t (a
// checked term): the definition the indexes answer by, and what every
// answer is checked against.
func (t Term) Matches(r *Request, c *Certificate) bool {
	negated := t.Op == "ne" || t.Op == "notcontains"
	return slices.ContainsFunc(values(t.Field, r, c), t.matchOne) != negated
}

// matchOne applies t's operator (ne and notcontains as eq and contains:
// Matches negates) to one value.
func (t Term) matchOne(v string) bool {
	k, _ := kindOf(t.Field)
	switch {
	case k == kindDate:
		at, _ := strconv.ParseInt(v, 10, 64)
		lo, hi := dateRange(t)
		return at >= lo && at <= hi
	case k == kindNumber && t.Op != "contains" && t.Op != "startswith":
		n, _ := strconv.ParseInt(v, 10, 64)
		want, _ := strconv.ParseInt(t.Value, 10, 64)
		switch t.Op {
		case "gt":
			return n > want
		case "ge":
			return n >= want
		case "lt":
			return n < want
		case "le":
			return n <= want
		}
		return n == want
	}
	v, want := normalize(t.Field, v), normalizeFor(t.Field, t.Op, t.Value)
	switch t.Op {
	case "contains", "notcontains":
		return strings.Contains(v, want)
	case "startswith":
		return strings.HasPrefix(v, want)
	case "endswith":
		return strings.HasSuffix(v, want)
	}
	return v == want
}

// dateRange is the range of unix seconds a date term accepts (for -ne,
// the range it refuses). Certificates' dates are whole seconds: a value
// with a fraction falls between two of them. A day (2006-01-02) is its
// 86 400 seconds: -eq is within it, -gt after it, -le up to its end.
func dateRange(t Term) (lo, hi int64) {
	at, day, _ := ParseDate(t.Value)
	floor := at.Unix()
	ceil, last := floor, floor
	if at.Nanosecond() > 0 {
		ceil++
	}
	if day {
		last = floor + 86399
	}
	switch t.Op {
	case "gt":
		return last + 1, math.MaxInt64
	case "ge":
		return ceil, math.MaxInt64
	case "lt":
		return math.MinInt64, ceil - 1
	case "le":
		return math.MinInt64, last
	}
	return ceil, last
}

// matchesAll reports whether c satisfies every term.
func matchesAll(terms []Term, r *Request, c *Certificate) bool {
	for _, t := range terms {
		if !t.Matches(r, c) {
			return false
		}
	}
	return true
}

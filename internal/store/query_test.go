package store_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
)

// inventoryFixture is an inventory written through the store's own write
// paths, then changed as production changes it: revocations, renewals
// (a new certificate for the same names, the old one superseded),
// metadata updates, retention's deletes.
type inventoryFixture struct {
	s      *store.Store
	prefix string
	ids    []int64 // every certificate left
}

var (
	fixPrefixes   = []string{"svc", "Web", "db", "api"}
	fixEnvs       = []string{"dev", "PROD", "test"}
	fixTemplates  = []string{"WebServer", "User", "CodeSigning"}
	fixCAs        = []string{`host\CA1`, `host\CA2`}
	fixRequesters = []string{"alice", "bob", "Alice"}
	fixOwners     = []string{"team-a", "Team-B", "team-c", ""}
)

func newInventoryFixture(t *testing.T, n int) *inventoryFixture {
	t.Helper()
	s, _, prefix := setup(t)
	ctx := context.Background()
	rnd := mrand.New(mrand.NewPCG(17, uint64(n)))
	pick := func(xs []string) string { return xs[rnd.IntN(len(xs))] }
	f := &inventoryFixture{s: s, prefix: prefix}
	base := time.Now().UTC().Truncate(time.Second).Add(-60 * 24 * time.Hour)
	issue := func(i int, cn string, sans []string) int64 {
		r := newRequest(t, s, pick(fixRequesters), "")
		if owner := pick(fixOwners); owner != "" {
			r.Input.Metadata = map[string]string{"Owner": owner}
		}
		if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
			t.Fatal(err)
		}
		_, claim, err := s.ClaimIssue(ctx, r.ID, nil)
		if err != nil || claim == nil {
			t.Fatalf("claim: %v", err)
		}
		notBefore := base.Add(time.Duration(rnd.IntN(50*24)) * time.Hour)
		c := &store.Certificate{
			SerialNumber: strings.Repeat("0", i%2) + strconv.FormatInt(int64(i)*7919+4096, 16),
			Thumbprint:   fmt.Sprintf("%040X", r.ID),
			IssuerDN:     "CN=Fixture CA, O=certflow", SubjectDN: "CN=" + cn + ", O=Org" + strconv.Itoa(i%3),
			NotBefore: notBefore, NotAfter: notBefore.Add(time.Duration(20+rnd.IntN(400)) * 24 * time.Hour),
			Authority: pick(fixCAs), Template: pick(fixTemplates), Requester: r.Requester.Name, Issued: notBefore,
			IssuedCN: cn, IssuedOU: "Unit" + strconv.Itoa(i%4), KeyType: "ECC", KeySizeInBits: 256 + 128*(i%2),
		}
		for _, san := range sans {
			c.SANs = append(c.SANs, store.SAN{Type: store.SANDNS, Value: san})
		}
		r.Instance.Unsaved = []any{claim.Signed(c, r.ID)}
		r.Disposition = store.Issued
		if err := s.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
		f.ids = append(f.ids, r.ID)
		return r.ID
	}
	for i := range n {
		cn := fmt.Sprintf("%s%03d.%s.example.com", pick(fixPrefixes), i%97, pick(fixEnvs))
		issue(i, cn, []string{strings.ToLower(cn), fmt.Sprintf("alt%d.example.net", i%13)})
	}
	// Renewals: a new certificate for the same names; the old one is
	// revoked as superseded.
	for _, old := range slices.Clone(f.ids[:n/10]) {
		c, err := s.Certificate(ctx, old)
		if err != nil {
			t.Fatal(err)
		}
		var sans []string
		for _, san := range c.SANs {
			sans = append(sans, san.Value)
		}
		issue(n+int(old), c.IssuedCN, sans)
		if _, _, err := s.RevokeCertificate(ctx, old, store.Revocation{Reason: 4, RequestID: old, Date: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	// Revocations and metadata updates.
	for _, id := range f.ids {
		switch rnd.IntN(10) {
		case 0:
			if _, _, err := s.RevokeCertificate(ctx, id, store.Revocation{Reason: []int{0, 4, 5}[rnd.IntN(3)], RequestID: id, Date: time.Now()}); err != nil {
				t.Fatal(err)
			}
		case 1, 2:
			owner := pick(fixOwners)
			if _, err := s.Update(ctx, id, func(r *store.Request) error {
				if r.Instance.Metadata == nil {
					r.Instance.Metadata = map[string]string{}
				}
				r.Instance.Metadata["Owner"] = owner
				if owner == "" {
					delete(r.Instance.Metadata, "Owner")
					delete(r.Input.Metadata, "Owner")
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Retention: expired certificates' records are deleted.
	if _, err := s.Sweep(ctx, -time.Second); err != nil {
		t.Fatal(err)
	}
	rs, err := s.GetMany(ctx, f.ids)
	if err != nil {
		t.Fatal(err)
	}
	f.ids = f.ids[:0]
	for _, r := range rs {
		f.ids = append(f.ids, r.ID)
	}
	if len(f.ids) == 0 || len(f.ids) > n+n/10 {
		t.Fatalf("%d certificates left of %d", len(f.ids), n+n/10)
	}
	return f
}

// all loads every certificate of the fixture.
func (f *inventoryFixture) all(t *testing.T) []store.Match {
	t.Helper()
	rs, err := f.s.GetMany(context.Background(), f.ids)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Match
	for _, r := range rs {
		c, err := r.Certificate()
		if err != nil || c == nil {
			t.Fatalf("request %d: certificate %v, %v", r.ID, c, err)
		}
		out = append(out, store.Match{Request: r, Certificate: c})
	}
	return out
}

// bruteForce is the answer a search must give: every certificate checked
// against every term, in the order asked for (ties by id; the date
// orders tie as Redis orders equal scores, by the id's decimal form).
func bruteForce(all []store.Match, q store.Query) []int64 {
	var ms []store.Match
	for _, m := range all {
		ok := q.Visible == nil || q.Visible(m.Request)
		for _, term := range q.Terms {
			ok = ok && term.Matches(m.Request, m.Certificate)
		}
		if ok {
			ms = append(ms, m)
		}
	}
	key := func(c *store.Certificate) string {
		switch q.Sort {
		case "issuedcn":
			return strings.ToLower(c.IssuedCN)
		case "issueddn":
			return store.NormalizeDN(c.SubjectDN)
		case "serialnumber":
			return store.NormalizeSerial(c.SerialNumber)
		}
		return ""
	}
	slices.SortFunc(ms, func(a, b store.Match) int {
		ca, cb := a.Certificate, b.Certificate
		switch q.Sort {
		case "notafter", "notbefore":
			ta, tb := ca.NotAfter, cb.NotAfter
			if q.Sort == "notbefore" {
				ta, tb = ca.NotBefore, cb.NotBefore
			}
			if c := ta.Compare(tb); c != 0 {
				return c
			}
			return strings.Compare(strconv.FormatInt(ca.ID, 10), strconv.FormatInt(cb.ID, 10))
		}
		if c := strings.Compare(key(ca), key(cb)); c != 0 {
			return c
		}
		return cmp.Compare(ca.ID, cb.ID)
	})
	if q.Descending {
		slices.Reverse(ms)
	}
	ids := make([]int64, len(ms))
	for i, m := range ms {
		ids[i] = m.Certificate.ID
	}
	return ids
}

// queries are searches of every kind, with values taken from the
// inventory (so that most find something) and changed in case.
func queries(all []store.Match, rnd *mrand.Rand) [][]store.Term {
	some := func() *store.Certificate { return all[rnd.IntN(len(all))].Certificate }
	flip := func(s string) string {
		if rnd.IntN(2) == 0 {
			return strings.ToUpper(s)
		}
		return s
	}
	day := func(t time.Time) string { return t.Format("2006-01-02") }
	var out [][]store.Term
	one := func(field, op, value string) { out = append(out, []store.Term{{Field: field, Op: op, Value: value}}) }
	for range 3 {
		c := some()
		one("issuedcn", "eq", flip(c.IssuedCN))
		one("issuedcn", "startswith", flip(c.IssuedCN[:4]))
		one("issuedcn", "contains", c.IssuedCN[3:7])
		one("issuedcn", "endswith", ".prod.example.com")
		one("issuedcn", "ne", c.IssuedCN)
		one("issueddn", "eq", strings.ReplaceAll(c.SubjectDN, ", ", ","))
		one("issueddn", "startswith", "cn = "+c.IssuedCN[:3])
		one("san", "eq", c.SANs[1].Value)
		one("san", "startswith", "alt1")
		one("san", "contains", "example.n")
		one("serialnumber", "eq", "00"+c.SerialNumber)
		one("serialnumber", "startswith", store.NormalizeSerial(c.SerialNumber)[:2])
		one("thumbprint", "eq", strings.ToLower(c.Thumbprint))
		one("id", "eq", strconv.FormatInt(c.ID, 10))
		one("id", "gt", strconv.FormatInt(c.ID, 10))
		one("certrequestid", "le", strconv.FormatInt(c.ID, 10))
		one("notafter", "ge", day(c.NotAfter))
		one("notafter", "lt", c.NotAfter.Format(time.RFC3339))
		one("notafter", "eq", day(c.NotAfter))
		one("notbefore", "le", day(c.NotBefore))
		one("notbefore", "ne", day(c.NotBefore))
		one("templatename", "eq", flip(c.Template))
		one("templatename", "startswith", "Web")
		one("certificateauthorityname", "eq", c.Authority)
		one("requestername", "eq", c.Requester)
		one("requestername", "eq", "ALICE")
		one("keysizeinbits", "eq", "384")
	}
	one("certstate", "eq", "1")
	one("certstate", "eq", "2")
	one("certstate", "ne", "2")
	one("certstatestring", "eq", "revoked")
	one("metadata.owner", "eq", "TEAM-B")
	one("metadata.Owner", "eq", "")
	one("metadata.owner", "ne", "team-a")
	one("metadata.owner", "startswith", "team")
	one("issuerdn", "eq", "cn=fixture ca,o=certflow")
	one("id", "eq", "0")
	one("thumbprint", "eq", "00")
	one("issuedcn", "eq", "no.such.name")
	// AND of two, of three.
	singles := slices.Clone(out)
	for range 40 {
		q := slices.Concat(singles[rnd.IntN(len(singles))], singles[rnd.IntN(len(singles))])
		if rnd.IntN(3) == 0 {
			q = append(q, singles[rnd.IntN(len(singles))]...)
		}
		out = append(out, q)
	}
	return out
}

// search reads every page of q (limit per page) and returns the ids in
// order, the totals the pages reported, or the error of the first page
// refused.
func search(t *testing.T, s *store.Store, q store.Query, limit int) ([]int64, []int64, error) {
	t.Helper()
	var ids, totals []int64
	for page := 0; ; page++ {
		q.Offset, q.Limit = page*limit, limit
		res, err := s.QueryCertificates(context.Background(), q)
		if err != nil {
			return ids, totals, err
		}
		totals = append(totals, res.Total)
		for _, m := range res.Matches {
			ids = append(ids, m.Certificate.ID)
		}
		if len(res.Matches) < limit {
			return ids, totals, nil
		}
	}
}

// Every kind of search, alone and ANDed, in every order, paged through,
// gives exactly what checking every certificate gives, after
// revocations, renewals, metadata updates and retention's deletes; its
// count, when it gives one, is the number of matches. With bounds too
// small to answer, a search is refused, never answered short.
func TestSearchesAgreeWithBruteForce(t *testing.T) {
	t.Parallel()
	n := 600
	if v := os.Getenv("CERTFLOW_INVENTORY_TEST_N"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	f := newInventoryFixture(t, n)
	if rep, err := f.s.CheckInventory(context.Background(), false); err != nil || len(rep.Missing)+len(rep.Stale) > 0 {
		t.Fatalf("the fixture's indexes do not check: %v %+v", err, rep)
	}
	all := f.all(t)
	rnd := mrand.New(mrand.NewPCG(3, 5))
	orders := append([]string{""}, store.SortFields...)
	for i, terms := range queries(all, rnd) {
		for _, err := range terms {
			if e := store.CheckTerm(err); e != nil {
				t.Fatalf("query %d: %v", i, e)
			}
		}
		q := store.Query{Terms: terms, Sort: orders[rnd.IntN(len(orders))], Descending: rnd.IntN(2) == 0, MaxIndex: 1_000_000, MaxRecords: 100_000}
		if i%5 == 0 {
			requester := fixRequesters[rnd.IntN(len(fixRequesters))]
			q.Terms = append(slices.Clone(q.Terms), store.Term{Field: "requestername", Op: "eq", Value: requester})
			q.Visible = func(r *store.Request) bool { return r.Requester.Name == requester }
		}
		want := bruteForce(all, q)
		limit := []int{7, 50, 1000}[rnd.IntN(3)]
		got, totals, err := search(t, f.s, q, limit)
		if err != nil {
			t.Fatalf("query %d %+v (sort %q desc %v): %v", i, q.Terms, q.Sort, q.Descending, err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("query %d %+v (sort %q desc %v, pages of %d):\n got %d %v\nwant %d %v", i, q.Terms, q.Sort, q.Descending, limit, len(got), head(got), len(want), head(want))
		}
		for _, total := range totals {
			if total >= 0 && total != int64(len(want)) {
				t.Fatalf("query %d %+v: total %d, want %d", i, q.Terms, total, len(want))
			}
		}
		// Tight bounds: the same answer, or a refusal.
		q.MaxIndex, q.MaxRecords = 300, 40
		got, _, err = search(t, f.s, q, limit)
		if err != nil {
			if !errors.Is(err, store.ErrTooBroad) {
				t.Fatalf("query %d with tight bounds: %v", i, err)
			}
			continue
		}
		if !slices.Equal(got, want) {
			t.Fatalf("query %d %+v with tight bounds (sort %q desc %v, pages of %d):\n got %d %v\nwant %d %v", i, q.Terms, q.Sort, q.Descending, limit, len(got), got, len(want), want)
		}
	}
}

func head(ids []int64) []int64 { return ids[:min(len(ids), 12)] }

// What each operator means, spelled out (the brute force above applies
// Term.Matches, so its meaning is pinned here, independently).
func TestTermMatchesMeansWhatKeyfactorsOperatorsSay(t *testing.T) {
	notAfter := time.Date(2027, 3, 4, 10, 0, 0, 0, time.UTC)
	c := &store.Certificate{
		ID: 42, SerialNumber: "0A1B", Thumbprint: "AB12CD", SubjectDN: "CN=www.Example.com,O=Org", IssuedCN: "www.Example.com",
		IssuerDN: "CN=CA, O=certflow", Template: "WebServer", Requester: "alice", Authority: `host\CA1`, KeySizeInBits: 256,
		NotBefore: notAfter.Add(-24 * time.Hour), NotAfter: notAfter,
		SANs: []store.SAN{{Type: store.SANDNS, Value: "www.example.com"}, {Type: store.SANDNS, Value: "api.example.net"}},
	}
	r := &store.Request{ID: 42}
	r.Input.Metadata = map[string]string{"Owner": "Team-A"}
	revoked := *c
	revoked.Revocation = &store.Revocation{Reason: 4}
	for _, tc := range []struct {
		term store.Term
		cert *store.Certificate
		want bool
	}{
		{store.Term{Field: "issuedcn", Op: "eq", Value: "WWW.EXAMPLE.COM"}, c, true},
		{store.Term{Field: "issuedcn", Op: "eq", Value: "www.example"}, c, false},
		{store.Term{Field: "issuedcn", Op: "ne", Value: "www.example.com"}, c, false},
		{store.Term{Field: "issuedcn", Op: "ne", Value: "other"}, c, true},
		{store.Term{Field: "issuedcn", Op: "startswith", Value: "WWW."}, c, true},
		{store.Term{Field: "issuedcn", Op: "endswith", Value: ".com"}, c, true},
		{store.Term{Field: "issuedcn", Op: "contains", Value: "example"}, c, true},
		{store.Term{Field: "issuedcn", Op: "notcontains", Value: "example"}, c, false},
		{store.Term{Field: "issuedcn", Op: "notcontains", Value: "zzz"}, c, true},
		{store.Term{Field: "issueddn", Op: "eq", Value: "cn = www.example.com, o = org"}, c, true},
		{store.Term{Field: "issuerdn", Op: "eq", Value: "CN=CA,O=certflow"}, c, true},
		{store.Term{Field: "serialnumber", Op: "eq", Value: "0a:1b"}, c, true},
		{store.Term{Field: "serialnumber", Op: "eq", Value: "A1B"}, c, true},
		{store.Term{Field: "serialnumber", Op: "eq", Value: "1B"}, c, false},
		{store.Term{Field: "thumbprint", Op: "eq", Value: "ab:12:cd"}, c, true},
		{store.Term{Field: "san", Op: "eq", Value: "API.example.net"}, c, true},
		{store.Term{Field: "san", Op: "ne", Value: "api.example.net"}, c, false},
		{store.Term{Field: "san", Op: "ne", Value: "other.example.net"}, c, true},
		{store.Term{Field: "san", Op: "startswith", Value: "api."}, c, true},
		{store.Term{Field: "requestername", Op: "eq", Value: "alice"}, c, true},
		{store.Term{Field: "requestername", Op: "eq", Value: "Alice"}, c, false},
		{store.Term{Field: "templatename", Op: "eq", Value: "webserver"}, c, true},
		{store.Term{Field: "certificateauthorityname", Op: "eq", Value: `HOST\ca1`}, c, true},
		{store.Term{Field: "certstate", Op: "eq", Value: "1"}, c, true},
		{store.Term{Field: "certstate", Op: "eq", Value: "1"}, &revoked, false},
		{store.Term{Field: "certstate", Op: "ne", Value: "1"}, &revoked, true},
		{store.Term{Field: "certstatestring", Op: "eq", Value: "REVOKED"}, &revoked, true},
		{store.Term{Field: "id", Op: "gt", Value: "41"}, c, true},
		{store.Term{Field: "id", Op: "gt", Value: "42"}, c, false},
		{store.Term{Field: "id", Op: "le", Value: "42"}, c, true},
		{store.Term{Field: "id", Op: "startswith", Value: "4"}, c, true},
		{store.Term{Field: "keysizeinbits", Op: "ge", Value: "256"}, c, true},
		{store.Term{Field: "keysizeinbits", Op: "lt", Value: "256"}, c, false},
		{store.Term{Field: "notafter", Op: "eq", Value: "2027-03-04"}, c, true},
		{store.Term{Field: "notafter", Op: "eq", Value: "2027-03-05"}, c, false},
		{store.Term{Field: "notafter", Op: "ne", Value: "2027-03-04"}, c, false},
		{store.Term{Field: "notafter", Op: "eq", Value: "2027-03-04T10:00:00Z"}, c, true},
		{store.Term{Field: "notafter", Op: "lt", Value: "2027-03-04T10:00:00Z"}, c, false},
		{store.Term{Field: "notafter", Op: "le", Value: "2027-03-04T10:00:00Z"}, c, true},
		{store.Term{Field: "notafter", Op: "gt", Value: "2027-03-04"}, c, false}, // after the whole day
		{store.Term{Field: "notafter", Op: "gt", Value: "2027-03-03"}, c, true},
		{store.Term{Field: "notafter", Op: "le", Value: "2027-03-04"}, c, true}, // up to the day's end
		{store.Term{Field: "notafter", Op: "lt", Value: "2027-03-04"}, c, false},
		{store.Term{Field: "notafter", Op: "lt", Value: "2027-03-04T10:00:00.5Z"}, c, true},
		{store.Term{Field: "notafter", Op: "ge", Value: "2027-03-04T10:00:00.5Z"}, c, false},
		{store.Term{Field: "notbefore", Op: "lt", Value: "2027-03-04"}, c, true},
		{store.Term{Field: "metadata.owner", Op: "eq", Value: "team-a"}, c, true},
		{store.Term{Field: "metadata.Env", Op: "eq", Value: ""}, c, true},
		{store.Term{Field: "metadata.owner", Op: "ne", Value: "team-a"}, c, false},
	} {
		if err := store.CheckTerm(tc.term); err != nil {
			t.Fatalf("%+v: %v", tc.term, err)
		}
		if got := tc.term.Matches(r, tc.cert); got != tc.want {
			t.Errorf("%+v on %s (revoked %v) = %v, want %v", tc.term, tc.cert.IssuedCN, tc.cert.Revocation != nil, got, tc.want)
		}
	}
	for _, bad := range []store.Term{
		{Field: "nosuch", Op: "eq", Value: "x"},
		{Field: "notafter", Op: "contains", Value: "2027"},
		{Field: "notafter", Op: "eq", Value: "tomorrow"},
		{Field: "id", Op: "gt", Value: "four"},
		{Field: "issuedcn", Op: "gt", Value: "a"},
		{Field: "metadata.", Op: "eq", Value: "a"},
	} {
		if err := store.CheckTerm(bad); err == nil {
			t.Errorf("CheckTerm(%+v) accepted it", bad)
		}
	}
}

// CheckInventory finds every index entry a certificate lacks and every
// entry naming no certificate (or one whose values are others), repairs
// them, and finds nothing after; BuildInventory indexes a store written
// before the indexes.
func TestCheckInventoryFindsAndRepairsWhatTheIndexesGotWrong(t *testing.T) {
	t.Parallel()
	f := newInventoryFixture(t, 60)
	s := f.s
	ctx := context.Background()
	rdb := s.Redis()
	rep, err := s.CheckInventory(ctx, false)
	if err != nil || rep.Certificates != len(f.ids) || len(rep.Missing)+len(rep.Stale) > 0 {
		t.Fatalf("fresh inventory: %+v, %v; want %d certificates, nothing wrong", rep, err, len(f.ids))
	}
	c, err := s.Certificate(ctx, f.ids[3])
	if err != nil {
		t.Fatal(err)
	}
	prefix := f.prefix
	id := strconv.FormatInt(c.ID, 10)
	lexID := string(rune('a'+len(id)-1)) + id
	// Lost entries: its CN, its thumbprint, its expiry.
	cnKey := prefix + ":inv:name:cn"
	if n, err := rdb.ZRem(ctx, cnKey, strings.ToLower(c.IssuedCN)+"\x00"+lexID).Result(); n != 1 || err != nil {
		t.Fatalf("ZREM of its CN entry: %d, %v", n, err)
	}
	rdb.Del(ctx, prefix+":thumbprint:"+c.Thumbprint)
	rdb.ZRem(ctx, prefix+":certificates:expiry", id)
	// Stale entries: an id that is no certificate, a name pointing at the
	// wrong one, an expiry with the wrong date.
	rdb.ZAdd(ctx, prefix+":inv:revoked", redis.Z{Score: 999999, Member: "999999"})
	rdb.ZAdd(ctx, cnKey, redis.Z{Member: "not.its.name\x00" + lexID})
	rdb.ZAdd(ctx, prefix+":certificates:expiry", redis.Z{Score: 1, Member: strconv.FormatInt(f.ids[5], 10)})
	rep, err = s.CheckInventory(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	// The wrong expiry is both: its right entry is missing, the wrong
	// one stale.
	if len(rep.Missing) != 4 || len(rep.Stale) != 3 {
		t.Fatalf("found missing %q, stale %q; want 4 and 3", rep.Missing, rep.Stale)
	}
	// A search that relied on the lost entry misses it until the repair.
	q := store.Query{Terms: []store.Term{{Field: "issuedcn", Op: "eq", Value: c.IssuedCN}}, Limit: 1000, MaxIndex: 1_000_000, MaxRecords: 100_000}
	if rep, err = s.CheckInventory(ctx, true); err != nil || !rep.Repaired {
		t.Fatalf("repair: %+v, %v", rep, err)
	}
	if rep, err = s.CheckInventory(ctx, false); err != nil || len(rep.Missing)+len(rep.Stale) > 0 {
		t.Fatalf("after the repair: %+v, %v; want nothing wrong", rep, err)
	}
	got, _, err := search(t, s, q, 1000)
	if err != nil || !slices.Contains(got, c.ID) {
		t.Fatalf("search after the repair: %v, %v; want %d in it", got, err, c.ID)
	}

	// A store from before the indexes: only the certificates set and the
	// expiry and thumbprint keys. BuildInventory writes the rest, and
	// searches are answered again.
	for _, k := range rdb.Keys(ctx, prefix+":inv:*").Val() {
		rdb.Del(ctx, k)
	}
	s2 := store.New(rdb, prefix)
	if ready, err := s2.InventoryReady(ctx); err != nil || ready {
		t.Fatalf("InventoryReady = %v, %v on a store without indexes", ready, err)
	}
	if n, err := s2.BuildInventory(ctx); err != nil || n != len(f.ids) {
		t.Fatalf("BuildInventory = %d, %v; want %d", n, err, len(f.ids))
	}
	if ready, err := s2.InventoryReady(ctx); err != nil || !ready {
		t.Fatalf("InventoryReady = %v, %v after the build", ready, err)
	}
	if rep, err = s2.CheckInventory(ctx, false); err != nil || len(rep.Missing)+len(rep.Stale) > 0 {
		t.Fatalf("after the build: %+v, %v; want nothing wrong", rep, err)
	}
	all := f.all(t)
	want := bruteForce(all, q)
	if got, _, err := search(t, s2, q, 7); err != nil || !slices.Equal(got, want) {
		t.Fatalf("search after the build: %v, %v; want %v", got, err, want)
	}
}

// A certificate that does not decode (a corrupt record, a chain key lost)
// is reported unreadable; the check neither calls its entries stale nor
// removes them on repair.
func TestCheckInventoryLeavesAnUnreadableCertificatesEntries(t *testing.T) {
	t.Parallel()
	f := newInventoryFixture(t, 12)
	ctx := context.Background()
	rdb := f.s.Redis()
	id := f.ids[2]
	key := f.prefix + ":request:{" + strconv.FormatInt(id, 10) + "}"
	if err := rdb.HSet(ctx, key, "x", "\x01\x07not a certificate").Err(); err != nil {
		t.Fatal(err)
	}
	before, _ := rdb.ZCard(ctx, f.prefix+":inv:name:cn").Result()
	rep, err := f.s.CheckInventory(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Unreadable, []int64{id}) || len(rep.Stale)+len(rep.Missing) > 0 {
		t.Fatalf("report %+v; want request %d unreadable, nothing else", rep, id)
	}
	if after, _ := rdb.ZCard(ctx, f.prefix+":inv:name:cn").Result(); after != before {
		t.Fatalf("the repair removed entries: %d CN entries, were %d", after, before)
	}
}

// BuildInventory works on a Redis that has never run its scripts (a
// restart, a fresh replica): a pipeline cannot fall back from EVALSHA to
// EVAL, so the build loads its script first.
func TestBuildInventoryOnARedisThatNeverSawItsScript(t *testing.T) {
	t.Parallel()
	srv := testutil.StartRedisServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(srv.Port)})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	s := store.New(rdb, "build")
	var ids []int64
	for i := range 3 {
		r := newRequest(t, s, "alice", "")
		if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
			t.Fatal(err)
		}
		_, claim, err := s.ClaimIssue(ctx, r.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Instance.Unsaved = []any{claim.Signed(&store.Certificate{SerialNumber: fmt.Sprintf("0%d", i+1), Thumbprint: fmt.Sprintf("%040X", r.ID),
			IssuedCN: fmt.Sprintf("build%d.example.com", i), NotAfter: time.Now().Add(time.Hour).UTC().Truncate(time.Second)}, r.ID)}
		r.Disposition = store.Issued
		if err := s.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	// A store from before the indexes, on a Redis without the scripts.
	for _, k := range rdb.Keys(ctx, "build:inv:*").Val() {
		rdb.Del(ctx, k)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	fresh := store.New(rdb, "build")
	if n, err := fresh.BuildInventory(ctx); err != nil || n != len(ids) {
		t.Fatalf("BuildInventory = %d, %v; want %d", n, err, len(ids))
	}
	if rep, err := fresh.CheckInventory(ctx, false); err != nil || len(rep.Missing)+len(rep.Stale) > 0 || rep.Certificates != len(ids) {
		t.Fatalf("after the build: %+v, %v", rep, err)
	}
}

// The active certificates (`CertState -eq 1`, `CertStateString -eq
// "Active"`, `CertState -ne 2`) are paged by rank arithmetic over the
// revoked set: every page in both directions is what the brute force
// says, with its count.
func TestActiveCertificatesPageByRank(t *testing.T) {
	t.Parallel()
	f := newInventoryFixture(t, 300)
	all := f.all(t)
	for _, term := range []store.Term{{Field: "certstate", Op: "eq", Value: "1"}, {Field: "certstatestring", Op: "eq", Value: "active"}, {Field: "certstate", Op: "ne", Value: "2"}} {
		for _, desc := range []bool{false, true} {
			for _, limit := range []int{1, 7, 64, 500} {
				q := store.Query{Terms: []store.Term{term}, Descending: desc, MaxIndex: 1_000_000, MaxRecords: 100_000}
				want := bruteForce(all, q)
				got, totals, err := search(t, f.s, q, limit)
				if err != nil || !slices.Equal(got, want) {
					t.Fatalf("%+v desc %v pages of %d: %v, %v\nwant %v", term, desc, limit, head(got), err, head(want))
				}
				for _, total := range totals {
					if total != int64(len(want)) {
						t.Fatalf("%+v: total %d, want %d", term, total, len(want))
					}
				}
			}
		}
	}
}

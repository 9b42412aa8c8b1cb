package store_test

// Attacks on the certificate search (issue 17): each test states the rule
// it pins. Those that fail show a defect of the search as it stands; see
// the report on branch attack.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/store"
)

// attackInventory issues certificates through the store's own write path
// (Create, ClaimIssue, Save with the certificate), as the issue step does.
type attackInventory struct {
	t      *testing.T
	s      *store.Store
	rdb    *redis.Client
	prefix string
	ids    []int64
}

func newAttackInventory(t *testing.T) *attackInventory {
	t.Helper()
	s, rdb, prefix := setup(t)
	return &attackInventory{t: t, s: s, rdb: rdb, prefix: prefix}
}

// issue stores a certificate requested by requester with metadata md;
// edit changes the defaults (CN cert<id>.example.com, valid 30 days from
// an hour ago, to the second) before it is stored.
func (a *attackInventory) issue(requester string, md map[string]string, edit func(*store.Certificate)) int64 {
	a.t.Helper()
	ctx := context.Background()
	r := newRequest(a.t, a.s, requester, "")
	r.Input.Metadata = md
	if _, _, err := a.s.Create(ctx, r, time.Hour); err != nil {
		a.t.Fatal(err)
	}
	_, claim, err := a.s.ClaimIssue(ctx, r.ID, nil)
	if err != nil || claim == nil {
		a.t.Fatalf("claim: %v", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	cn := fmt.Sprintf("cert%d.example.com", r.ID)
	c := &store.Certificate{
		SerialNumber: fmt.Sprintf("%X", 0x7000+r.ID), Thumbprint: fmt.Sprintf("%040X", 0xABC000+r.ID),
		IssuerDN: "CN=Attack CA, O=certflow", SubjectDN: "CN=" + cn, IssuedCN: cn,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		Authority: `host\CA1`, Template: "WebServer", Requester: requester, Issued: now,
		KeyType: "ECC", KeySizeInBits: 256, SANs: []store.SAN{{Type: store.SANDNS, Value: cn}},
	}
	if edit != nil {
		edit(c)
	}
	r.Instance.Unsaved = []any{claim.Signed(c, r.ID)}
	r.Disposition = store.Issued
	if err := a.s.Save(ctx, r); err != nil {
		a.t.Fatal(err)
	}
	a.ids = append(a.ids, r.ID)
	return r.ID
}

func (a *attackInventory) revoke(id int64) {
	a.t.Helper()
	if _, _, err := a.s.RevokeCertificate(context.Background(), id, store.Revocation{Reason: 4, RequestID: id, Date: time.Now()}); err != nil {
		a.t.Fatal(err)
	}
}

// all loads every certificate issued, for the brute force.
func (a *attackInventory) all() []store.Match {
	a.t.Helper()
	rs, err := a.s.GetMany(context.Background(), a.ids)
	if err != nil {
		a.t.Fatal(err)
	}
	var out []store.Match
	for _, r := range rs {
		c, err := r.Certificate()
		if err != nil || c == nil {
			a.t.Fatalf("request %d: certificate %v, %v", r.ID, c, err)
		}
		out = append(out, store.Match{Request: r, Certificate: c})
	}
	return out
}

// agree pages through q (pages of limit, stopping at the first short
// page, as a Keyfactor client does) and checks the ids against want, and
// every total the pages report against len(want).
func (a *attackInventory) agree(q store.Query, limit int, want []int64) {
	a.t.Helper()
	if q.MaxIndex == 0 {
		q.MaxIndex, q.MaxRecords = 1_000_000, 100_000
	}
	got, totals, err := search(a.t, a.s, q, limit)
	if err != nil {
		a.t.Errorf("%+v (sort %q): %v; want %v", q.Terms, q.Sort, err, want)
		return
	}
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		a.t.Errorf("%+v (sort %q, pages of %d): got %v, want %v", q.Terms, q.Sort, limit, got, want)
	}
	for _, total := range totals {
		if total >= 0 && total != int64(len(want)) {
			a.t.Errorf("%+v (sort %q): a page reported a total of %d (X-Total-Count), want %d", q.Terms, q.Sort, total, len(want))
			break
		}
	}
}

func terms(ts ...string) []store.Term {
	var out []store.Term
	for i := 0; i+3 <= len(ts); i += 3 {
		out = append(out, store.Term{Field: ts[i], Op: ts[i+1], Value: ts[i+2]})
	}
	return out
}

// CertState and CertStateString compare as Term.Matches says: CertState
// is a number (02 is 2; 5 is no state at all), CertStateString a string.
// The index answers "is it revoked" for any value: `CertState -eq 02`
// finds the active ones and the records then refuse them all (none
// found, X-Total-Count the number of active certificates); `CertState
// -ne 02` and `CertStateString -ne "bogus"` read the revoked set and miss
// every active certificate.
func TestAttackCertStateOtherValuesAnswerLikeTheDefinition(t *testing.T) {
	t.Parallel()
	a := newAttackInventory(t)
	active1 := a.issue("alice", nil, nil)
	revoked := a.issue("alice", nil, nil)
	active2 := a.issue("alice", nil, nil)
	a.revoke(revoked)
	all := a.all()
	for _, tc := range []struct {
		q    []store.Term
		want []int64
	}{
		{terms("certstate", "eq", "02"), []int64{revoked}},
		{terms("certstate", "eq", "+2"), []int64{revoked}},
		{terms("certstate", "ne", "02"), []int64{active1, active2}},
		{terms("certstate", "eq", "5"), nil},
		{terms("certstate", "ne", "5"), []int64{active1, revoked, active2}},
		{terms("certstatestring", "eq", "bogus"), nil},
		{terms("certstatestring", "ne", "bogus"), []int64{active1, revoked, active2}},
	} {
		for _, tm := range tc.q {
			if err := store.CheckTerm(tm); err != nil {
				t.Fatalf("%+v: %v", tm, err)
			}
		}
		q := store.Query{Terms: tc.q}
		if bf := bruteForce(all, q); !slices.Equal(bf, tc.want) && !(len(bf) == 0 && len(tc.want) == 0) {
			t.Fatalf("%+v: Term.Matches gives %v, this test expects %v", tc.q, bf, tc.want)
		}
		a.agree(q, 50, tc.want)
	}
}

// Id (CertRequestId) -eq names one id: the count is of certificates, so
// an id with no certificate (none, or a request not issued) counts 0.
func TestAttackIdEqualityCountsOnlyCertificates(t *testing.T) {
	t.Parallel()
	a := newAttackInventory(t)
	a.issue("alice", nil, nil)
	ctx := context.Background()
	pending := newRequest(t, a.s, "alice", "")
	if _, _, err := a.s.Create(ctx, pending, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, sort := range []string{"", "notafter"} {
		for _, id := range []int64{pending.ID, 999_999} {
			a.agree(store.Query{Terms: terms("id", "eq", strconv.FormatInt(id, 10)), Sort: sort}, 50, nil)
			a.agree(store.Query{Terms: terms("certrequestid", "eq", strconv.FormatInt(id, 10)), Sort: sort}, 50, nil)
		}
	}
}

// A NUL byte is the index's separator between a name and its id
// (value "\x00" lexID): a query value containing one, or a certificate
// name containing one, must not make a name match another's range.
// `IssuedCN -startswith "x.example.com<NUL>"` (any caller can send %00)
// counts every certificate named x.example.com as well as the one it
// finds; a certificate named "x.example.com<NUL>evil" is counted by
// `IssuedCN -eq "x.example.com"`.
func TestAttackNULInNamesOrValuesIsNoSeparator(t *testing.T) {
	t.Parallel()
	a := newAttackInventory(t)
	plain := a.issue("alice", nil, func(c *store.Certificate) { c.IssuedCN, c.SubjectDN = "x.example.com", "CN=x.example.com" })
	evil := a.issue("alice", nil, func(c *store.Certificate) {
		c.IssuedCN, c.SubjectDN = "x.example.com\x00evil", "CN=x.example.com\x00evil"
		c.SANs = []store.SAN{{Type: store.SANDNS, Value: "x.example.com\x00evil"}}
	})
	third := a.issue("alice", nil, nil)
	for _, sort := range []string{"", "issuedcn"} {
		a.agree(store.Query{Terms: terms("issuedcn", "startswith", fmt.Sprintf("cert%d.example.com\x00", third)), Sort: sort}, 50, nil)
		a.agree(store.Query{Terms: terms("issuedcn", "eq", "x.example.com"), Sort: sort}, 50, []int64{plain})
		a.agree(store.Query{Terms: terms("issuedcn", "startswith", "x.example.com\x00"), Sort: sort}, 1, []int64{evil})
		a.agree(store.Query{Terms: terms("issueddn", "eq", "cn=x.example.com"), Sort: sort}, 50, []int64{plain})
		a.agree(store.Query{Terms: terms("san", "startswith", "cert"+"\x00"), Sort: sort}, 50, nil)
	}
}

// A serial number's leading zeros are dropped from the serial (0A1B is
// A1B), but a -contains or -endswith needle is not a serial number:
// dropping its zeros widens the search. `SerialNumber -contains "01"`
// must not find 1A2B, `-endswith "00"` and `-contains "0"` must not find
// every certificate.
func TestAttackSerialSubstringsKeepTheirZeros(t *testing.T) {
	t.Parallel()
	a := newAttackInventory(t)
	a.issue("alice", nil, func(c *store.Certificate) { c.SerialNumber = "1A2B" })
	withZero := a.issue("alice", nil, func(c *store.Certificate) { c.SerialNumber = "1A01" })
	for _, tc := range []struct {
		q    []store.Term
		want []int64
	}{
		{terms("serialnumber", "contains", "01"), []int64{withZero}},
		{terms("serialnumber", "endswith", "01"), []int64{withZero}},
		{terms("serialnumber", "contains", "0"), []int64{withZero}},
		{terms("serialnumber", "endswith", "00"), nil},
	} {
		a.agree(store.Query{Terms: tc.q}, 50, tc.want)
	}
}

// Dates: a value in RFC 3339 with a fractional second compares as that
// instant. Certificates carry whole seconds: one expiring at 10:00:00 is
// before 10:00:00.5, not at or after it, and not equal to it.
func TestAttackDateTermsWithFractionalSeconds(t *testing.T) {
	at := time.Date(2027, 3, 4, 10, 0, 0, 0, time.UTC)
	c := &store.Certificate{ID: 1, NotBefore: at.Add(-time.Hour), NotAfter: at}
	r := &store.Request{ID: 1}
	for _, tc := range []struct {
		op, value string
		want      bool
	}{
		{"lt", "2027-03-04T10:00:00.5Z", true},
		{"le", "2027-03-04T10:00:00.5Z", true},
		{"ge", "2027-03-04T10:00:00.5Z", false},
		{"gt", "2027-03-04T10:00:00.5Z", false},
		{"eq", "2027-03-04T10:00:00.5Z", false},
		{"ne", "2027-03-04T10:00:00.5Z", true},
		{"gt", "2027-03-04T09:59:59.5Z", true},
		{"le", "2027-03-04T09:59:59.5Z", false},
	} {
		term := store.Term{Field: "notafter", Op: tc.op, Value: tc.value}
		if err := store.CheckTerm(term); err != nil {
			t.Fatalf("%+v: %v", term, err)
		}
		if got := term.Matches(r, c); got != tc.want {
			t.Errorf("NotAfter 10:00:00 -%s %s = %v, want %v", tc.op, tc.value, got, tc.want)
		}
	}
}

// A day (2006-01-02) is the whole day for -eq and -ne; the order
// operators must then agree with it: of -lt, -eq and -gt a day exactly
// one holds, -le is -lt or -eq, -ge is -gt or -eq. A certificate expiring
// on the day at 10:00 is -eq the day and also -gt it, and not -le it.
func TestAttackDayTermsAreOrderedLikeTheirEquality(t *testing.T) {
	r := &store.Request{ID: 1}
	day := "2027-03-04"
	for _, at := range []time.Time{
		time.Date(2027, 3, 3, 23, 59, 59, 0, time.UTC),
		time.Date(2027, 3, 4, 0, 0, 0, 0, time.UTC),
		time.Date(2027, 3, 4, 10, 0, 0, 0, time.UTC),
		time.Date(2027, 3, 4, 23, 59, 59, 0, time.UTC),
		time.Date(2027, 3, 5, 0, 0, 0, 0, time.UTC),
	} {
		c := &store.Certificate{ID: 1, NotBefore: at.Add(-time.Hour), NotAfter: at}
		is := func(op string) bool { return store.Term{Field: "notafter", Op: op, Value: day}.Matches(r, c) }
		lt, eq, gt, le, ge := is("lt"), is("eq"), is("gt"), is("le"), is("ge")
		if n := btoi(lt) + btoi(eq) + btoi(gt); n != 1 {
			t.Errorf("NotAfter %s: -lt %s %v, -eq %v, -gt %v: want exactly one", at.Format(time.RFC3339), day, lt, eq, gt)
		}
		if le != (lt || eq) || ge != (gt || eq) {
			t.Errorf("NotAfter %s: -le %s %v, -ge %v; want -le = -lt or -eq (%v), -ge = -gt or -eq (%v)", at.Format(time.RFC3339), day, le, ge, lt || eq, gt || eq)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Query.Sort says ties in a date order are ordered by the id's decimal
// digits, as Redis orders equal scores (1, 10, 11, 2, …): whatever plan
// answers, every page and both directions keep that one order.
func TestAttackDateOrderTiesAreByID(t *testing.T) {
	t.Parallel()
	a := newAttackInventory(t)
	at := time.Now().UTC().Truncate(time.Second).Add(90 * 24 * time.Hour)
	for range 12 {
		a.issue("alice", nil, func(c *store.Certificate) { c.NotAfter = at })
	}
	want := slices.Clone(a.ids)
	slices.SortFunc(want, func(x, y int64) int { return strings.Compare(strconv.FormatInt(x, 10), strconv.FormatInt(y, 10)) })
	for _, page := range []int{5, 50} {
		a.agree(store.Query{Sort: "notafter"}, page, want)
		a.agree(store.Query{Sort: "notafter", Terms: terms("templatename", "eq", "WebServer")}, page, want)
		desc := slices.Clone(want)
		slices.Reverse(desc)
		a.agree(store.Query{Sort: "notafter", Descending: true}, page, desc)
	}
}

// zrangeCounter counts the index entries (ZRANGE replies' members) and
// the ids probed (ZMSCORE arguments) a client reads.
type zrangeCounter struct{ entries, probes atomic.Int64 }

func (h *zrangeCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *zrangeCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *zrangeCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		switch strings.ToLower(cmd.Name()) {
		case "zrange", "zrangebylex", "zrangebyscore":
			if c, ok := cmd.(*redis.StringSliceCmd); ok {
				h.entries.Add(int64(len(c.Val())))
			}
		case "zmscore":
			h.probes.Add(int64(len(cmd.Args()) - 2))
		}
		return err
	}
}

// Query.MaxIndex "bounds the index entries one search reads": one
// search, whatever its terms. A search of several indexed terms reads
// each of them whole, each up to the bound (a term list of 1000 clauses
// reads 1000 times the bound); `CertState -eq 1` reads the whole
// inventory and the whole revoked set when few certificates are active.
// Either the search stays within the bound or it is refused.
func TestAttackIndexReadsStayWithinMaxIndex(t *testing.T) {
	t.Parallel()
	a := newAttackInventory(t)
	for i := range 8 {
		a.issue("alice", nil, func(c *store.Certificate) {
			c.IssuedCN = fmt.Sprintf("dup%d.example.com", i)
			c.SubjectDN = "CN=" + c.IssuedCN
			c.SANs = []store.SAN{{Type: store.SANDNS, Value: c.IssuedCN}}
		})
	}
	for _, id := range a.ids[1:] {
		a.revoke(id)
	}
	counter := &zrangeCounter{}
	a.rdb.AddHook(counter)
	const bound = 10
	for _, tc := range []struct {
		name  string
		terms []store.Term
	}{
		{"four name prefixes", terms("issuedcn", "startswith", "dup", "san", "startswith", "dup", "issueddn", "startswith", "cn=dup", "serialnumber", "startswith", "")},
		{"one prefix six times", terms("issuedcn", "startswith", "dup", "issuedcn", "startswith", "dup", "issuedcn", "startswith", "dup",
			"issuedcn", "startswith", "dup", "issuedcn", "startswith", "dup", "issuedcn", "startswith", "dup")},
		{"the active among many revoked", terms("certstate", "eq", "1")},
	} {
		counter.entries.Store(0)
		counter.probes.Store(0)
		_, err := a.s.QueryCertificates(context.Background(), store.Query{Terms: tc.terms, Limit: 50, MaxIndex: bound, MaxRecords: 1000})
		if errors.Is(err, store.ErrTooBroad) {
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n := counter.entries.Load(); n > bound {
			t.Errorf("%s: read %d index entries (and probed %d ids) with MaxIndex %d, and answered", tc.name, n, counter.probes.Load(), bound)
		}
	}
}

// A requester's search is narrowed to her own certificates "so that
// neither the answer nor its cost tells anything of others'"
// (enroll.SearchCertificates). Whether it is refused as too broad must
// then not depend on others' certificates either: alice (3 certificates,
// more than MaxRecords) asks for `IssuedCN -startswith "carol"` and is
// answered (none) while carol has 4 such certificates, refused once carol
// has 6 (more than MaxIndex): she learns the size of carol's inventory.
func TestAttackTooBroadTellsARequesterNothingOfOthers(t *testing.T) {
	t.Parallel()
	a := newAttackInventory(t)
	for range 3 {
		a.issue("alice", nil, nil)
	}
	carols := func(n int) {
		for range n {
			a.issue("carol", nil, func(c *store.Certificate) {
				c.IssuedCN = fmt.Sprintf("carol%d.example.com", len(a.ids))
				c.SubjectDN = "CN=" + c.IssuedCN
			})
		}
	}
	asAlice := func(sort string) (string, error) {
		q := store.Query{
			Terms: terms("issuedcn", "startswith", "carol"), Owner: "alice",
			Sort: sort, Limit: 50, MaxIndex: 5, MaxRecords: 2,
			Visible: func(r *store.Request) bool { return r.Requester.Name == "alice" },
		}
		res, err := a.s.QueryCertificates(context.Background(), q)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d matches, total %d", len(res.Matches), res.Total), nil
	}
	carols(4)
	before := map[string]string{}
	for _, sort := range []string{"", "issuedcn"} {
		got, err := asAlice(sort)
		before[sort] = fmt.Sprint(got, err)
	}
	carols(2)
	for _, sort := range []string{"", "issuedcn"} {
		got, err := asAlice(sort)
		if after := fmt.Sprint(got, err); after != before[sort] {
			t.Errorf("alice's search (sort %q) with carol holding 4 certificates: %s; with 6: %s — the same search, her own certificates unchanged", sort, before[sort], after)
		}
	}
}

// Save stores a certificate even when the record changed since it was
// read (saveScript answers 0, the record's version unchanged). A writer
// that read the record after that change, but before the certificate was
// stored, saves at the same version: its metadata change must change the
// metadata index (it has none: it read no certificate), or CheckInventory
// finds the index wrong and a search by the new value misses it.
func TestAttackMetadataSavedAfterACertificateWrittenUnderIt(t *testing.T) {
	t.Parallel()
	a := newAttackInventory(t)
	s, ctx := a.s, context.Background()
	r := newRequest(t, s, "alice", "")
	r.Input.Metadata = map[string]string{"Owner": "team-a"}
	if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	worker, err := s.Get(ctx, r.ID) // the worker's copy, about to issue
	if err != nil {
		t.Fatal(err)
	}
	_, claim, err := s.ClaimIssue(ctx, r.ID, nil)
	if err != nil || claim == nil {
		t.Fatalf("claim: %v", err)
	}
	// Another writer changes the record: the worker's copy is stale.
	if _, err := s.Update(ctx, r.ID, func(r *store.Request) error {
		r.Input.Metadata = map[string]string{"Owner": "team-b"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	third, err := s.Get(ctx, r.ID) // read before the certificate is stored
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	c := &store.Certificate{
		SerialNumber: "7A7A", Thumbprint: fmt.Sprintf("%040X", r.ID), IssuerDN: "CN=Attack CA", SubjectDN: "CN=race.example.com",
		IssuedCN: "race.example.com", NotBefore: now, NotAfter: now.Add(24 * time.Hour), Authority: `host\CA1`,
		Template: "WebServer", Requester: "alice", Issued: now,
	}
	worker.Instance.Unsaved = []any{claim.Signed(c, r.ID)}
	worker.Disposition = store.Issued
	if err := s.Save(ctx, worker); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("the stale worker's save = %v; want ErrConflict (its certificate stored all the same)", err)
	}
	if _, err := s.Certificate(ctx, r.ID); err != nil {
		t.Fatalf("the certificate was not stored: %v", err)
	}
	third.Input.Metadata = map[string]string{"Owner": "team-c"}
	if err := s.Save(ctx, third); err != nil {
		t.Fatalf("the third writer's save = %v", err)
	}
	if rep, err := s.CheckInventory(ctx, false); err != nil || len(rep.Missing)+len(rep.Stale) > 0 {
		t.Errorf("CheckInventory after the saves: %v missing %q, stale %q; want nothing wrong", err, rep.Missing, rep.Stale)
	}
	a.ids = []int64{r.ID}
	a.agree(store.Query{Terms: terms("metadata.owner", "eq", "team-c")}, 50, []int64{r.ID})
	a.agree(store.Query{Terms: terms("metadata.owner", "eq", "team-b")}, 50, nil)
}

// Metadata field names compare without regard to case (Term.Matches
// uses strings.EqualFold); the index lower-cases them (strings.ToLower).
// The two must agree: a certificate whose metadata name is "Teſt" (long
// s, which EqualFold folds to s) matches `metadata.test -eq v` by the
// definition, and the index must find it. A certificate carrying two
// names that differ only in case (accepted at enrollment when no
// metadata fields are configured) must match the same way every time:
// Matches takes whichever of the two a map iteration meets first.
func TestAttackMetadataNamesFoldTheSameInIndexAndMatch(t *testing.T) {
	t.Parallel()
	a := newAttackInventory(t)
	longS := a.issue("alice", map[string]string{"Teſt": "v"}, nil)
	both := a.issue("alice", map[string]string{"Team": "red", "team": "blue"}, nil)
	all := a.all()
	// Names compare lower-cased, in the index and in Term.Matches alike:
	// "Teſt" lower-cases to "teſt", not "test".
	q := store.Query{Terms: terms("metadata.test", "eq", "v")}
	if bf := bruteForce(all, q); len(bf) != 0 {
		t.Fatalf("Term.Matches: %v, want none", bf)
	}
	a.agree(q, 50, nil)
	a.agree(store.Query{Terms: terms("metadata.teſt", "eq", "V")}, 50, []int64{longS})
	for _, v := range []string{"red", "blue"} {
		q := store.Query{Terms: terms("metadata.team", "eq", v)}
		for i := range 40 {
			if bf := bruteForce(all, q); !slices.Equal(bf, []int64{both}) {
				t.Errorf("try %d: metadata.team -eq %s by Term.Matches: %v, want [%d] (Team=red, team=blue)", i, v, bf, both)
				break
			}
		}
	}
}

// Id and CertRequestId ranges at the ends of int64: `Id -gt
// 9223372036854775807` matches nothing (Term.Matches), and its count is
// 0; the index's bound n+1 wraps to the lowest id (every certificate
// counted). Likewise `Id -lt -9223372036854775808`.
func TestAttackIdRangesAtTheEndsOfInt64(t *testing.T) {
	t.Parallel()
	a := newAttackInventory(t)
	a.issue("alice", nil, nil)
	a.issue("alice", nil, nil)
	for _, sort := range []string{"", "notafter"} {
		a.agree(store.Query{Terms: terms("id", "gt", "9223372036854775807"), Sort: sort}, 50, nil)
		a.agree(store.Query{Terms: terms("certrequestid", "lt", "-9223372036854775808"), Sort: sort}, 50, nil)
	}
}

// pipelineTrap runs do once, just before the first pipeline that runs a
// script (EVALSHA) naming key: a write racing the pipeline's script.
type pipelineTrap struct {
	key  string
	once sync.Once
	do   func()
}

func (h *pipelineTrap) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipelineTrap) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelineTrap) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if strings.EqualFold(c.Name(), "evalsha") && slices.Contains(c.Args(), any(h.key)) {
				h.once.Do(h.do)
				break
			}
		}
		return next(ctx, cmds)
	}
}

// Retention's delete checks the record's version, but a revocation
// changes the certificate (certCASScript) without changing the record's
// version: a certificate revoked between the sweep's read and its delete
// is deleted with the entries of the certificate as read (not revoked),
// and its entry in the revoked index is left naming no certificate.
func TestAttackSweepRacingARevocationLeavesNoEntry(t *testing.T) {
	t.Parallel()
	a := newAttackInventory(t)
	ctx := context.Background()
	id := a.issue("alice", nil, func(c *store.Certificate) {
		c.NotAfter = time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
		c.NotBefore = c.NotAfter.Add(-24 * time.Hour)
	})
	_, rdb2, _ := setup(t)
	other := store.New(rdb2, a.prefix) // another process's store on the same keys
	a.rdb.AddHook(&pipelineTrap{key: a.prefix + ":request:{" + strconv.FormatInt(id, 10) + "}", do: func() {
		if _, _, err := other.RevokeCertificate(ctx, id, store.Revocation{Reason: 4, RequestID: id, Date: time.Now()}); err != nil {
			t.Errorf("the racing revocation: %v", err)
		}
	}})
	n, err := a.s.Sweep(ctx, -time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := a.s.CheckInventory(ctx, false); err != nil || len(rep.Missing)+len(rep.Stale) > 0 {
		t.Errorf("after the sweep (%d deleted) raced by a revocation: %v missing %q, stale %q; want nothing wrong", n, err, rep.Missing, rep.Stale)
	}
}

// DN normalization drops the spaces around separators (Keyfactor's
// "CN=a, O=b" is Go's "CN=a,O=b"), but a space after an escaped comma is
// part of the value: the CN "a, b" (CN=a\, b) is not the CN "a,b"
// (CN=a\,b), and `IssuedDN -eq "CN=a\, b"` must not find the latter.
func TestAttackDNNormalizationKeepsEscapedSeparators(t *testing.T) {
	t.Parallel()
	a := newAttackInventory(t)
	spaced := a.issue("alice", nil, func(c *store.Certificate) { c.IssuedCN, c.SubjectDN = "a, b", `CN=a\, b,O=Org` })
	tight := a.issue("alice", nil, func(c *store.Certificate) { c.IssuedCN, c.SubjectDN = "a,b", `CN=a\,b,O=Org` })
	a.agree(store.Query{Terms: terms("issueddn", "eq", `CN=a\, b, O=Org`)}, 50, []int64{spaced})
	a.agree(store.Query{Terms: terms("issueddn", "eq", `CN=a\,b, O=Org`)}, 50, []int64{tight})
}

// Every kind of subject alternative name is a SAN value of the index, not
// only DNS names; and a subject with two CNs is searched by what its
// record shows: IssuedCN is the one the certificate answers with, the DN
// holds both. Index and brute force agree on each.
func TestAttackOtherSANTypesAndASecondCN(t *testing.T) {
	t.Parallel()
	a := newAttackInventory(t)
	id := a.issue("alice", nil, func(c *store.Certificate) {
		c.IssuedCN, c.SubjectDN = "second.example.com", "CN=first.example.com,CN=second.example.com"
		c.SANs = []store.SAN{{Type: store.SANIP, Value: "10.0.0.7"}, {Type: store.SANEmail, Value: "Ops@Example.com"},
			{Type: store.SANURI, Value: "spiffe://example.com/svc"}, {Type: store.SANDNS, Value: "svc.example.com"}}
	})
	other := a.issue("alice", nil, nil)
	for _, tc := range []struct {
		q    []store.Term
		want []int64
	}{
		{terms("san", "eq", "10.0.0.7"), []int64{id}},
		{terms("san", "startswith", "10.0."), []int64{id}},
		{terms("san", "eq", "ops@example.com"), []int64{id}},
		{terms("san", "startswith", "spiffe://example.com/"), []int64{id}},
		{terms("san", "contains", "example.com/sv"), []int64{id}},
		{terms("san", "ne", "10.0.0.7", "id", "le", strconv.FormatInt(other, 10)), []int64{other}},
		{terms("issuedcn", "eq", "second.example.com"), []int64{id}},
		{terms("issuedcn", "eq", "first.example.com"), nil},
		{terms("issueddn", "contains", "cn=first.example.com"), []int64{id}},
		{terms("issueddn", "startswith", "CN = first.example.com , CN="), []int64{id}},
	} {
		a.agree(store.Query{Terms: tc.q}, 50, tc.want)
	}
}

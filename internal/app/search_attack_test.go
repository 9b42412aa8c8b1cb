package app_test

// Attacks on GET /Certificates (issue 17), end to end. Each test states
// the rule it pins; the report on branch attack says which fail.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

// A queryString's terms are joined by AND; a quoted value is one value,
// whatever it holds: `Metadata.Team -eq "Research and Development"`
// finds the certificate whose Team is that, rather than being split at
// the " and " inside the quotes and refused.
func TestAttackAQuotedValueMayContainAnd(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	id, _ := issueAs(t, cf, alice, "rnd.example.com", map[string]any{"Metadata": map[string]any{"Team": "Research and Development"}})
	for _, qs := range []string{
		`Metadata.Team -eq "Research and Development"`,
		`IssuedCN -eq "rnd.example.com" AND Metadata.Team -eq "Research AND Development"`,
	} {
		resp := cf.Do(t, "GET", "/Certificates?"+queryString(qs), nil, "Authorization", alice)
		if resp.Status != http.StatusOK {
			t.Errorf("%s: %d %s; want 200 and [%d]", qs, resp.Status, resp.Body, id)
			continue
		}
		if got := certIDs(t, resp); !slices.Equal(got, []int64{id}) {
			t.Errorf("%s: %v, want [%d]", qs, got, id)
		}
	}
}

// With no metadata fields configured, an enrollment may carry names that
// differ only in case (Team=red, team=blue); metadata names match
// without regard to case. The same search must then give the same
// answer every time: `Metadata.Team -eq "red"` finds the certificate on
// every try, not on the tries where a map iteration meets "Team" first.
func TestAttackMetadataNamesDifferingInCaseAnswerTheSameEveryTime(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	csr, _ := testutil.CSR(t, "case.example.com", "case.example.com")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{"Team": "red", "team": "blue"}}), "Authorization", alice)
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Skipf("the enrollment was refused (%d %s): the names cannot differ only in case", resp.Status, resp.Body)
	}
	id := er.CertificateInformation.KeyfactorID
	for _, v := range []string{"red", "blue"} {
		found := 0
		const tries = 30
		for range tries {
			if got := certIDs(t, cf.Do(t, "GET", "/Certificates?"+queryString(`Metadata.Team -eq "`+v+`"`), nil, "Authorization", alice)); slices.Equal(got, []int64{id}) {
				found++
			}
		}
		if found != 0 && found != tries {
			t.Errorf("Metadata.Team -eq %q found certificate %d on %d of %d identical searches", v, id, found, tries)
		}
	}
}

// X-Total-Count is the number of matches. It is not the size of an index
// range the records then refuse: Id -eq of no certificate counts 0;
// `CertState -eq 02` is CertState 2 (revoked) and finds the revoked
// certificate; a value ending in %00 (the index's separator) counts
// nothing it does not find.
func TestAttackTotalCountIsTheMatches(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	admin := "Bearer " + testutil.AdminToken
	active, _ := issueAs(t, cf, alice, "count1.example.com", nil)
	revoked, _ := issueAs(t, cf, alice, "count2.example.com", nil)
	if resp, _ := revoke(t, cf, admin, map[string]any{"CertificateIds": []int64{revoked}, "Reason": 4, "Comment": "superseded"}); resp.Status != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.Status, resp.Body)
	}
	for _, tc := range []struct {
		query string
		want  []int64
	}{
		{"CertRequestId -eq 999999", nil},
		{"Id -eq 999999", nil},
		{"CertState -eq 02", []int64{revoked}},
		{"CertState -ne 02", []int64{active}},
		{"CertState -eq 5", nil},
		{`CertStateString -ne "bogus"`, []int64{active, revoked}},
	} {
		resp := cf.Do(t, "GET", "/Certificates?"+queryString(tc.query), nil, "Authorization", admin)
		got := certIDs(t, resp)
		if !slices.Equal(got, tc.want) && len(got)+len(tc.want) > 0 {
			t.Errorf("%q: %v, want %v", tc.query, got, tc.want)
		}
		if h := resp.Header.Get("X-Total-Count"); h != "" && h != strconv.Itoa(len(tc.want)) {
			t.Errorf("%q: X-Total-Count %s, want %d", tc.query, h, len(tc.want))
		}
	}
	// A value holding a control character (NUL, the name index's
	// separator, among them) is refused, naming the query.
	wantError(t, cf.Do(t, "GET", "/Certificates?"+queryString(`IssuedCN -startswith "count1.example.com`+"\x00"+`"`), nil, "Authorization", admin),
		400, keyfactor.CodeInvalidField, "pq.queryString: field issuedcn: the value holds a control character")
}

// A requester's search is narrowed to her own certificates, "so neither
// the answer nor its cost tells anything of others'" (SearchCertificates).
// With api.max_scan at 2 and alice holding 3 certificates, her search
// `IssuedCN -startswith "carol"` must be answered (or refused) the same
// way whether carol holds 0 or 1001 such certificates (more than
// api.max_index_read, 1000). It is answered [] before and refused
// (TooBroad) after: the refusal tells alice that some name prefix is
// carried by more than api.max_index_read certificates of others.
func TestAttackTooBroadRevealsOthersInventoryToARequester(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.API.MaxScan, c.API.MaxIndexRead = 2, 1000 })
	for i := range 3 {
		issueAs(t, cf, alice, fmt.Sprintf("alice%d.example.com", i), nil)
	}
	queries := []string{queryString(`IssuedCN -startswith "carol"`), queryString(`IssuedCN -startswith "carol"`) + "&pq.sortField=IssuedCN"}
	before := map[string]string{}
	for _, q := range queries {
		resp := cf.Do(t, "GET", "/Certificates?"+q, nil, "Authorization", alice)
		before[q] = fmt.Sprintf("%d %s", resp.Status, resp.Body)
	}
	// carol's certificates, written through the store as the issue step
	// writes them (1001 over HTTP would take minutes).
	s := store.New(cf.Redis.(*redis.Client), cf.Prefix)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	for i := range 1001 {
		id, err := s.NewID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r := &store.Request{ID: id, Disposition: store.Queued, Submitted: now, Updated: now, Trigger: "enrollment",
			Requester: workflow.Requester{Name: "carol"}, CSR: []byte{1}, Instance: workflow.Instance{ID: s.InstanceID(id)}}
		if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
			t.Fatal(err)
		}
		_, claim, err := s.ClaimIssue(ctx, id, nil)
		if err != nil || claim == nil {
			t.Fatalf("claim: %v", err)
		}
		cn := fmt.Sprintf("carol%d.example.com", i)
		c := &store.Certificate{SerialNumber: fmt.Sprintf("C0%X", id), Thumbprint: fmt.Sprintf("%040X", 0xCA401000+id),
			IssuerDN: "CN=Other CA", SubjectDN: "CN=" + cn, IssuedCN: cn, NotBefore: now, NotAfter: now.Add(24 * time.Hour),
			Authority: "other", Template: "WebServer", Requester: "carol", Issued: now}
		r.Instance.Unsaved = []any{claim.Signed(c, id)}
		r.Disposition = store.Issued
		if err := s.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range queries {
		resp := cf.Do(t, "GET", "/Certificates?"+q, nil, "Authorization", alice)
		if after := fmt.Sprintf("%d %s", resp.Status, resp.Body); after != before[q] {
			t.Errorf("alice's %s, her own certificates unchanged:\nwith carol holding none: %s\nwith carol holding 1001: %s", q, before[q], after)
		}
	}
}

// Pins (these pass): nothing a requester adds widens her search or its
// count past her own certificates. RequesterName in another case, with
// spaces, negated or as a substring; every sort order; a term that
// matches everything.
func TestAttackARequesterCannotWidenHerSearch(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	var mine []int64
	for i := range 2 {
		id, _ := issueAs(t, cf, alice, fmt.Sprintf("mine%d.example.com", i), nil)
		mine = append(mine, id)
	}
	issueAs(t, cf, carolBasic, "theirs.example.com", nil)
	for _, qs := range []string{
		`RequesterName -eq "carol"`, `RequesterName -eq "Alice"`, `RequesterName -eq " alice"`,
		`RequesterName -ne "alice"`, `RequesterName -contains "a"`, `RequesterName -ne "nobody"`,
		`IssuedCN -contains ""`, `SerialNumber -startswith "00"`, `CertState -ne 5`, `Id -gt 0`,
	} {
		for _, sort := range []string{"", "&pq.sortField=IssuedCN", "&pq.sortField=NotAfter&pq.sortAscending=1", "&pq.sortField=SerialNumber"} {
			resp := cf.Do(t, "GET", "/Certificates?"+queryString(qs)+sort, nil, "Authorization", alice)
			got := certIDs(t, resp)
			for _, id := range got {
				if !slices.Contains(mine, id) {
					t.Errorf("alice's %s%s: %v holds %d, not hers", qs, sort, got, id)
				}
			}
			if h := resp.Header.Get("X-Total-Count"); h != "" {
				if n, _ := strconv.Atoi(h); n > len(mine) {
					t.Errorf("alice's %s%s: X-Total-Count %s, more than her %d", qs, sort, h, len(mine))
				}
			}
		}
	}
}

// Pin (passes): every write path the API drives keeps the indexes true,
// as store.CheckInventory reads them: issuance with metadata, a
// revocation, the same revocation again, a harmless revocation made
// keyCompromise, and searches by state find what the records say.
func TestAttackWritePathsKeepTheInventoryChecked(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	admin := "Bearer " + testutil.AdminToken
	a, _ := issueAs(t, cf, alice, "wp1.example.com", map[string]any{"Metadata": map[string]any{"Team": "red"}})
	b, _ := issueAs(t, cf, alice, "wp2.example.com", map[string]any{"Metadata": map[string]any{"Team": "blue"}})
	c, _ := issueAs(t, cf, alice, "wp3.example.com", nil)
	for i, rv := range []struct {
		id     int64
		reason int
	}{{a, 4}, {b, 4}, {a, 4}, {b, 1}, {b, 1}} {
		// The first two are revocations; the others are repeats (409, or
		// a keyCompromise upgrade): none may disturb the indexes.
		resp, _ := revoke(t, cf, admin, map[string]any{"CertificateIds": []int64{rv.id}, "Reason": rv.reason, "Comment": "attack"})
		if resp.Status != http.StatusOK && (i < 2 || resp.Status != http.StatusConflict) {
			t.Fatalf("revoke %d for %d: %d %s", rv.id, rv.reason, resp.Status, resp.Body)
		}
	}
	s := store.New(cf.Redis.(*redis.Client), cf.Prefix)
	if rep, err := s.CheckInventory(context.Background(), false); err != nil || len(rep.Missing)+len(rep.Stale) > 0 || rep.Certificates != 3 {
		t.Fatalf("CheckInventory: %+v, %v; want 3 certificates, nothing wrong", rep, err)
	}
	for _, tc := range []struct {
		query string
		want  []int64
	}{
		{"CertState -eq 2", []int64{a, b}},
		{"CertState -eq 1", []int64{c}},
		{`Metadata.Team -eq "BLUE" AND CertState -eq 2`, []int64{b}},
	} {
		resp := cf.Do(t, "GET", "/Certificates?"+queryString(tc.query), nil, "Authorization", alice)
		if got := certIDs(t, resp); !slices.Equal(got, tc.want) || resp.Header.Get("X-Total-Count") != strconv.Itoa(len(tc.want)) {
			t.Errorf("%s: %v (X-Total-Count %s), want %v", tc.query, got, resp.Header.Get("X-Total-Count"), tc.want)
		}
	}
}

// A requester naming another user's certificate by every key a search
// takes (its id, request id, thumbprint, serial, an id range around it,
// its exact names) finds nothing and counts nothing: the same answer as
// for a certificate that does not exist.
func TestAttackARequesterNamingAnothersCertificateFindsNothing(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	admin := "Bearer " + testutil.AdminToken
	issueAs(t, cf, alice, "own.example.com", nil)
	carols, _ := issueAs(t, cf, carolBasic, "carols.example.com", nil)
	_, rec := getCert(t, cf, admin, carols, "")
	for _, q := range []string{
		fmt.Sprintf("Id -eq %d", carols),
		fmt.Sprintf("CertRequestId -eq %d", carols),
		fmt.Sprintf("Id -ge %d AND Id -le %d", carols, carols),
		`Thumbprint -eq "` + rec.Thumbprint + `"`,
		`SerialNumber -eq "` + rec.SerialNumber + `"`,
		`IssuedCN -eq "carols.example.com"`,
		`SAN -startswith "carols"`,
		`RequesterName -eq "carol"`,
	} {
		resp := cf.Do(t, "GET", "/Certificates?"+queryString(q), nil, "Authorization", alice)
		if got := certIDs(t, resp); len(got) != 0 || resp.Header.Get("X-Total-Count") != "0" {
			t.Errorf("alice: %s: %v, X-Total-Count %q; want none, 0", q, got, resp.Header.Get("X-Total-Count"))
		}
	}
}

// Oversized searches are refused naming the query, not answered at any
// cost: more than 20 terms (includeRevoked=false and includeExpired=false
// count), and an unknown or misplaced operator. A long value is only a
// long value: answered (nothing), not an error.
func TestAttackOversizedSearchesAreRefused(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	admin := "Bearer " + testutil.AdminToken
	issueAs(t, cf, alice, "big.example.com", nil)
	twenty := strings.TrimSuffix(strings.Repeat(`IssuedCN -ne "x" AND `, 20), " AND ")
	if resp := cf.Do(t, "GET", "/Certificates?"+queryString(twenty), nil, "Authorization", admin); resp.Status != http.StatusOK {
		t.Fatalf("20 terms: %d %s", resp.Status, resp.Body)
	}
	wantError(t, cf.Do(t, "GET", "/Certificates?"+queryString(twenty+` AND IssuedCN -ne "y"`), nil, "Authorization", admin), 400, keyfactor.CodeInvalidField, "pq.queryString: at most 20 terms")
	wantError(t, cf.Do(t, "GET", "/Certificates?includeRevoked=false&"+queryString(twenty), nil, "Authorization", admin), 400, keyfactor.CodeInvalidField, "pq.queryString: at most 20 terms")
	wantError(t, cf.Do(t, "GET", "/Certificates?"+queryString(`IssuedCN -like "x"`), nil, "Authorization", admin), 400, keyfactor.CodeInvalidField, "pq.queryString: field issuedcn takes")
	wantError(t, cf.Do(t, "GET", "/Certificates?"+queryString(`NotAfter -contains "2027"`), nil, "Authorization", admin), 400, keyfactor.CodeInvalidField, "pq.queryString: field notafter takes")
	long := strings.Repeat("a", 64<<10)
	resp := cf.Do(t, "GET", "/Certificates?"+queryString(`IssuedCN -contains "`+long+`"`), nil, "Authorization", admin)
	if got := certIDs(t, resp); len(got) != 0 || resp.Header.Get("X-Total-Count") != "0" {
		t.Fatalf("a 64 KiB value: %v, X-Total-Count %q", got, resp.Header.Get("X-Total-Count"))
	}
}

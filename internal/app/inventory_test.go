package app_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

// No listing or search stops at a bound and answers as if it had
// finished. With api.max_scan at 4 and 7 certificates: an unfiltered
// listing pages by rank and reaches them all, with X-Total-Count; a
// requester's listing and every indexed search are answered in full
// whatever the bound (the indexes read no record they do not return);
// a search on a field no index answers that reaches the bound before its
// page is full is refused (400, 0xA0010007, naming what to narrow),
// never answered with a short page.
func TestListingsNeverStopSilentlyAtTheScanBound(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.API.MaxScan = 4 })
	admin := "Bearer " + testutil.AdminToken
	var all []int64
	for i := range 6 {
		id, _ := issueAs(t, cf, alice, fmt.Sprintf("inv%d.example.com", i), nil)
		all = append(all, id)
	}
	carolID, _ := issueAs(t, cf, carolBasic, "inv-carol.example.com", nil)
	all = append(all, carolID)

	ids, q := certIDs, queryString

	t.Run("every page of the whole inventory, with its count", func(t *testing.T) {
		for _, auth := range []string{admin, bob} {
			var walked []int64
			for page := 1; ; page++ {
				resp := cf.Do(t, "GET", fmt.Sprintf("/Certificates?pq.returnLimit=3&pq.pageReturned=%d", page), nil, "Authorization", auth)
				got := ids(t, resp)
				if n, _ := strconv.Atoi(resp.Header.Get("X-Total-Count")); n != len(all) {
					t.Fatalf("page %d: X-Total-Count %q, want %d", page, resp.Header.Get("X-Total-Count"), len(all))
				}
				if len(got) == 0 {
					break
				}
				walked = append(walked, got...)
			}
			if !slices.Equal(walked, all) {
				t.Errorf("pages walked %v, want every certificate once, in order: %v", walked, all)
			}
		}
	})

	// What a requester must not get around: the others' certificates,
	// and the inventory's size (her count is of her own).
	t.Run("a requester pages through her own, counted", func(t *testing.T) {
		for _, tt := range []struct {
			auth string
			want []int64
		}{{alice, all[:6]}, {carolBasic, []int64{carolID}}} {
			resp := cf.Do(t, "GET", "/Certificates?pq.returnLimit=50", nil, "Authorization", tt.auth)
			if got := ids(t, resp); !slices.Equal(got, tt.want) {
				t.Errorf("listing %v, want her own %v", got, tt.want)
			}
			if h := resp.Header.Get("X-Total-Count"); h != strconv.Itoa(len(tt.want)) {
				t.Errorf("X-Total-Count %q, want %d (hers)", h, len(tt.want))
			}
		}
		// A requester's search is answered from her own certificates
		// alone: a name term is checked on her records (carol has one),
		// and alice, who holds more than api.max_scan, is refused however
		// few others' certificates carry the name: the refusal tells her
		// nothing of them.
		resp := cf.Do(t, "GET", "/Certificates?"+q(`IssuedCN -eq "inv0.example.com"`), nil, "Authorization", carolBasic)
		if got := ids(t, resp); len(got) != 0 || resp.Header.Get("X-Total-Count") != "0" {
			t.Errorf("carol searching alice's certificate: %v, X-Total-Count %q; want none, 0", got, resp.Header.Get("X-Total-Count"))
		}
		wantError(t, cf.Do(t, "GET", "/Certificates?"+q(`IssuedCN -eq "inv-carol.example.com"`), nil, "Authorization", alice), 400, keyfactor.CodeTooBroad, "pq.queryString")
		wantError(t, cf.Do(t, "GET", "/Certificates?"+q(`IssuedCN -eq "inv0.example.com"`), nil, "Authorization", alice), 400, keyfactor.CodeTooBroad, "pq.queryString")
		// Narrowed by an index she can use (Id ranges), she is answered.
		if got := ids(t, cf.Do(t, "GET", "/Certificates?"+q(fmt.Sprintf(`IssuedCN -eq "inv0.example.com" AND Id -le %d`, all[2])), nil, "Authorization", alice)); !slices.Equal(got, all[:1]) {
			t.Errorf("alice's narrowed search: %v, want %v", got, all[:1])
		}
	})
	t.Run("pages far past the end, and past the paging bound", func(t *testing.T) {
		if got := ids(t, cf.Do(t, "GET", "/Certificates?pq.returnLimit=500&pq.pageReturned=1048576", nil, "Authorization", admin)); len(got) != 0 {
			t.Errorf("page 1048576: %v, want none", got)
		}
		wantError(t, cf.Do(t, "GET", "/Certificates?pq.pageReturned=1048577", nil, "Authorization", admin), 400, keyfactor.CodeInvalidField, "pq.pageReturned")
		wantError(t, cf.Do(t, "GET", "/Certificates?pq.pageReturned=-1", nil, "Authorization", admin), 400, keyfactor.CodeInvalidField, "pq.pageReturned")
	})

	refusals := []struct{ name, auth, query, prefix string }{
		{"includeRevoked not a boolean", admin, "includeRevoked=maybe", "includeRevoked"},
		{"an unindexed field, past the bound", admin, q(`KeyTypeString -eq "ECC"`) + "&pq.returnLimit=50", "pq.queryString"},
		{"an unindexed field on a requester's own, past the bound", alice, q(`KeyTypeString -eq "ECC"`) + "&pq.returnLimit=50", "pq.queryString"},
		{"a name order over more than the bound", admin, q(`KeyTypeString -eq "ECC"`) + "&pq.sortField=IssuedCN", "pq.queryString"},
	}
	for _, tt := range refusals {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			code := keyfactor.CodeTooBroad
			if tt.prefix != "pq.queryString" {
				code = keyfactor.CodeInvalidField
			}
			wantError(t, cf.Do(t, "GET", "/Certificates?"+tt.query, nil, "Authorization", tt.auth), 400, code, tt.prefix)
		})
	}

	answered := []struct {
		name, auth, query string
		want              []int64
	}{
		{"a page that fills within the bound", alice, q(`KeyTypeString -eq "ECC"`) + "&pq.returnLimit=2", all[:2]},
		{"an unindexed field on few certificates", carolBasic, q(`KeyTypeString -eq "ECC"`), []int64{carolID}},
		{"an indexed name past the bound", admin, q(`IssuedCN -eq "inv-carol.example.com"`), []int64{carolID}},
		{"-contains, from the name index", admin, q(`IssuedCN -contains "INV1"`), []int64{all[1]}},
		{"a SAN prefix, newest first", admin, q(`SAN -startswith "inv"`) + "&pq.sortAscending=1", []int64{carolID, all[5], all[4], all[3], all[2], all[1], all[0]}},
		{"a direct look-up past the bound", admin, q(fmt.Sprintf("CertRequestId -eq %d", carolID)), []int64{carolID}},
		{"keyset paging by Id", admin, q(fmt.Sprintf("Id -gt %d", all[4])), all[5:]},
		{"includeRevoked and includeExpired true: everything", admin, "includeRevoked=true&includeExpired=true", all},
		{"includeExpired false: none has expired", admin, "includeExpired=false", all},
	}
	for _, tt := range answered {
		t.Run(tt.name, func(t *testing.T) {
			if got := ids(t, cf.Do(t, "GET", "/Certificates?"+tt.query, nil, "Authorization", tt.auth)); !slices.Equal(got, tt.want) {
				t.Errorf("ids %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("download by serial and issuer, from the serial index", func(t *testing.T) {
		_, rec := getCert(t, cf, admin, carolID, "")
		body := map[string]any{"SerialNumber": "00:" + rec.SerialNumber, "IssuerDN": rec.IssuerDN}
		if resp := cf.Do(t, "POST", "/Certificates/Download", body, "Authorization", admin); resp.Status != http.StatusOK {
			t.Errorf("download by serial: %d %s", resp.Status, resp.Body)
		}
		// alice may not see carol's: the same 404 as no such serial.
		wantError(t, cf.Do(t, "POST", "/Certificates/Download", body, "Authorization", alice), 404, keyfactor.CodeNotFound, "certificate with serial number")
	})
}

// The instance listings walk request ids from the newest down, and ids
// come in blocks of 32 (store.NewID), so the walk also reads the unused
// rest of the block. With api.max_scan at 30 and 7 requests (ids 1–7, the
// counter at 32), a listing that wants more than the walk finds is
// refused, and one whose page fills within the bound is answered.
func TestInstanceListingsNeverStopSilentlyAtTheScanBound(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.API.MaxScan = 30 })
	admin := "Bearer " + testutil.AdminToken
	for i := range 7 {
		issueAs(t, cf, alice, fmt.Sprintf("inst%d.example.com", i), nil)
	}
	wantError(t, cf.Do(t, "GET", "/Workflow/Instances?pq.returnLimit=50", nil, "Authorization", admin), 400, keyfactor.CodeTooBroad, "pq.queryString")
	resp := cf.Do(t, "GET", "/Workflow/Instances?pq.returnLimit=3", nil, "Authorization", admin)
	if resp.Status != http.StatusOK {
		t.Fatalf("%d %s", resp.Status, resp.Body)
	}
	var rows []keyfactor.Instance
	resp.JSON(t, &rows)
	if len(rows) != 3 {
		t.Errorf("%d instances, want a full page of 3", len(rows))
	}
}

// A revocation moves the certificate from the active to the revoked
// state's answers at once (the revoke script writes the index), and
// includeRevoked=false leaves it out, as Keyfactor's does.
func TestRevocationMovesACertificateBetweenStates(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	admin := "Bearer " + testutil.AdminToken
	keep, _ := issueAs(t, cf, alice, "state-keep.example.com", nil)
	gone, _ := issueAs(t, cf, alice, "state-gone.example.com", nil)
	if resp, rr := revoke(t, cf, alice, map[string]any{"CertificateIds": []int64{gone}, "Reason": 4, "Comment": "superseded"}); resp.Status != http.StatusOK || !slices.Equal(rr.RevokedIds, []int64{gone}) {
		t.Fatalf("revoke: %d %s", resp.Status, resp.Body)
	}
	for _, tc := range []struct {
		auth, query string
		want        []int64
	}{
		{admin, queryString(`CertState -eq 2`), []int64{gone}},
		{admin, queryString(`CertStateString -eq "Active"`), []int64{keep}},
		{alice, queryString(`CertState -ne 1`), []int64{gone}},
		{admin, "includeRevoked=false", []int64{keep}},
		{alice, "includeRevoked=false&" + queryString(`IssuedCN -startswith "state-"`), []int64{keep}},
		{bob, "includeRevoked=true", []int64{keep, gone}},
	} {
		if got := certIDs(t, cf.Do(t, "GET", "/Certificates?"+tc.query, nil, "Authorization", tc.auth)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.query, got, tc.want)
		}
	}
}

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

// No listing or search stops at its scan bound and answers as if it had
// finished. With api.max_scan at 4 and 7 certificates: an unfiltered
// listing for those who see every certificate pages by rank and reaches
// them all, with X-Total-Count; whatever has to walk the inventory and
// reaches the bound before its page is full is refused (400, 0xA0010007,
// naming what to narrow), never answered with a short page.
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

	// What a requester must not get around: the rank path (every
	// certificate, others' too) and the inventory's size.
	t.Run("a requester never gets the inventory's pages or its count", func(t *testing.T) {
		resp := cf.Do(t, "GET", "/Certificates?pq.returnLimit=2", nil, "Authorization", alice)
		if got := ids(t, resp); !slices.Equal(got, all[:2]) {
			t.Errorf("alice's first page %v, want her own %v", got, all[:2])
		}
		if h := resp.Header.Get("X-Total-Count"); h != "" {
			t.Errorf("a requester's listing says X-Total-Count %q", h)
		}
		// carol's one certificate lies past the bound: she is refused, not
		// shown an empty page nor anyone else's.
		carol := cf.Do(t, "GET", "/Certificates?pq.returnLimit=1", nil, "Authorization", carolBasic)
		wantError(t, carol, 400, keyfactor.CodeTooBroad, "pq.queryString")
	})
	t.Run("pages far past the end, and past the paging bound", func(t *testing.T) {
		if got := ids(t, cf.Do(t, "GET", "/Certificates?pq.returnLimit=500&pq.pageReturned=1048576", nil, "Authorization", admin)); len(got) != 0 {
			t.Errorf("page 1048576: %v, want none", got)
		}
		wantError(t, cf.Do(t, "GET", "/Certificates?pq.pageReturned=1048577", nil, "Authorization", admin), 400, keyfactor.CodeInvalidField, "pq.pageReturned")
		wantError(t, cf.Do(t, "GET", "/Certificates?pq.pageReturned=-1", nil, "Authorization", admin), 400, keyfactor.CodeInvalidField, "pq.pageReturned")
	})

	refusals := []struct{ name, auth, query, prefix string }{
		{"a requester's own, past the bound", alice, "pq.returnLimit=50", "pq.queryString"},
		{"a filter matching past the bound", admin, q(`IssuedCN -eq "inv-carol.example.com"`), "pq.queryString"},
		{"a filter matching early, the page not full", admin, q(`IssuedCN -contains "inv1"`), "pq.queryString"},
	}
	for _, tt := range refusals {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			wantError(t, cf.Do(t, "GET", "/Certificates?"+tt.query, nil, "Authorization", tt.auth), 400, keyfactor.CodeTooBroad, tt.prefix)
		})
	}

	answered := []struct {
		name, auth, query string
		want              []int64
	}{
		{"a page that fills within the bound", alice, "pq.returnLimit=2", all[:2]},
		{"a direct look-up past the bound", admin, q(fmt.Sprintf("CertRequestId -eq %d", carolID)), []int64{carolID}},
	}
	for _, tt := range answered {
		t.Run(tt.name, func(t *testing.T) {
			if got := ids(t, cf.Do(t, "GET", "/Certificates?"+tt.query, nil, "Authorization", tt.auth)); !slices.Equal(got, tt.want) {
				t.Errorf("ids %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("download by a serial past the bound is refused, by id answered", func(t *testing.T) {
		_, rec := getCert(t, cf, admin, carolID, "")
		body := map[string]any{"SerialNumber": rec.SerialNumber, "IssuerDN": rec.IssuerDN}
		wantError(t, cf.Do(t, "POST", "/Certificates/Download", body, "Authorization", admin), 400, keyfactor.CodeTooBroad, "SerialNumber")
		if resp := cf.Do(t, "POST", "/Certificates/Download", map[string]any{"CertID": carolID}, "Authorization", admin); resp.Status != http.StatusOK {
			t.Errorf("download by CertID: %d %s", resp.Status, resp.Body)
		}
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

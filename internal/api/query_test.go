package api

import (
	"errors"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestParsePage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, query string
		number      int
		limit       int
		terms       int
		err         string // the field named, "" for none
	}{
		{name: "defaults", number: 1, limit: defaultReturnLimit},
		{name: "Keyfactor's pq. names", query: "pq.pageReturned=3&pq.returnLimit=20", number: 3, limit: 20},
		{name: "bare names in any case", query: "PageReturned=2&RETURNLIMIT=5", number: 2, limit: 5},
		{name: "a query of two clauses", query: "pq.queryString=" + url.QueryEscape(`Status -eq "Suspended" AND InitiatingUser -contains ali`), number: 1, limit: defaultReturnLimit, terms: 2},
		{name: "a limit over the maximum is clamped", query: "pq.returnLimit=1000", number: 1, limit: maxReturnLimit},
		{name: "a limit past int64 is clamped", query: "pq.returnLimit=99999999999999999999999", number: 1, limit: maxReturnLimit},
		{name: "a limit of zero", query: "pq.returnLimit=0", err: "pq.returnLimit"},
		{name: "a negative limit", query: "pq.returnLimit=-5", err: "pq.returnLimit"},
		{name: "a limit with a sign", query: "pq.returnLimit=%2B1000", number: 1, limit: maxReturnLimit},
		{name: "a limit in hex", query: "pq.returnLimit=0x10", err: "pq.returnLimit"},
		{name: "a page over its maximum", query: "pq.pageReturned=1048577", err: "pq.pageReturned"},
		{name: "a page of zero", query: "pq.pageReturned=0", err: "pq.pageReturned"},
		{name: "a limit that is not a number", query: "pq.returnLimit=all", err: "pq.returnLimit"},
		{name: "an unknown field", query: "pq.queryString=" + url.QueryEscape(`Owner -eq "x"`), err: `pq.queryString: unknown field "Owner"`},
		{name: "an unknown operator", query: "pq.queryString=" + url.QueryEscape(`Status -like "x"`), err: "pq.queryString"},
		{name: "a clause without a value", query: "pq.queryString=" + url.QueryEscape(`Status -eq`), err: "pq.queryString"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := parsePage(httptest.NewRequest("GET", "/x?"+tt.query, nil), "status", "initiatinguser")
			if tt.err != "" {
				var ae *apiError
				if !errors.As(err, &ae) || ae.status != 400 || !strings.HasPrefix(ae.msg, tt.err) {
					t.Fatalf("parsePage = %v, want a 400 naming %s", err, tt.err)
				}
				return
			}
			if err != nil || p.number != tt.number || p.limit != tt.limit || len(p.terms) != tt.terms {
				t.Fatalf("parsePage = %+v, %v", p, err)
			}
		})
	}
}

func TestPageMatchAndCollect(t *testing.T) {
	t.Parallel()
	p, err := parsePage(httptest.NewRequest("GET", "/x?pq.returnLimit=2&pq.pageReturned=2&pq.queryString="+
		url.QueryEscape(`Status -eq "suspended" AND Name -startswith a AND Name -ne "anna"`), nil), "status", "name")
	if err != nil {
		t.Fatal(err)
	}
	rows := []map[string]string{
		{"status": "Suspended", "name": "al"}, {"status": "Suspended", "name": "anna"}, {"status": "Running", "name": "ann"},
		{"status": "Suspended", "name": "ab"}, {"status": "SUSPENDED", "name": "ac"}, {"status": "Suspended", "name": "ad"},
		{"status": "Suspended", "name": "ae"}, {"status": "Suspended", "name": "bob"},
	}
	c := &collector[string]{p: p}
	for _, row := range rows {
		if !p.match(func(f string) string { return row[f] }) {
			continue
		}
		if !c.add(row["name"]) {
			break
		}
	}
	// Matches: al, ab, ac, ad, ae. Page 2 of size 2: ac, ad.
	if strings.Join(c.out, ",") != "ac,ad" {
		t.Fatalf("page 2 = %v, want ac,ad", c.out)
	}
}

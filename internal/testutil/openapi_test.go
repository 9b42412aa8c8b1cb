package testutil

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps what Errorf reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestContractCheckNamesTheOperationAndWhy: an exchange the document does
// not describe fails with the call, the operation and the reason; a
// refused request is not held to the document, an accepted one is.
func TestContractCheckNamesTheOperationAndWhy(t *testing.T) {
	withID := func() http.Header {
		return http.Header{"Content-Type": {"application/json; charset=utf-8"}, "X-Request-Id": {"abc"}}
	}
	refusal := `{"ErrorCode":"0xA0010001","Message":"CSR: want a string"}`
	for _, tc := range []struct {
		name         string
		method, path string
		body         string
		status       int
		header       http.Header
		answer       string
		want         []string // "" in want: no error
	}{
		{"documented", "GET", "/Certificates/1", "", 404, withID(), `{"ErrorCode":"0xA0030001","Message":"certificate 1: not found"}`, nil},
		{"an undocumented status", "GET", "/Certificates/1", "", http.StatusTeapot, withID(), refusal,
			[]string{"GET /Certificates/1: answer 418", "GET /Certificates/{id} (getCertificatesById)", "status is not supported"}},
		{"a body of the wrong shape, any case, under /KeyfactorAPI", "GET", "/KeyfactorAPI/certificates", "", 200, withID(), `{}`,
			[]string{"GET /KeyfactorAPI/certificates: answer 200", "(getCertificates)", "doesn't match schema"}},
		{"an answer without its request id", "GET", "/Certificates/1", "", 404, http.Header{"Content-Type": {"application/json"}}, refusal,
			[]string{"X-Request-Id"}},
		{"a bad request refused", "POST", "/Enrollment/CSR/Parse", `{"CSR": 5}`, 400, withID(), refusal, nil},
		{"a bad request accepted", "POST", "/Enrollment/CSR/Parse", `{"CSR": 5}`, 200, withID(), `["CN=x"]`,
			[]string{"certflow accepted (200) a request", "(postEnrollmentCSRParse) calls invalid", "CSR"}},
		{"a body where none is documented", "DELETE", "/CSRGeneration/Pending/1", "", 204, withID(), `{}`, []string{"has a body"}},
		{"an unknown path", "GET", "/no/such", "", 404, withID(), refusal, nil},
		{"an unknown path answered", "GET", "/no/such", "", 200, withID(), `{}`, []string{"not in the OpenAPI document, yet answered 200 (want 404)"}},
		{"an unserved method", "PATCH", "/Certificates/1", "", 405, withID(), refusal, nil},
		{"an unserved method not refused", "PATCH", "/Certificates/1", "", 404, withID(), refusal, []string{"(want 405)"}},
	} {
		req, err := http.NewRequest(tc.method, "http://certflow"+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		rec := &recorder{TB: t}
		CheckContract(rec, req, []byte(tc.body), &Response{Status: tc.status, Header: tc.header, Body: []byte(tc.answer)})
		got := strings.Join(rec.errs, "\n")
		if len(tc.want) == 0 && got != "" {
			t.Errorf("%s: unexpected: %s", tc.name, got)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: the report lacks %q: %q", tc.name, w, got)
			}
		}
	}
}

package api_test

import (
	"encoding/base64"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/api"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// logLine returns certflow's log line of the refusal of request id.
func logLine(t *testing.T, cf *testutil.Certflow, id string) string {
	t.Helper()
	for line := range strings.Lines(cf.Logs.String()) {
		if strings.Contains(line, "msg=refused") && strings.Contains(line, "request_id="+id+" ") {
			return line
		}
	}
	t.Fatalf("no refusal logged with request_id=%s in:\n%s", id, cf.Logs.String())
	return ""
}

// TestRequestIDOnEveryAnswerAndInTheRefusalsLog: every answer, success or
// refusal, carries a fresh X-Request-Id; a refusal's log line carries the
// same id, the method, the path (without its query), status, ErrorCode,
// the message and the user, at info level; neither a query's secret nor
// Basic credentials reach the log.
func TestRequestIDOnEveryAnswerAndInTheRefusalsLog(t *testing.T) {
	cf := testutil.StartCertflow(t, nil)
	ok1 := cf.Do(t, "GET", "/Status/Endpoints", nil)
	ok2 := cf.Do(t, "GET", "/KeyfactorAPI/Templates", nil)
	id1, id2 := ok1.Header.Get(api.RequestIDHeader), ok2.Header.Get(api.RequestIDHeader)
	if ok1.Status != http.StatusOK || !generatedID.MatchString(id1) || !generatedID.MatchString(id2) || id1 == id2 {
		t.Fatalf("successes: %d with id %q, %d with id %q; want 200 and two distinct 32-hex ids", ok1.Status, id1, ok2.Status, id2)
	}
	if strings.Contains(cf.Logs.String(), "msg=refused") {
		t.Errorf("a success was logged as refused:\n%s", cf.Logs)
	}

	const secret = "s3cr3t-query-value"
	bad := cf.Do(t, "GET", "/KeyfactorAPI/Certificates?access_token="+secret+"&pq.returnLimit=zero", nil)
	var e keyfactor.Error
	bad.JSON(t, &e)
	id := bad.Header.Get(api.RequestIDHeader)
	if bad.Status != http.StatusBadRequest || !generatedID.MatchString(id) {
		t.Fatalf("bad query: %d with id %q: %s", bad.Status, id, bad.Body)
	}
	line := logLine(t, cf, id)
	for _, want := range []string{"level=INFO", "method=GET", "path=/KeyfactorAPI/Certificates ", "status=400", "code=" + e.ErrorCode, "user=", `pq.returnLimit: want a positive integer`} {
		if !strings.Contains(line, want) {
			t.Errorf("the refusal's log line lacks %q: %s", want, line)
		}
	}

	const password = "wrong-Passw0rd-for-carol"
	creds := base64.StdEncoding.EncodeToString([]byte("carol:" + password))
	denied := cf.Do(t, "GET", "/Certificates", nil, "Authorization", "Basic "+creds)
	id = denied.Header.Get(api.RequestIDHeader)
	if denied.Status != http.StatusUnauthorized || !generatedID.MatchString(id) {
		t.Fatalf("wrong password: %d with id %q: %s", denied.Status, id, denied.Body)
	}
	line = logLine(t, cf, id)
	for _, want := range []string{"level=INFO", "status=401", "code=" + keyfactor.CodeUnauthorized, "authentication required"} {
		if !strings.Contains(line, want) {
			t.Errorf("the 401's log line lacks %q: %s", want, line)
		}
	}
	const token = "not-a-token-of-anyone-4f9a"
	if r := cf.Do(t, "GET", "/Templates", nil, "Authorization", "Bearer "+token); r.Status != http.StatusUnauthorized {
		t.Fatalf("wrong bearer token: %d", r.Status)
	} else if line := logLine(t, cf, r.Header.Get(api.RequestIDHeader)); !strings.Contains(line, "status=401") {
		t.Errorf("the 401's log line: %s", line)
	}
	for _, leak := range []string{secret, password, creds, token} {
		if strings.Contains(cf.Logs.String(), leak) {
			t.Errorf("the log carries %q:\n%s", leak, cf.Logs)
		}
	}
}

// TestRequestIDFromTheClientIsKeptOnlyWhenSane: a proxy's or client's id
// is answered back and logged when short and plain; anything longer than
// 64 characters or holding characters that could forge a log line or
// header is replaced by a fresh id.
func TestRequestIDFromTheClientIsKeptOnlyWhenSane(t *testing.T) {
	cf := testutil.StartCertflow(t, nil)
	for _, tc := range []struct {
		sent string
		kept bool
	}{
		{"abc-123", true},
		{"proxy.example:7f3a_9", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{`a" level=ERROR msg="forged`, false},
		{"a b", false},
		{"ids/with/slashes", false},
		{"é", false},
	} {
		resp := cf.Do(t, "GET", "/no/such/endpoint", nil, api.RequestIDHeader, tc.sent)
		got := resp.Header.Get(api.RequestIDHeader)
		if resp.Status != http.StatusNotFound || (tc.kept && got != tc.sent) || (!tc.kept && !generatedID.MatchString(got)) {
			t.Errorf("sent %q: answered %d with id %q (kept: want %v)", tc.sent, resp.Status, got, tc.kept)
			continue
		}
		if line := logLine(t, cf, got); !strings.Contains(line, "status=404") || !strings.Contains(line, "path=/no/such/endpoint") {
			t.Errorf("sent %q: log line %s", tc.sent, line)
		}
	}
}

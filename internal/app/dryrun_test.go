package app_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/dryrun"
	"github.com/certflow/certflow/internal/testutil"
)

// dryRunDefs are definitions whose steps would call, mail and post if
// they ran for real: an http step, an e-mail and a webhook, and an event
// definition that sets a certificate's metadata.
const dryRunDef = `name: owned
trigger: enrollment
match: request.Template == "WebServer"
priority: 10
steps:
  - id: owner
    uses: http
    with:
      url: %HOOK%/owner
      query: {host: "${{ csr.CommonName }}"}
  - id: issue
    uses: issue
  - id: tell
    uses: notify
    with:
      webhook: %HOOK%/issued
      email:
        to: "${{ steps.owner.body.email }}"
        subject: "certificate for ${{ csr.CommonName }}"
        body: "serial ${{ certificate.SerialNumber }}"
`

const dryRunFallback = `name: fallback
trigger: enrollment
steps:
  - id: issue
    uses: issue
`

const dryRunExpiring = `name: expiring-tag
trigger: event:certificate.expiring
match: certificate.Template == "WebServer"
steps:
  - id: mark
    uses: metadata
    with:
      set: {Expiring: "${{ event.Data.Threshold }}"}
  - id: tell
    uses: notify
    with:
      webhook: %HOOK%/expiring
`

const dryRunExpiringOther = `name: expiring-other
trigger: event:certificate.*
match: certificate.Template == "Other"
steps:
  - id: log
    uses: notify
    with:
      log: "${{ event.Name }}"
`

// TestDefinitionsTestDryRunsAgainstTheLoadedSet posts test cases to POST
// /Workflow/Definitions/Test and checks the answer and that nothing was
// sent (a real SMTP server, a real HTTP server) or stored (Redis).
func TestDefinitionsTestDryRunsAgainstTheLoadedSet(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"email": "real@example.com"}`))
	}))
	defer hook.Close()
	smtp := testutil.StartSMTPServer(t, testutil.SMTPOptions{})
	sub := func(s string) string { return strings.ReplaceAll(s, "%HOOK%", hook.URL) }
	dir := defsDir(t, map[string]string{
		"owned.yaml": sub(dryRunDef), "fallback.yaml": dryRunFallback,
		"expiring.yaml": sub(dryRunExpiring), "expiring-other.yaml": dryRunExpiringOther,
		// A test file beside them is not a definition.
		"owned.test.yaml": "cases: []\n",
	})
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.SMTP = smtp.Config()
	})
	// The worker publishes each CA's first CRL as it starts: wait for it,
	// so that the keys compared below are the dry runs' only.
	crl := cf.Prefix + ":ca:{certflowissuingca}:crl"
	for i := 0; cf.Redis.Exists(context.Background(), crl).Val() == 0; i++ {
		if i == 100 {
			t.Fatalf("no CRL published at %s", crl)
		}
		time.Sleep(50 * time.Millisecond)
	}
	keysBefore := redisKeys(t, cf)

	t.Run("a request: the definition chosen, why not the other, what each step would do", func(t *testing.T) {
		body := map[string]any{
			"name":    "owned certificate",
			"request": map[string]any{"template": "WebServer", "subject": "CN=shop.example.com", "requester": map[string]any{"name": "alice"}},
			"http":    map[string]any{"owner": map[string]any{"status": 200, "body": map[string]any{"email": "owner@example.com"}}},
			"expect": map[string]any{
				"definition": "owned", "disposition": "ISSUED", "steps": []string{"owner", "issue", "tell"},
				"notifications": []any{
					map[string]any{"channel": "webhook", "url": hook.URL + "/issued"},
					map[string]any{"channel": "email", "to": []string{"owner@example.com"}, "subject": "certificate for shop.example.com"},
				},
			},
		}
		resp := cf.Do(t, "POST", "/Workflow/Definitions/Test", body)
		if resp.Status != http.StatusOK {
			t.Fatalf("%d %s", resp.Status, resp.Body)
		}
		var ans dryrun.TestAnswer
		resp.JSON(t, &ans)
		if ans.Passed == nil || !*ans.Passed {
			t.Fatalf("the case's expectations failed: %+v\n%s", ans.Failures, resp.Body)
		}
		reasons := map[string]string{}
		for _, d := range ans.Definitions {
			reasons[d.Name] = d.Reason
		}
		if !strings.Contains(reasons["fallback"], "owned (priority 10) comes first") || !strings.Contains(reasons["expiring-tag"], "differs") {
			t.Fatalf("reasons: %v", reasons)
		}
		run := ans.Runs[0]
		if len(run.HTTP) != 1 || run.HTTP[0].URL != hook.URL+"/owner?host=shop.example.com" || run.HTTP[0].Status != 200 {
			t.Fatalf("http calls: %+v", run.HTTP)
		}
		if run.Certificate == nil || !strings.Contains(run.Certificate.Subject, "shop.example.com") || !strings.Contains(run.Certificate.Issuer, "dry run") {
			t.Fatalf("certificate: %+v", run.Certificate)
		}
		if mail := run.Notifications[1]; !strings.HasPrefix(mail.Body, "serial ") || len(mail.Body) < 20 {
			t.Fatalf("the e-mail's body is not rendered with the certificate: %+v", mail)
		}
	})
	t.Run("a failing expectation answers passed false with the line of the body", func(t *testing.T) {
		resp := cf.Do(t, "POST", "/Workflow/Definitions/Test", "{\"name\": \"x\",\n \"request\": {\"template\": \"Nope\"},\n \"expect\": {\"disposition\": \"ISSUED\"}}")
		var ans dryrun.TestAnswer
		resp.JSON(t, &ans)
		if ans.Passed == nil || *ans.Passed || len(ans.Failures) != 1 || ans.Failures[0].Line != 3 ||
			!strings.Contains(ans.Failures[0].Msg, `expected disposition ISSUED, got DENIED (template "Nope" no longer exists)`) {
			t.Fatalf("%d %s", resp.Status, resp.Body)
		}
	})
	t.Run("an event: every definition whose trigger names it and whose match holds runs", func(t *testing.T) {
		body := map[string]any{
			"name": "expiring",
			"event": map[string]any{"name": "certificate.expiring", "data": map[string]any{"Threshold": "14d"},
				"certificate": map[string]any{"id": 7, "subject": "CN=a.example.com", "template": "WebServer"}},
		}
		resp := cf.Do(t, "POST", "/Workflow/Definitions/Test", body)
		var ans dryrun.TestAnswer
		resp.JSON(t, &ans)
		if len(ans.Runs) != 1 || ans.Runs[0].Definition != "expiring-tag" || ans.Runs[0].Disposition != "COMPLETED" {
			t.Fatalf("%d %s", resp.Status, resp.Body)
		}
		acts := ans.Runs[0].Actions
		if len(acts) != 1 || acts[0].Uses != "metadata" || acts[0].Certificate != 7 || acts[0].With["set"].(map[string]any)["Expiring"] != "14d" {
			t.Fatalf("actions: %+v", acts)
		}
		reasons := map[string]string{}
		for _, d := range ans.Definitions {
			reasons[d.Name] = d.Reason
		}
		if reasons["expiring-other"] != "match was false" || !strings.Contains(reasons["owned"], "requests start it") {
			t.Fatalf("reasons: %v", reasons)
		}
	})
	t.Run("an http step with no stubbed answer is named", func(t *testing.T) {
		resp := cf.Do(t, "POST", "/Workflow/Definitions/Test", map[string]any{"name": "x", "request": map[string]any{"template": "WebServer"}})
		var ans dryrun.TestAnswer
		resp.JSON(t, &ans)
		if len(ans.Problems) != 1 || !strings.Contains(ans.Problems[0], "step owner: http step with no stubbed answer") {
			t.Fatalf("%s", resp.Body)
		}
	})
	t.Run("a bad case is refused naming the field", func(t *testing.T) {
		for body, want := range map[string]string{
			`{"name": "x", "request": {"kind": "bogus"}}`: "request.kind",
			`{"name": "x", "request": {}, "expct": {}}`:   `unknown key \"expct\"`,
			`{"name": "x"}`: "request: a case needs a request or an event",
			`{"name": "x", "request": {"key": "RSA 8192"}}`:           "request.key",
			`{"name": "x", "event": {"name": "a.b", "time": "soon"}}`: "event.time",
			`[1, 2]`: "want a JSON object",
		} {
			resp := cf.Do(t, "POST", "/Workflow/Definitions/Test", body)
			if resp.Status != http.StatusBadRequest || !strings.Contains(string(resp.Body), want) {
				t.Errorf("%s: %d %s, want 400 naming %s", body, resp.Status, resp.Body, want)
			}
		}
	})
	t.Run("a body over api.max_body_bytes is refused unread", func(t *testing.T) {
		big := `{"name": "x", "request": {"metadata": {"a": "` + strings.Repeat("x", 2<<20) + `"}}}`
		if resp := cf.Do(t, "POST", "/Workflow/Definitions/Test", big); resp.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("%d %.200s", resp.Status, resp.Body)
		}
	})
	t.Run("only an administrator may dry-run", func(t *testing.T) {
		resp := cf.Do(t, "POST", "/Workflow/Definitions/Test", map[string]any{"name": "x", "request": map[string]any{}}, "Authorization", "Bearer "+testutil.AliceToken)
		if resp.Status != http.StatusForbidden {
			t.Fatalf("%d %s", resp.Status, resp.Body)
		}
	})
	t.Run("nothing was sent or stored", func(t *testing.T) {
		if n := hits.Load(); n != 0 {
			t.Errorf("the HTTP server got %d requests", n)
		}
		if msgs := smtp.Messages(t); len(msgs) != 0 {
			t.Errorf("the SMTP server got %d messages", len(msgs))
		}
		after := redisKeys(t, cf)
		var added []string
		for _, k := range after {
			if !slices.Contains(keysBefore, k) {
				added = append(added, k)
			}
		}
		for _, k := range added {
			// Only the queue's own bookkeeping, and the worker's loops'
			// (the event log and its consumer group, the expiry watch's
			// state and lock, the sweep's and the CRL refresh's locks),
			// which start with the worker, may move while the test runs.
			background := strings.HasPrefix(k, "asynq:") || k == cf.Prefix+":eventlog" ||
				strings.HasPrefix(k, cf.Prefix+":expiry:") || strings.HasSuffix(k, "-lock")
			if !background {
				t.Errorf("a key appeared in Redis: %s", k)
			}
		}
		if r := cf.Do(t, "GET", "/Workflow/Instances", nil); r.Status != 200 || strings.TrimSpace(string(r.Body)) != "[]" {
			t.Errorf("instances: %d %s", r.Status, r.Body)
		}
	})
}

// redisKeys are the keys of this certflow's prefix, and asynq's for its
// queue.
func redisKeys(t *testing.T, cf *testutil.Certflow) []string {
	t.Helper()
	ctx := context.Background()
	var keys []string
	for _, pattern := range []string{cf.Prefix + ":*", "asynq:{" + cf.Prefix + "}*"} {
		ks, err := cf.Redis.Keys(ctx, pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, ks...)
	}
	return keys
}

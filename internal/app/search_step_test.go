package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

const searchDef = `name: digest
trigger: event:test.digest
steps:
  - id: soon
    uses: search
    with:
      certificates: 'NotAfter -le "${{ now + duration("87600h") }}" AND IssuedCN -startswith "${{ event.Data.prefix }}"'
      sort: NotAfter
      limit: 2
  - id: team
    uses: search
    with:
      certificates: 'Metadata.Team -eq "${{ event.Data.team }}" AND IssuedCN -startswith "${{ event.Data.prefix }}"'
  - id: nothing
    uses: search
    with:
      # An event's data cannot add a clause: the quote and AND stay in
      # the value, which matches no certificate.
      certificates: 'IssuedCN -eq "${{ event.Data.inject }}"'
  - id: waiting
    uses: search
    with:
      pending_requests: {older_than: 0s}
  - id: old
    uses: search
    with:
      pending_requests: {older_than: 24h}
`

const waitDef = `name: wait-for-people
trigger: enrollment
match: csr.CommonName startsWith "wait."
priority: 50
steps:
  - id: ok
    uses: approval
    with: {roles: [pki-approvers]}
  - id: issue
    uses: issue
`

// The search step answers from the real inventory and pending index: a
// limited, truncated, sorted page of certificates with their fields, a
// metadata search, an injection attempt that stays a value, and pending
// requests filtered by age with the roles they wait for.
func TestSearchStepFindsCertificatesAndPendingRequests(t *testing.T) {
	t.Parallel()
	dir := shippedDefinitionsWith(t, map[string]string{"digest.yaml": searchDef, "wait.yaml": waitDef})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	ctx := context.Background()
	var ids []int64
	for i, team := range []string{"web", "db", "web"} {
		cn := fmt.Sprintf("s%d.digest.example.com", i)
		csr, _ := testutil.CSR(t, cn, cn)
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{"Team": team}}), "Authorization", bearer(testutil.AliceToken))
		if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("enroll %s: %d %s", cn, resp.Status, resp.Body)
		}
		ids = append(ids, er.CertificateInformation.KeyfactorID)
	}
	csr, _ := testutil.CSR(t, "wait.example.com", "wait.example.com")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", bearer(testutil.AliceToken))
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "PENDING" {
		t.Fatalf("enroll wait.example.com: %d %s", resp.Status, resp.Body)
	}
	pendingID := er.CertificateInformation.KeyfactorRequestId

	evID, _, err := cf.App.Store.AppendEvent(ctx, workflow.Event{Name: "test.digest", Time: time.Now().UTC(), Source: "test",
		Data: map[string]any{"prefix": "s", "team": "web", "inject": `x" AND IssuedCN -startswith "s`}}, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var run *store.Request
	waitFor(t, "the digest run", func() bool {
		runs, _ := cf.App.Store.EventRuns(ctx, evID)
		if runs["digest"] == 0 {
			return false
		}
		run, _ = cf.App.Store.Get(ctx, runs["digest"])
		return run != nil && run.Disposition.Final()
	})
	if run.Disposition != store.Completed {
		t.Fatalf("run: %s %q", run.Disposition, run.Message)
	}
	out := run.Instance.Outputs
	soon := out["soon"]
	certs, _ := soon["certificates"].([]any)
	if len(certs) != 2 || num(soon["count"]) != 2 || soon["truncated"] != true || num(soon["total"]) != 3 {
		t.Fatalf("soon: %+v", soon)
	}
	first := certs[0].(map[string]any)
	if num(first["Id"]) != ids[0] || first["IssuedCN"] != "s0.digest.example.com" || first["Template"] != "WebServer" ||
		first["Requester"] != "alice" || first["SerialNumber"] == "" || first["Metadata"].(map[string]any)["Team"] != "web" {
		t.Fatalf("first certificate: %+v", first)
	}
	if _, err := time.Parse(time.RFC3339, first["NotAfter"].(string)); err != nil {
		t.Fatalf("NotAfter %v: %v", first["NotAfter"], err)
	}
	team := out["team"]
	if got := team["certificates"].([]any); len(got) != 2 || team["truncated"] != false ||
		num(got[0].(map[string]any)["Id"]) != ids[0] || num(got[1].(map[string]any)["Id"]) != ids[2] {
		t.Fatalf("team web: %+v", team)
	}
	if n := out["nothing"]; num(n["count"]) != 0 {
		t.Fatalf("an event's data widened a query: %+v", n)
	}
	waiting := out["waiting"]
	reqs, _ := waiting["requests"].([]any)
	if len(reqs) != 1 {
		t.Fatalf("waiting: %+v", waiting)
	}
	r := reqs[0].(map[string]any)
	if num(r["Id"]) != pendingID || r["CommonName"] != "wait.example.com" || r["Requester"] != "alice" || r["Step"] != "ok" ||
		fmt.Sprint(r["Roles"]) != "[pki-approvers]" {
		t.Fatalf("pending request: %+v", r)
	}
	if old := out["old"]; num(old["count"]) != 0 {
		t.Fatalf("a request of seconds ago is listed as older than 24h: %+v", old)
	}
}

// num reads a JSON number (or Go integer) as int64.
func num(v any) int64 {
	switch x := v.(type) {
	case float64:
		return int64(x)
	case int64:
		return x
	case int:
		return int64(x)
	}
	return -1
}

const broadDef = `name: broad
trigger: event:test.broad
steps:
  - id: find
    uses: search
    with:
      certificates: 'IssuedCN -ne "nothing.example.com"'
`

// A search its bounds cannot answer fails the run, naming the step's
// certificates: and what to do, rather than answering part of the
// inventory as if it were all.
func TestSearchStepRefusesASearchOverItsBounds(t *testing.T) {
	t.Parallel()
	dir := shippedDefinitionsWith(t, map[string]string{"broad.yaml": broadDef})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir; c.API.MaxScan = 1 })
	ctx := context.Background()
	for i := range 3 {
		cn := fmt.Sprintf("b%d.broad.example.com", i)
		csr, _ := testutil.CSR(t, cn, cn)
		if _, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", bearer(testutil.AliceToken)); er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("enroll %s: %+v", cn, er.CertificateInformation)
		}
	}
	evID, _, err := cf.App.Store.AppendEvent(ctx, workflow.Event{Name: "test.broad", Time: time.Now().UTC(), Source: "test"}, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var run *store.Request
	waitFor(t, "the run", func() bool {
		runs, _ := cf.App.Store.EventRuns(ctx, evID)
		run, _ = cf.App.Store.Get(ctx, runs["broad"])
		return run != nil && run.Disposition.Final()
	})
	if run.Disposition != store.Failed || !strings.Contains(run.Message, "certificates:") || !strings.Contains(run.Message, "narrow") {
		t.Fatalf("run: %s %q, want FAILED naming certificates: and how to narrow it", run.Disposition, run.Message)
	}
}

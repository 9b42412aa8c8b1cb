package app_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

// eventsNamed lists the event log's events of a name, oldest first.
func eventsNamed(t *testing.T, cf *testutil.Certflow, name string) []workflow.Event {
	t.Helper()
	ctx := context.Background()
	ms, err := cf.Redis.XRange(ctx, cf.Prefix+":eventlog", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []workflow.Event
	for _, m := range ms {
		ev, err := cf.App.Store.Event(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Name == name {
			out = append(out, *ev)
		}
	}
	return out
}

const onIssuedDef = `name: on-issued
trigger: event:certificate.*
match: event.Name == "certificate.issued" && certificate.Template == "WebServer"
steps:
  - id: note
    uses: notify
    with:
      log: "automation saw ${{ event.Name }} of ${{ certificate.SerialNumber }} for ${{ csr.CommonName }} requested by ${{ requester.Name }} meta ${{ certificate.Metadata.Team ?? 'none' }}"
`

const neverDef = `name: never
trigger: event:certificate.issued
match: certificate.Template == "NoSuchTemplate"
steps:
  - id: note
    uses: notify
    with: {log: "never"}
`

func TestAnIssuedCertificateEmitsItsEventAndStartsEachMatchingDefinitionOnce(t *testing.T) {
	t.Parallel()
	dir := shippedDefinitionsWith(t, map[string]string{"on-issued.yaml": onIssuedDef, "never.yaml": neverDef})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	csr, _ := testutil.CSR(t, "events.example.com", "events.example.com")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{"Team": "web"}}), "Authorization", bearer(testutil.AliceToken))
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	certID := er.CertificateInformation.KeyfactorID
	var issued []workflow.Event
	waitFor(t, "the certificate.issued event", func() bool {
		issued = eventsNamed(t, cf, workflow.EventCertificateIssued)
		return len(issued) == 1
	})
	ev := issued[0]
	if ev.CertificateID != certID || ev.RequestID != certID || ev.Data["SerialNumber"] != er.CertificateInformation.SerialNumber || ev.Source != "certflow" {
		t.Fatalf("event %+v does not describe certificate %d (%s)", ev, certID, er.CertificateInformation.SerialNumber)
	}
	ctx := context.Background()
	var runs map[string]int64
	waitFor(t, "the event's runs", func() bool {
		runs, _ = cf.App.Store.EventRuns(ctx, ev.ID)
		return len(runs) == 2
	})
	if runs["never"] != 0 {
		t.Fatalf("a definition whose match is false ran: %v", runs)
	}
	runID := runs["on-issued"]
	if runID == 0 {
		t.Fatalf("on-issued did not run: %v", runs)
	}
	var run *store.Request
	waitFor(t, "the run to complete", func() bool {
		run, _ = cf.App.Store.Get(ctx, runID)
		return run != nil && run.Disposition.Final()
	})
	if run.Disposition != store.Completed || run.Trigger != store.EventRunTrigger || run.Event == nil || run.Event.ID != ev.ID {
		t.Fatalf("run: %s %q trigger %s event %+v", run.Disposition, run.Message, run.Trigger, run.Event)
	}
	want := "automation saw certificate.issued of " + er.CertificateInformation.SerialNumber + " for events.example.com requested by alice meta web"
	if !strings.Contains(cf.Logs.String(), want) {
		t.Fatalf("the run's notification is not in the log (want %q)", want)
	}
	// A run's own record emits nothing: no request.* event for it.
	for _, name := range []string{workflow.EventRequestFailed, workflow.EventRequestPending} {
		if evs := eventsNamed(t, cf, name); len(evs) != 0 {
			t.Fatalf("%s emitted: %+v", name, evs)
		}
	}

	// Dispatched again (a dispatcher that crashed before acknowledging,
	// another that claimed it): no second run.
	w := cf.App.Worker()
	w.DispatchEvents(ctx, []*workflow.Event{&ev, &ev}, cf.App.Log)
	again, _ := cf.App.Store.EventRuns(ctx, ev.ID)
	if again["on-issued"] != runID || len(again) != 2 {
		t.Fatalf("re-dispatch changed the runs: %v → %v", runs, again)
	}
	if n, _ := cf.Redis.ZCard(ctx, cf.Prefix+":certificates").Result(); n != 1 {
		t.Fatalf("%d certificates", n)
	}

	// An event deep in a chain of automation starts nothing.
	deep := ev
	deep.Depth = workflow.MaxEventDepth + 1
	deepID, _, err := cf.App.Store.AppendEvent(ctx, deep, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	deep.ID = deepID
	w.DispatchEvents(ctx, []*workflow.Event{&deep}, cf.App.Log)
	if runs, _ := cf.App.Store.EventRuns(ctx, deepID); len(runs) != 0 {
		t.Fatalf("an event of depth %d started runs: %v", deep.Depth, runs)
	}
}

const deniedDef = `name: denied-everything
trigger: enrollment
match: csr.CommonName startsWith "deny."
priority: 5
steps:
  - id: policy
    uses: validate
    with:
      rules:
        - check: "false"
          message: nothing under deny. is issued
  - id: issue
    uses: issue
`

func TestRequestLifecycleEventsAreWrittenWithTheirChange(t *testing.T) {
	t.Parallel()
	dir := shippedDefinitionsWith(t, map[string]string{"denied.yaml": deniedDef})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	csr, _ := testutil.CSR(t, "deny.example.com", "deny.example.com")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", bearer(testutil.AliceToken))
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "DENIED" {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	denied := eventsNamed(t, cf, workflow.EventRequestDenied)
	if len(denied) != 1 || denied[0].RequestID != er.CertificateInformation.KeyfactorRequestId ||
		!strings.Contains(denied[0].Data["Message"].(string), "nothing under deny.") || denied[0].Data["Requester"] != "alice" {
		t.Fatalf("request.denied events: %+v", denied)
	}
	if evs := eventsNamed(t, cf, workflow.EventCertificateIssued); len(evs) != 0 {
		t.Fatalf("a denied request emitted certificate.issued: %+v", evs)
	}
}

const everyMinuteDef = `name: every-minute
trigger: schedule
schedule: "* * * * *"
steps:
  - id: note
    uses: notify
    with: {log: "tick ${{ event.Data.Slot }}"}
`

func TestAScheduleFiresOncePerSlotAcrossWorkers(t *testing.T) {
	t.Parallel()
	dir := shippedDefinitionsWith(t, map[string]string{"tick.yaml": everyMinuteDef})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	ctx := context.Background()
	now := time.Now()
	// Three workers' schedulers at the same instant, and again later in
	// the slot: one event.
	ws := []interface {
		ScheduleOnce(context.Context, time.Time) int
	}{cf.App.Worker(), cf.App.Worker(), cf.App.Worker()}
	for _, w := range ws {
		w.ScheduleOnce(ctx, now)
		w.ScheduleOnce(ctx, now.Add(time.Second))
	}
	slot := workflow.Slot(mustSchedule(t, "* * * * *"), now).UTC().Format(time.RFC3339)
	var fired []workflow.Event
	waitFor(t, "the slot's run", func() bool {
		fired = nil
		for _, ev := range eventsNamed(t, cf, workflow.EventSchedule) {
			if ev.Data["Slot"] == slot {
				fired = append(fired, ev)
			}
		}
		if len(fired) != 1 {
			return false
		}
		runs, _ := cf.App.Store.EventRuns(ctx, fired[0].ID)
		return runs["every-minute"] != 0
	})
	if len(fired) != 1 || fired[0].Data["Definition"] != "every-minute" {
		t.Fatalf("slot %s fired %d times: %+v", slot, len(fired), fired)
	}
	if !strings.Contains(cf.Logs.String(), "tick "+slot) {
		waitFor(t, "the tick's log line", func() bool { return strings.Contains(cf.Logs.String(), "tick "+slot) })
	}
}

func mustSchedule(t *testing.T, spec string) interface{ Next(time.Time) time.Time } {
	t.Helper()
	s, err := workflow.ParseSchedule(spec)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestApprovalEventsFollowTheDecisions(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, gated("quorum", 0, "{roles: [approver], quorum: 2}"))
	er := submitPending(t, cf, "quorum.example.com", testutil.AliceToken)
	id := er.CertificateInformation.KeyfactorRequestId
	pending := eventsNamed(t, cf, workflow.EventRequestPending)
	if len(pending) != 1 || pending[0].RequestID != id || pending[0].Data["Step"] != "approve" || pending[0].Data["Quorum"] != float64(2) {
		t.Fatalf("request.pending: %+v", pending)
	}
	instance := er.CertificateInformation.WorkflowInstanceId
	mustSignal(t, cf, instance, testutil.BobToken, approveData("one"))
	if evs := eventsNamed(t, cf, workflow.EventRequestApproved); len(evs) != 0 {
		t.Fatalf("approved after one of two approvals: %+v", evs)
	}
	mustSignal(t, cf, instance, daveToken, approveData("two"))
	waitFor(t, "the issue", func() bool { return len(eventsNamed(t, cf, workflow.EventCertificateIssued)) == 1 })
	approved := eventsNamed(t, cf, workflow.EventRequestApproved)
	if len(approved) != 1 || approved[0].RequestID != id {
		t.Fatalf("request.approved: %+v", approved)
	}
	if got := approved[0].Data["Approvers"]; len(got.([]any)) != 2 {
		t.Fatalf("approvers %v", got)
	}
	if len(eventsNamed(t, cf, workflow.EventRequestPending)) != 1 {
		t.Fatal("request.pending written again")
	}
}

func TestACallbackThatSpendsItsRetriesEmitsCallbackFailedOnce(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	h := &hook{statuses: []int{500}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	csr, _ := testutil.CSR(t, "cbfail.example.com")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"CallbackUrl": srv.URL + "/hook?token=s3cret"}), "Prefer", "respond-async")
	if resp.Status != http.StatusAccepted {
		t.Fatalf("status %d", resp.Status)
	}
	attempts := 1 + len(cf.Config.Callbacks.Schedule)
	waitFor(t, "callback.failed", func() bool { return len(eventsNamed(t, cf, workflow.EventCallbackFailed)) > 0 })
	evs := eventsNamed(t, cf, workflow.EventCallbackFailed)
	if len(evs) != 1 || len(h.deliveries()) != attempts {
		t.Fatalf("%d callback.failed events after %d deliveries (want 1 after %d)", len(evs), len(h.deliveries()), attempts)
	}
	ev := evs[0]
	if ev.RequestID != er.CertificateInformation.KeyfactorRequestId || ev.Data["Attempts"] != float64(attempts) || ev.Data["Status"] != float64(500) {
		t.Fatalf("callback.failed: %+v", ev)
	}
	if u := ev.Data["CallbackUrl"].(string); strings.Contains(u, "s3cret") || !strings.HasPrefix(u, srv.URL+"/hook") {
		t.Fatalf("callback.failed carries the URL %q (want it without its query)", u)
	}
}

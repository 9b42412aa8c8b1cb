package workflow_test

import (
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/certflow/certflow/workflow"
)

func TestTriggerMatchesNamesAndPrefixesOnly(t *testing.T) {
	cases := []struct {
		trigger, name string
		want          bool
	}{
		{"event:certificate.issued", "certificate.issued", true},
		{"event:certificate.issued", "certificate.issued.extra", false},
		{"event:certificate.issued", "certificate.issue", false},
		{"event:certificate.*", "certificate.expiring", true},
		{"event:certificate.*", "certificate", false},
		{"event:certificate.*", "certificates.expiring", false}, // a prefix of words, not of letters
		{"event:host.*", "host.decommissioned", true},
		{"enrollment", "enrollment", false},
		{"schedule", "schedule.fired", false},
	}
	for _, c := range cases {
		if got := workflow.TriggerMatches(c.trigger, c.name); got != c.want {
			t.Errorf("TriggerMatches(%q, %q) = %v, want %v", c.trigger, c.name, got, c.want)
		}
	}
}

func TestEventNamesAreCheckedAndReservedOnesKnown(t *testing.T) {
	for _, ok := range []string{"host.decommissioned", "a", "deploy_2.done-now"} {
		if err := workflow.CheckEventName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Host.down", "host..down", ".host", "host.", "host down", "1host", "host/down", strings.Repeat("a", 101)} {
		if err := workflow.CheckEventName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, name := range []string{"certificate.expiring", "request.approved", "schedule.fired", "approval.escalated", "callback.failed", "certflow.anything"} {
		if !workflow.ReservedEvent(name) {
			t.Errorf("%q is not reserved", name)
		}
	}
	if workflow.ReservedEvent("certificates.expiring") || workflow.ReservedEvent("host.decommissioned") {
		t.Error("a name outside certflow's namespaces is reserved")
	}
}

const tellStep = `steps:
  - id: tell
    uses: say
    with: {text: "hello"}
`

func TestEventAndScheduleTriggersLoadAndBadOnesAreRefusedWithPositions(t *testing.T) {
	cat := toyCatalog()
	good := map[string]string{
		"a.yaml": "name: a\ntrigger: event:certificate.*\n" + tellStep,
		"b.yaml": "name: b\ntrigger: event:certificate.issued\nmatch: certificate.Template == \"X\"\n" + tellStep,
		"c.yaml": "name: c\ntrigger: schedule\nschedule: \"0 7 * * *\"\n" + tellStep,
		"d.yaml": "name: d\ntrigger: schedule\nschedule: \"@every 2h\"\n" + tellStep,
	}
	fsys := fstest.MapFS{}
	for k, v := range good {
		fsys[k] = &fstest.MapFile{Data: []byte(v)}
	}
	set, err := workflow.Load(fsys, cat)
	if err != nil {
		t.Fatalf("event definitions sharing priority 0 must load (fan-out): %v", err)
	}
	names := func(ds []*workflow.Definition) string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Name)
		}
		return strings.Join(out, ",")
	}
	if got := names(set.ForEvent(&workflow.Event{Name: "certificate.issued"})); got != "a,b" {
		t.Errorf("certificate.issued starts %q, want a,b", got)
	}
	if got := names(set.ForEvent(&workflow.Event{Name: "certificate.revoked"})); got != "a" {
		t.Errorf("certificate.revoked starts %q, want a", got)
	}
	if got := names(set.ForEvent(&workflow.Event{Name: workflow.EventSchedule, Data: map[string]any{"Definition": "c"}})); got != "c" {
		t.Errorf("c's slot starts %q, want c", got)
	}
	if got := names(set.ForEvent(&workflow.Event{Name: workflow.EventSchedule, Data: map[string]any{"Definition": "a"}})); got != "" {
		t.Errorf("a slot naming a non-schedule definition starts %q", got)
	}
	if got := names(set.Scheduled()); got != "c,d" {
		t.Errorf("scheduled %q", got)
	}

	bad := []struct{ src, want string }{
		{"name: x\ntrigger: event:Certificate.Issued\n" + tellStep, "2:10: trigger \"event:Certificate.Issued\""},
		{"name: x\ntrigger: \"event:\"\n" + tellStep, "an event name is required"},
		{"name: x\ntrigger: event:certificate.**\n" + tellStep, "trigger \"event:certificate.**\""},
		{"name: x\ntrigger: schedule\n" + tellStep, "a cron expression is required"},
		{"name: x\ntrigger: schedule\nschedule: \"61 * * * *\"\n" + tellStep, "3:11: schedule \"61 * * * *\""},
		{"name: x\ntrigger: schedule\nschedule: \"@every 10s\"\n" + tellStep, "the shortest period is 1m0s"},
		{"name: x\ntrigger: enrollment\nschedule: \"0 * * * *\"\n" + tellStep, "only a definition with trigger: schedule has one"},
		{"name: x\ntrigger: cron\n" + tellStep, "want enrollment, renewal, revocation, schedule, event:<name> or event:<prefix>.*"},
	}
	for _, c := range bad {
		_, err := workflow.Parse("x.yaml", []byte(c.src), cat)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.src, err, c.want)
		}
	}
}

func TestSlotIsTheLatestCronTimeNotAfterNow(t *testing.T) {
	sched, err := workflow.ParseSchedule("0 7 * * *")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for now, want := range map[string]string{
		"2026-12-06T07:00:00Z": "2026-12-06T07:00:00Z",
		"2026-12-06T06:59:59Z": "2026-12-05T07:00:00Z",
		"2026-12-06T19:30:00Z": "2026-12-06T07:00:00Z",
	} {
		if got := workflow.Slot(sched, at(now)); !got.Equal(at(want)) {
			t.Errorf("Slot at %s = %s, want %s", now, got, want)
		}
	}
	yearly, _ := workflow.ParseSchedule("0 0 1 1 *")
	if got := workflow.Slot(yearly, at("2026-12-06T19:30:00Z")); !got.Equal(at("2026-01-01T00:00:00Z")) {
		t.Errorf("yearly slot %s", got)
	}
}

package dryrun_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/dryrun"
)

func harness(t *testing.T) *dryrun.Harness {
	t.Helper()
	cfg := config.Default()
	cfg.SMTP.Addr, cfg.SMTP.From = "smtp.example.com:25", "certflow@example.com"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h, err := dryrun.New(dryrun.Options{Config: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func folder(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// run tests dir and returns what certflow test prints, and whether all passed.
func run(t *testing.T, dir string) (string, bool) {
	t.Helper()
	var out bytes.Buffer
	ok := dryrun.Print(&out, harness(t).RunPath(context.Background(), dir), false)
	return out.String(), ok
}

const gated = `name: gated
trigger: enrollment
match: request.Template == "WebServer"
priority: 10
steps:
  - id: policy
    uses: validate
  - id: gate
    uses: approval
    if: 'any(sans.DNS, {# endsWith ".internal.example.com"})'
    with:
      roles: [pki-approvers]
      quorum: 2
      timeout: 24h
      on_timeout: escalate
      escalate: {roles: [pki-leads], timeout: 8h}
      notify:
        email: {to: [approvers@example.com], subject: "approve ${{ csr.CommonName }}?", body: "by ${{ requester.Name }}"}
  - id: owner
    uses: http
    with:
      url: https://cmdb.example.com/owners
      query: {host: "${{ csr.CommonName }}"}
    retry: {attempts: 3, backoff: 10s}
    on_error: continue
  - id: vars
    uses: set
    with:
      owner: "${{ steps.owner?.body?.email ?? 'nobody' }}"
  - id: issue
    uses: issue
  - id: tag
    uses: metadata
    with:
      set: {Owner: "${{ vars.owner }}"}
  - id: tell
    uses: notify
    if: vars.owner != "nobody"
    with:
      webhook: https://hooks.example.com/issued
      email: {to: "${{ vars.owner }}", subject: "issued ${{ csr.CommonName }}", body: "serial ${{ certificate.SerialNumber }}"}
      log: "issued ${{ csr.CommonName }}"
`

const fallback = `name: fallback
trigger: enrollment
steps:
  - id: issue
    uses: issue
`

const expiring = `name: expiring-tag
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
      email: {to: owner@example.com, subject: "${{ certificate.SubjectDN }} expires", body: "on ${{ certificate.NotAfter }}"}
`

const expiringAll = `name: expiring-log
trigger: event:certificate.*
steps:
  - id: log
    uses: notify
    with:
      log: "${{ event.Name }} for ${{ certificate.ID }}"
`

func TestACaseThatHoldsPasses(t *testing.T) {
	t.Parallel()
	dir := folder(t, map[string]string{"gated.yaml": gated, "fallback.yaml": fallback, "expiring.yaml": expiring, "expiring-all.yaml": expiringAll,
		"gated.test.yaml": `cases:
  - name: an internal name waits for two approvers, then is issued and its owner told
    request:
      template: WebServer
      subject: CN=db.internal.example.com
      requester: {name: alice}
    approvals: {gate: approve}
    http:
      owner: {status: 200, body: {email: owner@example.com}}
    expect:
      definition: gated
      disposition: ISSUED
      steps: [policy, gate, owner, vars, issue, tag, tell]
      skipped: []
      metadata: {Owner: owner@example.com}
      vars: {owner: owner@example.com}
      notifications:
        - {channel: email, step: gate, event: approval.pending, to: [approvers@example.com], subject: "approve db.internal.example.com?"}
        - {channel: email, step: gate, event: approval.decided}
        - {channel: webhook, step: tell, url: "https://hooks.example.com/issued", event: certificate.enrollment}
        - {channel: email, step: tell, to: [owner@example.com], subject_contains: db.internal, body_contains: "serial "}
      logs: [issued db.internal]
      actions: []
  - name: a CMDB that fails is tried three times and the run goes on
    request: {template: WebServer, subject: CN=www.example.com}
    http:
      owner: {status: 503}
    expect:
      disposition: ISSUED
      skipped: [gate, tell]
      metadata: {Owner: nobody}
  - name: nobody deciding passes the gate to the leads, who are told
    request: {template: WebServer, subject: CN=db.internal.example.com}
    approvals: {gate: [timeout, {decision: deny, by: lee, comment: no}]}
    expect:
      disposition: DENIED
      message_contains: "denied by lee: no"
      notifications:
        - {channel: email, event: approval.pending}
        - {channel: email, event: approval.escalated}
        - {channel: email, event: approval.decided}
  - name: other templates fall back
    request: {template: Other}
    expect: {definition: fallback, disposition: DENIED, message_contains: no longer exists}
`,
		"expiring.test.yaml": `cases:
  - name: an expiring web server certificate is tagged and its owner told; every certificate event is logged
    now: 2026-03-01T00:00:00Z
    event:
      name: certificate.expiring
      data: {Threshold: 14d}
      certificate: {id: 7, subject: CN=a.example.com, not_after: 2026-03-15T00:00:00Z, template: WebServer}
    expect:
      definitions: [expiring-tag, expiring-log]
      runs:
        expiring-tag:
          disposition: COMPLETED
          steps: [mark, tell]
          actions: [{uses: metadata, step: mark, certificate: 7, with: {set: {Expiring: 14d}}}]
          notifications: [{channel: email, to: [owner@example.com], subject: CN=a.example.com expires}]
        expiring-log:
          logs: [certificate.expiring for 7]
  - name: another template's certificate is only logged
    event: {name: certificate.expiring, certificate: {id: 8, template: Other}}
    expect:
      definition: expiring-log
      disposition: COMPLETED
  - name: an event nothing listens to starts nothing
    event: {name: host.decommissioned}
    expect: {definition: none, definitions: []}
`})
	out, ok := run(t, dir)
	if !ok || strings.Count(out, "\nok    ") != 6 || !strings.HasPrefix(out, "ok    ") {
		t.Fatalf("want 7 cases ok:\n%s", out)
	}
	if !strings.Contains(out, "7 cases: 7 passed, 0 failed") {
		t.Fatalf("summary:\n%s", out)
	}
}

// TestEachUnmetExpectationNamesItsLine breaks one expectation of each
// kind and checks that each failure names the line of that expectation.
func TestEachUnmetExpectationNamesItsLine(t *testing.T) {
	t.Parallel()
	test := `cases:
  - name: all wrong
    request:
      template: WebServer
      subject: CN=www.example.com
    http:
      owner: {status: 200, body: {email: owner@example.com}}
    expect:
      definition: fallback
      disposition: DENIED
      message_contains: nope
      steps: [policy]
      skipped: [owner]
      metadata: {Owner: someone@example.com}
      vars: {owner: 3}
      notifications:
        - {channel: email, to: [x@example.com]}
      logs: [never logged]
      actions: [{uses: renew}]
  - name: a fan-out with run keys at the top
    event: {name: certificate.expiring, certificate: {id: 7, template: WebServer}}
    expect:
      disposition: COMPLETED
      runs:
        expiring-tag: {steps: [tell]}
        missing: {}
`
	dir := folder(t, map[string]string{"gated.yaml": gated, "fallback.yaml": fallback, "expiring.yaml": expiring, "expiring-all.yaml": expiringAll, "gated.test.yaml": test})
	out, ok := run(t, dir)
	if ok {
		t.Fatalf("passed:\n%s", out)
	}
	file := filepath.ToSlash(filepath.Join(dir, "gated.test.yaml"))
	for line, want := range map[int]string{
		9:  `case "all wrong": expected definition fallback, got gated`,
		10: "expected disposition DENIED, got ISSUED (Issued by",
		11: `expected the message to contain "nope"`,
		12: "expected steps [policy], got [policy, owner, vars, issue, tag, tell]",
		13: "expected skipped [owner], got [gate]",
		14: `expected metadata Owner = "someone@example.com", got "owner@example.com"`,
		15: `expected vars.owner = 3, got "owner@example.com"`,
		16: "expected 1 notifications, got 2: webhook by tell to https://hooks.example.com/issued (certificate.enrollment); email by tell to [owner@example.com]",
		17: "notification 1: expected channel email, got webhook; expected to [x@example.com], got []",
		18: `expected a log line containing "never logged"`,
		19: "expected 1 actions, got 0: none",
		22: `case "a fan-out with run keys at the top": 2 definitions ran (expiring-log, expiring-tag): give each one's expectations under runs:`,
		25: "expected steps [tell], got [mark, tell]",
		26: "expected definition missing to run, but it did not",
	} {
		prefix := file + ":" + itoa(line) + ": "
		if !strings.Contains(out, prefix) || !strings.Contains(out, want) || !lineHas(out, prefix, want) {
			t.Errorf("no failure %q at %s in:\n%s", want, prefix, out)
		}
	}
	if !strings.Contains(out, "2 cases: 0 passed, 2 failed") {
		t.Errorf("summary:\n%s", out)
	}
}

func TestAnHTTPStepWithNoStubbedAnswerFailsTheCaseNamingTheStep(t *testing.T) {
	t.Parallel()
	dir := folder(t, map[string]string{"gated.yaml": gated, "gated.test.yaml": `cases:
  - name: forgot the CMDB
    request: {template: WebServer}
    expect: {disposition: ISSUED}
`})
	out, ok := run(t, dir)
	want := `gated.test.yaml:2: case "forgot the CMDB": gated: step owner: http step with no stubbed answer (add http: {owner: {status: 200, body: {…}}} to the case)`
	if ok || !strings.Contains(out, want) {
		t.Fatalf("want %q in:\n%s", want, out)
	}
}

func TestLoadErrorsFailTheRun(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		files map[string]string
		want  []string
	}{
		"a definition that does not load": {
			files: map[string]string{"bad.yaml": "name: bad\ntrigger: enrollment\nsteps:\n  - id: x\n    uses: nosuchstep\n", "bad.test.yaml": "cases:\n  - name: x\n    request: {}\n"},
			want:  []string{"ERROR definitions in", "bad.yaml:5:", `unknown step type "nosuchstep"`},
		},
		"a test file with an unknown key and a bad value": {
			files: map[string]string{"fallback.yaml": fallback, "fallback.test.yaml": "cases:\n  - name: x\n    request: {kind: renewl}\n    expect:\n      dispositon: ISSUED\n"},
			want:  []string{"fallback.test.yaml:5: expect: unknown key \"dispositon\""},
		},
		"a bad value": {
			files: map[string]string{"fallback.yaml": fallback, "fallback.test.yaml": "cases:\n  - name: x\n    request: {kind: renewl}\n"},
			want:  []string{`fallback.test.yaml:3: request.kind: "renewl" (want enrollment, renewal or revocation) (case "x")`},
		},
		"a template change naming no template": {
			files: map[string]string{"fallback.yaml": fallback, "fallback.test.yaml": "templates:\n  Nope: {allow_wildcards: true}\ncases:\n  - name: x\n    request: {}\n"},
			want:  []string{"fallback.test.yaml:2: templates.Nope: the configuration has no such template"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			out, ok := run(t, folder(t, c.files))
			if ok {
				t.Fatalf("passed:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("no %q in:\n%s", w, out)
				}
			}
			if !strings.Contains(out, "did not load") {
				t.Errorf("summary:\n%s", out)
			}
		})
	}
}

// TestShippedDefinitionsPassTheirTests runs every shipped test file
// (definitions/ and the folders under it, the examples): CI runs them so.
func TestShippedDefinitionsPassTheirTests(t *testing.T) {
	t.Parallel()
	_, file, _, _ := runtime.Caller(0)
	defs := filepath.Join(filepath.Dir(file), "..", "..", "definitions")
	out, ok := run(t, defs)
	if !ok {
		t.Fatalf("the shipped definitions' tests fail:\n%s", out)
	}
	for _, want := range []string{"enrollment-default.test.yaml", "renewal-default.test.yaml", "revocation-default.test.yaml", "examples/web-server.test.yaml"} {
		if !strings.Contains(out, want) {
			t.Errorf("%s did not run:\n%s", want, out)
		}
	}
	if strings.Contains(out, "has no tests") {
		t.Errorf("a shipped definition has no tests:\n%s", out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// lineHas reports whether one output line holds both prefix and want.
func lineHas(out, prefix, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, prefix) && strings.Contains(l, want) {
			return true
		}
	}
	return false
}

// TestIssueSignsWithAThrowawayCAHonouringTheCSR checks the dry run's
// certificate: the CSR's subject and SANs, the step's validity, a CA that
// is not the configured one.
func TestIssueSignsWithAThrowawayCAHonouringTheCSR(t *testing.T) {
	t.Parallel()
	h := harness(t)
	set, err := h.Load(fstest.MapFS{"short.yaml": {Data: []byte("name: short\ntrigger: enrollment\nsteps:\n  - id: issue\n    uses: issue\n    with: {validity: 24h}\n")}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := dryrun.ParseCase([]byte(`{"name": "x", "request": {"template": "WebServer", "subject": "CN=a.example.com,O=Example", "sans": {"dns": ["b.example.com"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	rep := h.Run(context.Background(), set, c)
	if len(rep.Runs) != 1 || rep.Runs[0].Disposition != "ISSUED" {
		t.Fatalf("%+v", rep)
	}
	ct := rep.Runs[0].Certificate
	if !strings.Contains(ct.Subject, "CN=a.example.com") || !strings.Contains(ct.Subject, "O=Example") {
		t.Errorf("subject %q", ct.Subject)
	}
	// WebServer enforces RFC 2818: the CN joins the CSR's names.
	if strings.Join(ct.SANs.DNS, ",") != "b.example.com,a.example.com" {
		t.Errorf("SANs %v", ct.SANs)
	}
	if d := ct.NotAfter.Sub(ct.NotBefore); d != 24*time.Hour {
		t.Errorf("validity %s, want the step's 24h", d)
	}
	if !strings.Contains(ct.Issuer, "(dry run)") || ct.Authority != `certflow\CertflowIssuingCA` {
		t.Errorf("issuer %q, authority %q", ct.Issuer, ct.Authority)
	}
	if out := rep.Runs[0].Steps[0].Outputs; out["serial"] == "" || out["authority"] != `certflow\CertflowIssuingCA` {
		t.Errorf("outputs %v", out)
	}
}

func TestABadCaseIsRefusedNamingTheField(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]string{
		`{"name": "x", "request": {}, "approvals": {"gate": "maybe"}}`:                                                                `approvals.gate: "maybe" (want approve, deny or timeout)`,
		`{"name": "x", "request": {}, "approvals": {"gate": {"by": "pat"}}}`:                                                          "approvals.gate: decision: required",
		`{"name": "x", "request": {}, "http": {"owner": {"status": 42}}}`:                                                             "http.owner.status: 42 is not an HTTP status",
		`{"name": "x", "request": {}, "approvals": {"gate": {"decision": "approve", "by": [` + strings.Repeat(`"a",`, 21) + `"b"]}}}`: "approvals.gate: by: at most 20 names",
		`{"name": "x", "request": {"sans": {"dsn": ["a"]}}}`:                                                                          `request.sans: unknown kind "dsn"`,
		`{"name": "x", "request": {"subject": "CN"}}`:                                                                                 "request.subject:",
		`{"name": "x", "request": {"renews": 3}}`:                                                                                     "request.renews: only a renewal",
		`{"name": "x", "request": {}, "event": {"name": "a"}}`:                                                                        "event: a case has a request or an event, not both",
		`{"name": "x", "request": {}, "expect": {"disposition": "DONE"}}`:                                                             `expect.disposition: "DONE"`,
		`{"name": "x", "request": {}, "expect": {"notifications": [{"channel": "log"}]}}`:                                             "expect.notifications[0].channel",
		`{"name": "x", "request": {}, "expect": {"runs": {"a": {"definitions": ["b"]}}}}`:                                             "expect.runs.a: runs and definitions belong to the case's expect",
		`{"name": "", "request": {}}`:                                                                                                 "name: required",
		`{"name": "x", "event": {"certificate": {"id": 1, "not_after": "tomorrow"}}}`:                                                 "event.certificate.not_after",
		`{"name": "x", "request": {"requester": {"name": "a", "role": "b"}}}`:                                                         `request.requester: unknown key "role"`,
	} {
		_, err := dryrun.ParseCase([]byte(body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}

// An event run sees what the dispatcher gives it: the certificate's
// subject and names as csr and sans, the request it was issued for and
// its requester; an event too deep in a chain of automation starts none.
func TestAnEventRunSeesTheCertificateAndItsRequest(t *testing.T) {
	t.Parallel()
	dir := folder(t, map[string]string{
		"decom.yaml": `name: decom
trigger: event:host.decommissioned
match: 'any(sans.DNS, {# == event.Data.Host})'
steps:
  - id: say
    uses: notify
    with:
      log: "${{ csr.CommonName }} of ${{ requester.Name }}, request ${{ request.ID }} (${{ request.Template }}), revoked: ${{ certificate.Revoked }}"
`,
		"decom.test.yaml": `cases:
  - name: a certificate naming the host
    event:
      name: host.decommissioned
      data: {Host: old.example.com}
      requester: {name: alice}
      certificate: {id: 12, subject: CN=old.example.com, sans: {dns: [old.example.com]}, template: WebServer}
    expect:
      definition: decom
      logs: ["old.example.com of alice, request 12 (WebServer), revoked: false"]
  - name: another host's certificate
    event:
      name: host.decommissioned
      data: {Host: other.example.com}
      certificate: {id: 12, subject: CN=old.example.com, sans: {dns: [old.example.com]}}
    expect: {definition: none}
  - name: too deep in a chain of automation
    event:
      name: host.decommissioned
      depth: 5
      data: {Host: old.example.com}
      certificate: {id: 12, sans: {dns: [old.example.com]}}
    expect: {definition: none}
`})
	out, ok := run(t, dir)
	if !ok {
		t.Fatal(out)
	}
	h := harness(t)
	set, err := h.Load(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := dryrun.ParseCase([]byte(`{"name": "deep", "event": {"name": "host.decommissioned", "depth": 5}}`))
	rep := h.Run(context.Background(), set, c)
	if len(rep.Definitions) != 1 || !strings.Contains(rep.Definitions[0].Reason, "5 deep in a chain of automation") {
		t.Fatalf("%+v", rep.Definitions)
	}
}

// A schedule's slot is the event schedule.fired naming the definition.
func TestAScheduleSlotRunsItsDefinition(t *testing.T) {
	t.Parallel()
	dir := folder(t, map[string]string{
		"nightly.yaml": "name: nightly\ntrigger: schedule\nschedule: \"0 2 * * *\"\nsteps:\n  - id: say\n    uses: notify\n    with: {log: \"slot ${{ event.Data.Slot }}\"}\n",
		"weekly.yaml":  "name: weekly\ntrigger: schedule\nschedule: \"0 3 * * 1\"\nsteps:\n  - id: say\n    uses: notify\n    with: {log: weekly}\n",
		"nightly.test.yaml": `cases:
  - name: the nightly slot
    event: {name: schedule.fired, data: {Definition: nightly, Slot: "2026-03-01T02:00:00Z"}}
    expect: {definition: nightly, disposition: COMPLETED, logs: ["slot 2026-03-01T02:00:00Z"]}
`, "weekly.test.yaml": `cases:
  - name: the weekly slot
    event: {name: schedule.fired, data: {Definition: weekly}}
    expect: {definition: weekly, logs: [weekly]}
`})
	if out, ok := run(t, dir); !ok {
		t.Fatal(out)
	}
}

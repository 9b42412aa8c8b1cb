package steps_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

// recorder is a steps.Actions that records what steps ask, answering
// with a request id per order (the same for the same idempotency key,
// as the enrollment service does) and with the certificates found.
type recorder struct {
	mu        sync.Mutex
	renews    []steps.RenewOrder
	revokes   []steps.RevokeOrder
	enrolls   []steps.EnrollOrder
	metadata  []steps.MetadataOrder
	queries   []string
	found     []int64
	findErr   error
	skip      map[int64]string
	byKey     map[string]int64
	nextReqID int64
}

func (r *recorder) request(key string, certID int64) steps.Outcome {
	if r.byKey == nil {
		r.byKey = map[string]int64{}
	}
	if why := r.skip[certID]; why != "" {
		return steps.Outcome{CertificateID: certID, Skipped: why}
	}
	if id, ok := r.byKey[key]; ok {
		return steps.Outcome{RequestID: id, CertificateID: certID, Existing: true}
	}
	r.nextReqID++
	id := 1000 + r.nextReqID
	r.byKey[key] = id
	return steps.Outcome{RequestID: id, CertificateID: certID}
}

func (r *recorder) Renew(_ context.Context, o steps.RenewOrder) (steps.Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.renews = append(r.renews, o)
	return r.request(o.Key(o.CertificateID), o.CertificateID), nil
}

func (r *recorder) Revoke(_ context.Context, o steps.RevokeOrder) (steps.Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revokes = append(r.revokes, o)
	return r.request(o.Key(o.CertificateID), o.CertificateID), nil
}

func (r *recorder) Enroll(_ context.Context, o steps.EnrollOrder) (steps.Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.enrolls = append(r.enrolls, o)
	return r.request(o.Key(0), 0), nil
}

func (r *recorder) SetMetadata(_ context.Context, o steps.MetadataOrder) (steps.Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metadata = append(r.metadata, o)
	return steps.Outcome{CertificateID: o.CertificateID}, nil
}

func (r *recorder) FindCertificates(_ context.Context, query string, limit int) ([]int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries = append(r.queries, query)
	if r.findErr != nil {
		return nil, r.findErr
	}
	if len(r.found) > limit {
		return nil, &steps.TooManyError{Limit: limit}
	}
	return r.found, nil
}

// parseActing loads a definition with the real catalogue wired to a.
func parseActing(a steps.Actions, lines ...string) (*workflow.Definition, error) {
	src := []byte(strings.Join(lines, "\n") + "\n")
	return workflow.Parse("def.yaml", src, steps.ForLint(defaultConfig()).WithActions(a).Catalog())
}

// eventEnv is the environment of a run started by ev about cert (nil:
// about none).
func eventEnv(ev workflow.Event, cert *workflow.Certificate) *workflow.Env {
	in := &workflow.Input{Trigger: "event:" + ev.Name, Event: ev, Certificate: cert}
	return in.Env(&workflow.Instance{}, time.Now())
}

func expiring(certID int64, depth int) workflow.Event {
	return workflow.Event{ID: "1-0", Name: workflow.EventCertificateExpiring, CertificateID: certID, Depth: depth,
		Data: map[string]any{"host": "web1.example.com"}}
}

func TestActingStepsLoadOnlyWhereTheyMeanSomething(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		lines []string
		err   string
	}{
		{"renew in an enrollment definition", []string{"name: t", "trigger: enrollment", "steps:", "  - id: r", "    uses: renew"}, "not from a enrollment workflow"},
		{"renew in a renewal definition", []string{"name: t", "trigger: renewal", "steps:", "  - id: r", "    uses: renew"}, "event-triggered and schedule definitions"},
		{"enroll in a revocation definition", []string{"name: t", "trigger: revocation", "steps:", "  - id: r", "    uses: enroll", "    with: {template: WebServer, subject: CN=x}"}, "event-triggered and schedule definitions"},
		{"renew with an unknown key choice", oneStep("  - id: r", "    uses: renew", "    with: {key: reused}"), "key: want retained"},
		{"renew with an unknown with key", oneStep("  - id: r", "    uses: renew", "    with: {cert: 1}"), `unknown key "cert"`},
		{"renew naming its certificate by a bad expression", oneStep("  - id: r", "    uses: renew", "    with: {certificate: 'event.Nope +'}"), `expression "event.Nope +"`},
		{"revoke naming both a certificate and a query", oneStep("  - id: r", "    uses: revoke", `    with: {certificate: event.CertificateID, query: 'IssuedCN -eq "x"', comment: gone}`), "give certificate or query, not both"},
		{"revoke without a comment", oneStep("  - id: r", "    uses: revoke"), "comment: required"},
		{"revoke with an unknown reason", oneStep("  - id: r", "    uses: revoke", "    with: {reason: stolen, comment: x}"), "reason"},
		{"revoke with a reason out of range", oneStep("  - id: r", "    uses: revoke", "    with: {reason: 9, comment: x}"), "want 0–6"},
		{"revoke with an expression outside the query's quotes", oneStep("  - id: r", "    uses: revoke", `    with: {query: 'SAN -eq ${{ event.Data.host }}', comment: x}`), "outside a quoted value"},
		{"revoke with a second expression outside the quotes", oneStep("  - id: r", "    uses: revoke", `    with: {query: 'SAN -eq "${{ event.Data.host }}" AND IssuedCN -eq ${{ event.Data.cn }}', comment: x}`), "expression 2 stands outside"},
		{"metadata naming a certificate in an enrollment definition", []string{"name: t", "trigger: enrollment", "steps:", "  - id: m", "    uses: metadata", "    with: {certificate: '5', set: {A: b}}"}, "only an event-triggered or schedule definition's metadata step names a certificate"},
		{"renew in a schedule definition without naming a certificate", []string{"name: t", "trigger: schedule", `schedule: "@daily"`, "steps:", "  - id: r", "    uses: renew"}, "certificate: required in a schedule definition"},
		{"metadata in a schedule definition without naming a certificate", []string{"name: t", "trigger: schedule", `schedule: "@daily"`, "steps:", "  - id: m", "    uses: metadata", "    with: {set: {A: b}}"}, "certificate: required in a schedule definition"},
		{"enroll with both a CSR and a subject", oneStep("  - id: e", "    uses: enroll", "    with: {template: WebServer, csr: x, subject: CN=x}"), "not both"},
		{"enroll with an unknown SAN type", oneStep("  - id: e", "    uses: enroll", "    with: {template: WebServer, csr: x, sans: {dnsname: [a.example.com]}}"), "sans.dnsname: unknown SAN type"},
		{"enroll with a CSR and a bad SAN expression", oneStep("  - id: e", "    uses: enroll", "    with: {template: WebServer, csr: x, sans: {dns: ['${{ event. }}']}}"), `def.yaml:6:59: step "e": expression "event."`},
		{"enroll with neither a CSR nor a subject", oneStep("  - id: e", "    uses: enroll", "    with: {template: WebServer}"), "one is required"},
		{"enroll without a template", oneStep("  - id: e", "    uses: enroll", "    with: {subject: CN=x}"), "template: required"},
		{"enroll into a template that does not exist", oneStep("  - id: e", "    uses: enroll", "    with: {template: NoSuch, csr: x}"), `no template "NoSuch" is configured`},
		{"enroll a generated key into a template that does not retain keys", oneStep("  - id: e", "    uses: enroll", "    with: {template: WebServer, subject: CN=x}"), "does not retain private keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseActing(&recorder{}, tt.lines...)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Parse: %v; want an error containing %q", err, tt.err)
			}
		})
	}
	// Where they do mean something, they load.
	for name, lines := range map[string][]string{
		"a schedule revoking by query":            {"name: t", "trigger: schedule", `schedule: "@daily"`, "steps:", "  - id: r", "    uses: revoke", `    with: {query: 'IssuedCN -eq "retired.example.com"', comment: retired}`},
		"a schedule renewing a named certificate": {"name: t", "trigger: schedule", `schedule: "@daily"`, "steps:", "  - id: r", "    uses: renew", "    with: {certificate: '42'}"},
		"an event renewing its certificate":       oneStep("  - id: r", "    uses: renew"),
	} {
		if _, err := parseActing(&recorder{}, lines...); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The CA steps of request workflows are unchanged.
	for _, trig := range []string{"revocation"} {
		if _, err := parseActing(&recorder{}, "name: t", "trigger: "+trig, "steps:", "  - id: revoke", "    uses: revoke"); err != nil {
			t.Errorf("a %s definition's revoke step: %v", trig, err)
		}
	}
}

func TestRenewStepRenewsTheEventsCertificateOnceWithTheRunsOrigin(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	def, err := parseActing(rec, oneStep("  - id: renew", "    uses: renew")...)
	if err != nil {
		t.Fatal(err)
	}
	env := eventEnv(expiring(42, 1), &workflow.Certificate{ID: 42})
	var first workflow.Result
	for attempt := 0; attempt < 3; attempt++ { // a retried step
		res, err := runStep(t, def, "renew", env, nil)
		if err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
		if attempt == 0 {
			first = res
		} else if res.Outputs["request"] != first.Outputs["request"] {
			t.Fatalf("attempt %d made request %v, the first %v: a retry must answer the first request", attempt, res.Outputs["request"], first.Outputs["request"])
		}
	}
	if len(rec.byKey) != 1 {
		t.Fatalf("keys %v: want one request for three attempts", rec.byKey)
	}
	o := rec.renews[0]
	if o.CertificateID != 42 || o.NewKey || o.RunID != 7 || o.Step != "renew" || o.Depth != 2 {
		t.Fatalf("order %+v: want certificate 42, the retained key, run 7, step renew, depth 2 (the event's 1 + 1)", o)
	}
	if first.Outputs["certificate"] != int64(42) || first.Outputs["skipped"] != nil {
		t.Fatalf("outputs %v", first.Outputs)
	}
}

func TestRenewStepTargets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		with string
		cert *workflow.Certificate
		want int64
		err  string
	}{
		{"an expression giving a number", `{certificate: "event.Data.id", key: new}`, nil, 77, ""},
		{"an expression wrapped in ${{ }}", `{certificate: "${{ event.Data.idText }}"}`, nil, 78, ""},
		{"no certificate in the event", `{}`, nil, 0, "concerns no certificate"},
		{"an id that is no number", `{certificate: "event.Data.host"}`, nil, 0, "want a positive certificate id"},
		{"a negative id", `{certificate: "event.Data.negative"}`, nil, 0, "want a positive certificate id"},
		{"a fractional id", `{certificate: "event.Data.fraction"}`, nil, 0, "want a positive certificate id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			def, err := parseActing(rec, oneStep("  - id: renew", "    uses: renew", "    with: "+tt.with)...)
			if err != nil {
				t.Fatal(err)
			}
			ev := workflow.Event{Name: "host.retired", Data: map[string]any{"id": 77.0, "idText": "78", "host": "x", "negative": -3, "fraction": 1.5}}
			_, err = runStep(t, def, "renew", eventEnv(ev, tt.cert), nil)
			if tt.err != "" {
				var perm *workflow.PermanentError
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.As(err, &perm) {
					t.Fatalf("Run: %v; want a permanent error containing %q", err, tt.err)
				}
				if len(rec.renews) != 0 {
					t.Fatalf("renewed %+v after refusing", rec.renews)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rec.renews) != 1 || rec.renews[0].CertificateID != tt.want {
				t.Fatalf("renewals %+v, want one of certificate %d", rec.renews, tt.want)
			}
		})
	}
}

func TestRenewStepReportsASkippedCertificateWithoutFailing(t *testing.T) {
	t.Parallel()
	rec := &recorder{skip: map[int64]string{42: "superseded by 43"}}
	def, err := parseActing(rec, oneStep("  - id: renew", "    uses: renew")...)
	if err != nil {
		t.Fatal(err)
	}
	res, err := runStep(t, def, "renew", eventEnv(expiring(42, 0), &workflow.Certificate{ID: 42}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outputs["skipped"] != "superseded by 43" || res.Outputs["request"] != int64(0) {
		t.Fatalf("outputs %v: want skipped and no request", res.Outputs)
	}
}

func TestActingStepsBuiltForLintRefuseToRun(t *testing.T) {
	t.Parallel()
	def := mustParse(t, defaultConfig(), oneStep("  - id: renew", "    uses: renew")...)
	_, err := runStep(t, def, "renew", eventEnv(expiring(42, 0), &workflow.Certificate{ID: 42}), nil)
	var perm *workflow.PermanentError
	if !errors.As(err, &perm) {
		t.Fatalf("Run = %v, want a permanent error", err)
	}
}

func TestEventRevokeStepRevokesTheNamedCertificate(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	def, err := parseActing(rec, oneStep("  - id: rv", "    uses: revoke",
		`    with: {reason: keyCompromise, comment: "key of ${{ event.Data.host }} leaked"}`)...)
	if err != nil {
		t.Fatal(err)
	}
	res, err := runStep(t, def, "rv", eventEnv(expiring(9, 0), &workflow.Certificate{ID: 9}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.revokes) != 1 {
		t.Fatalf("revocations %+v", rec.revokes)
	}
	o := rec.revokes[0]
	if o.CertificateID != 9 || o.Reason != 1 || o.Comment != "key of web1.example.com leaked" || o.Depth != 1 {
		t.Fatalf("order %+v", o)
	}
	if res.Outputs["request"] == int64(0) {
		t.Fatalf("outputs %v: want the request", res.Outputs)
	}
}

func TestEventRevokeStepQuery(t *testing.T) {
	t.Parallel()
	query := oneStep("  - id: rv", "    uses: revoke",
		`    with: {query: 'SAN -eq "${{ event.Data.host }}"', reason: cessationOfOperation, comment: "decommissioned"}`)
	run := func(t *testing.T, rec *recorder, host any) (workflow.Result, error) {
		def, err := parseActing(rec, query...)
		if err != nil {
			t.Fatal(err)
		}
		ev := workflow.Event{Name: "host.decommissioned", Data: map[string]any{"host": host}}
		return runStep(t, def, "rv", eventEnv(ev, nil), nil)
	}
	t.Run("revokes each match once, and a retry makes no more", func(t *testing.T) {
		t.Parallel()
		rec := &recorder{found: []int64{3, 4, 5}, skip: map[int64]string{4: "revoked already"}}
		res, err := run(t, rec, "web1.example.com")
		if err != nil {
			t.Fatal(err)
		}
		if rec.queries[0] != `SAN -eq "web1.example.com"` {
			t.Fatalf("query %q", rec.queries[0])
		}
		if fmt.Sprint(res.Outputs["certificates"]) != "[3 5]" || fmt.Sprint(res.Outputs["skipped"]) != "map[4:revoked already]" {
			t.Fatalf("outputs %v", res.Outputs)
		}
		for _, o := range rec.revokes {
			if o.Reason != 5 {
				t.Fatalf("order %+v: want reason 5", o)
			}
		}
		if _, err := run(t, rec, "web1.example.com"); err != nil {
			t.Fatal(err)
		}
		if len(rec.byKey) != 2 {
			t.Fatalf("requests %v: want two (3 and 5), however often the step runs", rec.byKey)
		}
	})
	for _, tt := range []struct {
		name string
		host any
		err  string
	}{
		{"a value with a quote cannot add a clause", `x" AND CertState -ne "9`, "holds a quote"},
		{"an empty value cannot match everything", "", "must not be empty"},
		{"a blank value cannot either", "  ", "must not be empty"},
		{"a missing value cannot either", nil, "must not be empty"},
		{"no control characters", "a\nb", "control character"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{found: []int64{1}}
			_, err := run(t, rec, tt.host)
			var perm *workflow.PermanentError
			if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.As(err, &perm) {
				t.Fatalf("Run: %v; want a permanent error containing %q", err, tt.err)
			}
			if len(rec.queries) != 0 || len(rec.revokes) != 0 {
				t.Fatalf("searched %q and revoked %+v", rec.queries, rec.revokes)
			}
		})
	}
	t.Run("more matches than the bound revoke nothing", func(t *testing.T) {
		t.Parallel()
		found := make([]int64, steps.MaxRevokeTargets+1)
		for i := range found {
			found[i] = int64(i + 1)
		}
		rec := &recorder{found: found}
		_, err := run(t, rec, "web1.example.com")
		var perm *workflow.PermanentError
		if err == nil || !strings.Contains(err.Error(), "more than 100 certificates") || !errors.As(err, &perm) {
			t.Fatalf("Run: %v; want a permanent refusal naming the bound", err)
		}
		if len(rec.revokes) != 0 {
			t.Fatalf("revoked %d certificates of a refused query", len(rec.revokes))
		}
	})
}

func TestEventMetadataStepEditsTheCertificate(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	def, err := parseActing(rec, oneStep("  - id: md", "    uses: metadata",
		`    with: {set: {RenewedBy: "${{ event.Name }}", Note: ""}}`)...)
	if err != nil {
		t.Fatal(err)
	}
	if len(def.SetsMetadata) != 0 {
		t.Fatalf("SetsMetadata = %v: an event definition's edit reserves no names", def.SetsMetadata)
	}
	res, err := runStep(t, def, "md", eventEnv(expiring(12, 0), &workflow.Certificate{ID: 12}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Metadata != nil {
		t.Fatalf("Result.Metadata = %v: the run's own request has no certificate", res.Metadata)
	}
	if len(rec.metadata) != 1 || rec.metadata[0].CertificateID != 12 || rec.metadata[0].Values["RenewedBy"] != "certificate.expiring" || rec.metadata[0].Values["Note"] != "" {
		t.Fatalf("edits %+v", rec.metadata)
	}
}

func TestEnrollStepSubmitsOnce(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	def, err := parseActing(rec, oneStep("  - id: en", "    uses: enroll",
		`    with: {template: WebServer, csr: "${{ event.Data.csr }}", sans: {dns: ["${{ event.Data.host }}"]}, metadata: {Owner: ops}}`)...)
	if err != nil {
		t.Fatal(err)
	}
	ev := workflow.Event{Name: "host.added", Depth: 2, Data: map[string]any{"host": "web9.example.com", "csr": "-----BEGIN CERTIFICATE REQUEST-----"}}
	for range 2 {
		if _, err := runStep(t, def, "en", eventEnv(ev, nil), nil); err != nil {
			t.Fatal(err)
		}
	}
	o := rec.enrolls[0]
	if o.Template != "WebServer" || o.CSR != "-----BEGIN CERTIFICATE REQUEST-----" || fmt.Sprint(o.SANs) != "map[dns:[web9.example.com]]" || o.Metadata["Owner"] != "ops" || o.Depth != 3 {
		t.Fatalf("order %+v", o)
	}
	if len(rec.byKey) != 1 {
		t.Fatalf("requests %v: want one", rec.byKey)
	}
}

func TestEnrollStepsTemplateAndCAAreTheDefinitionsNotTheEvents(t *testing.T) {
	t.Parallel()
	for _, with := range []string{
		`    with: {template: "${{ event.Data.template }}", subject: "CN=a.example.com"}`,
		`    with: {template: WebServer, ca: "${{ event.Data.ca }}", subject: "CN=a.example.com"}`,
	} {
		_, err := parseActing(&recorder{}, oneStep("  - id: en", "    uses: enroll", with)...)
		if err == nil || !strings.Contains(err.Error(), "must be written out, not computed") {
			t.Errorf("%s: error %v, want the computed template or CA refused", with, err)
		}
	}
}

package steps_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

// A search step's with: is checked at load: each mistake names its key,
// and a query's fields and operators are read before anything runs.
func TestSearchStepRefusesBadWithAtLoad(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		with string
		want []string
	}{
		{"unknown key", `{certificates: 'Id -gt "0"', colour: red}`, []string{"colour"}},
		{"neither", `{limit: 5}`, []string{"certificates:", "pending_requests:"}},
		{"both", `{certificates: 'Id -gt "0"', pending_requests: {older_than: 1h}}`, []string{"pending_requests:", "not both"}},
		{"over the limit", `{certificates: 'Id -gt "0"', limit: 501}`, []string{"limit:", "501", "500"}},
		{"zero limit", `{certificates: 'Id -gt "0"', limit: 0}`, []string{"limit:", "from 1 to 500"}},
		{"text limit", `{certificates: 'Id -gt "0"', limit: many}`, []string{"limit:", "many"}},
		{"unknown field", `{certificates: 'Colour -eq "red"'}`, []string{"certificates:", `unknown field "Colour"`}},
		{"bad operator", `{certificates: 'NotAfter -contains "2025"'}`, []string{"certificates:", "-contains"}},
		{"no operator", `{certificates: 'NotAfter "2025"'}`, []string{"certificates:", "operator"}},
		{"bad literal date", `{certificates: 'NotAfter -le "soon"'}`, []string{"certificates:", "not a date"}},
		{"no AND", `{certificates: 'Id -gt "0" OR Id -lt "5"'}`, []string{"certificates:", "AND"}},
		{"trailing AND", `{certificates: 'Id -gt "0" AND'}`, []string{"certificates:", "AND ends"}},
		{"open quote", `{certificates: 'IssuedCN -eq "web'}`, []string{"certificates:", "closing quote"}},
		{"empty query", `{certificates: ''}`, []string{"certificates:", "empty"}},
		{"query not text", `{certificates: [Id]}`, []string{"certificates:"}},
		{"bad expression", `{certificates: 'NotAfter -le "${{ now + }}"'}`, []string{"now +"}},
		{"bad sort", `{certificates: 'Id -gt "0"', sort: Colour}`, []string{"sort:", "Colour"}},
		{"pending not a map", `{pending_requests: 24h}`, []string{"pending_requests:", "mapping"}},
		{"pending unknown key", `{pending_requests: {older: 24h}}`, []string{"pending_requests:", "older"}},
		{"pending bad duration", `{pending_requests: {older_than: a day}}`, []string{"pending_requests.older_than:", "a day"}},
		{"pending negative", `{pending_requests: {older_than: -1h}}`, []string{"pending_requests.older_than:"}},
		{"pending sorted", `{pending_requests: {older_than: 1h}, sort: NotAfter}`, []string{"sort:"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(defaultConfig(), oneStep(`  - id: find`, `    uses: search`, `    with: `+c.with)...)
			wantLoadError(t, err, 0, "find", c.want...)
		})
	}
}

// Searches belong to automation: an enrollment workflow (run per
// request) may not search the inventory.
func TestSearchStepRunsOnlyInEventDefinitions(t *testing.T) {
	t.Parallel()
	_, err := parse(defaultConfig(), `name: t`, `trigger: enrollment`, `steps:`,
		`  - {id: find, uses: search, with: {certificates: 'Id -gt "0"'}}`, `  - {id: issue, uses: issue}`)
	wantLoadError(t, err, 4, "find", "event-triggered and schedule")
}

// Good queries load: expressions in values (their quotes inside ${{ }}
// do not end the value), bare values, metadata fields by name and as
// Metadata.<name>, any case; the step is pure.
func TestSearchStepLoadsGoodQueriesAndIsPure(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	for _, q := range []string{
		`'NotAfter -le "${{ now + duration("720h") }}" AND CertState -eq "1"'`,
		`'notafter -ge ${{ now }} and Id -gt 5'`,
		`'Metadata.Owner -eq "alice" AND SAN -eq "${{ event.Data.host }}"'`,
		`'IssuedCN -startswith "web."'`,
	} {
		def, err := parse(cfg, oneStep(`  - id: find`, `    uses: search`, `    with: {certificates: `+q+`, sort: NotAfter, limit: 500}`)...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if !workflow.IsPure(def.Steps[0].Step) {
			t.Errorf("%s: the search step is not pure", q)
		}
	}
	def, err := parse(cfg, oneStep(`  - {id: find, uses: search, with: {pending_requests: {older_than: 24h}}}`)...)
	if err != nil {
		t.Fatal(err)
	}
	if !workflow.IsPure(def.Steps[0].Step) {
		t.Error("the pending search is not pure")
	}
	if steps.SearchMaxLimit != 500 || steps.SearchDefaultLimit != 100 {
		t.Errorf("limits %d/%d", steps.SearchDefaultLimit, steps.SearchMaxLimit)
	}
}

// A step built without a store (certflow lint's) refuses to run rather
// than answer nothing.
func TestSearchStepWithoutAStoreFails(t *testing.T) {
	t.Parallel()
	def := mustParse(t, defaultConfig(), oneStep(`  - {id: find, uses: search, with: {certificates: 'Id -gt "0"'}}`)...)
	env := envFor(t, defaultConfig(), workflow.Request{}, nil, nil)
	if _, err := runStep(t, def, "find", env, nil); err == nil {
		t.Fatal("a search with no store ran")
	}
}

// What expressions give is checked when the step runs, before anything
// is searched: an empty value (-contains "" would match every
// certificate), or a value of the wrong kind, fails the step naming the
// clause.
func TestSearchStepRefusesBadValuesFromExpressions(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ query, want string }{
		{`'IssuedCN -contains "${{ event.Data.host }}"'`, "issuedcn -contains: the value"},
		{`'NotAfter -le "${{ event.Data.host }}x"'`, "not a date"},
	} {
		def := mustParse(t, defaultConfig(), oneStep(`  - id: find`, `    uses: search`, `    with: {certificates: `+c.query+`}`)...)
		env := envFor(t, defaultConfig(), workflow.Request{}, nil, nil)
		_, err := runStep(t, def, "find", env, nil)
		var perm *workflow.PermanentError
		if !errors.As(err, &perm) || !strings.Contains(err.Error(), "certificates:") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a permanent error naming certificates: and %q", c.query, err, c.want)
		}
	}
}

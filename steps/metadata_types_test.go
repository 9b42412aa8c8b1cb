package steps_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/workflow"
)

// typedFields is a configuration with one field of every Keyfactor type.
func typedFields(t *testing.T) *config.Config {
	t.Helper()
	cfg := defaultConfig()
	cfg.Metadata = []config.MetaField{
		{Name: "Team", Type: "String", Validation: `[a-z]+`, Message: "lower-case letters only"},
		{Name: "Count", Type: "Integer"},
		{Name: "Expires", Type: "Date"},
		{Name: "Internal", Type: "Boolean"},
		{Name: "Env", Type: "MultipleChoice", Options: []string{"Prod", "Test"}},
		{Name: "Notes", Type: "BigText"},
		{Name: "Owner", Type: "Email"},
		{Name: "Secret", Type: "String", Enrollment: "Hidden"},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func TestMetadataStepStoresNormalizedTypedValues(t *testing.T) {
	t.Parallel()
	cfg := typedFields(t)
	def := mustParse(t, cfg, enrollAfterLookup(
		`  - id: tag`,
		`    uses: metadata`,
		`    with:`,
		`      set:`,
		`        Team: web`,
		`        Count: "+007"`,
		`        Expires: "2026-03-01"`,
		`        Internal: "TRUE"`,
		`        env: Prod`,
		`        Notes: "${{ csr.CommonName }} for ${{ requester.Name }}"`,
		`        Owner: "${{ steps.lookup.owner }}"`,
		`        Secret: "${{ steps.lookup.n * 2 }}"`,
	)...)
	env := envFor(t, cfg, workflow.Request{ID: 7}, newCSR(t, "P-256", "www.example.com"),
		map[string]map[string]any{"lookup": {"owner": "pki@example.com", "n": 21}})
	res, err := runStep(t, def, "tag", env, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := map[string]string{
		"Team":     "web",
		"Count":    "7",
		"Expires":  "2026-03-01",
		"Internal": "true",
		"Env":      "Prod",
		"Notes":    "www.example.com for alice",
		"Owner":    "pki@example.com",
		"Secret":   "42", // a Hidden field is the workflow's to set
	}
	if !reflect.DeepEqual(res.Metadata, want) {
		t.Errorf("Metadata = %v\nwant %v", res.Metadata, want)
	}
	if res.Outputs["Count"] != "7" || res.Outputs["Internal"] != "true" {
		t.Errorf("Outputs = %v, want the normalized values", res.Outputs)
	}
}

func TestMetadataStepRefusesABadLiteralAtLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		value string // the YAML value of the set entry on line 8
		field string
		want  string
	}{
		{"a String that fails its pattern shows the message", `Web-Team`, "Team", "set.Team: lower-case letters only"},
		{"an Integer with a fraction", `"1.5"`, "Count", `set.Count: "1.5" is not a whole number`},
		{"an Integer past int64", `"99999999999999999999"`, "Count", "set.Count: \"99999999999999999999\" does not fit a 64-bit integer"},
		{"a Date in the wrong order", `"01/03/2026"`, "Expires", "set.Expires: \"01/03/2026\" is not a date"},
		{"a Boolean yes", `"yes"`, "Internal", `set.Internal: "yes" is not a boolean`},
		{"a MultipleChoice in the wrong case", `prod`, "Env", `set.Env: "prod" is not one of the options (Prod, Test)`},
		{"an Email with a display name", `"PKI <pki@example.com>"`, "Owner", "set.Owner: \"PKI <pki@example.com>\" is not an email address"},
		{"a BigText over 64 KiB", strings.Repeat("x", 64<<10+1), "Notes", "set.Notes: 65537 bytes"},
		{"an empty Integer", `""`, "Count", `set.Count: "" is not a whole number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parse(typedFields(t), enrollStep(
				`  - id: tag`, `    uses: metadata`, `    with:`, `      set:`,
				`        `+tt.field+`: `+tt.value,
			)...)
			wantLoadError(t, err, 8, "tag", tt.want)
		})
	}
}

func TestMetadataStepLoadErrorIsAtTheBadValue(t *testing.T) {
	t.Parallel()
	_, err := parse(typedFields(t), enrollStep(
		`  - id: tag`, `    uses: metadata`, `    with:`, `      set:`,
		`        Team: web`,
		`        Count: "${{ 1 + 1 }}"`,
		`        Internal: maybe`,
		`        Owner: pki@example.com`,
	)...)
	wantLoadError(t, err, 10, "tag", `set.Internal: "maybe" is not a boolean`)
}

func TestMetadataStepChecksTemplatesOnlyWhenItRuns(t *testing.T) {
	t.Parallel()
	// A template's value is unknown until it runs: it loads, and its
	// evaluated value is checked then.
	cfg := typedFields(t)
	def := mustParse(t, cfg, enrollAfterLookup(
		`  - id: tag`, `    uses: metadata`, `    with:`, `      set:`,
		`        Count: "${{ steps.lookup.count }}"`,
	)...)
	for _, tc := range []struct {
		count any
		want  string // the stored value, or the error
		fails bool
	}{
		{count: 12, want: "12"},
		{count: "0042", want: "42"},
		{count: "twelve", want: `set.Count: "twelve" is not a whole number`, fails: true},
		{count: 1.5, want: `set.Count: "1.5" is not a whole number`, fails: true},
		{count: nil, want: `set.Count: "" is not a whole number`, fails: true},
	} {
		env := envFor(t, cfg, workflow.Request{ID: 7}, newCSR(t, "P-256", "x.example.com"),
			map[string]map[string]any{"lookup": {"count": tc.count}})
		res, err := runStep(t, def, "tag", env, nil)
		if !tc.fails {
			if err != nil || res.Metadata["Count"] != tc.want {
				t.Errorf("count %v: Metadata = %v, err %v; want Count %q", tc.count, res.Metadata, err, tc.want)
			}
			continue
		}
		var perm *workflow.PermanentError
		if !errors.As(err, &perm) {
			t.Errorf("count %v: Run = %v, want a *workflow.PermanentError", tc.count, err)
			continue
		}
		if err.Error() != tc.want && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("count %v: error %q, want %q", tc.count, err, tc.want)
		}
	}
}

func TestMetadataStepTemplateFailingAPatternIsPermanent(t *testing.T) {
	t.Parallel()
	cfg := typedFields(t)
	def := mustParse(t, cfg, enrollStep(
		`  - id: tag`, `    uses: metadata`, `    with:`, `      set:`,
		`        Team: "${{ csr.CommonName }}"`,
	)...)
	_, err := runStep(t, def, "tag", envFor(t, cfg, workflow.Request{}, newCSR(t, "P-256", "www.example.com"), nil), nil)
	var perm *workflow.PermanentError
	if !errors.As(err, &perm) || !strings.Contains(err.Error(), "set.Team: lower-case letters only") {
		t.Fatalf("Run = %v, want a permanent error set.Team: lower-case letters only", err)
	}
}

func TestMetadataStepWithoutConfiguredFieldsChecksNothing(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	def := mustParse(t, cfg, enrollStep(
		`  - id: tag`, `    uses: metadata`, `    with:`, `      set:`,
		`        Count: "+007"`,
		`        Internal: "TRUE"`,
	)...)
	res, err := runStep(t, def, "tag", envFor(t, cfg, workflow.Request{}, newCSR(t, "P-256", "x"), nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"Count": "+007", "Internal": "TRUE"}; !reflect.DeepEqual(res.Metadata, want) {
		t.Errorf("Metadata = %v, want the values as written %v", res.Metadata, want)
	}
}

func TestMetadataStepRefusesOneFieldSetTwice(t *testing.T) {
	t.Parallel()
	_, err := parse(typedFields(t), enrollStep(
		`  - id: tag`, `    uses: metadata`, `    with:`, `      set:`,
		`        Team: web`,
		`        team: ops`,
	)...)
	wantLoadError(t, err, 9, "tag", "set.Team: given twice")
}

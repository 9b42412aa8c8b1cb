package steps_test

import (
	"testing"

	"github.com/certflow/certflow/definitions"
	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

func TestIssueStepLoads(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		with []string // lines under `with:` (line 6); nil: no with
		err  string   // "" means it loads
		line int
	}{
		{name: "no with"},
		{name: "a configured authority", with: []string{`      authority: CertflowIssuingCA`}},
		{name: "an authority in another case", with: []string{`      authority: certflowissuingca`}},
		{name: "a host-qualified authority", with: []string{`      authority: 'certflow\CertflowIssuingCA'`}},
		{name: "a host-qualified authority with JSON's double backslash", with: []string{`      authority: 'certflow\\CertflowIssuingCA'`}},
		{name: "a templated authority is checked only at run time", with: []string{`      authority: "${{ request.CertificateAuthority }}"`}},
		{name: "a validity", with: []string{`      validity: 2160h`}},
		{name: "a validity in minutes", with: []string{`      validity: 90m`}},
		{name: "an unknown literal authority", with: []string{`      authority: NoSuchCA`}, err: `authority: unknown certificate authority "NoSuchCA"`, line: 7},
		{name: "an authority on another host", with: []string{`      authority: 'elsewhere\CertflowIssuingCA'`}, err: "unknown certificate authority", line: 7},
		{name: "a misspelt field in a templated authority", with: []string{`      authority: "${{ request.CA }}"`}, err: "CA", line: 7},
		{name: "a validity in days", with: []string{`      validity: 90d`}, err: `validity: "90d" is not a positive duration`, line: 7},
		{name: "a validity without a unit", with: []string{`      validity: "2160"`}, err: `validity: "2160"`, line: 7},
		{name: "a negative validity", with: []string{`      validity: -1h`}, err: `validity: "-1h"`, line: 7},
		{name: "a zero validity", with: []string{`      validity: 0s`}, err: `validity: "0s"`, line: 7},
		{name: "an unknown key", with: []string{`      validty: 24h`}, err: `unknown key "validty"`, line: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lines := []string{"name: t", "trigger: enrollment", "steps:", `  - id: sign`, `    uses: issue`}
			if tt.with != nil {
				lines = append(append(lines, `    with:`), tt.with...)
			}
			def, err := parse(defaultConfig(), lines...)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if len(def.Steps) != 1 || def.Steps[0].Uses != "issue" || def.Steps[0].Step == nil {
					t.Errorf("steps = %+v, want the one issue step", def.Steps)
				}
				return
			}
			wantLoadError(t, err, tt.line, "sign", tt.err)
		})
	}
}

func TestIssueStepIsAppendedToAnEnrollmentDefinition(t *testing.T) {
	t.Parallel()
	def := mustParse(t, defaultConfig(),
		"name: t", "trigger: enrollment", "steps:",
		`  - id: check`, `    uses: validate`,
	)
	if n := len(def.Steps); n != 2 || def.Steps[1].ID != "issue" || def.Steps[1].Uses != "issue" || def.Steps[1].Step == nil {
		t.Errorf("steps = %+v, want validate then an appended issue step", def.Steps)
	}
}

func TestShippedDefinitionsLoadWithTheDefaultConfig(t *testing.T) {
	t.Parallel()
	set, err := workflow.Load(definitions.FS, steps.ForLint(defaultConfig()).Catalog())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	all := set.All()
	if len(all) == 0 {
		t.Fatal("no shipped definitions")
	}
	def, err := set.Select("enrollment", &workflow.Env{})
	if err != nil {
		t.Fatalf("Select(enrollment): %v", err)
	}
	issues := 0
	for _, s := range def.Steps {
		if s.Uses == "issue" {
			issues++
		}
	}
	if issues != 1 {
		t.Errorf("%s has %d issue steps, want 1", def.Name, issues)
	}
}

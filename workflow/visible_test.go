package workflow_test

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/certflow/certflow/workflow"
)

func TestVisibleShowsRequestersOnlyWhatTheDefinitionNames(t *testing.T) {
	t.Parallel()
	def := mustParse(t, &fakes{}, yamlLines(
		`name: shown`,
		`trigger: enrollment`,
		`visible:`,
		`  - vars.tier`,
		`  - steps.owner.email`,
		`  - steps.lookup`,
		`  - steps.issue.serial`,
		`  - steps.secret.Cost.Center-2`,
		`steps:`,
		`  - id: owner`,
		`    uses: record`,
		`  - id: lookup`,
		`    uses: record`,
		`  - id: secret`,
		`    uses: record`,
	))
	if got := def.Visible.Entries; !slices.Equal(got, []string{"vars.tier", "steps.owner.email", "steps.lookup", "steps.issue.serial", "steps.secret.Cost.Center-2"}) {
		t.Errorf("Entries %v", got)
	}
	vars := map[string]any{"tier": "high", "cmdb_token": "s3cret"}
	outputs := map[string]map[string]any{
		"owner":  {"email": "o@example.com", "token": "s3cret"},
		"lookup": {"status": 200, "body": "ok", "error": "GET https://cmdb/?token=s3cret: 500"},
		"secret": {"value": "s3cret", "Cost.Center-2": "42"},
		"issue":  {"serial": "0A", "id": 7},
	}
	if got, want := def.Visible.Vars(vars), map[string]any{"tier": "high"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Vars = %v, want %v", got, want)
	}
	want := map[string]map[string]any{
		"owner":  {"email": "o@example.com"},
		"lookup": {"status": 200, "body": "ok"}, // a whole step, but not its error
		"issue":  {"serial": "0A"},
		"secret": {"Cost.Center-2": "42"}, // a metadata field's name, dots and all
	}
	if got := def.Visible.Outputs(outputs); !reflect.DeepEqual(got, want) {
		t.Errorf("Outputs = %v, want %v", got, want)
	}
	if outputs["owner"]["token"] != "s3cret" || vars["cmdb_token"] != "s3cret" {
		t.Error("filtering changed the instance's own maps")
	}

	var none workflow.Visibility // a definition without visible: shows nothing
	if len(none.Vars(vars)) != 0 || len(none.Outputs(outputs)) != 0 {
		t.Errorf("the zero Visibility shows %v %v", none.Vars(vars), none.Outputs(outputs))
	}
}

func TestVisibleErrorOutputIsShownOnlyWhenNamed(t *testing.T) {
	t.Parallel()
	def := mustParse(t, &fakes{}, yamlLines(
		`name: errors`,
		`trigger: event:x`,
		`visible: [steps.call, steps.call.error]`,
		`steps:`,
		`  - id: call`,
		`    uses: record`,
	))
	got := def.Visible.Outputs(map[string]map[string]any{"call": {"error": "boom", "status": 500}})
	if want := map[string]map[string]any{"call": {"error": "boom", "status": 500}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Outputs = %v, want %v", got, want)
	}
}

func TestVisibleEntriesAreCheckedAtLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, visible, at, want string
	}{
		{"not a list", `visible: vars.tier`, "bad.yaml:3:", "visible: want a list"},
		{"not vars or steps", `visible: [request.Template]`, "bad.yaml:3:", `"request.Template": want vars.<name>`},
		{"a nested var path", `visible: [vars.a.b]`, "bad.yaml:3:", `"vars.a.b": want`},
		{"an unknown step", `visible: [steps.nope.x]`, "bad.yaml:3:", `no step has id "nope"`},
		{"a mapping entry", `visible: [{vars: tier}]`, "bad.yaml:3:", "visible: want vars.<name>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := workflow.Parse("bad.yaml", yamlLines(
				`name: bad`,
				`trigger: event:x`,
				tt.visible,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
			), (&fakes{}).Catalog())
			if err == nil || !strings.HasPrefix(err.Error(), tt.at) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want at %s containing %q", err, tt.at, tt.want)
			}
		})
	}
}

// setsMetadata is a step type that sets the metadata names in its with.
type setsMetadata []string

func (s setsMetadata) Run(context.Context, *workflow.Run) (workflow.Result, error) {
	return workflow.Result{}, nil
}
func (s setsMetadata) MetadataNames() []string { return s }

func TestSetMetadataNamesReservesWhatWorkflowsSet(t *testing.T) {
	t.Parallel()
	catalog := (&fakes{}).Catalog()
	catalog["tag"] = func(spec *workflow.Spec) (workflow.Step, error) {
		var w struct {
			Names []string `yaml:"names"`
		}
		if err := spec.DecodeWith(&w); err != nil {
			return nil, err
		}
		return setsMetadata(w.Names), nil
	}
	fsys := fstest.MapFS{
		"a.yaml": {Data: yamlLines(`name: a`, `trigger: enrollment`, `steps:`, `  - {id: tag, uses: tag, with: {names: [Owner, requestedby]}}`)},
		"b.yaml": {Data: yamlLines(`name: b`, `trigger: revocation`, `steps:`, `  - {id: tag, uses: tag, with: {names: [RevokedBy, owner]}}`)},
	}
	set, err := workflow.Load(fsys, catalog)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ApprovedBy", "Owner", "RequestedBy", "RevokedBy", "Workflow"}
	if got := set.MetadataNames(); !slices.Equal(got, want) {
		t.Fatalf("MetadataNames = %v, want %v (each once, without regard to case)", got, want)
	}
	var empty *workflow.Set
	if got := empty.MetadataNames(); !slices.Equal(got, workflow.ReservedMetadata) {
		t.Fatalf("no definitions: %v, want the built-in reserved names", got)
	}
}

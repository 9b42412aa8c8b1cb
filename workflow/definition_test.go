package workflow_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/certflow/certflow/workflow"
)

func TestParseCompilesAGoodDefinition(t *testing.T) {
	t.Parallel()
	f := &fakes{}
	def := mustParse(t, f, yamlLines(
		`name: good`,
		`description: a definition with every field`,
		`trigger: enrollment`,
		`priority: 5`,
		`match: csr.KeyType == "ECC" && request.Template == "WebServer"`,
		`steps:`,
		`  - id: first`,
		`    uses: record`,
		`    with:`,
		`      outputs: {color: blue}`,
		`  - id: second_2`,
		`    uses: note`,
		`    if: steps.first.color == "blue"`,
		`    with:`,
		`      text: "cn=${{ csr.CommonName }}"`,
		`  - id: issue`,
		`    uses: issue`,
	))
	if def.Name != "good" || def.Description != "a definition with every field" || def.Trigger != "enrollment" || def.Priority != 5 {
		t.Errorf("header = %q %q %q %d", def.Name, def.Description, def.Trigger, def.Priority)
	}
	if def.Match == nil {
		t.Error("Match is nil, want the compiled match expression")
	}
	if def.File != "def.yaml" || def.Version == "" {
		t.Errorf("File, Version = %q, %q; want def.yaml and a content hash", def.File, def.Version)
	}
	var ids []string
	for _, s := range def.Steps {
		ids = append(ids, s.ID+":"+s.Uses)
	}
	if got, want := strings.Join(ids, " "), "first:record second_2:note issue:issue"; got != want {
		t.Errorf("steps = %s, want %s", got, want)
	}
	if def.Steps[0].If != nil || def.Steps[1].If == nil {
		t.Errorf("If programs: first=%v second=%v; want nil and compiled", def.Steps[0].If, def.Steps[1].If)
	}
	if got := def.Steps[1].Pos; got.File != "def.yaml" || got.Line != 11 {
		t.Errorf("second step Pos = %v, want def.yaml:11", got)
	}
}

func TestParseReportsEachLoadErrorAtItsPosition(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  []byte
		// at is the "file:line:" (or "file:line:column:") the error must start with.
		at string
		// step is the step id the error must name (`step "<id>"`), if any.
		step string
		want []string
	}{
		{
			name: "unknown top-level key",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`prority: 5`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
			),
			at:   "bad.yaml:3:1:",
			want: []string{`unknown key "prority"`, "priority"},
		},
		{
			name: "unknown key inside a step",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
				`    iff: "true"`,
			),
			at:   "bad.yaml:6:5:",
			want: []string{`unknown key "iff"`, "known: id, if, on_error, retry, timeout, uses, with"},
		},
		{
			name: "unknown key inside a step's with",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
				`    with:`,
				`      output: {x: 1}`,
			),
			at:   "bad.yaml:7:7:",
			step: "a",
			want: []string{`unknown key "output"`},
		},
		{
			name: "unknown step type lists the known types",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`steps:`,
				`  - id: a`,
				`    uses: recrod`,
			),
			at:   "bad.yaml:5:11:",
			step: "a",
			want: []string{`unknown step type "recrod"`, "known: boom, check, deny, issue, nop, note, perm, record"},
		},
		{
			name: "duplicate step id",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
				`  - id: b`,
				`    uses: record`,
				`  - id: a`,
				`    uses: record`,
			),
			at:   "bad.yaml:8:9:",
			step: "a",
			want: []string{"duplicate step id"},
		},
		{
			name: "invalid step id",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`steps:`,
				`  - id: Check-Key`,
				`    uses: record`,
			),
			at:   "bad.yaml:4:9:",
			step: "Check-Key",
			want: []string{`id "Check-Key"`, "lower-case"},
		},
		{
			name: "step id starting with a digit",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`steps:`,
				`  - id: 1st`,
				`    uses: record`,
			),
			at:   "bad.yaml:4:9:",
			step: "1st",
			want: []string{`id "1st"`},
		},
		{
			name: "misspelt field in if",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
				`  - id: b`,
				`    uses: record`,
				`    if: csr.CommonNam == "x"`,
			),
			// the column is that of the misspelt field itself
			at:   "bad.yaml:8:13:",
			step: "b",
			want: []string{`csr.CommonNam == \"x\"`, "CommonNam"},
		},
		{
			name: "misspelt field in match",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`priority: 3`,
				`match: csr.CommonNam == "x"`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
			),
			at:   "bad.yaml:4:",
			want: []string{"CommonNam"},
		},
		{
			name: "non-boolean if",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
				`    if: csr.KeyBits`,
			),
			at:   "bad.yaml:6:",
			step: "a",
			want: []string{"csr.KeyBits", "bool"},
		},
		{
			name: "non-boolean match",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`match: csr.CommonName`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
			),
			at:   "bad.yaml:3:",
			want: []string{"bool"},
		},
		{
			name: "misspelt field in a step's compiled with",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`steps:`,
				`  - id: gate`,
				`    uses: check`,
				`    with:`,
				`      rule: sans.DNZ != nil`,
				`      message: no`,
			),
			at:   "bad.yaml:7:",
			step: "gate",
			want: []string{"DNZ"},
		},
		{
			name: "bad trigger",
			src: yamlLines(
				`name: a`,
				`trigger: enrolment`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
			),
			at:   "bad.yaml:2:10:",
			want: []string{`trigger "enrolment"`, "event:<name>"},
		},
		{
			name: "missing trigger",
			src: yamlLines(
				`name: a`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
			),
			at:   "bad.yaml:1:1:",
			want: []string{`trigger ""`},
		},
		{
			name: "missing name",
			src: yamlLines(
				`trigger: event:x`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
			),
			at:   "bad.yaml:1:1:",
			want: []string{"name is required"},
		},
		{
			name: "empty steps",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`steps: []`,
			),
			at:   "bad.yaml:3:8:",
			want: []string{"at least one step"},
		},
		{
			name: "no steps key",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
			),
			at:   "bad.yaml:1:1:",
			want: []string{"at least one step"},
		},
		{
			name: "two issue steps in an enrollment definition",
			src: yamlLines(
				`name: a`,
				`trigger: enrollment`,
				`steps:`,
				`  - id: first`,
				`    uses: issue`,
				`  - id: second`,
				`    uses: issue`,
			),
			at:   "bad.yaml:4:3:",
			want: []string{"exactly one issue step"},
		},
		{
			name: "two issue steps in a renewal definition",
			src: yamlLines(
				`name: a`,
				`trigger: renewal`,
				`steps:`,
				`  - id: first`,
				`    uses: issue`,
				`  - id: second`,
				`    uses: issue`,
			),
			at:   "bad.yaml:4:3:",
			want: []string{"exactly one issue step"},
		},
		{
			name: "two revoke steps in a revocation definition",
			src: yamlLines(
				`name: a`,
				`trigger: revocation`,
				`steps:`,
				`  - id: first`,
				`    uses: revoke`,
				`  - id: second`,
				`    uses: revoke`,
			),
			at:   "bad.yaml:4:3:",
			want: []string{"exactly one revoke step"},
		},
		{
			name: "an if on the revoke step",
			src: yamlLines(
				`name: a`,
				`trigger: revocation`,
				`steps:`,
				`  - id: sign`,
				`    uses: revoke`,
				`    if: request.Revocation.Reason == 1`,
			),
			at:   "bad.yaml:6:9:",
			step: "sign",
			want: []string{"the revoke step takes no condition"},
		},
		{
			name: "an if on the issue step",
			src: yamlLines(
				`name: a`,
				`trigger: enrollment`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
				`  - id: sign`,
				`    uses: issue`,
				`    if: csr.KeyType == "RSA"`,
			),
			at:   "bad.yaml:8:9:",
			step: "sign",
			want: []string{"the issue step takes no condition"},
		},
		{
			name: "the id issue taken by another step type when the issue step is appended",
			src: yamlLines(
				`name: a`,
				`trigger: enrollment`,
				`steps:`,
				`  - id: issue`,
				`    uses: record`,
			),
			at:   "bad.yaml:4:",
			step: "issue",
			want: []string{`step id "issue" is taken`},
		},
		{
			name: "unterminated ${{ in a template",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
				`  - id: hello`,
				`    uses: note`,
				`    with:`,
				`      text: "hello ${{ csr.CommonName"`,
			),
			at:   "bad.yaml:9:",
			step: "hello",
			want: []string{"unterminated ${{"},
		},
		{
			name: "malformed YAML",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
				`  - id: b`,
				`    uses: record: x`,
			),
			at:   "bad.yaml:7:",
			want: []string{"mapping values are not allowed"},
		},
		{
			name: "a key given twice",
			src: yamlLines(
				`name: a`,
				`trigger: event:x`,
				`name: b`,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
			),
			// placed at the line of the second occurrence
			at:   "bad.yaml:3:1:",
			want: []string{`line 3: mapping key "name" already defined`},
		},
		{
			name: "a list instead of a mapping",
			src: yamlLines(
				`- name: a`,
			),
			at:   "bad.yaml:1:1:",
			want: []string{"cannot unmarshal"},
		},
	}
	f := &fakes{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			def, err := workflow.Parse("bad.yaml", tt.src, f.Catalog())
			if err == nil {
				t.Fatalf("Parse succeeded (%d steps), want a load error", len(def.Steps))
			}
			if def != nil {
				t.Errorf("Parse returned a definition along with the error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.at) {
				t.Errorf("error = %q\nwant it to start with %q", msg, tt.at)
			}
			if tt.step != "" && !strings.Contains(msg, `step "`+tt.step+`"`) {
				t.Errorf("error = %q\nwant it to name step %q", msg, tt.step)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error = %q\nwant it to contain %q", msg, w)
				}
			}
			var le *workflow.LoadError
			if !errors.As(err, &le) {
				t.Errorf("error %T is not a *workflow.LoadError", err)
			}
			// Only the assertions above may pass by accident; the recorded
			// steps must not have run at load.
			if ran := f.Ran(); len(ran) != 0 {
				t.Errorf("steps ran at load: %v", ran)
			}
		})
	}
}

// BUG (workflow/definition.go, checkKeys/decodeStrict): an unknown key
// directly inside a step entry is reported as `bad.yaml:6:5: unknown key
// "iff" ...` without `step "a"`, unlike every other step-level load error.
func TestParseUnknownKeyInsideAStepNamesTheStep(t *testing.T) {
	t.Parallel()
	_, err := workflow.Parse("bad.yaml", yamlLines(
		`name: a`,
		`trigger: event:x`,
		`steps:`,
		`  - id: a`,
		`    uses: record`,
		`    iff: "true"`,
	), (&fakes{}).Catalog())
	if err == nil || !strings.Contains(err.Error(), `step "a"`) {
		t.Errorf("error = %v, want it to name step \"a\"", err)
	}
}

// BUG (workflow/step.go, Spec.wrap): wrap uses errors.As, which finds only
// the first *LoadError of a joined error, so with two unknown keys in one
// step's `with:` only the first is tagged `step "<id>"`.
func TestParseEveryUnknownKeyInAStepsWithNamesTheStep(t *testing.T) {
	t.Parallel()
	_, err := workflow.Parse("bad.yaml", yamlLines(
		`name: a`,
		`trigger: event:x`,
		`steps:`,
		`  - id: a`,
		`    uses: record`,
		`    with:`,
		`      b: 1`,
		`      c: 2`,
	), (&fakes{}).Catalog())
	if err == nil {
		t.Fatal("Parse succeeded, want two load errors")
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.Contains(line, `step "a"`) {
			t.Errorf("error line %q does not name step \"a\"", line)
		}
	}
}

func TestParseReportsEverySemanticErrorInAFile(t *testing.T) {
	t.Parallel()
	_, err := workflow.Parse("bad.yaml", yamlLines(
		`name: a`,
		`trigger: enrolment`,
		`steps:`,
		`  - id: a`,
		`    uses: record`,
		`  - id: a`,
		`    uses: record`,
		`  - id: c`,
		`    uses: record`,
		`    if: csr.CommonNam == "x"`,
		`  - id: d`,
		`    uses: nope`,
	), (&fakes{}).Catalog())
	if err == nil {
		t.Fatal("Parse succeeded, want load errors")
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %T does not join several errors", err)
	}
	if got := len(joined.Unwrap()); got != 4 {
		t.Errorf("got %d errors, want 4:\n%v", got, err)
	}
	for _, want := range []string{
		`bad.yaml:2:10: trigger "enrolment"`,
		`bad.yaml:6:9: step "a": duplicate step id`,
		`bad.yaml:10:13: step "c": expression`,
		`bad.yaml:12:11: step "d": unknown step type "nope"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error = %q\nwant it to contain %q", err, want)
		}
	}
}

func TestParseReportsEveryUnknownKeyInAFile(t *testing.T) {
	t.Parallel()
	_, err := workflow.Parse("bad.yaml", yamlLines(
		`name: a`,
		`trigger: event:x`,
		`prio: 1`,
		`steps:`,
		`  - id: a`,
		`    uses: record`,
		`    iff: "true"`,
	), (&fakes{}).Catalog())
	if err == nil {
		t.Fatal("Parse succeeded, want load errors")
	}
	for _, want := range []string{`bad.yaml:3:1: unknown key "prio"`, `bad.yaml:7:5: step "a": unknown key "iff"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error = %q\nwant it to contain %q", err, want)
		}
	}
}

func TestParseAppendsTheTriggersCAStep(t *testing.T) {
	t.Parallel()
	tests := []struct {
		trigger string
		want    string
	}{
		{"enrollment", "a:record b:record issue:issue"},
		{"renewal", "a:record b:record issue:issue"},
		{"revocation", "a:record b:record revoke:revoke"},
		{"event:x", "a:record b:record"},
	}
	for _, tt := range tests {
		t.Run(tt.trigger, func(t *testing.T) {
			t.Parallel()
			def := mustParse(t, &fakes{}, yamlLines(
				`name: a`,
				`trigger: `+tt.trigger,
				`steps:`,
				`  - id: a`,
				`    uses: record`,
				`  - id: b`,
				`    uses: record`,
			))
			var got []string
			for _, s := range def.Steps {
				got = append(got, s.ID+":"+s.Uses)
				if s.Step == nil {
					t.Errorf("step %s has no Step", s.ID)
				}
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("steps = %s, want %s", strings.Join(got, " "), tt.want)
			}
		})
	}
}

func TestParseKeepsAnExplicitIssueStepWhereItIs(t *testing.T) {
	t.Parallel()
	def := mustParse(t, &fakes{}, yamlLines(
		`name: a`,
		`trigger: enrollment`,
		`steps:`,
		`  - id: sign`,
		`    uses: issue`,
		`  - id: after`,
		`    uses: record`,
	))
	if len(def.Steps) != 2 || def.Steps[0].ID != "sign" || def.Steps[1].ID != "after" {
		t.Errorf("steps = %+v, want sign then after and nothing appended", def.Steps)
	}
}

func TestParseVersionIsAHashOfTheContent(t *testing.T) {
	t.Parallel()
	src := yamlLines(`name: a`, `trigger: event:x`, `steps:`, `  - id: a`, `    uses: record`)
	edited := yamlLines(`name: a`, `description: edited`, `trigger: event:x`, `steps:`, `  - id: a`, `    uses: record`)
	f := &fakes{}
	v1 := mustParse(t, f, src).Version
	v2 := mustParse(t, f, src).Version
	v3 := mustParse(t, f, edited).Version
	if v1 != v2 {
		t.Errorf("same content gave versions %q and %q", v1, v2)
	}
	if v1 == v3 {
		t.Errorf("edited content kept version %q", v1)
	}
}

// definitionFile renders a minimal definition.
func definitionFile(name, trigger string, priority int, match string) *fstest.MapFile {
	lines := []string{`name: ` + name, `trigger: ` + trigger, `priority: ` + strconv.Itoa(priority)}
	if match != "" {
		lines = append(lines, `match: `+match)
	}
	lines = append(lines, `steps:`, `  - id: a`, `    uses: record`)
	return &fstest.MapFile{Data: yamlLines(lines...)}
}

func TestLoadRejectsAmbiguousSets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fsys fstest.MapFS
		want []string
	}{
		{
			name: "two definitions tie on trigger and priority",
			fsys: fstest.MapFS{
				"one.yaml": definitionFile("one", "enrollment", 5, `csr.KeyType == "RSA"`),
				"two.yaml": definitionFile("two", "enrollment", 5, `csr.KeyType == "ECC"`),
			},
			want: []string{"tie on trigger enrollment and priority 5", `"one"`, `"two"`},
		},
		{
			name: "two definitions share a name",
			fsys: fstest.MapFS{
				"one.yaml": definitionFile("same", "enrollment", 1, ""),
				"two.yml":  definitionFile("same", "enrollment", 2, ""),
			},
			want: []string{`definition name "same" is also used by`},
		},
		{
			name: "a file fails to parse",
			fsys: fstest.MapFS{
				"one.yaml": definitionFile("one", "enrollment", 1, ""),
				"bad.yaml": definitionFile("bad", "enrolment", 1, ""),
			},
			want: []string{`bad.yaml:2:10: trigger "enrolment"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			set, err := workflow.Load(tt.fsys, (&fakes{}).Catalog())
			if err == nil {
				t.Fatalf("Load succeeded with %d definitions, want an error", len(set.All()))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error = %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadAcceptsTheSamePriorityOnDifferentTriggers(t *testing.T) {
	t.Parallel()
	set, err := workflow.Load(fstest.MapFS{
		"enroll.yaml": definitionFile("enroll", "enrollment", 0, ""),
		"renew.yaml":  definitionFile("renew", "renewal", 0, ""),
		"event.yaml":  definitionFile("event", "event:expired", 0, ""),
	}, (&fakes{}).Catalog())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := len(set.All()); got != 3 {
		t.Errorf("All() has %d definitions, want 3", got)
	}
}

func TestLoadReadsOnlyYAMLFilesInTheRoot(t *testing.T) {
	t.Parallel()
	set, err := workflow.Load(fstest.MapFS{
		"a.yaml":         definitionFile("a", "enrollment", 2, ""),
		"b.yml":          definitionFile("b", "enrollment", 1, ""),
		"README.md":      &fstest.MapFile{Data: []byte("not: [a definition")},
		"sub/c.yaml":     definitionFile("c", "enrollment", 3, ""),
		"notes.yaml.bak": &fstest.MapFile{Data: []byte("{")},
		// Test files (certflow test) sit beside definitions and are no
		// definitions: not even a valid-looking one is loaded.
		"a.test.yaml": definitionFile("a-test", "enrollment", 9, ""),
		"b.test.yml":  &fstest.MapFile{Data: []byte("cases: [")},
	}, (&fakes{}).Catalog())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var names []string
	for _, d := range set.All() {
		names = append(names, d.Name)
	}
	if got := strings.Join(names, ","); got != "a,b" {
		t.Errorf("loaded %s, want a,b (by priority)", got)
	}
}

func TestLoadFilesLoadsOnlyTheNamedFiles(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"a.yaml": definitionFile("a", "enrollment", 0, ""),
		"b.yaml": definitionFile("b", "enrollment", 0, ""), // would tie with a
	}
	set, err := workflow.LoadFiles(fsys, []string{"a.yaml"}, (&fakes{}).Catalog())
	if err != nil {
		t.Fatalf("LoadFiles: %v", err)
	}
	if all := set.All(); len(all) != 1 || all[0].Name != "a" {
		t.Errorf("loaded %v, want only a", all)
	}
	if _, err := workflow.LoadFiles(fsys, []string{"missing.yaml"}, (&fakes{}).Catalog()); err == nil {
		t.Error("LoadFiles of a missing file succeeded")
	}
}

func TestSelect(t *testing.T) {
	t.Parallel()
	set, err := workflow.Load(fstest.MapFS{
		"vip.yaml":      definitionFile("vip", "enrollment", 20, `csr.CommonName == "vip.example.com"`),
		"rsa.yaml":      definitionFile("rsa", "enrollment", 10, `csr.KeyType == "RSA"`),
		"fallback.yaml": definitionFile("fallback", "enrollment", 0, ""),
		"renew.yaml":    definitionFile("renew-ecc", "renewal", 0, `csr.KeyType == "ECC"`),
	}, (&fakes{}).Catalog())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	tests := []struct {
		name    string
		trigger string
		csr     workflow.CSR
		want    string // "" means ErrNoDefinition
	}{
		{"the highest priority whose match holds", "enrollment", workflow.CSR{CommonName: "vip.example.com", KeyType: "RSA"}, "vip"},
		{"falls through when a higher match is false", "enrollment", workflow.CSR{CommonName: "www.example.com", KeyType: "RSA"}, "rsa"},
		{"a definition without match matches everything", "enrollment", workflow.CSR{CommonName: "www.example.com", KeyType: "ECC"}, "fallback"},
		{"only definitions of the trigger", "renewal", workflow.CSR{KeyType: "ECC"}, "renew-ecc"},
		{"none matches", "renewal", workflow.CSR{KeyType: "RSA"}, ""},
		{"no definition for the trigger", "revocation", workflow.CSR{KeyType: "RSA"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			def, err := set.Select(tt.trigger, &workflow.Env{CSR: tt.csr})
			if tt.want == "" {
				if !errors.Is(err, workflow.ErrNoDefinition) {
					t.Errorf("Select = %v, %v; want an error wrapping ErrNoDefinition", def, err)
				}
				if err != nil && !strings.Contains(err.Error(), tt.trigger) {
					t.Errorf("error %q does not name trigger %s", err, tt.trigger)
				}
				return
			}
			if err != nil {
				t.Fatalf("Select: %v", err)
			}
			if def.Name != tt.want {
				t.Errorf("Select chose %s, want %s", def.Name, tt.want)
			}
		})
	}
}

func TestSelectReportsAMatchThatFailsAtRunTime(t *testing.T) {
	t.Parallel()
	set, err := workflow.Load(fstest.MapFS{
		"a.yaml": definitionFile("a", "enrollment", 0, `vars.n > 1`),
	}, (&fakes{}).Catalog())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	_, err = set.Select("enrollment", &workflow.Env{Vars: map[string]any{"n": "not a number"}})
	if err == nil || errors.Is(err, workflow.ErrNoDefinition) || !strings.Contains(err.Error(), "definition a: match") {
		t.Errorf("Select error = %v, want the match's evaluation error naming definition a", err)
	}
}

func TestGetFindsThePinnedVersion(t *testing.T) {
	t.Parallel()
	old := definitionFile("a", "enrollment", 0, "")
	edited := definitionFile("a", "enrollment", 1, "")
	f := &fakes{}
	setOld, err := workflow.Load(fstest.MapFS{"a.yaml": old}, f.Catalog())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	setNew, err := workflow.Load(fstest.MapFS{"a.yaml": edited}, f.Catalog())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	oldV, newV := setOld.All()[0].Version, setNew.All()[0].Version
	if oldV == newV {
		t.Fatalf("editing the file kept version %s", oldV)
	}
	tests := []struct {
		name    string
		set     *workflow.Set
		defName string
		version string
		found   bool
	}{
		{"current version", setNew, "a", newV, true},
		{"superseded version is not in the new set", setNew, "a", oldV, false},
		{"old set still has its version", setOld, "a", oldV, true},
		{"unknown name", setNew, "b", newV, false},
		{"empty version", setNew, "a", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, ok := tt.set.Get(tt.defName, tt.version)
			if ok != tt.found {
				t.Fatalf("Get(%q, %q) found = %v, want %v", tt.defName, tt.version, ok, tt.found)
			}
			if ok && (d.Name != tt.defName || d.Version != tt.version) {
				t.Errorf("Get returned %s@%s", d.Name, d.Version)
			}
		})
	}
}

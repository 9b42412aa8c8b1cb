package workflow_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/certflow/certflow/workflow"
)

func TestTemplateValueAndString(t *testing.T) {
	t.Parallel()
	env := &workflow.Env{
		CSR:       workflow.CSR{CommonName: "www.example.com", KeyBits: 2048, DNSNames: []string{"a.example.com", "b.example.com"}},
		Requester: workflow.Requester{Name: "alice"},
		Steps:     map[string]map[string]any{"check": {"score": 7}},
		Vars:      map[string]any{"flag": true},
	}
	tests := []struct {
		name      string
		src       string
		literal   bool
		wantValue any
		wantText  string
	}{
		{"literal text stays text", "Workflow enrollment-default", true, "Workflow enrollment-default", "Workflow enrollment-default"},
		{"empty text", "", true, "", ""},
		{"braces without a dollar are literal", "{{ csr.CommonName }}", true, "{{ csr.CommonName }}", "{{ csr.CommonName }}"},
		{"one expression keeps an int an int", "${{ csr.KeyBits }}", false, 2048, "2048"},
		{"one expression keeps a bool a bool", "${{ vars.flag }}", false, true, "true"},
		{"one expression keeps a slice a slice", "${{ csr.DNSNames }}", false, []string{"a.example.com", "b.example.com"}, "[a.example.com b.example.com]"},
		{"one expression computes", "${{ csr.KeyBits * 2 }}", false, 4096, "4096"},
		{"spaces inside the braces do not matter", "${{csr.CommonName}}", false, "www.example.com", "www.example.com"},
		{"step outputs are visible", "${{ steps.check.score }}", false, 7, "7"},
		{"mixed text and expressions join as text", "cn=${{ csr.CommonName }} bits=${{ csr.KeyBits }} by ${{ requester.Name }}", false, "cn=www.example.com bits=2048 by alice", "cn=www.example.com bits=2048 by alice"},
		{"text around one expression makes text", " ${{ csr.KeyBits }}", false, " 2048", " 2048"},
		{"two adjacent expressions join", "${{ csr.KeyBits }}${{ csr.KeyBits }}", false, "20482048", "20482048"},
		{"nil renders as empty text", "[${{ vars.missing }}]", false, "[]", "[]"},
		{"a lone nil is nil as a value and empty as text", "${{ nil }}", false, nil, ""},
		{"an unset step output renders as empty text", "x${{ steps.none.out }}y", false, "xy", "xy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tpl, err := workflow.CompileTemplate(tt.src, workflow.Pos{File: "t.yaml", Line: 1, Column: 1})
			if err != nil {
				t.Fatalf("CompileTemplate(%q): %v", tt.src, err)
			}
			if tpl.Source != tt.src {
				t.Errorf("Source = %q, want %q", tpl.Source, tt.src)
			}
			if got := tpl.IsLiteral(); got != tt.literal {
				t.Errorf("IsLiteral() = %v, want %v", got, tt.literal)
			}
			v, err := tpl.Value(env)
			if err != nil {
				t.Fatalf("Value: %v", err)
			}
			if !reflect.DeepEqual(v, tt.wantValue) {
				t.Errorf("Value() = %#v (%T), want %#v (%T)", v, v, tt.wantValue, tt.wantValue)
			}
			s, err := tpl.String(env)
			if err != nil {
				t.Fatalf("String: %v", err)
			}
			if s != tt.wantText {
				t.Errorf("String() = %q, want %q", s, tt.wantText)
			}
		})
	}
}

func TestTemplateStringRendersANilPointerAsEmpty(t *testing.T) {
	t.Parallel()
	var none *int
	tpl, err := workflow.CompileTemplate("<${{ vars.p }}>", workflow.Pos{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := tpl.String(&workflow.Env{Vars: map[string]any{"p": none}})
	if err != nil {
		t.Fatal(err)
	}
	if got != "<>" {
		t.Errorf("String() = %q, want %q", got, "<>")
	}
}

func TestCompileTemplateRejects(t *testing.T) {
	t.Parallel()
	pos := workflow.Pos{File: "t.yaml", Line: 4, Column: 9}
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"an unterminated ${{", "hello ${{ csr.CommonName", "unterminated ${{"},
		{"a second unterminated ${{", "${{ csr.CommonName }} and ${{ csr.KeyBits", "unterminated ${{"},
		{"an empty expression", "a${{ }}b", "empty expression"},
		{"an unknown field", "${{ csr.CommonNam }}", "CommonNam"},
		{"an unknown variable", "${{ request.Templat }}", "Templat"},
		{"a syntax error", "${{ csr.CommonName + }}", "expression"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tpl, err := workflow.CompileTemplate(tt.src, pos)
			if err == nil {
				t.Fatalf("CompileTemplate(%q) = %+v, want an error", tt.src, tpl)
			}
			var le *workflow.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error %T is not a *workflow.LoadError", err)
			}
			if le.Pos.File != "t.yaml" || le.Pos.Line != 4 {
				t.Errorf("error at %v, want t.yaml:4", le.Pos)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestTemplateEvaluationErrorsAreReturned(t *testing.T) {
	t.Parallel()
	tpl, err := workflow.CompileTemplate("n=${{ vars.n + 1 }}", workflow.Pos{})
	if err != nil {
		t.Fatal(err)
	}
	env := &workflow.Env{Vars: map[string]any{"n": "seven"}}
	if s, err := tpl.String(env); err == nil {
		t.Errorf("String() = %q, want an evaluation error", s)
	}
	if v, err := tpl.Value(env); err == nil {
		t.Errorf("Value() = %v, want an evaluation error", v)
	}
}

func TestCompileBool(t *testing.T) {
	t.Parallel()
	env := &workflow.Env{
		CSR:  workflow.CSR{KeyType: "RSA", KeyBits: 3072, CommonName: "www.example.com"},
		SANs: workflow.SANs{DNS: []string{"a.example.com", "b.example.com"}},
	}
	tests := []struct {
		name    string
		src     string
		want    bool
		compile string // non-empty: a compile error containing this
	}{
		{"a true comparison", `csr.KeyType == "RSA" && csr.KeyBits >= 2048`, true, ""},
		{"a false comparison", `csr.KeyBits < 2048`, false, ""},
		{"a predicate over SANs", `all(sans.DNS, {# endsWith ".example.com"})`, true, ""},
		{"a literal", `true`, true, ""},
		{"an int is not a bool", `csr.KeyBits`, false, "bool"},
		{"a string is not a bool", `csr.CommonName`, false, "bool"},
		{"a misspelt field", `csr.Keytype == "RSA"`, false, "Keytype"},
		{"an unknown top-level name", `cert.ID > 0`, false, "cert"},
		{"an empty expression", `  `, false, "empty expression"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := workflow.CompileBool(tt.src, workflow.Pos{File: "c.yaml", Line: 2, Column: 8})
			if tt.compile != "" {
				if err == nil {
					t.Fatalf("CompileBool(%q) succeeded, want an error containing %q", tt.src, tt.compile)
				}
				if !strings.Contains(err.Error(), tt.compile) || !strings.HasPrefix(err.Error(), "c.yaml:2:") {
					t.Errorf("error = %q, want c.yaml:2:… containing %q", err, tt.compile)
				}
				return
			}
			if err != nil {
				t.Fatalf("CompileBool(%q): %v", tt.src, err)
			}
			got, err := p.Bool(env)
			if err != nil {
				t.Fatalf("Bool: %v", err)
			}
			if got != tt.want {
				t.Errorf("Bool() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestProgramBoolRejectsANonBoolResult(t *testing.T) {
	t.Parallel()
	// CompileValue does not force bool; Bool must still refuse other types.
	p, err := workflow.CompileValue(`csr.KeyBits`, workflow.Pos{})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := p.Bool(&workflow.Env{CSR: workflow.CSR{KeyBits: 1}}); err == nil || !strings.Contains(err.Error(), "want bool") {
		t.Errorf("Bool() = %v, %v; want a 'want bool' error", b, err)
	}
}

func TestProgramIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	p, err := workflow.CompileBool(`csr.KeyBits == vars.want`, workflow.Pos{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			for j := range 200 {
				bits := i*1000 + j
				ok, err := p.Bool(&workflow.Env{CSR: workflow.CSR{KeyBits: bits}, Vars: map[string]any{"want": bits}})
				if err != nil || !ok {
					t.Fatalf("Bool() = %v, %v; want true", ok, err)
				}
			}
		})
	}
}

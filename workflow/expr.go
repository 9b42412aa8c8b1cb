package workflow

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"
)

// Pos is a place in a definition file.
type Pos struct {
	File   string
	Line   int
	Column int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column) }

// PosOf returns the position of a YAML node in file.
func PosOf(file string, n *yaml.Node) Pos { return Pos{File: file, Line: n.Line, Column: n.Column} }

// Program is an expression compiled once, at load, against Env.
type Program struct {
	Source string
	prog   *vm.Program
	// refs are the step ids the expression reads as steps.<id>.
	refs []string
}

// StepRefs returns the ids of the steps whose outputs the program reads.
func (p *Program) StepRefs() []string { return p.refs }

// stepRefs collects <id> of every steps.<id> and steps["<id>"] in node.
func stepRefs(node ast.Node) []string {
	v := &refVisitor{}
	ast.Walk(&node, v)
	return v.ids
}

type refVisitor struct{ ids []string }

func (v *refVisitor) Visit(n *ast.Node) {
	m, ok := (*n).(*ast.MemberNode)
	if !ok {
		return
	}
	if id, ok := m.Node.(*ast.IdentifierNode); !ok || id.Value != "steps" {
		return
	}
	if prop, ok := m.Property.(*ast.StringNode); ok && !slices.Contains(v.ids, prop.Value) {
		v.ids = append(v.ids, prop.Value)
	}
}

// vms pools expression VMs: a compiled *vm.Program is shared, a VM's stack
// is not.
var vms = sync.Pool{New: func() any { return new(vm.VM) }}

// Eval runs the program in env.
func (p *Program) Eval(env *Env) (any, error) {
	m := vms.Get().(*vm.VM)
	defer vms.Put(m)
	out, err := m.Run(p.prog, env)
	if err != nil {
		return nil, fmt.Errorf("evaluate %q: %w", p.Source, err)
	}
	return out, nil
}

// Bool runs a program compiled with CompileBool.
func (p *Program) Bool(env *Env) (bool, error) {
	out, err := p.Eval(env)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("evaluate %q: got %T, want bool", p.Source, out)
	}
	return b, nil
}

// envType is what expressions are type-checked against.
var envType = Env{}

// CompileBool compiles a bare boolean expression (match, if, check).
func CompileBool(src string, pos Pos) (*Program, error) {
	return compile(src, pos, expr.AsBool())
}

// CompileValue compiles a bare expression of any type.
func CompileValue(src string, pos Pos) (*Program, error) {
	return compile(src, pos)
}

func compile(src string, pos Pos, opts ...expr.Option) (*Program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, &LoadError{Pos: pos, Msg: "empty expression"}
	}
	opts = append([]expr.Option{expr.Env(envType)}, opts...)
	prog, err := expr.Compile(src, opts...)
	if err != nil {
		return nil, &LoadError{Pos: exprPos(pos, err), Msg: "expression " + quoteShort(src) + ": " + exprMessage(err)}
	}
	return &Program{Source: src, prog: prog, refs: stepRefs(prog.Node())}, nil
}

// exprPos moves pos to the expression's error position when it can: the
// error's column counts from the start of the expression source.
func exprPos(pos Pos, err error) Pos {
	var fe *file.Error
	if errors.As(err, &fe) && fe.Line <= 1 && fe.Column >= 0 {
		pos.Column += fe.Column
	}
	return pos
}

func exprMessage(err error) string {
	var fe *file.Error
	if errors.As(err, &fe) {
		return fe.Message
	}
	return err.Error()
}

func quoteShort(s string) string {
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// Template is a string that may embed ${{ expr }}. A template that is one
// expression and nothing else evaluates to the expression's own value;
// otherwise the parts are joined as text.
type Template struct {
	Source string
	parts  []templatePart
}

type templatePart struct {
	text string
	prog *Program
}

// CompileTemplate compiles every ${{ }} in s.
func CompileTemplate(s string, pos Pos) (*Template, error) {
	t := &Template{Source: s}
	rest := s
	for {
		i := strings.Index(rest, "${{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, templatePart{text: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, templatePart{text: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, &LoadError{Pos: pos, Msg: fmt.Sprintf("unterminated ${{ in %s", quoteShort(s))}
		}
		src := strings.TrimSpace(rest[i+3 : i+j])
		prog, err := CompileValue(src, pos)
		if err != nil {
			return nil, err
		}
		t.parts = append(t.parts, templatePart{prog: prog})
		rest = rest[i+j+2:]
	}
}

// StepRefs returns the ids of the steps whose outputs the template reads.
func (t *Template) StepRefs() []string {
	var ids []string
	for _, p := range t.parts {
		if p.prog != nil {
			for _, id := range p.prog.refs {
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		}
	}
	return ids
}

// IsLiteral reports whether the template holds no expression.
func (t *Template) IsLiteral() bool {
	for _, p := range t.parts {
		if p.prog != nil {
			return false
		}
	}
	return true
}

// Value evaluates the template; see Template.
func (t *Template) Value(env *Env) (any, error) {
	if len(t.parts) == 1 && t.parts[0].prog != nil {
		return t.parts[0].prog.Eval(env)
	}
	return t.String(env)
}

// String evaluates the template to text. A nil result renders as "".
func (t *Template) String(env *Env) (string, error) {
	return t.Render(env, nil)
}

// Render is String with every expression's text passed through escape
// (when not nil) before it is joined to the literal parts: the caller
// decides what a value may not do where it lands (url.PathEscape for a
// URL's path). escape may refuse a value with an error.
func (t *Template) Render(env *Env, escape func(string) (string, error)) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.prog == nil {
			b.WriteString(p.text)
			continue
		}
		v, err := p.prog.Eval(env)
		if err != nil {
			return "", err
		}
		var text string
		if v != nil && !(reflect.ValueOf(v).Kind() == reflect.Pointer && reflect.ValueOf(v).IsNil()) {
			text = fmt.Sprint(v)
		}
		if escape != nil {
			if text, err = escape(text); err != nil {
				return "", fmt.Errorf("%s: %w", quoteShort(p.prog.Source), err)
			}
		}
		b.WriteString(text)
	}
	return b.String(), nil
}

// Literals returns the template's literal text split at its expressions:
// one string more than there are expressions, the first being the text
// before the first expression (each may be ""). A caller checks with it
// where in its text a value would land.
func (t *Template) Literals() []string {
	out := []string{""}
	for _, p := range t.parts {
		if p.prog == nil {
			out[len(out)-1] += p.text
			continue
		}
		out = append(out, "")
	}
	return out
}

package steps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// bodyValue is a compiled node of a structured http body: evaluated per
// request into what encoding/json then encodes, so that no value can
// change the body's shape.
type bodyValue interface {
	eval(env *workflow.Env) (any, error)
}

type (
	literalValue  struct{ v any }
	templateValue struct{ t *workflow.Template }
	listValue     []bodyValue
	objectValue   struct {
		keys []string
		vals []bodyValue
	}
)

func (l literalValue) eval(*workflow.Env) (any, error) { return l.v, nil }

// eval: a leaf that is one expression keeps the expression's type; one
// that mixes text and ${{ }} is a string.
func (t templateValue) eval(env *workflow.Env) (any, error) { return t.t.Value(env) }

func (l listValue) eval(env *workflow.Env) (any, error) {
	out := make([]any, len(l))
	for i, v := range l {
		x, err := v.eval(env)
		if err != nil {
			return nil, err
		}
		out[i] = x
	}
	return out, nil
}

func (o objectValue) eval(env *workflow.Env) (any, error) {
	out := orderedObject{keys: o.keys, vals: make([]any, len(o.vals))}
	for i, v := range o.vals {
		x, err := v.eval(env)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.keys[i], err)
		}
		out.vals[i] = x
	}
	return out, nil
}

// orderedObject is a JSON object whose keys keep the definition's order.
type orderedObject struct {
	keys []string
	vals []any
}

// MarshalJSON encodes the object with its keys in order.
func (o orderedObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		key, _ := json.Marshal(k)
		b.Write(key)
		b.WriteByte(':')
		v, err := json.Marshal(o.vals[i])
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// compileBody compiles a YAML map, list or scalar found at node (path
// names it in errors) into a bodyValue.
func compileBody(spec *workflow.Spec, node *yaml.Node, path string) (bodyValue, error) {
	switch node.Kind {
	case yaml.MappingNode:
		var o objectValue
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			switch {
			case k.Kind != yaml.ScalarNode || k.Tag == "!!merge":
				return nil, spec.Errorf(k, "%s: keys are plain strings (no merge keys or aliases)", path)
			case strings.Contains(k.Value, "${{"):
				return nil, spec.Errorf(k, "%s: a key may not embed ${{ }} (a value would choose the key); put the value under a literal key", path)
			}
			sub, err := compileBody(spec, v, path+"."+k.Value)
			if err != nil {
				return nil, err
			}
			o.keys = append(o.keys, k.Value)
			o.vals = append(o.vals, sub)
		}
		return o, nil
	case yaml.SequenceNode:
		l := make(listValue, 0, len(node.Content))
		for i, c := range node.Content {
			sub, err := compileBody(spec, c, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			l = append(l, sub)
		}
		return l, nil
	case yaml.ScalarNode:
		switch node.Tag {
		case "!!int", "!!float", "!!bool", "!!null":
			var v any
			if err := node.Decode(&v); err != nil {
				return nil, spec.Errorf(node, "%s: %v", path, err)
			}
			if _, err := json.Marshal(v); err != nil {
				return nil, spec.Errorf(node, "%s: %q has no JSON form", path, node.Value)
			}
			return literalValue{v}, nil
		}
		t, err := spec.Template(node.Value, node)
		if err != nil {
			return nil, err
		}
		if t.IsLiteral() {
			return literalValue{node.Value}, nil
		}
		return templateValue{t}, nil
	}
	return nil, spec.Errorf(node, "%s: YAML aliases are not supported in a body; write the value out", path)
}

// httpQuery is a compiled `query:`.
type httpQuery []queryParam

// compileQuery compiles `query:`, a map of parameter name to template.
func compileQuery(spec *workflow.Spec, node *yaml.Node) (httpQuery, error) {
	if node.Kind == 0 {
		return nil, nil
	}
	if node.Kind != yaml.MappingNode {
		return nil, spec.Errorf(node, "query: want a map of parameter names to values (values may embed ${{ }})")
	}
	var q httpQuery
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "" || k.Tag == "!!merge" || strings.Contains(k.Value, "${{") {
			return nil, spec.Errorf(k, "query: a parameter name is a literal, non-empty string")
		}
		if v.Kind != yaml.ScalarNode {
			return nil, spec.Errorf(v, "query.%s: want a string (may embed ${{ }}); one ${{ }} that yields a list repeats the parameter", k.Value)
		}
		t, err := spec.Template(v.Value, v)
		if err != nil {
			return nil, err
		}
		q = append(q, queryParam{name: k.Value, value: t})
	}
	return q, nil
}

// render evaluates the parameters to (name, value) pairs, in order.
func (q httpQuery) render(env *workflow.Env) ([][2]string, error) {
	var pairs [][2]string
	for _, p := range q {
		v, err := p.value.Value(env)
		if err != nil {
			return nil, fmt.Errorf("query.%s: %w", p.name, err)
		}
		rv := reflect.ValueOf(v)
		if v != nil && (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array) && rv.Type().Elem().Kind() != reflect.Uint8 {
			for i := range rv.Len() {
				pairs = append(pairs, [2]string{p.name, text(rv.Index(i).Interface())})
			}
			continue
		}
		pairs = append(pairs, [2]string{p.name, text(v)})
	}
	return pairs, nil
}

// text renders a value as a template does: nil (or a nil pointer) as "".
func text(v any) string {
	if v == nil {
		return ""
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return ""
	}
	return fmt.Sprint(v)
}

package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

var durationType = reflect.TypeOf(time.Duration(0))

// checkShape walks a config file's YAML against the type it decodes into
// and reports, in the file's own terms, every unknown key (with the
// closest known one) and every value of the wrong kind, each with its
// line and key path: `unknown key "key_prefx" (did you mean
// "key_prefix"?)`, `worker.poll_interval: want a duration like 10ms, got
// 5`. yaml.v3's own messages name Go types and fields ("field key_prefx
// not found in type config.Config"), which the file's author never saw.
func checkShape(file string, n *yaml.Node, t reflect.Type) error {
	var errs []error
	bad := func(n *yaml.Node, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config %s:%d: %s", file, n.Line, fmt.Sprintf(format, args...)))
	}
	var walk func(n *yaml.Node, t reflect.Type, path string)
	walk = func(n *yaml.Node, t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return // an empty value keeps the default
		}
		at := path
		if at == "" {
			at = "the file"
		}
		switch {
		case t == durationType:
			if n.Kind != yaml.ScalarNode || n.Decode(new(time.Duration)) != nil {
				bad(n, "%s: want a duration like 10ms, got %s", at, shown(n))
			}
		case t.Kind() == reflect.Struct:
			if n.Kind != yaml.MappingNode {
				bad(n, "%s: want a mapping of keys, got %s", at, shown(n))
				return
			}
			fields := yamlFields(t)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				ft, ok := fields[k.Value]
				if !ok {
					where := ""
					if path != "" {
						where = path + ": "
					}
					bad(k, "%sunknown key %q %s", where, k.Value, suggest(k.Value, fields))
					continue
				}
				walk(n.Content[i+1], ft, join(path, k.Value))
			}
		case t.Kind() == reflect.Slice:
			if n.Kind != yaml.SequenceNode {
				bad(n, "%s: want a list, got %s", at, shown(n))
				return
			}
			for i, c := range n.Content {
				walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
		case n.Kind != yaml.ScalarNode:
			bad(n, "%s: want a single value, got a %s", at, map[yaml.Kind]string{yaml.MappingNode: "mapping", yaml.SequenceNode: "list"}[n.Kind])
		case n.Decode(reflect.New(t).Interface()) != nil:
			want := map[reflect.Kind]string{reflect.Bool: "true or false", reflect.String: "text"}[t.Kind()]
			if t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64 {
				want = "a whole number"
			} else if want == "" {
				want = "a number"
			}
			bad(n, "%s: want %s, got %s", at, want, shown(n))
		}
	}
	walk(n, t, "")
	return errors.Join(errs...)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// shown is a scalar as written in the file (quoted when it is a string
// that reads as something else), or what kind of node it is.
func shown(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		return strconv.Quote(n.Value)
	}
	return n.Value
}

// yamlFields are a struct's keys as a file spells them, inline structs'
// included.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-":
		case strings.Contains(opts, "inline"):
			for k, v := range yamlFields(f.Type) {
				fields[k] = v
			}
		case name == "":
			fields[strings.ToLower(f.Name)] = f.Type
		default:
			fields[name] = f.Type
		}
	}
	return fields
}

// suggest names the known key closest to an unknown one, or lists the
// known keys when none is close.
func suggest(key string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	slices.Sort(names)
	best, bestD := "", -1
	for _, k := range names {
		if d := editDistance(strings.ToLower(key), k); bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	if bestD >= 0 && (bestD <= 2 || bestD <= len(key)/3) && bestD < len(key) {
		return fmt.Sprintf("(did you mean %q?)", best)
	}
	return "(known: " + strings.Join(names, ", ") + ")"
}

// editDistance is the optimal-string-alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent letters.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

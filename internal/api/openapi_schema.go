package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// schemas turns Go types into OpenAPI 3.0 schemas as encoding/json writes
// and reads them, so the contract's shapes are the code's: structs become
// components named after their type (fields by their json names, embedded
// structs flattened), pointers, slices and maps nullable (Go writes nil as
// null), time.Time a date-time string, any and json.RawMessage any JSON.
// In answers (required), a field without omitempty or omitzero is always
// written, so it is required; requests require nothing by schema: the
// handlers name what is missing in Keyfactor's error shape.
type schemas struct {
	components map[string]any
	// seen is each component's type and direction, to refuse two types (or
	// one type both ways) under one name.
	seen map[string]schemaUse
}

type schemaUse struct {
	t        reflect.Type
	required bool
}

// enums are the values a string field of an answer takes, by
// "Type.Field": the constants the code writes, so a new one it starts
// writing without the contract saying so fails the end-to-end suite.
var enums = func() map[string][]string {
	dispositions := []string{}
	for _, d := range []store.Disposition{store.Queued, store.Running, store.Pending, store.Issued, store.Denied, store.Failed, store.Cancelled, store.Revoked} {
		dispositions = append(dispositions, string(d))
	}
	statuses := []string{}
	for _, s := range []workflow.Status{workflow.StatusRunning, workflow.StatusSuspended, workflow.StatusComplete, workflow.StatusRejected, workflow.StatusFailed} {
		statuses = append(statuses, string(s))
	}
	return map[string][]string{
		"CertificateInformation.RequestDisposition":    dispositions,
		"PFXCertificateInformation.RequestDisposition": dispositions,
		"RenewalResponse.RequestDisposition":           dispositions,
		"Instance.RequestDisposition":                  dispositions,
		"Instance.Status":                              statuses,
	}
}()

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

// of returns the schema of v's type; required: v is written by certflow.
func (s *schemas) of(v any, required bool) map[string]any {
	return s.schema(reflect.TypeOf(v), required)
}

func (s *schemas) schema(t reflect.Type, required bool) map[string]any {
	nullable := false
	for t.Kind() == reflect.Pointer {
		t, nullable = t.Elem(), true
	}
	var out map[string]any
	switch {
	case t == timeType:
		out = map[string]any{"type": "string", "format": "date-time"}
	case t == rawType || t.Kind() == reflect.Interface:
		return map[string]any{"nullable": true} // any JSON, null included
	case t.Kind() == reflect.Struct:
		out = map[string]any{"$ref": "#/components/schemas/" + s.component(t, required)}
		if nullable {
			return map[string]any{"allOf": []any{out}, "nullable": true}
		}
		return out
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		out = map[string]any{"type": "string", "format": "byte"}
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		out, nullable = map[string]any{"type": "array", "items": s.schema(t.Elem(), required)}, nullable || t.Kind() == reflect.Slice
	case t.Kind() == reflect.Map:
		out, nullable = map[string]any{"type": "object", "additionalProperties": s.schema(t.Elem(), required)}, true
	case t.Kind() == reflect.String:
		out = map[string]any{"type": "string"}
	case t.Kind() == reflect.Bool:
		out = map[string]any{"type": "boolean"}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		out = map[string]any{"type": "integer"}
		if t.Bits() == 64 {
			out["format"] = "int64"
		}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		out = map[string]any{"type": "number"}
	default:
		panic(fmt.Sprintf("openapi: no schema for %s", t))
	}
	if nullable {
		out["nullable"] = true
	}
	return out
}

// component registers struct type t under its name and returns the name.
func (s *schemas) component(t reflect.Type, required bool) string {
	name := t.Name()
	if use, ok := s.seen[name]; ok {
		if use.t != t || use.required != required {
			panic(fmt.Sprintf("openapi: two schemas named %s (%s, %s; answers: %v, %v)", name, use.t, t, use.required, required))
		}
		return name
	}
	s.seen[name] = schemaUse{t, required}
	props := map[string]any{}
	var req []string
	s.fields(t, required, props, &req)
	obj := map[string]any{"type": "object", "properties": props}
	if len(req) > 0 {
		obj["required"] = req
	}
	s.components[name] = obj
	return name
}

// fields adds t's JSON fields to props (and, for answers, those always
// written to req), as encoding/json sees them.
func (s *schemas) fields(t reflect.Type, required bool, props map[string]any, req *[]string) {
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			s.fields(f.Type, required, props, req) // promoted, even from an unexported type
			continue
		}
		if !f.IsExported() || tag == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = s.schema(f.Type, required)
		if values, ok := enums[t.Name()+"."+name]; ok {
			props[name].(map[string]any)["enum"] = values
		}
		if required && !strings.Contains(","+opts+",", ",omitempty,") && !strings.Contains(","+opts+",", ",omitzero,") {
			*req = append(*req, name)
		}
	}
}

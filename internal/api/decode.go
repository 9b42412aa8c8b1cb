package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// decodeJSON decodes one JSON object from the (size-limited) body and names
// the field of a type mismatch.
func decodeJSON(r *http.Request, v any) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return err // *http.MaxBytesError → 413
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return badField("request body", "empty; want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return badField(te.Field, "want %s, got a JSON %s", jsonKind(te.Type.String()), te.Value)
		case errors.As(err, &te):
			// The body itself has the wrong shape; Go's text would name a
			// Go type.
			return badField("request body", "want %s, got a JSON %s", jsonKind(te.Type.String()), te.Value)
		case errors.As(err, &se):
			return badField("request body", "invalid JSON at byte %d: %v", se.Offset, se)
		default:
			return badField("request body", "invalid JSON: %v", err)
		}
	}
	if dec.More() {
		return badField("request body", "trailing data after the JSON object")
	}
	return nil
}

// jsonKind names the JSON a Go type stands for, for decodeJSON's
// messages (bodies decode into keyfactor's shapes, maps and slices).
func jsonKind(goType string) string {
	switch {
	case goType == "string" || goType == "*string":
		return "a string"
	case goType == "bool" || goType == "*bool":
		return "a boolean (true or false)"
	// Before the integers: "map[string]interface {}" contains "int".
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "keyfactor."), strings.HasPrefix(goType, "*keyfactor."), strings.HasPrefix(goType, "api."):
		return "an object"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.Contains(goType, "int"):
		return "an integer"
	}
	return goType
}

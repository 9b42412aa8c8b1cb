package api

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

type schemaInner struct {
	N int64 `json:"N"`
}

type schemaOuter struct {
	schemaInner
	Name    string            `json:"Name"`
	Maybe   *string           `json:"Maybe"`
	Gone    string            `json:"Gone,omitempty"`
	Zero    time.Time         `json:"Zero,omitzero"`
	List    []schemaInner     `json:"List"`
	Map     map[string]string `json:"Map"`
	Any     any               `json:"Any"`
	Raw     json.RawMessage   `json:"Raw"`
	Ptr     *schemaInner      `json:"Ptr"`
	Skipped string            `json:"-"`
	hidden  string
}

// TestSchemasFollowEncodingJSON: a generated schema describes what
// encoding/json writes: embedded fields flattened, "-" and unexported
// fields absent, nil-able values nullable, and in answers every field
// without omitempty/omitzero required (requests require nothing).
func TestSchemasFollowEncodingJSON(t *testing.T) {
	sc := &schemas{components: map[string]any{}, seen: map[string]schemaUse{}}
	if ref := sc.of(schemaOuter{}, true); ref["$ref"] != "#/components/schemas/schemaOuter" {
		t.Fatalf("ref %v", ref)
	}
	c := sc.components["schemaOuter"].(map[string]any)
	props := c["properties"].(map[string]any)
	var names []string
	for n := range props {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"Any", "Gone", "List", "Map", "Maybe", "N", "Name", "Ptr", "Raw", "Zero"}; !slices.Equal(names, want) {
		t.Errorf("properties %v, want %v", names, want)
	}
	if req := c["required"].([]string); slices.Contains(req, "Gone") || slices.Contains(req, "Zero") || !slices.Contains(req, "N") || len(req) != 8 {
		t.Errorf("required %v", req)
	}
	for _, n := range []string{"Maybe", "List", "Map", "Any", "Raw", "Ptr"} {
		if p := props[n].(map[string]any); p["nullable"] != true {
			t.Errorf("%s not nullable: %v", n, p)
		}
	}
	if p := props["N"].(map[string]any); p["type"] != "integer" || p["format"] != "int64" || p["nullable"] != nil {
		t.Errorf("N: %v", p)
	}
	if p := props["Zero"].(map[string]any); p["format"] != "date-time" {
		t.Errorf("Zero: %v", p)
	}
	defer func() {
		if recover() == nil {
			t.Error("one type both as request and answer under one name was not refused")
		}
	}()
	sc.of(schemaInner{}, false)
}

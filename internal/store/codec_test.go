package store

import (
	"bytes"
	stdjson "encoding/json"
	"os"
	"testing"
	"time"

	"github.com/certflow/certflow/workflow"
)

// The records' codec reads what encoding/json wrote (records stored by
// earlier versions) and writes the very bytes encoding/json would.
func TestRecordCodecMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file string
		into func() any
	}{
		{"testdata/settled-request.json", func() any { return &Request{} }},
		{"testdata/certificate.json", func() any { return &Certificate{} }},
	} {
		stored, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		ours, std := tc.into(), tc.into()
		if err := unmarshal(stored, ours); err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if err := stdjson.Unmarshal(stored, std); err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		for _, v := range []any{ours, std} {
			a, err := marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := stdjson.Marshal(v)
			if !bytes.Equal(a, b) || !bytes.Equal(a, stored) {
				t.Fatalf("%s: re-encoded differently:\nours %s\nstd  %s\nwas  %s", tc.file, a, b, stored)
			}
		}
	}
	// Strings that need escaping, numbers in outputs, empty and nil values.
	r := &Request{ID: 9, Message: "<b>&\"quoted\"</b>\n\t\u2028\x01 é \xff", Submitted: time.Date(2026, 12, 2, 1, 2, 3, 4, time.UTC)}
	r.Instance.Outputs = map[string]map[string]any{"s": {"n": 1.5, "big": int64(1) << 53, "list": []any{"a", nil, true}, "empty": map[string]any{}}}
	r.Instance.History = []workflow.StepRecord{{ID: "x"}}
	a, err := marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := stdjson.Marshal(r); !bytes.Equal(a, b) {
		t.Fatalf("encoded differently:\nours %s\nstd  %s", a, b)
	}
	var back, stdBack Request
	if err := unmarshal(a, &back); err != nil {
		t.Fatal(err)
	}
	stdjson.Unmarshal(a, &stdBack)
	x, _ := stdjson.Marshal(&back)
	y, _ := stdjson.Marshal(&stdBack)
	if !bytes.Equal(x, y) {
		t.Fatalf("decoded differently:\nours %s\nstd  %s", x, y)
	}
}

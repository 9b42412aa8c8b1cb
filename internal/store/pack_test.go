package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
)

// packSamples are what pack is asked to keep: records, and the shapes an
// encoder gets wrong (nothing, runs, matches longer than a token, bytes
// that are not text, the dictionary itself).
func packSamples(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{
		"empty":       {},
		"one byte":    {'{'},
		"three bytes": []byte("{}\n"),
		"run":         bytes.Repeat([]byte{'a'}, 1000),
		"long match":  []byte(strings.Repeat(`{"StepId":"policy","Uses":"validate","Outcome":"Completed"}`, 20)),
		"binary":      {0x00, 0x01, 0x80, 0xff, 0x7f, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x80, 0x80, 0x80, 0x80, 0x80},
		"dictionary":  packDictV1,
		"past the dictionary": append(append([]byte(nil), packDictV1[len(packDictV1)-40:]...),
			packDictV1[len(packDictV1)-40:]...),
	}
	noise := make([]byte, 3000)
	for i := range noise {
		noise[i] = byte(i*7919 + i*i*31)
	}
	out["noise"] = noise
	for _, f := range []string{"testdata/settled-request.json", "testdata/certificate.json"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = data
	}
	return out
}

func TestPackRoundTrip(t *testing.T) {
	t.Parallel()
	for name, src := range packSamples(t) {
		packed := pack([]byte("prefix"), src)
		if !bytes.HasPrefix(packed, []byte("prefix")) {
			t.Fatalf("%s: pack did not append", name)
		}
		packed = packed[len("prefix"):]
		if len(packed) > len(src) {
			t.Errorf("%s: packed to %d bytes, more than its %d", name, len(packed), len(src))
		}
		got, err := unpack([]byte("buf"), packed)
		if err != nil {
			t.Fatalf("%s: unpack: %v", name, err)
		}
		if len(packed) > 0 && packed[0] == packV1 {
			got = bytes.TrimPrefix(got, []byte("buf"))
		}
		if !bytes.Equal(got, src) {
			t.Fatalf("%s: unpacked %d bytes differ from the %d packed", name, len(got), len(src))
		}
	}
	// A settled record packs to well under half its JSON.
	d := packSamples(t)["testdata/settled-request.json"]
	if p := pack(nil, d); p[0] != packV1 || len(p) > len(d)/3 {
		t.Fatalf("a settled record packs to %d bytes of %d", len(p), len(d))
	}
}

// What is not packed is read as it is: the records stored before packing
// existed, and the unsettled ones.
func TestUnpackReadsPlainJSONAsItIs(t *testing.T) {
	t.Parallel()
	plain := []byte(`{"ID":1}`)
	got, err := unpack(nil, plain)
	if err != nil || &got[0] != &plain[0] {
		t.Fatalf("unpack(plain) = %q, %v; want the same bytes", got, err)
	}
}

func TestUnpackRefusesDamagedInput(t *testing.T) {
	t.Parallel()
	for name, data := range map[string][]byte{
		"literal past the end":         {packV1, 0x05, 'a', 'b'},
		"match without distance":       {packV1, 0x80},
		"distance of zero":             {packV1, 0x80, 0x00},
		"distance past the dictionary": {packV1, 0x80, 0xff, 0xff, 0x03},
		"distance overflowing":         {packV1, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"varint too long":              {packV1, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		// 20 bytes from 2 before the dictionary's end would run on into
		// the output: a match is wholly in one or the other.
		"match running past the dictionary": {packV1, 0x90, 0x02},
		"literal header alone at the end":   {packV1, 0x00},
	} {
		got, err := unpack(nil, data)
		if !errors.Is(err, errPacked) {
			t.Errorf("%s: unpack = %q, %v; want errPacked", name, got, err)
		}
	}
}

// The dictionary is part of every record packed with it: it never
// changes. A better one is a new version byte (see packV1).
func TestPackDictionaryIsFrozen(t *testing.T) {
	t.Parallel()
	sum := sha256.Sum256(packDictV1)
	if got := hex.EncodeToString(sum[:]); got != packDictV1SHA256 {
		t.Fatalf("packdict-v1.txt has changed (SHA-256 %s): records packed with it would no longer read", got)
	}
	// And a record packed by an earlier build reads the same.
	golden, err := os.ReadFile("testdata/settled-request.packed")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile("testdata/settled-request.json")
	got, err := unpack(nil, golden)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the packed record of testdata does not read back (%v)", err)
	}
}

const packDictV1SHA256 = "cb9af99e3aa8968179369a9838d6652dc710b92c9d330132afb1f4e405cf95b1"

func FuzzUnpack(f *testing.F) {
	for _, src := range packSamples(f) {
		f.Add(pack(nil, src))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := unpack(nil, data)
		if err == nil && len(data) > 0 && data[0] == packV1 && len(got) > 66*len(data) {
			t.Fatalf("%d bytes unpacked to %d", len(data), len(got))
		}
	})
}

func FuzzPack(f *testing.F) {
	for _, src := range packSamples(f) {
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		packed := pack(nil, src)
		if len(packed) > len(src)+2+len(src)/lzMaxLit {
			t.Fatalf("%d bytes packed to %d", len(src), len(packed))
		}
		if len(packed) > 0 && packed[0] != packV1 {
			if !bytes.Equal(packed, src) {
				t.Fatal("not packed, yet changed")
			}
			return // plain: read as it is
		}
		got, err := unpack(nil, packed)
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

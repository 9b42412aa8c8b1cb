package store

import (
	"unsafe"

	json "github.com/goccy/go-json"
)

// marshal and unmarshal are the records' JSON codec: every record the
// store writes or reads goes through them. goccy/go-json writes the bytes
// encoding/json would (omitzero included) and reads what it wrote, about
// three times as fast (BenchmarkRecordCodec; TestRecordCodecMatchesEncodingJSON
// holds it to the same bytes). Record JSON was a fifth of an enrollment's
// CPU time with encoding/json.
func marshal(v any) ([]byte, error) { return json.Marshal(v) }

func unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// bytesOf is s as a byte slice, without copying it, for reading only. The
// records Redis answers arrive as strings (a request's, twice per
// enrollment, about 5 KB); the decoder copies its input before it reads
// it, so a copy of our own would only be thrown away.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

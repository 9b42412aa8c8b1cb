package store

import (
	"unsafe"

	json "github.com/goccy/go-json"
)

// marshal and unmarshal are the records' JSON codec: every record the
// store writes or reads goes through them. goccy/go-json writes the bytes
// encoding/json would (omitzero included) and reads what it wrote, faster
// (BenchmarkRecordCodec measures it; TestRecordCodecMatchesEncodingJSON
// holds it to the same bytes). Record JSON is a large part of an
// enrollment's CPU time.
func marshal(v any) ([]byte, error) { return json.Marshal(v) }

func unmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return corruptError{err}
	}
	return nil
}

// corruptError is a record that does not decode: ErrCorrupt, whatever
// the decoder said (even io.ErrUnexpectedEOF, which from Redis's
// connection would mean Redis is unreachable; see Unavailable). Its text
// is the decoder's.
type corruptError struct{ err error }

func (e corruptError) Error() string        { return e.err.Error() }
func (e corruptError) Unwrap() error        { return e.err }
func (e corruptError) Is(target error) bool { return target == ErrCorrupt }

// bytesOf is s as a byte slice, without copying it, for reading only. The
// records Redis answers arrive as strings (a request's, twice per
// enrollment, a few kilobytes); the decoder copies its input before it reads
// it, so a copy of our own would only be thrown away.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

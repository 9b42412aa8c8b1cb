package store

import (
	"os"
	"testing"
)

// BenchmarkRecordCodec measures what every enrollment pays to encode and
// decode its records: a settled request (as the default definition leaves
// it) and its certificate, as stored.
func BenchmarkRecordCodec(b *testing.B) {
	d, err := os.ReadFile("testdata/settled-request.json")
	if err != nil {
		b.Fatal(err)
	}
	x, err := os.ReadFile("testdata/certificate.json")
	if err != nil {
		b.Fatal(err)
	}
	vals := []any{"3", string(d), string(x), "\x30\x00"}
	b.Run("decode-request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeRequest(1, vals); err != nil {
				b.Fatal(err)
			}
		}
	})
	r, _ := decodeRequest(1, vals)
	b.Run("decode-certificate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Certificate(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode-request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	c, _ := r.Certificate()
	b.Run("encode-certificate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := marshal(c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

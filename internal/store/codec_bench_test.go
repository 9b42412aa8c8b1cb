package store

import (
	"os"
	"testing"
)

// BenchmarkRecordCodec measures what every enrollment pays to encode and
// decode its records: a settled request (as the default definition leaves
// it) and its certificate, as stored (a settled record packed, the
// certificate as its leaf, chain reference and packed JSON), and in the
// JSON of records that are running or were stored by earlier versions
// (-json, -legacy).
func BenchmarkRecordCodec(b *testing.B) {
	d, err := os.ReadFile("testdata/settled-request.json")
	if err != nil {
		b.Fatal(err)
	}
	x, err := os.ReadFile("testdata/certificate.json")
	if err != nil {
		b.Fatal(err)
	}
	s := &Store{keys: keys{prefix: "bench"}}
	legacy, _ := decodeRequest(1, []any{"3", string(d), string(x)})
	c, err := legacy.Certificate()
	if err != nil {
		b.Fatal(err)
	}
	enc, err := s.encodeCertificate(c)
	if err != nil {
		b.Fatal(err)
	}
	s.chainStored(enc) // as after the first certificate stored with it
	stored := []any{"3", string(pack(nil, d)), string(enc.data), "\x30\x00"}
	issuers, _ := s.chains.get(enc.ref)
	b.Run("decode-request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeRequest(1, stored); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(stored[1].(string))), "stored-bytes")
	})
	plain := []any{"3", string(d), string(x), "\x30\x00"}
	b.Run("decode-request-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeRequest(1, plain); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(d)), "stored-bytes")
	})
	b.Run("decode-certificate", func(b *testing.B) {
		b.ReportAllocs()
		r, _ := decodeRequest(1, stored)
		r.issuers = issuers
		for b.Loop() {
			if _, err := r.Certificate(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(enc.data)), "stored-bytes")
	})
	b.Run("decode-certificate-legacy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := legacy.Certificate(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(x)), "stored-bytes")
	})
	b.Run("encode-request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := marshal(legacy)
			if err != nil {
				b.Fatal(err)
			}
			pack(make([]byte, 0, len(data)/2), data)
		}
	})
	b.Run("encode-request-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := marshal(legacy); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode-certificate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e, err := s.encodeCertificate(c)
			if err != nil {
				b.Fatal(err)
			}
			s.chainStored(e) // the chain is written once a minute
		}
	})
	b.Run("encode-certificate-legacy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := marshal(c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

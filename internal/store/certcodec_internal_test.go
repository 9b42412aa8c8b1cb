package store

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"testing"
	"time"
)

func legacyCertificate(t testing.TB) (*Certificate, []byte) {
	t.Helper()
	data, err := os.ReadFile("testdata/certificate.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := decodeCertificate(1, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, data
}

// A certificate is stored as its leaf, the name of its chain and packed
// JSON; it decodes to what was encoded, whatever the length of its chain.
func TestCertificateEncoding(t *testing.T) {
	t.Parallel()
	full, legacy := legacyCertificate(t)
	if len(full.Chain) != 3 {
		t.Fatalf("testdata certificate has %d certificates, want 3", len(full.Chain))
	}
	s := &Store{keys: keys{prefix: "p"}}
	for _, n := range []int{0, 1, 2, 3} {
		c := *full
		c.Chain = full.Chain[:n]
		enc, err := s.encodeCertificate(&c)
		if err != nil {
			t.Fatal(err)
		}
		if enc.data[0] != certV1 {
			t.Fatalf("chain of %d: stored format %#x", n, enc.data[0])
		}
		var issuers [][]byte
		ref, hasRef := certRef(enc.data)
		if hasRef != (n > 1) {
			t.Fatalf("chain of %d: refers to a stored chain: %v", n, hasRef)
		}
		if hasRef {
			if ref != enc.ref || len(enc.chainOps) != 1 || enc.chainOps[0].key != "p:chain:"+chainHex(ref) {
				t.Fatalf("chain of %d: ref %x, ops %+v", n, ref, enc.chainOps)
			}
			for _, der := range c.Chain[1:] {
				if bytes.Contains(enc.data, der) {
					t.Fatalf("chain of %d: the stored certificate holds its issuer's DER", n)
				}
			}
			issuers, _ = s.chains.get(ref)
		}
		got, err := decodeCertificate(1, enc.data, issuers)
		if err != nil {
			t.Fatalf("chain of %d: %v", n, err)
		}
		if !slices.EqualFunc(got.Chain, c.Chain, bytes.Equal) {
			t.Fatalf("chain of %d: decoded chain of %d", n, len(got.Chain))
		}
		a, _ := marshal(got)
		b, _ := marshal(&c)
		if !bytes.Equal(a, b) {
			t.Fatalf("chain of %d: decoded\n%s\nwant\n%s", n, a, b)
		}
		if n == 3 && len(enc.data) > len(legacy)/2 {
			t.Fatalf("stored in %d bytes, the old format in %d", len(enc.data), len(legacy))
		}
	}
	// Encoding leaves the caller's certificate as it was.
	c := *full
	s.encodeCertificate(&c)
	if len(c.Chain) != 3 {
		t.Fatal("encodeCertificate changed the certificate's chain")
	}
}

func chainHex(ref chainRef) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(ref))
	for _, b := range ref {
		out = append(out, digits[b>>4], digits[b&15])
	}
	return string(out)
}

// A process writes a chain with the first certificate it stores with it,
// and again only once chainRewrite has passed.
func TestAChainIsWrittenOnceInAWhile(t *testing.T) {
	t.Parallel()
	full, _ := legacyCertificate(t)
	s := &Store{keys: keys{prefix: "p"}}
	first, _ := s.encodeCertificate(full)
	if len(first.chainOps) != 1 {
		t.Fatal("the first certificate does not write its chain")
	}
	again, _ := s.encodeCertificate(full)
	if len(again.chainOps) != 1 {
		t.Fatal("a certificate stored before the first one's chain was does not write it")
	}
	s.chainStored(first)
	if later, _ := s.encodeCertificate(full); len(later.chainOps) != 0 {
		t.Fatal("the chain is written again right after it was")
	}
	s.chains.m[first.ref].stored = time.Now().Add(-chainRewrite)
	if later, _ := s.encodeCertificate(full); len(later.chainOps) != 1 {
		t.Fatal("the chain is not written again after chainRewrite")
	}
}

func TestDamagedCertificatesAreCorrupt(t *testing.T) {
	t.Parallel()
	full, _ := legacyCertificate(t)
	s := &Store{keys: keys{prefix: "p"}}
	enc, _ := s.encodeCertificate(full)
	issuers, _ := s.chains.get(enc.ref)
	refEnd := 2 + len(chainRef{})
	for name, data := range map[string][]byte{
		"format byte alone":       {certV1},
		"two chain references":    {certV1, 2},
		"short chain reference":   enc.data[:10],
		"no leaf length":          enc.data[:refEnd],
		"leaf past the end":       append(slices.Clone(enc.data[:refEnd]), 0xff, 0x01, 0x30),
		"damaged JSON":            append(slices.Clone(enc.data[:len(enc.data)-20]), "}}}"...),
		"damaged packing":         append(slices.Clone(enc.data[:refEnd]), 0x00, packV1, 0x85),
		"legacy JSON, damaged":    []byte(`{"ID":1,"Chain":["not base64"]}`),
		"chain reference missing": enc.data,
	} {
		var with [][]byte
		if name != "chain reference missing" {
			with = issuers
		}
		if c, err := decodeCertificate(1, data, with); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: decoded %+v, %v; want ErrCorrupt", name, c, err)
		}
	}
}

func FuzzDecodeCertificate(f *testing.F) {
	full, legacy := legacyCertificate(f)
	s := &Store{keys: keys{prefix: "p"}}
	enc, _ := s.encodeCertificate(full)
	issuers, _ := s.chains.get(enc.ref)
	f.Add(enc.data)
	f.Add(legacy)
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeCertificate(1, data, issuers) // never panics
		decodeCertificate(1, data, nil)
	})
}

func TestParseChainBlob(t *testing.T) {
	t.Parallel()
	chain := [][]byte{bytes.Repeat([]byte{0x30}, 200), {0x30, 0x00}}
	got, err := parseChainBlob(chainBlob(chain))
	if err != nil || !slices.EqualFunc(got, chain, bytes.Equal) {
		t.Fatalf("parseChainBlob = %x, %v", got, err)
	}
	for _, bad := range [][]byte{{0x05, 0x30}, {0x00}, {0x80}} {
		if _, err := parseChainBlob(bad); err == nil {
			t.Errorf("parseChainBlob(%x) took a damaged blob", bad)
		}
	}
}

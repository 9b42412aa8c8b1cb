package pki

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
)

// FuzzParseSubject: any Subject string either is refused with a message
// or becomes a name that a real CSR carries, attribute for attribute, in
// order.
func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{"CN=a.example.com,O=Ex,C=US", `CN="a, b"+OU=x`, `CN=\41\42`, "E=a@b.c;DC=com", "cn=", `CN="`, "CN=a\\", "x=y", "", "CN=ü,O=Ä"} {
		f.Add(s)
	}
	key, err := KeySpec{Type: "ECC", Curve: "P-256"}.Generate()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := ParseSubject(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("a refusal without a message")
			}
			return
		}
		der, err := NewCSR(key, CSRRequest{Subject: name})
		if err != nil {
			t.Fatalf("%q parsed but makes no CSR: %v", s, err)
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("%q: the CSR does not parse: %v", s, err)
		}
		if got, want := len(SubjectParts(csr.RawSubject)), len(name.ExtraNames); got != want {
			t.Fatalf("%q: %d attributes in the CSR, %d parsed", s, got, want)
		}
	})
}

// FuzzParseKeySpec: a spec is either refused naming one of the three
// fields, or describes a key certflow can make.
func FuzzParseKeySpec(f *testing.F) {
	f.Add("RSA", 2048, "")
	f.Add("ecc", 0, "1.3.132.0.34")
	f.Add("Ed25519", 0, "")
	f.Add("EC", 521, "P-521")
	f.Fuzz(func(t *testing.T, keyType string, length int, curve string) {
		spec, err := ParseKeySpec(keyType, length, curve)
		var ke *KeySpecError
		switch {
		case errors.As(err, &ke):
			if ke.Field != "KeyType" && ke.Field != "KeyLength" && ke.Field != "Curve" {
				t.Fatalf("refusal names %q", ke.Field)
			}
			return
		case err != nil:
			t.Fatalf("an error that names no field: %v", err)
		}
		if !strings.Contains("RSA ECC Ed25519", spec.Type) || (spec.Type == "RSA" && (spec.Bits < MinRSABits || spec.Bits > MaxRSABits)) {
			t.Fatalf("accepted %+v", spec)
		}
		if spec.Type != "RSA" { // RSA generation is too slow to fuzz
			key, err := spec.Generate()
			if err != nil || SpecOf(key.Public()) != spec {
				t.Fatalf("%+v generates %v", spec, err)
			}
		}
	})
}

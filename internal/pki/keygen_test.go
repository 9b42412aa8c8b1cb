package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseKeySpecAcceptsKeyfactorSpellings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		keyType          string
		length           int
		curve            string
		want             KeySpec
		wantField, wantM string
	}{
		{name: "RSA 2048", keyType: "RSA", length: 2048, want: KeySpec{Type: "RSA", Bits: 2048}},
		{name: "rsa in lower case", keyType: "rsa", length: 3072, want: KeySpec{Type: "RSA", Bits: 3072}},
		{name: "ECC by OID of P-256", keyType: "ECC", curve: "1.2.840.10045.3.1.7", want: KeySpec{Type: "ECC", Bits: 256, Curve: "P-256"}},
		{name: "ECC by OID of P-384", keyType: "ecc", curve: "1.3.132.0.34", want: KeySpec{Type: "ECC", Bits: 384, Curve: "P-384"}},
		{name: "ECC by openssl name", keyType: "ECC", curve: "prime256v1", want: KeySpec{Type: "ECC", Bits: 256, Curve: "P-256"}},
		{name: "ECC by NIST name", keyType: "EC", curve: "P-521", want: KeySpec{Type: "ECC", Bits: 521, Curve: "P-521"}},
		{name: "ECC by KeyLength alone", keyType: "ECDSA", length: 384, want: KeySpec{Type: "ECC", Bits: 384, Curve: "P-384"}},
		{name: "ECC KeyLength agreeing with Curve", keyType: "ECC", length: 256, curve: "secp256r1", want: KeySpec{Type: "ECC", Bits: 256, Curve: "P-256"}},
		{name: "Ed25519 any case", keyType: "ED25519", want: KeySpec{Type: "Ed25519", Bits: 256}},
		{name: "missing KeyType", wantField: "KeyType", wantM: "required"},
		{name: "unknown KeyType", keyType: "DSA", length: 2048, wantField: "KeyType", wantM: "unknown key type"},
		{name: "RSA without KeyLength", keyType: "RSA", wantField: "KeyLength", wantM: "required"},
		{name: "RSA 1024 is too weak", keyType: "RSA", length: 1024, wantField: "KeyLength", wantM: "1024"},
		{name: "RSA with a curve", keyType: "RSA", length: 2048, curve: "P-256", wantField: "Curve", wantM: "only for ECC"},
		{name: "ECC without curve or length", keyType: "ECC", wantField: "Curve", wantM: "required"},
		{name: "ECC unknown curve", keyType: "ECC", curve: "brainpoolP256r1", wantField: "Curve", wantM: "unknown curve"},
		{name: "ECC length disagreeing with curve", keyType: "ECC", length: 384, curve: "P-256", wantField: "KeyLength", wantM: "does not match"},
		{name: "ECC odd length", keyType: "ECC", length: 300, wantField: "KeyLength", wantM: "not an ECC key size"},
		{name: "Ed25519 with a length", keyType: "Ed25519", length: 448, wantField: "KeyLength", wantM: "no length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKeySpec(tc.keyType, tc.length, tc.curve)
			if tc.wantField != "" {
				var ke *KeySpecError
				if !errors.As(err, &ke) || ke.Field != tc.wantField || !strings.Contains(ke.Msg, tc.wantM) {
					t.Fatalf("err = %v, want a %s error containing %q", err, tc.wantField, tc.wantM)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestGeneratedKeysMatchTheirSpecAndItsShape(t *testing.T) {
	t.Parallel()
	for _, spec := range []KeySpec{{Type: "RSA", Bits: 2048}, {Type: "ECC", Bits: 256, Curve: "P-256"}, {Type: "ECC", Bits: 384, Curve: "P-384"}, {Type: "ECC", Bits: 521, Curve: "P-521"}, {Type: "Ed25519", Bits: 256}} {
		t.Run(spec.String(), func(t *testing.T) {
			key, err := spec.Generate()
			if err != nil {
				t.Fatal(err)
			}
			if got := SpecOf(key.Public()); got != spec {
				t.Fatalf("generated key is %+v, want %+v", got, spec)
			}
			if got := SpecOf(spec.PublicShape()); got != spec {
				t.Fatalf("the shape describes as %+v, want %+v", got, spec)
			}
		})
	}
}

func TestParseSubject(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want, wantErr string
	}{
		{in: "CN=www.example.com,O=Example,C=US", want: "CN=www.example.com|O=Example|C=US"},
		{in: "CN=a.example.com, OU=Web, OU=Ops, L=Berlin, ST=Berlin, O=Ex", want: "CN=a.example.com|OU=Web|OU=Ops|L=Berlin|ST=Berlin|O=Ex"},
		{in: `CN="Smith, John",O=Ex`, want: `CN=Smith, John|O=Ex`},
		{in: `CN=Smith\, John`, want: `CN=Smith, John`},
		{in: `CN=Hex\41`, want: `CN=HexA`},
		{in: "cn=lower.example.com;o=Semi", want: "CN=lower.example.com|O=Semi"},
		{in: "E=ops@example.com,CN=mail", want: "E=ops@example.com|CN=mail"},
		{in: "", wantErr: "required"},
		{in: "CN", wantErr: "not an attribute=value pair"},
		{in: "XX=1", wantErr: "unknown attribute"},
		{in: "CN=", wantErr: "empty value"},
		{in: "C=USA", wantErr: "two-letter"},
		{in: `CN="open`, wantErr: "unterminated"},
		{in: strings.Repeat("CN=a,", 300), wantErr: "longer than"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			name, err := ParseSubject(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Through a real CSR, the way the name is used.
			key, _ := KeySpec{Type: "ECC", Curve: "P-256"}.Generate()
			der, err := NewCSR(key, CSRRequest{Subject: name})
			if err != nil {
				t.Fatal(err)
			}
			csr, _ := x509.ParseCertificateRequest(der)
			if got := strings.Join(SubjectParts(csr.RawSubject), "|"); got != tc.want {
				t.Fatalf("subject %q, want %q", got, tc.want)
			}
		})
	}
}

// TestNewCSRIsReadByOpenSSL checks a generated CSR with the openssl CLI:
// its signature verifies, and it carries the subject, SANs and key.
func TestNewCSRIsReadByOpenSSL(t *testing.T) {
	t.Parallel()
	for _, spec := range []KeySpec{{Type: "RSA", Bits: 2048}, {Type: "ECC", Bits: 384, Curve: "P-384"}, {Type: "Ed25519", Bits: 256}} {
		t.Run(spec.String(), func(t *testing.T) {
			key, err := spec.Generate()
			if err != nil {
				t.Fatal(err)
			}
			subject, _ := ParseSubject("CN=gen.example.com,O=Certflow Tests")
			der, err := NewCSR(key, CSRRequest{Subject: subject, SANs: map[string][]string{"dns": {"gen.example.com", "www.gen.example.com"}, "ip4": {"192.0.2.7"}}})
			if err != nil {
				t.Fatal(err)
			}
			csr, err := x509.ParseCertificateRequest(der)
			if err != nil || csr.CheckSignature() != nil {
				t.Fatalf("parse/verify: %v", err)
			}
			if !SamePublicKey(csr.PublicKey, key.Public()) {
				t.Fatal("the CSR does not carry the key")
			}
			path := filepath.Join(t.TempDir(), "req.pem")
			os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o600)
			out, err := exec.Command("openssl", "req", "-in", path, "-noout", "-verify", "-text").CombinedOutput()
			if err != nil {
				t.Fatalf("openssl req: %v\n%s", err, out)
			}
			for _, want := range []string{"verify OK", "CN = gen.example.com", "DNS:www.gen.example.com", "IP Address:192.0.2.7"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("openssl output lacks %q:\n%s", want, out)
				}
			}
			switch key.(type) {
			case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			default:
				t.Fatalf("unexpected key type %T", key)
			}
		})
	}
}

func TestPublicKeyIDIsStablePerKeyAndDistinctAcrossKeys(t *testing.T) {
	t.Parallel()
	a, _ := KeySpec{Type: "ECC", Curve: "P-256"}.Generate()
	b, _ := KeySpec{Type: "ECC", Curve: "P-256"}.Generate()
	ida, err := PublicKeyID(a.Public())
	if err != nil {
		t.Fatal(err)
	}
	der, _ := NewCSR(a, CSRRequest{})
	csr, _ := x509.ParseCertificateRequest(der)
	idc, _ := PublicKeyID(csr.PublicKey)
	idb, _ := PublicKeyID(b.Public())
	if ida != idc || ida == idb || len(ida) != 64 {
		t.Fatalf("ids: key %s, its CSR %s, another key %s", ida, idc, idb)
	}
}

// A CSR's key id, read from its DER, is the id of its key: for every key
// type certflow generates, and for CSRs openssl made.
func TestCSRKeyIDIsThePublicKeyID(t *testing.T) {
	t.Parallel()
	var csrs [][]byte
	for _, spec := range []KeySpec{{Type: "RSA", Bits: 2048}, {Type: "ECC", Curve: "P-256"}, {Type: "ECC", Curve: "P-384"}, {Type: "ECC", Curve: "P-521"}, {Type: "Ed25519"}} {
		key, err := spec.Generate()
		if err != nil {
			t.Fatal(err)
		}
		der, err := NewCSR(key, CSRRequest{})
		if err != nil {
			t.Fatal(err)
		}
		csrs = append(csrs, der)
	}
	if pemBytes, err := os.ReadFile("testdata/rsa2048.csr.pem"); err == nil {
		if b, _ := pem.Decode(pemBytes); b != nil {
			csrs = append(csrs, b.Bytes)
		}
	}
	if _, err := exec.LookPath("openssl"); err == nil {
		dir := t.TempDir()
		for i, args := range [][]string{
			{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"},
			{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"},
			{"-newkey", "ed25519"},
		} {
			out := filepath.Join(dir, fmt.Sprintf("%d.csr", i))
			cmd := exec.Command("openssl", append(append([]string{"req", "-new"}, args...), "-nodes", "-keyout", out+".key", "-subj", "/CN=id.example.com", "-outform", "DER", "-out", out)...)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("openssl %v: %v\n%s", args, err, b)
			}
			der, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			csrs = append(csrs, der)
		}
	}
	for i, der := range csrs {
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatalf("CSR %d: %v", i, err)
		}
		want, err := PublicKeyID(csr.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if got := CSRKeyID(csr); got != want {
			t.Errorf("CSR %d (%T): CSRKeyID %s, PublicKeyID %s", i, csr.PublicKey, got, want)
		}
	}
	if len(csrs) < 9 {
		t.Logf("only %d CSRs checked (openssl missing?)", len(csrs))
	}
}

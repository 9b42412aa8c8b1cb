package pki

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"testing"
)

func TestParseFormatAcceptsPEMAndDERInAnyCase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Format
		wantErr bool
	}{
		{"PEM", FormatPEM, false},
		{"pem", FormatPEM, false},
		{" Pem ", FormatPEM, false},
		{"DER", FormatDER, false},
		{"der", FormatDER, false},
		{"", "", true},
		{"   ", "", true},
		{"P7B", "", true},
		{"PFX", "", true},
		{"PEMDER", "", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.in), func(t *testing.T) {
			t.Parallel()
			got, err := ParseFormat(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseFormat(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseFormat(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// splitEntry separates an EncodeChain PEM entry into its optional
// "subject=" header line and the single PEM block that must follow.
func splitEntry(t *testing.T, entry string) (header string, der []byte) {
	t.Helper()
	rest := entry
	if !strings.HasPrefix(entry, "-----BEGIN") {
		var ok bool
		header, rest, ok = strings.Cut(entry, "\n")
		if !ok {
			t.Fatalf("entry %q: header line without a PEM block", entry)
		}
	}
	if !strings.HasPrefix(rest, "-----BEGIN CERTIFICATE-----\n") {
		t.Fatalf("entry does not continue with a CERTIFICATE PEM block: %q", rest)
	}
	block, tail := pem.Decode([]byte(rest))
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("entry holds no CERTIFICATE PEM block: %q", rest)
	}
	if len(tail) != 0 {
		t.Fatalf("entry has %q after its PEM block", tail)
	}
	return header, block.Bytes
}

func TestEncodeChainRendersEachFormatInInputOrder(t *testing.T) {
	t.Parallel()
	c := newTestChain(t)
	wantHeader := map[string]string{
		string(c.leaf):         "subject=CN=leaf.certflow.test",
		string(c.intermediate): "subject=CN=Certflow Test Issuing CA,O=Certflow Tests",
		string(c.root):         "subject=CN=Certflow Test Root,O=Certflow Tests,C=DE",
	}
	orders := []struct {
		name  string
		chain [][]byte
	}{
		{"leaf first", [][]byte{c.leaf, c.intermediate, c.root}},
		{"root first", [][]byte{c.root, c.intermediate, c.leaf}},
		{"shuffled", [][]byte{c.intermediate, c.leaf, c.root}},
		{"single certificate", [][]byte{c.leaf}},
	}
	for _, o := range orders {
		t.Run("PEM without subject header, "+o.name, func(t *testing.T) {
			t.Parallel()
			out, err := EncodeChain(o.chain, FormatPEM, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != len(o.chain) {
				t.Fatalf("%d entries, want %d", len(out), len(o.chain))
			}
			for i, entry := range out {
				header, der := splitEntry(t, entry)
				if header != "" {
					t.Errorf("entry %d has header %q, want none", i, header)
				}
				if !bytes.Equal(der, o.chain[i]) {
					t.Errorf("entry %d is not input certificate %d", i, i)
				}
			}
		})
		t.Run("PEM with subject header, "+o.name, func(t *testing.T) {
			t.Parallel()
			out, err := EncodeChain(o.chain, FormatPEM, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != len(o.chain) {
				t.Fatalf("%d entries, want %d", len(out), len(o.chain))
			}
			for i, entry := range out {
				header, der := splitEntry(t, entry)
				if !bytes.Equal(der, o.chain[i]) {
					t.Errorf("entry %d is not input certificate %d", i, i)
				}
				if want := wantHeader[string(o.chain[i])]; header != want {
					t.Errorf("entry %d header = %q, want %q", i, header, want)
				}
				cert, err := x509.ParseCertificate(o.chain[i])
				if err != nil {
					t.Fatal(err)
				}
				if want := "subject=" + cert.Subject.String(); header != want {
					t.Errorf("entry %d header = %q, want %q", i, header, want)
				}
			}
		})
		t.Run("DER, "+o.name, func(t *testing.T) {
			t.Parallel()
			for _, header := range []bool{false, true} {
				out, err := EncodeChain(o.chain, FormatDER, header)
				if err != nil {
					t.Fatal(err)
				}
				if len(out) != len(o.chain) {
					t.Fatalf("%d entries, want %d", len(out), len(o.chain))
				}
				for i, entry := range out {
					der, err := base64.StdEncoding.DecodeString(entry)
					if err != nil {
						t.Fatalf("entry %d is not standard base64: %v", i, err)
					}
					if !bytes.Equal(der, o.chain[i]) {
						t.Errorf("entry %d (subjectHeader=%v) is not input certificate %d", i, header, i)
					}
				}
			}
		})
	}
}

func TestEncodeChainEdgeCases(t *testing.T) {
	t.Parallel()
	c := newTestChain(t)
	t.Run("empty chain gives an empty list", func(t *testing.T) {
		t.Parallel()
		for _, f := range []Format{FormatPEM, FormatDER} {
			out, err := EncodeChain(nil, f, true)
			if err != nil || len(out) != 0 {
				t.Errorf("%s: EncodeChain(nil) = %q, %v; want empty, nil", f, out, err)
			}
		}
	})
	t.Run("subject header on bytes that are not a certificate is an error", func(t *testing.T) {
		t.Parallel()
		if out, err := EncodeChain([][]byte{c.leaf, []byte("not a certificate")}, FormatPEM, true); err == nil {
			t.Errorf("EncodeChain = %q, want an error", out)
		}
	})
}

var upperHex40 = regexp.MustCompile(`^[0-9A-F]{40}$`)

func TestThumbprintIsUpperCaseHexSHA1(t *testing.T) {
	t.Parallel()
	c := newTestChain(t)
	// From `openssl x509 -in testdata/openssl-cert.pem -noout -fingerprint -sha1`:
	// 09:2D:E4:74:8B:C6:2D:1B:4A:3D:96:64:25:27:B9:3C:51:C7:AB:76
	opensslFingerprint := "09:2D:E4:74:8B:C6:2D:1B:4A:3D:96:64:25:27:B9:3C:51:C7:AB:76"
	tests := []struct {
		name string
		der  []byte
		want string
	}{
		{"openssl certificate (known answer)", readPEM(t, "openssl-cert.pem", "CERTIFICATE"), strings.ReplaceAll(opensslFingerprint, ":", "")},
		{"root", c.root, fmt.Sprintf("%X", sha1.Sum(c.root))},
		{"intermediate", c.intermediate, fmt.Sprintf("%X", sha1.Sum(c.intermediate))},
		{"leaf", c.leaf, fmt.Sprintf("%X", sha1.Sum(c.leaf))},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		got := Thumbprint(tt.der)
		if got != tt.want {
			t.Errorf("%s: Thumbprint = %q, want %q", tt.name, got, tt.want)
		}
		if !upperHex40.MatchString(got) {
			t.Errorf("%s: Thumbprint %q is not 40 upper-case hex digits", tt.name, got)
		}
		if seen[got] {
			t.Errorf("%s: Thumbprint %q repeats another certificate's", tt.name, got)
		}
		seen[got] = true
	}
}

func TestSerialHexIsUpperCaseHex(t *testing.T) {
	t.Parallel()
	opensslCert, err := x509.ParseCertificate(readPEM(t, "openssl-cert.pem", "CERTIFICATE"))
	if err != nil {
		t.Fatal(err)
	}
	big128, _ := new(big.Int).SetString("80000000000000000000000000000abc", 16)
	tests := []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		// From `openssl x509 -in testdata/openssl-cert.pem -noout -serial`.
		{"openssl certificate (known answer)", opensslCert, "7A3F00C1D2E3F4A5"},
		{"0xFF", &x509.Certificate{SerialNumber: big.NewInt(0xff)}, "FF"},
		{"0xDEADBEEF", &x509.Certificate{SerialNumber: big.NewInt(0xdeadbeef)}, "DEADBEEF"},
		{"4660 decimal", &x509.Certificate{SerialNumber: big.NewInt(4660)}, "1234"},
		{"128-bit serial", &x509.Certificate{SerialNumber: big128}, "80000000000000000000000000000ABC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := SerialHex(tt.cert); got != tt.want {
				t.Errorf("SerialHex = %q, want %q", got, tt.want)
			}
		})
	}
}

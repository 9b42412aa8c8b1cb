package pki

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func randomKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func mustKEK(t *testing.T, key []byte) *KEK {
	t.Helper()
	k, err := NewKEK(key)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sameKEK proves two KEKs hold the same key: each opens what the other
// sealed.
func sameKEK(t *testing.T, a, b *KEK) {
	t.Helper()
	aad := []byte("same-kek")
	if pt, err := b.Open(a.Seal([]byte("from a"), aad), aad); err != nil || string(pt) != "from a" {
		t.Errorf("b cannot open what a sealed: %q, %v", pt, err)
	}
	if pt, err := a.Open(b.Seal([]byte("from b"), aad), aad); err != nil || string(pt) != "from b" {
		t.Errorf("a cannot open what b sealed: %q, %v", pt, err)
	}
}

func TestNewKEKAcceptsExactly32Bytes(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 16, 24, 31, 33, 48, 64} {
		t.Run(fmt.Sprintf("%d bytes rejected", n), func(t *testing.T) {
			t.Parallel()
			if k, err := NewKEK(make([]byte, n)); err == nil || k != nil {
				t.Errorf("NewKEK(%d bytes) = %v, %v; want nil and an error", n, k, err)
			}
		})
	}
	t.Run("32 bytes accepted", func(t *testing.T) {
		t.Parallel()
		if _, err := NewKEK(make([]byte, 32)); err != nil {
			t.Errorf("NewKEK(32 bytes): %v", err)
		}
	})
}

func TestKEKSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	key := randomKey(t)
	big := bytes.Repeat([]byte("certflow private key "), 4000)
	tests := []struct {
		name      string
		plaintext []byte
		aad       []byte
	}{
		{"empty plaintext, no aad", nil, nil},
		{"short plaintext with aad", []byte("secret"), []byte("ca:CertflowIssuingCA")},
		{"binary plaintext", []byte{0, 1, 2, 0xff, 0xfe}, []byte("req:42")},
		{"80 KB plaintext", big, []byte("req:big")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Seal under one KEK, open under another made from the same bytes.
			sealed := mustKEK(t, key).Seal(tt.plaintext, tt.aad)
			if len(tt.plaintext) > 0 && bytes.Contains(sealed, tt.plaintext) {
				t.Error("sealed blob contains the plaintext")
			}
			if got, want := len(sealed), 12+len(tt.plaintext)+16; got != want {
				t.Errorf("sealed length = %d, want nonce(12)+plaintext+tag(16) = %d", got, want)
			}
			got, err := mustKEK(t, key).Open(sealed, tt.aad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tt.plaintext) {
				t.Errorf("Open = %q, want %q", truncate(string(got)), truncate(string(tt.plaintext)))
			}
		})
	}
}

func TestKEKOpenRejectsAnythingButTheSealedBlob(t *testing.T) {
	t.Parallel()
	kek := mustKEK(t, randomKey(t))
	other := mustKEK(t, randomKey(t))
	aad := []byte("ca:CertflowIssuingCA")
	sealed := kek.Seal([]byte("the CA's private key"), aad)
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x80
		return b
	}
	tests := []struct {
		name   string
		kek    *KEK
		sealed []byte
		aad    []byte
	}{
		{"wrong associated data", kek, sealed, []byte("ca:OtherCA")},
		{"missing associated data", kek, sealed, nil},
		{"a different KEK", other, sealed, aad},
		{"truncated by one byte", kek, sealed[:len(sealed)-1], aad},
		{"truncated to nonce and tag size", kek, sealed[:28], aad},
		{"truncated below nonce and tag size", kek, sealed[:27], aad},
		{"truncated to the nonce", kek, sealed[:12], aad},
		{"empty", kek, nil, aad},
		{"one byte appended", kek, append(bytes.Clone(sealed), 0), aad},
		{"flipped byte in the nonce", kek, flip(0), aad},
		{"flipped byte in the ciphertext", kek, flip(14), aad},
		{"flipped byte in the tag", kek, flip(len(sealed) - 1), aad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pt, err := tt.kek.Open(tt.sealed, tt.aad)
			if err == nil {
				t.Fatalf("Open succeeded with %q", pt)
			}
			if pt != nil {
				t.Errorf("Open returned plaintext %q alongside the error", pt)
			}
		})
	}
	// The original still opens: the failures above are the tampering's.
	if _, err := kek.Open(sealed, aad); err != nil {
		t.Errorf("untampered blob: %v", err)
	}
}

func TestKEKSealUsesAFreshNonceEachTime(t *testing.T) {
	t.Parallel()
	kek := mustKEK(t, randomKey(t))
	pt, aad := []byte("same plaintext"), []byte("same aad")
	a, b := kek.Seal(pt, aad), kek.Seal(pt, aad)
	if bytes.Equal(a, b) {
		t.Fatal("two Seals of the same plaintext are identical")
	}
	if bytes.Equal(a[:12], b[:12]) {
		t.Error("two Seals share a nonce")
	}
	for _, s := range [][]byte{a, b} {
		if got, err := kek.Open(s, aad); err != nil || !bytes.Equal(got, pt) {
			t.Errorf("Open = %q, %v", got, err)
		}
	}
}

var hex64 = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

func TestLoadOrCreateKEKFileCreatesOnceThenLoadsTheSameKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nested", "dir", "kek")

	first, created, err := LoadOrCreateKEKFile(path)
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	if !created {
		t.Error("first call: created = false, want true")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode = %v, want 0600", perm)
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !hex64.MatchString(strings.TrimSpace(string(content))) {
		t.Errorf("file holds %d bytes that are not 64 hex characters", len(content))
	}

	second, created, err := LoadOrCreateKEKFile(path)
	if err != nil {
		t.Fatalf("second call: %v", err)
	}
	if created {
		t.Error("second call: created = true, want false")
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, content) {
		t.Error("second call rewrote the file")
	}
	sameKEK(t, first, second)

	loaded, err := LoadKEKFile(path)
	if err != nil {
		t.Fatalf("LoadKEKFile of a created file: %v", err)
	}
	sameKEK(t, first, loaded)

	// The file's hex is the key itself.
	raw, err := hex.DecodeString(strings.TrimSpace(string(content)))
	if err != nil {
		t.Fatal(err)
	}
	sameKEK(t, first, mustKEK(t, raw))

	// Another path gets another key.
	elsewhere, created, err := LoadOrCreateKEKFile(filepath.Join(t.TempDir(), "kek"))
	if err != nil || !created {
		t.Fatalf("other path: created=%v, %v", created, err)
	}
	if _, err := elsewhere.Open(first.Seal([]byte("x"), nil), nil); err == nil {
		t.Error("two created KEK files hold the same key")
	}
}

func TestLoadOrCreateKEKFileKeepsAnExistingFile(t *testing.T) {
	t.Parallel()
	t.Run("an operator's KEK is loaded, not replaced", func(t *testing.T) {
		t.Parallel()
		key := randomKey(t)
		path := filepath.Join(t.TempDir(), "kek")
		if err := os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		kek, created, err := LoadOrCreateKEKFile(path)
		if err != nil || created {
			t.Fatalf("created=%v, err=%v; want false, nil", created, err)
		}
		sameKEK(t, kek, mustKEK(t, key))
	})
	t.Run("an unreadable KEK is an error and stays as it is", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "kek")
		bad := []byte("not a key\n")
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if kek, _, err := LoadOrCreateKEKFile(path); err == nil {
			t.Fatalf("LoadOrCreateKEKFile = %v, want an error", kek)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, bad) {
			t.Errorf("the file was changed to %q", got)
		}
	})
}

func TestLoadKEKFileAccepts64HexOr32RawBytes(t *testing.T) {
	t.Parallel()
	key := randomKey(t)
	h := hex.EncodeToString(key)
	// A raw key whose first and last bytes are whitespace: the length, not
	// trimmed text, must decide that it is raw.
	wsKey := append([]byte{'\n', ' '}, randomKey(t)[:28]...)
	wsKey = append(wsKey, ' ', '\n')

	good := []struct {
		name    string
		content []byte
		key     []byte
	}{
		{"64 lower-case hex", []byte(h), key},
		{"64 hex with a newline", []byte(h + "\n"), key},
		{"64 upper-case hex", []byte(strings.ToUpper(h)), key},
		{"64 hex with surrounding spaces and CRLF", []byte("  " + h + "\r\n"), key},
		{"32 raw bytes", key, key},
		{"32 raw bytes starting and ending with whitespace", wsKey, wsKey},
	}
	for _, tt := range good {
		t.Run("accepts "+tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "kek")
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			kek, err := LoadKEKFile(path)
			if err != nil {
				t.Fatalf("LoadKEKFile: %v", err)
			}
			sameKEK(t, kek, mustKEK(t, tt.key))
		})
	}

	bad := []struct {
		name    string
		content []byte
	}{
		{"an empty file", nil},
		{"62 hex characters", []byte(h[:62])},
		{"66 hex characters", []byte(h + "ab")},
		{"64 characters that are not hex", []byte(strings.Repeat("zz", 32))},
		{"32 hex characters and a newline (a 128-bit key)", []byte(h[:32] + "\n")},
		{"31 raw bytes", key[:31]},
		{"33 raw bytes", append(bytes.Clone(key), 0x01)},
		{"base64 of 32 bytes", []byte(base64.StdEncoding.EncodeToString(key))},
	}
	for _, tt := range bad {
		t.Run("rejects "+tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "kek")
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if kek, err := LoadKEKFile(path); err == nil || kek != nil {
				t.Errorf("LoadKEKFile = %v, %v; want nil and an error", kek, err)
			}
		})
	}
	t.Run("rejects a missing file", func(t *testing.T) {
		t.Parallel()
		if _, err := LoadKEKFile(filepath.Join(t.TempDir(), "absent")); err == nil {
			t.Error("LoadKEKFile of a missing file succeeded")
		}
	})
}

func TestKEKFormattingNeverRevealsTheKey(t *testing.T) {
	t.Parallel()
	key := randomKey(t)
	kek := mustKEK(t, key)
	type holder struct {
		KEK    *KEK
		hidden *KEK
	}
	secrets := []string{
		hex.EncodeToString(key),
		strings.ToUpper(hex.EncodeToString(key)),
		base64.StdEncoding.EncodeToString(key),
		string(key),
		fmt.Sprint(key), // [12 34 …]
		fmt.Sprintf("%#v", key),
	}
	outputs := map[string]string{
		"String()":        kek.String(),
		"%v":              fmt.Sprintf("%v", kek),
		"%+v":             fmt.Sprintf("%+v", kek),
		"%s":              fmt.Sprintf("%s", kek),
		"%#v":             fmt.Sprintf("%#v", kek),
		"%x":              fmt.Sprintf("%x", kek),
		"%v of value":     fmt.Sprintf("%v", *kek),
		"%#v of value":    fmt.Sprintf("%#v", *kek),
		"%+v in a struct": fmt.Sprintf("%+v", holder{KEK: kek, hidden: kek}),
		"%#v in a struct": fmt.Sprintf("%#v", holder{KEK: kek, hidden: kek}),
	}
	for name, out := range outputs {
		if out == "" {
			t.Errorf("%s is empty", name)
		}
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s = %q reveals the key", name, out)
			}
		}
	}
	if !strings.Contains(kek.String(), "redacted") {
		t.Errorf("String() = %q, want it to say the key is redacted", kek.String())
	}
}

func TestKEKMACIsKeyedAndSeparatedByLabel(t *testing.T) {
	t.Parallel()
	raw := randomKey(t)
	k1, _ := NewKEK(raw)
	k1again, _ := NewKEK(raw)
	k2, _ := NewKEK(randomKey(t))
	data := []byte("what the submit asked")
	m := k1.MAC("idempotency", data)
	if len(m) != 32 || !bytes.Equal(m, k1again.MAC("idempotency", data)) {
		t.Fatal("the MAC is not a deterministic 32-byte digest under one key")
	}
	for name, other := range map[string][]byte{
		"another KEK":                     k2.MAC("idempotency", data),
		"another label":                   k1.MAC("other", data),
		"label and data split elsewhere":  k1.MAC("idempotencyw", []byte("hat the submit asked")),
		"other data":                      k1.MAC("idempotency", []byte("something else")),
		"the raw key's HMAC is not a MAC": hmacOf(raw, data),
	} {
		if bytes.Equal(m, other) {
			t.Errorf("%s gives the same MAC", name)
		}
	}
}

package callback

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The Standard Webhooks specification's test vector
// (github.com/standard-webhooks/standard-webhooks, libraries' tests).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustSecret(t *testing.T, s string) Secret {
	t.Helper()
	sec, err := ParseSecret(s)
	if err != nil {
		t.Fatalf("ParseSecret(%q): %v", s, err)
	}
	return sec
}

// expectedSignature computes the Standard Webhooks signature from the raw
// key, independently of Secret.Sign.
func expectedSignature(key []byte, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, timestamp)
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func TestSignMatchesTheStandardWebhooksVector(t *testing.T) {
	t.Parallel()
	bare := strings.TrimPrefix(vectorSecret, "whsec_")
	tests := []struct {
		name   string
		secret string
	}{
		{"secret with whsec_ prefix", vectorSecret},
		{"bare base64 secret", bare},
		{"secret with a trailing newline, as read from a file", vectorSecret + "\n"},
		{"secret with surrounding spaces", "  " + vectorSecret + "  "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := mustSecret(t, tt.secret).Sign(vectorID, vectorTimestamp, []byte(vectorBody))
			if got != vectorSignature {
				t.Errorf("Sign = %q, want %q", got, vectorSignature)
			}
		})
	}
}

func TestSignDependsOnEveryInput(t *testing.T) {
	t.Parallel()
	s := mustSecret(t, vectorSecret)
	other := mustSecret(t, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 24)))
	base := s.Sign(vectorID, vectorTimestamp, []byte(vectorBody))
	variants := map[string]string{
		"another id":        s.Sign(vectorID+"x", vectorTimestamp, []byte(vectorBody)),
		"another timestamp": s.Sign(vectorID, vectorTimestamp+1, []byte(vectorBody)),
		"another body":      s.Sign(vectorID, vectorTimestamp, []byte(`{"test": 2432232315}`)),
		"another secret":    other.Sign(vectorID, vectorTimestamp, []byte(vectorBody)),
	}
	for name, sig := range variants {
		if sig == base {
			t.Errorf("%s gives the same signature", name)
		}
		if !strings.HasPrefix(sig, "v1,") {
			t.Errorf("%s: signature %q lacks the v1, prefix", name, sig)
		}
	}
}

// TestVerifyAcceptsTheVectorAndNothingElse: Verify accepts the
// specification's vector, alone or among other (rotated, other-version)
// signatures, and refuses any change of id, timestamp, body, secret or
// signature, and a zero Secret.
func TestVerifyAcceptsTheVectorAndNothingElse(t *testing.T) {
	t.Parallel()
	s := mustSecret(t, vectorSecret)
	other := mustSecret(t, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 24)))
	body := []byte(vectorBody)
	otherSig := other.Sign(vectorID, vectorTimestamp, body)
	for _, h := range []string{
		vectorSignature,
		otherSig + " " + vectorSignature,
		"v2,abc " + vectorSignature + "  ",
	} {
		if !s.Verify(vectorID, vectorTimestamp, body, h) {
			t.Errorf("Verify refused %q", h)
		}
	}
	refused := map[string]bool{
		"another id":             s.Verify(vectorID+"x", vectorTimestamp, body, vectorSignature),
		"another timestamp":      s.Verify(vectorID, vectorTimestamp+1, body, vectorSignature),
		"another body":           s.Verify(vectorID, vectorTimestamp, []byte(`{"test": 2432232315}`), vectorSignature),
		"another secret":         other.Verify(vectorID, vectorTimestamp, body, vectorSignature),
		"only another's":         s.Verify(vectorID, vectorTimestamp, body, otherSig),
		"no signature":           s.Verify(vectorID, vectorTimestamp, body, ""),
		"without v1,":            s.Verify(vectorID, vectorTimestamp, body, strings.TrimPrefix(vectorSignature, "v1,")),
		"as v2":                  s.Verify(vectorID, vectorTimestamp, body, "v2,"+strings.TrimPrefix(vectorSignature, "v1,")),
		"a zero secret":          Secret{}.Verify(vectorID, vectorTimestamp, body, vectorSignature),
		"past the 8th signature": s.Verify(vectorID, vectorTimestamp, body, strings.Repeat(otherSig+" ", 8)+vectorSignature),
	}
	for name, ok := range refused {
		if ok {
			t.Errorf("%s: Verify accepted it", name)
		}
	}
}

func TestParseSecretRejectsShortOrInvalidSecrets(t *testing.T) {
	t.Parallel()
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xab}, n)) }
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"16 bytes with prefix", "whsec_" + b64(16), false},
		{"16 bytes bare", b64(16), false},
		{"64 bytes with prefix", "whsec_" + b64(64), false},
		{"empty", "", true},
		{"only the prefix", "whsec_", true},
		{"15 bytes with prefix", "whsec_" + b64(15), true},
		{"15 bytes bare", b64(15), true},
		{"not base64", "whsec_this is not base64!", true},
		{"URL-safe base64", "whsec_" + strings.Repeat("-_", 12), true},
		{"unpadded base64", "whsec_" + base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 20)), true},
		{"another prefix", "whsex_" + b64(24), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseSecret(tt.in)
			if (err != nil) != tt.wantErr {
				t.Errorf("ParseSecret(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestSecretFormattingRedactsTheKey(t *testing.T) {
	t.Parallel()
	raw := bytes.Repeat([]byte{0x5c, 0xa1, 0x7e}, 11)
	s := mustSecret(t, "whsec_"+base64.StdEncoding.EncodeToString(raw))
	secrets := []string{
		base64.StdEncoding.EncodeToString(raw),
		hex.EncodeToString(raw),
		string(raw),
		fmt.Sprint(raw),
	}
	outputs := map[string]string{
		"String()":                s.String(),
		"%v":                      fmt.Sprintf("%v", s),
		"%+v":                     fmt.Sprintf("%+v", s),
		"%s":                      fmt.Sprintf("%s", s),
		"%v of a pointer":         fmt.Sprintf("%v", &s),
		"%v in an exported field": fmt.Sprintf("%+v", struct{ Secret Secret }{s}),
	}
	for name, out := range outputs {
		for _, sec := range secrets {
			if strings.Contains(out, sec) {
				t.Errorf("%s = %q reveals the secret", name, out)
			}
		}
	}
	if !strings.Contains(s.String(), "redacted") {
		t.Errorf("String() = %q, want it to say the secret is redacted", s.String())
	}
}

func TestLoadOrCreateSecretCreatesOnceThenReloads(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "data", "webhook-secret")

	first, created, err := LoadOrCreateSecret(path)
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
	text := strings.TrimSpace(string(content))
	if !strings.HasPrefix(text, "whsec_") {
		t.Errorf("file content does not start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(text, "whsec_"))
	if err != nil {
		t.Fatalf("file content is not whsec_ + base64: %v", err)
	}
	if len(key) < 24 {
		t.Errorf("generated key has %d bytes, want at least 24", len(key))
	}

	second, created, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatalf("second call: %v", err)
	}
	if created {
		t.Error("second call: created = true, want false")
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, content) {
		t.Error("second call rewrote the file")
	}

	body := []byte(`{"hello":"world"}`)
	want := expectedSignature(key, "msg_1", "1700000000", body)
	for name, s := range map[string]Secret{"created": first, "reloaded": second} {
		if got := s.Sign("msg_1", 1700000000, body); got != want {
			t.Errorf("%s secret signs %q, want %q (the key in the file)", name, got, want)
		}
	}

	other, created, err := LoadOrCreateSecret(filepath.Join(t.TempDir(), "webhook-secret"))
	if err != nil || !created {
		t.Fatalf("other path: created=%v, %v", created, err)
	}
	if other.Sign("msg_1", 1700000000, body) == want {
		t.Error("two created secrets are the same")
	}
}

func TestLoadOrCreateSecretKeepsAnExistingFile(t *testing.T) {
	t.Parallel()
	t.Run("an operator's secret is loaded, not replaced", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "webhook-secret")
		if err := os.WriteFile(path, []byte(vectorSecret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s, created, err := LoadOrCreateSecret(path)
		if err != nil || created {
			t.Fatalf("created=%v, err=%v; want false, nil", created, err)
		}
		if got := s.Sign(vectorID, vectorTimestamp, []byte(vectorBody)); got != vectorSignature {
			t.Errorf("Sign = %q, want %q", got, vectorSignature)
		}
	})
	t.Run("an invalid secret is an error and stays as it is", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "webhook-secret")
		bad := []byte("whsec_short\n")
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadOrCreateSecret(path); err == nil {
			t.Fatal("LoadOrCreateSecret accepted an invalid file")
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, bad) {
			t.Errorf("the file was changed to %q", got)
		}
	})
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	long := "https://hooks.example.com/" + strings.Repeat("a", 2048)
	exactly2048 := "https://hooks.example.com/" + strings.Repeat("a", 2048-len("https://hooks.example.com/"))

	// Refused whatever allowPrivate says.
	shape := []struct{ name, url string }{
		{"ftp scheme", "ftp://hooks.example.com/x"},
		{"no scheme", "hooks.example.com/x"},
		{"relative path", "/callback"},
		{"javascript scheme", "javascript:alert(1)"},
		{"no host", "https:///callback"},
		{"only a port", "http://:8080/callback"},
		{"user info", "https://user:pass@hooks.example.com/x"},
		{"user name only", "https://user@hooks.example.com/x"},
		{"longer than 2048 characters", long},
		{"2049 characters", exactly2048 + "a"},
		{"unparsable", "http://[::1/x"},
	}
	for _, tt := range shape {
		for _, allow := range []bool{false, true} {
			t.Run(fmt.Sprintf("refuses %s (allowPrivate=%v)", tt.name, allow), func(t *testing.T) {
				t.Parallel()
				err := CheckURL(tt.url, allow)
				if err == nil {
					t.Fatalf("CheckURL(%q) accepted it", truncate(tt.url))
				}
				if errors.Is(err, ErrForbiddenAddress) {
					t.Errorf("a shape error %v wraps ErrForbiddenAddress", err)
				}
			})
		}
	}

	// Accepted whatever allowPrivate says.
	public := []struct{ name, url string }{
		{"https host name", "https://hooks.example.com/certflow?x=1"},
		{"http host name with port", "http://hooks.example.com:8080/certflow"},
		{"upper-case scheme", "HTTPS://hooks.example.com/"},
		{"public IPv4", "http://93.184.216.34/cb"},
		{"public IPv6", "https://[2606:4700:4700::1111]/cb"},
		{"172.32.0.1 (just past 172.16/12)", "http://172.32.0.1/"},
		{"100.128.0.1 (just past 100.64/10)", "http://100.128.0.1/"},
		{"exactly 2048 characters", exactly2048},
		{"a name merely containing localhost", "https://localhost.example.com/"},
	}
	for _, tt := range public {
		for _, allow := range []bool{false, true} {
			t.Run(fmt.Sprintf("accepts %s (allowPrivate=%v)", tt.name, allow), func(t *testing.T) {
				t.Parallel()
				if err := CheckURL(tt.url, allow); err != nil {
					t.Errorf("CheckURL(%q): %v", truncate(tt.url), err)
				}
			})
		}
	}

	// Refused with ErrForbiddenAddress unless allowPrivate.
	private := []struct{ name, url string }{
		{"127.0.0.1", "http://127.0.0.1/cb"},
		{"127.0.0.1 with port", "http://127.0.0.1:8080/cb"},
		{"127.255.255.254", "http://127.255.255.254/"},
		{"::1", "http://[::1]/cb"},
		{"10.x", "http://10.1.2.3/cb"},
		{"172.16.x", "http://172.16.0.1/cb"},
		{"172.31.x", "http://172.31.255.254/cb"},
		{"192.168.x", "https://192.168.1.1/cb"},
		{"169.254.x (cloud metadata)", "http://169.254.169.254/latest/meta-data/"},
		{"100.64.x (carrier-grade NAT)", "http://100.64.0.1/cb"},
		{"0.0.0.0", "http://0.0.0.0/cb"},
		{"255.255.255.255", "http://255.255.255.255/"},
		{"multicast 224.0.0.1", "http://224.0.0.1/"},
		{"fc00::/7 (fd00::1)", "http://[fd00::1]/cb"},
		{"fc00::/7 (fc00::1)", "http://[fc00::1]/cb"},
		{"fe80:: link-local", "http://[fe80::1]/cb"},
		{"fe80:: with a zone", "http://[fe80::1%25eth0]/cb"},
		{"::ffff:127.0.0.1", "http://[::ffff:127.0.0.1]/cb"},
		{"::ffff:10.0.0.1", "http://[::ffff:10.0.0.1]/cb"},
		{"::ffff:100.64.0.1 (mapped carrier-grade NAT)", "http://[::ffff:100.64.0.1]/cb"},
		{"::ffff:198.18.0.1 (mapped benchmarking range)", "http://[::ffff:198.18.0.1]/cb"},
		{"NAT64 of 127.0.0.1", "http://[64:ff9b::7f00:1]/cb"},
		{"::", "http://[::]/cb"},
		{"localhost", "http://localhost/cb"},
		{"LOCALHOST", "http://LOCALHOST:9000/cb"},
		{"foo.localhost", "http://foo.localhost/cb"},
		{"a.b.localhost", "https://a.b.localhost/cb"},
	}
	for _, tt := range private {
		t.Run("refuses "+tt.name+" unless allowPrivate", func(t *testing.T) {
			t.Parallel()
			err := CheckURL(tt.url, false)
			if !errors.Is(err, ErrForbiddenAddress) {
				t.Errorf("CheckURL(%q, false) = %v, want an error wrapping ErrForbiddenAddress", tt.url, err)
			}
		})
		t.Run("accepts "+tt.name+" with allowPrivate", func(t *testing.T) {
			t.Parallel()
			if err := CheckURL(tt.url, true); err != nil {
				t.Errorf("CheckURL(%q, true): %v", tt.url, err)
			}
		})
	}
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// received is one request as a test server saw it.
type received struct {
	header http.Header
	body   []byte
}

// newServer starts a test server answering status (and Location, for a
// redirect) and returns its URL, the requests it received and the number of
// connections accepted.
func newServer(t *testing.T, handler http.HandlerFunc) (url string, reqs chan received, conns *atomic.Int32) {
	t.Helper()
	reqs = make(chan received, 10)
	conns = new(atomic.Int32)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		reqs <- received{header: r.Header.Clone(), body: body}
		handler(w, r)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, reqs, conns
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }
}

func TestSenderPostDeliversASignedMessage(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{0x42, 0x17}, 16)
	sender := NewSender(mustSecret(t, "whsec_"+base64.StdEncoding.EncodeToString(key)), true, 5*time.Second)
	url, reqs, _ := newServer(t, status(http.StatusNoContent))
	body := []byte(`{"CertificateRequestId":42,"Status":"Issued"}`)

	before := time.Now().Unix()
	d := sender.Post(context.Background(), url+"/hook", "msg_certflow_1", body)
	after := time.Now().Unix()
	if !d.OK() || d.Err != nil || d.Status != http.StatusNoContent {
		t.Fatalf("Delivery = %+v, OK=%v; want 204 OK", d, d.OK())
	}
	var r received
	select {
	case r = <-reqs:
	default:
		t.Fatal("the server received nothing")
	}
	if !bytes.Equal(r.body, body) {
		t.Errorf("body = %q, want %q", r.body, body)
	}
	if got := r.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	id, ts, sig := r.header.Get("webhook-id"), r.header.Get("webhook-timestamp"), r.header.Get("webhook-signature")
	if id != "msg_certflow_1" {
		t.Errorf("webhook-id = %q, want msg_certflow_1", id)
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || n < before || n > after {
		t.Errorf("webhook-timestamp = %q, want Unix seconds in [%d, %d]", ts, before, after)
	}
	if want := expectedSignature(key, id, ts, r.body); sig != want {
		t.Errorf("webhook-signature = %q, want %q (recomputed from what was received)", sig, want)
	}
}

func TestSenderPostClassifiesAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		wantCode int
		wantOK   bool
		wantGone bool
	}{
		{"200 is OK", status(http.StatusOK), 200, true, false},
		{"202 is OK", status(http.StatusAccepted), 202, true, false},
		{"299 is OK", status(299), 299, true, false},
		{"400 fails", status(http.StatusBadRequest), 400, false, false},
		{"404 fails but is not Gone", status(http.StatusNotFound), 404, false, false},
		{"410 is Gone", status(http.StatusGone), 410, false, true},
		{"500 fails", status(http.StatusInternalServerError), 500, false, false},
		{"503 fails", status(http.StatusServiceUnavailable), 503, false, false},
		{"304 fails", status(http.StatusNotModified), 304, false, false},
	}
	sender := NewSender(mustSecret(t, vectorSecret), true, 5*time.Second)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, reqs, _ := newServer(t, tt.handler)
			d := sender.Post(context.Background(), url, "msg_1", []byte(`{}`))
			if d.Status != tt.wantCode {
				t.Errorf("Status = %d, want %d (err %v)", d.Status, tt.wantCode, d.Err)
			}
			if d.OK() != tt.wantOK {
				t.Errorf("OK() = %v, want %v", d.OK(), tt.wantOK)
			}
			if d.Gone() != tt.wantGone {
				t.Errorf("Gone() = %v, want %v", d.Gone(), tt.wantGone)
			}
			if (d.Err == nil) != tt.wantOK {
				t.Errorf("Err = %v, want an error exactly when not OK", d.Err)
			}
			if len(reqs) != 1 {
				t.Errorf("server received %d requests, want 1", len(reqs))
			}
		})
	}
}

func TestSenderPostDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	var landed atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		landed.Add(1)
	}))
	t.Cleanup(target.Close)
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(code)+" counts as a failure", func(t *testing.T) {
			t.Parallel()
			url, reqs, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.URL+"/landed", code)
			})
			sender := NewSender(mustSecret(t, vectorSecret), true, 5*time.Second)
			d := sender.Post(context.Background(), url, "msg_1", []byte(`{}`))
			if d.OK() || d.Err == nil {
				t.Errorf("Delivery = %+v, OK=%v; want a failure", d, d.OK())
			}
			if d.Status != code {
				t.Errorf("Status = %d, want %d", d.Status, code)
			}
			if d.Gone() {
				t.Error("Gone() = true for a redirect")
			}
			if len(reqs) != 1 {
				t.Errorf("redirecting server received %d requests, want 1", len(reqs))
			}
		})
	}
	t.Cleanup(func() {
		if n := landed.Load(); n != 0 {
			t.Errorf("the redirect was followed %d times", n)
		}
	})
}

func TestSenderPostRefusesPrivateAddressesUnlessAllowed(t *testing.T) {
	t.Parallel()
	sender := NewSender(mustSecret(t, vectorSecret), false, 5*time.Second)
	url, reqs, conns := newServer(t, status(http.StatusOK))
	_, port, err := net.SplitHostPort(strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	targets := []struct{ name, url string }{
		{"the server's 127.0.0.1 URL", url + "/hook"},
		{"localhost, resolved at dial time", "http://localhost:" + port + "/hook"},
	}
	for _, tt := range targets {
		t.Run(tt.name, func(t *testing.T) {
			d := sender.Post(context.Background(), tt.url, "msg_1", []byte(`{}`))
			if !errors.Is(d.Err, ErrForbiddenAddress) {
				t.Errorf("Delivery.Err = %v, want an error wrapping ErrForbiddenAddress", d.Err)
			}
			if d.OK() || d.Status != 0 {
				t.Errorf("Delivery = %+v, want no status", d)
			}
		})
	}
	if n := len(reqs); n != 0 {
		t.Errorf("server received %d requests", n)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("server accepted %d connections", n)
	}

	// The same server is reachable with allowPrivate: the refusal above is
	// the address check, not a broken server.
	allowed := NewSender(mustSecret(t, vectorSecret), true, 5*time.Second)
	if d := allowed.Post(context.Background(), url+"/hook", "msg_1", []byte(`{}`)); !d.OK() {
		t.Errorf("with allowPrivate: Delivery = %+v", d)
	}
}

func TestSenderPostGivesUpAfterTheTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	url, _, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	t.Cleanup(func() { close(release) })
	sender := NewSender(mustSecret(t, vectorSecret), true, 200*time.Millisecond)
	start := time.Now()
	d := sender.Post(context.Background(), url, "msg_1", []byte(`{}`))
	if d.OK() || d.Err == nil {
		t.Errorf("Delivery = %+v, want a timeout failure", d)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Post took %v with a 200ms timeout", elapsed)
	}
}

func TestSenderPostFailsOnAnInvalidTarget(t *testing.T) {
	t.Parallel()
	sender := NewSender(mustSecret(t, vectorSecret), true, time.Second)
	d := sender.Post(context.Background(), "http://[::1", "msg_1", nil)
	if d.OK() || d.Err == nil || d.Status != 0 {
		t.Errorf("Delivery = %+v, want an error and no status", d)
	}
}

func TestSenderPostErrorsNameTheTargetWithoutItsQuery(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	sender := NewSender(mustSecret(t, vectorSecret), true, time.Second)
	for _, target := range []string{
		"http://" + closed + "/hook?token=s3cr3t", // refused connection: net/http quotes the URL
		"http://user:s3cr3t@" + closed + "/hook",  // user-info
		"http://[::1/hook?token=s3cr3t",           // url.Parse quotes it too
	} {
		d := sender.Post(context.Background(), target, "msg_1", nil)
		if d.Err == nil || strings.Contains(d.Err.Error(), "s3cr3t") {
			t.Errorf("Post(%q): Err = %v, want an error without the query or password", target, d.Err)
		}
	}
}

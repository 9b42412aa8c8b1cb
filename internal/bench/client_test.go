package bench

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// echo answers each POST with its method, Host, headers and body, counts
// the connections it accepted, and obeys ?close (Connection: close),
// ?chunked (a streamed answer) and ?hangup (drop the connection unanswered).
func echo(t *testing.T, tls bool) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		q := r.URL.Query()
		if q.Has("hangup") {
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
			return
		}
		if q.Has("close") {
			w.Header().Set("Connection", "close")
		}
		answer, _ := json.Marshal(map[string]string{
			"method": r.Method, "host": r.Host, "auth": r.Header.Get("Authorization"), "format": r.Header.Get("X-Certificateformat"),
			"body": string(body), "length": r.Header.Get("Content-Length"),
		})
		if q.Has("chunked") {
			w.Write(answer[:5])
			w.(http.Flusher).Flush()
			w.Write(answer[5:])
			return
		}
		w.WriteHeader(http.StatusCreated)
		w.Write(answer)
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, &conns
}

func post(t *testing.T, c *loadClient, path, body string) map[string]string {
	t.Helper()
	status, data, err := c.post(context.Background(), path, []byte(body))
	if err != nil {
		t.Fatalf("post %s: %v", path, err)
	}
	var got map[string]string
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("post %s: answer %d %q: %v", path, status, data, err)
	}
	return got
}

func TestLoadClientKeepsOneConnectionAndSendsWhatItShould(t *testing.T) {
	srv, conns := echo(t, false)
	c, err := newLoadClient(srv.URL, http.Header{"Authorization": {"Bearer tok"}, "X-Certificateformat": {"DER"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, body := range []string{`{"a":1}`, "", strings.Repeat("x", 100_000)} {
		status, data, err := c.post(context.Background(), "/Enrollment/CSR", []byte(body))
		if err != nil || status != http.StatusCreated {
			t.Fatalf("post %d: %d %v", i, status, err)
		}
		var got map[string]string
		json.Unmarshal(data, &got)
		want := map[string]string{
			"method": "POST", "host": strings.TrimPrefix(srv.URL, "http://"), "auth": "Bearer tok", "format": "DER",
			"body": body, "length": strconv.Itoa(len(body)),
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("post %d: %s = %.40q, want %.40q", i, k, got[k], v)
			}
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for three requests, want one kept alive", n)
	}
}

func TestLoadClientRedialsAfterTheServerClosesAndReadsChunkedAnswers(t *testing.T) {
	srv, conns := echo(t, false)
	c, _ := newLoadClient(srv.URL, nil)
	defer c.Close()
	if got := post(t, c, "/x?close", "one"); got["body"] != "one" {
		t.Errorf("first answer %v", got)
	}
	if got := post(t, c, "/x?chunked", "two"); got["body"] != "two" {
		t.Errorf("chunked answer %v", got)
	}
	if got := post(t, c, "/x", "three"); got["body"] != "three" {
		t.Errorf("third answer %v", got)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (a new one after Connection: close, then kept)", n)
	}
}

func TestLoadClientKeepsTheTargetsPath(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.URL.Path }))
	defer srv.Close()
	c, _ := newLoadClient(srv.URL+"/certflow/", nil)
	defer c.Close()
	if _, _, err := c.post(context.Background(), "/Enrollment/CSR", nil); err != nil || got != "/certflow/Enrollment/CSR" {
		t.Errorf("posted to %q (%v), want /certflow/Enrollment/CSR", got, err)
	}
}

func TestLoadClientReportsADroppedConnectionAndRecovers(t *testing.T) {
	srv, _ := echo(t, false)
	c, _ := newLoadClient(srv.URL, nil)
	defer c.Close()
	if _, _, err := c.post(context.Background(), "/x?hangup", []byte("lost")); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("unanswered post: err %v, want unexpected EOF", err)
	}
	if got := post(t, c, "/x", "after"); got["body"] != "after" {
		t.Errorf("post after a dropped connection: %v", got)
	}
}

func TestLoadClientSpeaksTLS(t *testing.T) {
	srv, _ := echo(t, true)
	c, _ := newLoadClient(srv.URL, nil)
	defer c.Close()
	if _, _, err := c.post(context.Background(), "/x", nil); err == nil {
		t.Fatal("a server certificate no root vouches for was accepted")
	}
	c.tls.RootCAs = x509.NewCertPool()
	c.tls.RootCAs.AddCert(srv.Certificate())
	if got := post(t, c, "/x", "secret"); got["body"] != "secret" {
		t.Errorf("answer over TLS %v", got)
	}
}

func TestLoadClientGivesUpWhenTheRunIsCancelled(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer srv.Close()
	defer close(release) // before srv.Close, which waits for the handler
	c, _ := newLoadClient(srv.URL, nil)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := c.post(ctx, "/slow", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("post cancelled while waiting: err %v, want the context's", err)
	}
}

func TestLoadClientRefusesABadTarget(t *testing.T) {
	for _, target := range []string{"ftp://host", "127.0.0.1:8080", "http://[::1"} {
		if _, err := newLoadClient(target, nil); err == nil || !strings.Contains(err.Error(), "--target") {
			t.Errorf("newLoadClient(%q): err %v, want one naming --target", target, err)
		}
	}
}

func TestEnrollmentBodyIsTheJSONAKeyfactorClientSends(t *testing.T) {
	csr := []byte{0x30, 0x82, 0xff, 0x00, 0x7f}
	now := time.Date(2026, 12, 5, 13, 4, 5, 999, time.FixedZone("x", 3600))
	var got struct{ CSR, Template, Timestamp string }
	body := enrollmentBody([]byte("junk"), csr, []byte(`"Web \"Server\""`), now)
	if err := json.Unmarshal(body[len("junk"):], &got); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if got.CSR != base64.StdEncoding.EncodeToString(csr) || got.Template != `Web "Server"` || got.Timestamp != "2026-12-05T12:04:05Z" {
		t.Errorf("body %s decodes to %+v", body, got)
	}
}

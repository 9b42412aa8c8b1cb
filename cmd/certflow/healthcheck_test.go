package main

import (
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/testutil"
)

// TestHealthcheckProbesReadyz: against a running certflow the probe
// needs no token and exits 0; nothing listening, or not ready, is exit 1
// with the reason on one line.
func TestHealthcheckProbesReadyz(t *testing.T) {
	cf := testutil.StartCertflow(t, nil)
	t.Chdir(t.TempDir())
	out, errOut, code := cli(t, "healthcheck", "--url", cf.URL)
	if code != 0 || !strings.HasPrefix(out, "healthy: "+cf.URL+"/readyz: 200") {
		t.Fatalf("healthcheck of a running certflow: exit %d\n%s%s", code, out, errOut)
	}
	// The address from --listen, a wildcard one probed on loopback.
	port := cf.URL[strings.LastIndex(cf.URL, ":")+1:]
	if out, errOut, code := cli(t, "healthcheck", "--listen", "0.0.0.0:"+port); code != 0 {
		t.Fatalf("healthcheck --listen 0.0.0.0:%s: exit %d\n%s%s", port, code, out, errOut)
	}
	closed := fmt.Sprintf("http://127.0.0.1:%d", testutil.FreePort(t))
	if out, _, code := cli(t, "healthcheck", "--url", closed); code != 1 || !strings.HasPrefix(out, "unhealthy: "+closed+"/readyz") || strings.Count(out, "\n") != 1 {
		t.Fatalf("healthcheck of nothing: exit %d\n%s", code, out)
	}
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"status":"not ready","redis":"unreachable"}`)
	}))
	defer notReady.Close()
	if out, _, code := cli(t, "healthcheck", "--url", notReady.URL); code != 1 || !strings.Contains(out, "503 Service Unavailable") || !strings.Contains(out, "unreachable") {
		t.Fatalf("healthcheck of a certflow without Redis: exit %d\n%s", code, out)
	}
}

// TestHealthcheckOverHTTPS trusts the data directory's CA bundle (or
// --cacert) and nothing else it was not told to.
func TestHealthcheckOverHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `{"status":"ready"}`)
	}))
	defer srv.Close()
	dir := t.TempDir()
	t.Chdir(dir)
	bundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	os.MkdirAll(filepath.Join(dir, "data"), 0o700)
	os.WriteFile(filepath.Join(dir, "data", "ca-bundle.pem"), bundle, 0o644)
	os.WriteFile(filepath.Join(dir, "other.pem"), bundle, 0o644)
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not a certificate"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--data-dir", "data"}, 0, "healthy: "},
		{[]string{"--cacert", "other.pem"}, 0, "healthy: "},
		{nil, 1, "certificate"}, // no bundle in .certflow: the system's roots do not know this CA
		{[]string{"--cacert", "missing.pem"}, 1, "--cacert"},
		{[]string{"--cacert", "junk.pem"}, 1, "no PEM certificate"},
	} {
		out, errOut, code := cli(t, append([]string{"healthcheck", "--url", srv.URL}, c.args...)...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("healthcheck %v: exit %d, want %d and %q\n%s%s", c.args, code, c.code, c.want, out, errOut)
		}
	}
}

// TestHealthcheckOfAWorker pings its Redis.
func TestHealthcheckOfAWorker(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("CERTFLOW_REDIS_URL", "")
	if out, errOut, code := cli(t, "healthcheck", "--redis", "--redis-url", testutil.RedisURL()); code != 0 || !strings.HasPrefix(out, "healthy: Redis") {
		t.Fatalf("healthcheck --redis: exit %d\n%s%s", code, out, errOut)
	}
	down := fmt.Sprintf("redis://:secret@127.0.0.1:%d/0", testutil.FreePort(t))
	out, _, code := cli(t, "healthcheck", "--redis", "--redis-url", down)
	if code != 1 || !strings.HasPrefix(out, "unhealthy: Redis") || strings.Contains(out, "secret") {
		t.Fatalf("healthcheck --redis of nothing: exit %d\n%s", code, out)
	}
	if out, errOut, code := cli(t, "healthcheck", "--redis"); code != 1 || !strings.Contains(out+errOut, "no Redis configured") {
		t.Fatalf("healthcheck --redis without a Redis: exit %d\n%s%s", code, out, errOut)
	}
}

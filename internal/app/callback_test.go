package app_test

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

type delivery struct {
	id, ts, sig string
	body        []byte
}

// hook is a callback receiver that answers with the given statuses in turn
// (the last one repeats).
type hook struct {
	mu       sync.Mutex
	statuses []int
	got      []delivery
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.got = append(h.got, delivery{r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body})
	status := h.statuses[min(len(h.got), len(h.statuses))-1]
	h.mu.Unlock()
	w.WriteHeader(status)
}

func (h *hook) deliveries() []delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]delivery(nil), h.got...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCallbackIsSignedRetriedAndRecorded(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	h := &hook{statuses: []int{500, 204}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	csr, _ := testutil.CSR(t, "callback.example.com")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"CallbackUrl": srv.URL + "/hook", "IncludeChain": true}), "Prefer", "respond-async")
	if resp.Status != http.StatusAccepted {
		t.Fatalf("status %d", resp.Status)
	}
	waitFor(t, "two callback attempts", func() bool { return len(h.deliveries()) >= 2 })
	secretText, err := os.ReadFile(filepath.Join(cf.Config.DataDir, "webhook-secret"))
	if err != nil {
		t.Fatal(err)
	}
	secret, err := callback.ParseSecret(string(secretText))
	if err != nil {
		t.Fatal(err)
	}
	got := h.deliveries()
	for i, d := range got {
		ts, err := strconv.ParseInt(d.ts, 10, 64)
		if err != nil || time.Since(time.Unix(ts, 0)) > time.Minute {
			t.Fatalf("attempt %d: webhook-timestamp %q", i, d.ts)
		}
		if want := secret.Sign(d.id, ts, d.body); d.sig != want {
			t.Fatalf("attempt %d: signature %q does not verify (want %q)", i, d.sig, want)
		}
	}
	if got[0].id == "" || got[0].id != got[1].id {
		t.Fatalf("webhook-id must be stable across retries: %q, %q", got[0].id, got[1].id)
	}
	var body enrollResponse
	if err := json.Unmarshal(got[1].body, &body); err != nil {
		t.Fatal(err)
	}
	info := body.CertificateInformation
	if info.RequestDisposition != "ISSUED" || info.KeyfactorRequestId != er.CertificateInformation.KeyfactorRequestId || len(info.Certificates) != 3 {
		t.Fatalf("callback body: %+v", info)
	}
	loc := resp.Header.Get("Location")
	var st requestStatus
	waitFor(t, "both attempts recorded on the request", func() bool {
		cf.Do(t, "GET", loc, nil).JSON(t, &st)
		return len(st.Callbacks) == 2
	})
	if st.Callbacks[0].Status != 500 || st.Callbacks[0].Delivered || st.Callbacks[1].Status != 204 || !st.Callbacks[1].Delivered || st.Callbacks[0].MessageId != got[0].id {
		t.Fatalf("recorded attempts: %+v", st.Callbacks)
	}
}

func TestCallbackStopsOn410Gone(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	h := &hook{statuses: []int{410}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	csr, _ := testutil.CSR(t, "gone.example.com")
	resp, _ := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"CallbackUrl": srv.URL}))
	if resp.Status != http.StatusOK {
		t.Fatalf("status %d", resp.Status)
	}
	waitFor(t, "the first attempt", func() bool { return len(h.deliveries()) == 1 })
	// The whole retry schedule is 0.7 s; give it twice that to misbehave.
	time.Sleep(1500 * time.Millisecond)
	if n := len(h.deliveries()); n != 1 {
		t.Fatalf("%d deliveries after 410 Gone, want 1", n)
	}
}

func TestCallbackToPrivateRangesIsRefusedUnlessAllowed(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Callbacks.AllowPrivate = false })
	csr, _ := testutil.CSR(t, "private.example.com")
	for _, u := range []string{"http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://[::1]/x", "http://localhost/x", "http://169.254.169.254/latest/meta-data"} {
		r := cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, map[string]any{"CallbackUrl": u}), "x-certificateformat", "PEM")
		assertError(t, r, 400, keyfactor.CodeInvalidField, "CallbackUrl")
	}
}

func TestPrivateKeyRetention(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		tmpl := c.Templates[0]
		tmpl.Name, tmpl.KeyRetention = "Retained", true
		c.Templates = append(c.Templates, tmpl)
	})
	csr, key := testutil.CSR(t, "kept.example.com")
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey := testutil.CSR(t, "other.example.com")
	otherPKCS8, _ := x509.MarshalPKCS8PrivateKey(otherKey)

	r := cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, map[string]any{"Template": "Retained", "PrivateKey": base64.StdEncoding.EncodeToString(otherPKCS8)}), "x-certificateformat", "PEM")
	assertError(t, r, 400, keyfactor.CodeInvalidField, "PrivateKey: does not match")
	r = cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, map[string]any{"Template": "Retained", "PrivateKey": "bm90IGEga2V5"}), "x-certificateformat", "PEM")
	assertError(t, r, 400, keyfactor.CodeInvalidField, "PrivateKey")

	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "Retained", "PrivateKey": base64.StdEncoding.EncodeToString(pkcs8)}))
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	id := er.CertificateInformation.KeyfactorRequestId
	stored, err := cf.App.Store.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.PrivateKey) == 0 || strings.Contains(string(stored.PrivateKey), string(pkcs8[10:40])) {
		t.Fatal("the private key is not stored, or stored in the clear")
	}
	opened, err := cf.App.KEK.Open(stored.PrivateKey, []byte("certflow-request/"+strconv.FormatInt(id, 10)))
	if err != nil || string(opened) != string(pkcs8) {
		t.Fatalf("the sealed key does not open under the KEK with the request id: %v", err)
	}
	if _, err := cf.App.KEK.Open(stored.PrivateKey, []byte("certflow-request/"+strconv.FormatInt(id+1, 10))); err == nil {
		t.Fatal("the sealed key opens with another request's id")
	}
	if strings.Contains(cf.Logs.String(), base64.StdEncoding.EncodeToString(pkcs8)[:40]) {
		t.Fatal("the private key appears in the log")
	}
}

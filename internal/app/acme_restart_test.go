package app_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/internal/testutil/acmetest"
)

// A request the CA failed (its dns-01 validation found no record: the
// DNS system put it up under another name) runs again, after an
// administrator's restart, with a new order: the failed order is not
// looked at again (it would fail the request once more), and the new one
// issues once the DNS system is mended.
func TestARestartedACMERequestPlacesANewOrder(t *testing.T) {
	t.Parallel()
	dns := acmetest.StartChallSrv(t)
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{DNS: dns, Env: []string{"PEBBLE_AUTHZREUSE=0"}})
	var broken atomic.Bool
	broken.Store(true)
	// The DNS system's API, in front of challtestsrv's: while broken, it
	// answers a presentation but puts the record up elsewhere.
	dnsAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if broken.Load() {
			body = bytes.ReplaceAll(body, []byte(`"_acme-challenge.`), []byte(`"_elsewhere.`))
		}
		resp, err := http.Post(dns.MgmtURL+r.URL.Path, "application/json", bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
	}))
	t.Cleanup(dnsAPI.Close)
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		acfg := acmeSettings(pb.DirectoryURL, pb.CABundle)
		acfg.Challenge = config.ChallengeDNS01
		acfg.DNS.Hook = challSrvHook(dns)
		acfg.DNS.Hook.Present.URL = dnsAPI.URL + "/set-txt"
		acfg.DNS.Hook.Cleanup.URL = dnsAPI.URL + "/clear-txt"
		routeTemplate(c, "Again", config.NewACMECA("AgainCA", acfg))
	})

	csr, key := testutil.CSR(t, "again.certflow.test", "again.certflow.test")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "Again", "IncludeChain": true}), "Prefer", "respond-async")
	if resp.Status != http.StatusAccepted {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	id, inst := er.CertificateInformation.KeyfactorRequestId, er.CertificateInformation.WorkflowInstanceId
	r := settled(t, cf, id)
	if r.Disposition != store.Failed || !strings.Contains(r.Message, "certificate authority AgainCA") {
		t.Fatalf("request %d: %s %q; want FAILED with the CA's problem", id, r.Disposition, r.Message)
	}
	first := recordedOrderURL(t, cf, id)

	broken.Store(false)
	if r := cf.Do(t, "POST", "/Workflow/Instances/"+inst+"/Restart", nil); r.Status != http.StatusNoContent {
		t.Fatalf("restart: %d %s", r.Status, r.Body)
	}
	st := pollUntil(t, cf, id, "the restarted request to settle", final, nil)
	if got := st.CertificateInformation.RequestDisposition; got != "ISSUED" {
		t.Fatalf("restarted request: %s %q; want ISSUED through a new order", got, st.CertificateInformation.DispositionMessage)
	}
	issuedChain(t, st, key, pb.Roots(t)[0], "again.certflow.test")
	if again := recordedOrderURL(t, cf, id); again == first || again == "" {
		t.Fatalf("the restarted request's order is %q, the failed one was %q: want a new order", again, first)
	}
}

// recordedOrderURL is the URL of the order recorded for request id.
func recordedOrderURL(t *testing.T, cf *testutil.Certflow, id int64) string {
	t.Helper()
	var rec struct{ Order struct{ URL string } }
	if err := json.Unmarshal(orderOf(t, cf, id), &rec); err != nil {
		t.Fatalf("the order recorded for request %d: %v", id, err)
	}
	return rec.Order.URL
}

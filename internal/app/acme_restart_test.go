package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

// A request that failed while its order was valid at the CA (its runs
// could not take the issue lock, here held by the test, until their
// retries ran out), restarted, gives that order up first: the
// certificate the CA issued for it, which nobody received, is revoked at
// the CA; then a new order issues the request's certificate.
func TestARestartRevokesTheUnreleasedCertificateOfTheOrderItRetires(t *testing.T) {
	t.Parallel()
	cf, pb, proxy := proxiedPebbleCertflow(t, nil, func(c *config.Config, _ *config.ACME) { c.Worker.MaxRetry = 1 })
	proxy.busyDownloads.Store(1)
	proxy.busyFor.Store(2)
	csr, key := testutil.CSR(t, "retired.certflow.test", "retired.certflow.test")
	id := submitAsync(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "AcmeServer", "IncludeChain": true}), alice)
	pollUntil(t, cf, id, "the request to wait for its certificate's download", waitingForCA("PebbleProxied", "rate limited"), neverSettledOrIssued(t, id))
	first := recordedOrderURL(t, cf, id)

	rdb := cf.Redis.(*redis.Client)
	lock := fmt.Sprintf("%s:request:{%d}:issue-lock", cf.Prefix, id)
	if err := rdb.Set(context.Background(), lock, "someone else", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	r := settled(t, cf, id)
	if r.Disposition != store.Failed {
		t.Fatalf("request %d with its issue lock held: %s %q; want FAILED once its retries ran out", id, r.Disposition, r.Message)
	}
	if n := len(proxy.leaves()); n != 0 {
		t.Fatalf("%d certificates downloaded before the restart", n)
	}
	rdb.Del(context.Background(), lock)

	if resp := cf.Do(t, "POST", "/Workflow/Instances/"+r.Instance.ID+"/Restart", nil); resp.Status != http.StatusNoContent {
		t.Fatalf("restart: %d %s", resp.Status, resp.Body)
	}
	st := pollUntil(t, cf, id, "the restarted request to settle", final, nil)
	chain := issuedChain(t, st, key, pb.Roots(t)[0], "retired.certflow.test")
	leaves := proxy.leaves()
	if len(leaves) != 2 || !leaves[1].Equal(chain[0]) {
		t.Fatalf("%d certificates downloaded; want the retired order's, then the released one", len(leaves))
	}
	if status, reason := pb.CertStatus(t, leaves[0].SerialNumber.Text(16)); status != "Revoked" || reason != 5 {
		t.Fatalf("the retired order's certificate is %q (reason %d) at the CA; want Revoked, cessationOfOperation", status, reason)
	}
	if status, _ := pb.CertStatus(t, chain[0].SerialNumber.Text(16)); status != "Valid" {
		t.Fatalf("the released certificate is %q at the CA; want Valid", status)
	}
	if again := recordedOrderURL(t, cf, id); again == first {
		t.Fatalf("the restarted request's order is the retired one, %s", first)
	}
	if _, retired, _ := store.New(rdb, cf.Prefix).OrderOf(context.Background(), id); retired != nil {
		t.Fatalf("the retired order is still recorded: %s", retired)
	}
}

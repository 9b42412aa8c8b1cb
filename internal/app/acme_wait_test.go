package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/app"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/internal/testutil/acmetest"
)

// A request waiting for its CA is decided by nobody: neither its
// requester, nor an approver, nor an administrator can approve, deny,
// signal or restart it (it answers by itself, with its certificate or the
// CA's problem). Only an administrator may stop it, and the stop gives the
// order up at the CA: the TXT record presented for it is taken down (a
// stopped request must not leave a record in the zone, nor a challenge
// the CA could still validate).
func TestAnAuthorityWaitIsDecidedByNobodyAndAStopGivesTheOrderUp(t *testing.T) {
	t.Parallel()
	cf, dns := heldCertflow(t, "Held", "HeldServer", time.Hour)
	csr, _ := testutil.CSR(t, "held.certflow.test", "held.certflow.test")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "HeldServer"}), "Prefer", "respond-async", "Authorization", bearer(testutil.AliceToken))
	if resp.Status != http.StatusAccepted {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	id, inst := er.CertificateInformation.KeyfactorRequestId, er.CertificateInformation.WorkflowInstanceId
	waitFor(t, "the request to wait for its CA with its TXT record up", func() bool {
		r, _ := cf.App.Store.Get(context.Background(), id)
		if r == nil || r.Disposition != store.Pending || !r.Instance.Wait.ForAuthority() {
			return false
		}
		txt, _ := lookupTXT(dns, "_acme-challenge.held.certflow.test.")
		return len(txt) == 1
	})

	signal := "/Workflow/Instances/" + inst + "/Signals"
	for _, token := range []string{testutil.AliceToken, testutil.BobToken, testutil.AdminToken} {
		for _, approve := range []bool{true, false} {
			body := map[string]any{"SignalKey": "issue.ApprovalStatus", "Data": map[string]any{"Approved": approve, "Comment": "no"}}
			if r := cf.Do(t, "POST", signal, body, "Authorization", bearer(token)); r.Status < 400 {
				t.Fatalf("%s's signal (approved %v) on an authority wait: %d %s", token, approve, r.Status, r.Body)
			}
		}
		for _, call := range []struct {
			path string
			body any
		}{
			{"/Workflow/Certificates/Approve", []int64{id}},
			{"/Workflow/Certificates/Deny", map[string]any{"CertificateRequestIds": []int64{id}, "Comment": "no"}},
		} {
			r := cf.Do(t, "POST", call.path, call.body, "Authorization", bearer(token))
			if r.Status == http.StatusOK {
				var res keyfactor.ApproveDenyResult
				r.JSON(t, &res)
				if len(res.Successes) != 0 || len(res.Denials) != 0 {
					t.Fatalf("%s's %s decided an authority wait: %s", token, call.path, r.Body)
				}
			}
		}
		if r := cf.Do(t, "POST", "/Workflow/Instances/"+inst+"/Restart", nil, "Authorization", bearer(token)); r.Status < 400 {
			t.Fatalf("%s restarted a request waiting for its CA: %d %s", token, r.Status, r.Body)
		}
	}
	for _, token := range []string{testutil.AliceToken, testutil.BobToken} {
		assertError(t, cf.Do(t, "POST", "/Workflow/Instances/"+inst+"/Stop", map[string]any{"Comment": "mine"}, "Authorization", bearer(token)), http.StatusForbidden, keyfactor.CodeForbidden, "admin")
	}
	if r, _ := cf.App.Store.Get(context.Background(), id); r.Disposition != store.Pending || !r.Instance.Wait.ForAuthority() || len(r.Instance.Decisions) != 0 {
		t.Fatalf("after the refused calls the request is %s, wait %+v, decisions %+v", r.Disposition, r.Instance.Wait, r.Instance.Decisions)
	}

	if r := cf.Do(t, "POST", "/Workflow/Instances/"+inst+"/Stop", map[string]any{"Comment": "project cancelled"}); r.Status != http.StatusNoContent {
		t.Fatalf("admin stop: %d %s", r.Status, r.Body)
	}
	r := settled(t, cf, id)
	if r.Disposition != store.Denied || !strings.Contains(r.Message, "project cancelled") {
		t.Fatalf("stopped request %d: %s %q; want DENIED with the admin's comment", id, r.Disposition, r.Message)
	}
	waitFor(t, "the stopped order's TXT record to be taken down", func() bool {
		txt, _ := lookupTXT(dns, "_acme-challenge.held.certflow.test.") // an emptied name answers as a lame referral
		return len(txt) == 0
	})
}

// startOn starts certflow with cfg (another process of a deployment
// whose Redis prefix cfg names), until the test ends.
func startOn(t *testing.T, cfg *config.Config) *app.App {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	a, err := app.Open(cfg, app.RoleWorker, testutil.AdminToken, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.RunWorker(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("second certflow worker: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		a.Close()
		if t.Failed() {
			t.Logf("second certflow's logs:\n%s", logs.String())
		}
	})
	return a
}

// An operator who takes an ACME CA out of a template means no more
// certificates from it for that template: a request waiting for it is
// DENIED, saying so, and its order is given up at the CA (its TXT record
// taken down), rather than finished or left behind.
func TestARequestWaitingForACATheTemplateNoLongerServesIsDeniedAndItsOrderGivenUp(t *testing.T) {
	t.Parallel()
	dns := acmetest.StartChallSrv(t)
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{DNS: dns})
	held := config.NewACMECA("Held", config.ACME{
		Directory: pb.DirectoryURL, CABundle: pb.CABundle, Challenge: config.ChallengeDNS01,
		DNS: config.ACMEDNS{
			// The next look, after this, is the second process's: long
			// enough for the first to stop before it.
			PropagationDelay: 5 * time.Second,
			Hook: &config.DNSHook{
				Present:      config.DNSHookCall{URL: dns.MgmtURL + "/set-txt", Body: `{"host": "{fqdn}", "value": "{value}"}`},
				Cleanup:      config.DNSHookCall{URL: dns.MgmtURL + "/clear-txt", Body: `{"host": "{fqdn}"}`},
				AllowPrivate: true,
			},
		},
		PollInterval: 200 * time.Millisecond, MaxPollInterval: 500 * time.Millisecond, OrderTimeout: time.Hour, Timeout: 5 * time.Second,
	})
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.CAs = append(c.CAs, held)
		addTemplate(c, "HeldServer", func(t *config.Template) { t.CAs = []string{"Held"} })
	})
	csr, _ := testutil.CSR(t, "moved.certflow.test", "moved.certflow.test")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "HeldServer"}), "Prefer", "respond-async")
	if resp.Status != http.StatusAccepted {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	id := er.CertificateInformation.KeyfactorRequestId
	waitFor(t, "the request to wait for its CA with its TXT record up", func() bool {
		r, _ := cf.App.Store.Get(context.Background(), id)
		if r == nil || r.Disposition != store.Pending || !r.Instance.Wait.ForAuthority() {
			return false
		}
		txt, _ := lookupTXT(dns, "_acme-challenge.moved.certflow.test.")
		return len(txt) == 1
	})
	cf.Stop()
	// The operator routes the template to the built-in CA only.
	cfg := *cf.Config
	cfg.Templates = slices.Clone(cfg.Templates)
	for i := range cfg.Templates {
		if cfg.Templates[i].Name == "HeldServer" {
			cfg.Templates[i].CAs = []string{config.DefaultCAName}
		}
	}
	a := startOn(t, &cfg)
	var r *store.Request
	waitFor(t, "the request to settle", func() bool {
		r, _ = a.Store.Get(context.Background(), id)
		return r != nil && r.Disposition.Final()
	})
	if c, _ := r.Certificate(); r.Disposition != store.Denied || !strings.Contains(r.Message, "Held does not serve template HeldServer") || c != nil {
		t.Fatalf("request %s %q (certificate %v); want DENIED: its CA no longer serves its template", r.Disposition, r.Message, c)
	}
	waitFor(t, "the given-up order's TXT record to be taken down", func() bool {
		txt, _ := lookupTXT(dns, "_acme-challenge.moved.certflow.test.")
		return len(txt) == 0
	})
}

// A CSR an ACME CA cannot validate as configured (a wildcard by http-01,
// no DNS name or IP address) is denied at once, saying why, rather than
// left waiting for its CA until order_timeout.
func TestACSRTheACMECACannotValidateIsDeniedAtOnce(t *testing.T) {
	t.Parallel()
	cf, _ := acmeCertflow(t, func(c *config.Config) {
		for i := range c.Templates {
			if c.Templates[i].Name == "AcmeServer" {
				c.Templates[i].RFCEnforcement, c.Templates[i].AllowWildcards = false, true
			}
		}
	})
	for _, tc := range []struct {
		cn   string
		dns  []string
		want string
	}{
		{"*.wild.certflow.test", []string{"*.wild.certflow.test"}, "needs dns-01"},
		{"Jane Doe", nil, "no DNS name or IP address"},
	} {
		csr, _ := testutil.CSR(t, tc.cn, tc.dns...)
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "AcmeServer"}), "Prefer", "respond-async")
		if resp.Status != http.StatusAccepted {
			t.Fatalf("enroll %s: %d %s", tc.cn, resp.Status, resp.Body)
		}
		r := settled(t, cf, er.CertificateInformation.KeyfactorRequestId)
		if r.Disposition != store.Denied || !strings.Contains(r.Message, tc.want) {
			t.Fatalf("%s: %s %q; want DENIED: %s", tc.cn, r.Disposition, r.Message, tc.want)
		}
	}
}

// A request stopped after its CA issued the certificate, but before
// certflow downloaded it (the CA asked for an hour's patience with the
// download), has nothing released: its certificate, which the CA
// published and whose key the requester holds, is revoked at the CA
// (cessationOfOperation).
func TestAStopAfterTheCAIssuedRevokesTheCertificateNobodyReceived(t *testing.T) {
	t.Parallel()
	cf, pb, proxy := proxiedPebbleCertflow(t, nil, nil)
	proxy.busyDownloads.Store(1)
	csr, _ := testutil.CSR(t, "unreleased.certflow.test", "unreleased.certflow.test")
	id := submitAsync(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "AcmeServer"}), alice)
	pollUntil(t, cf, id, "the request to wait for its certificate's download", waitingForCA("PebbleProxied", "rate limited"), neverSettledOrIssued(t, id))
	if n := len(proxy.leaves()); n != 0 {
		t.Fatalf("%d certificates downloaded while the CA said to wait", n)
	}

	r, _ := cf.App.Store.Get(context.Background(), id)
	if resp := cf.Do(t, "POST", "/Workflow/Instances/"+r.Instance.ID+"/Stop", map[string]any{"Comment": "changed my mind"}); resp.Status != http.StatusNoContent {
		t.Fatalf("admin stop: %d %s", resp.Status, resp.Body)
	}
	r = settled(t, cf, id)
	if c, _ := r.Certificate(); r.Disposition != store.Denied || c != nil {
		t.Fatalf("stopped request: %s %q, certificate %v; want DENIED with none", r.Disposition, r.Message, c)
	}
	waitFor(t, "the CA's certificate for the stopped request to be revoked at the CA", func() bool {
		leaves := proxy.leaves()
		if len(leaves) != 1 {
			return false
		}
		status, reason := pb.CertStatus(t, leaves[0].SerialNumber.Text(16))
		return status == "Revoked" && reason == 5
	})
	if _, err := cf.App.Store.CertificateOf(context.Background(), id); err == nil {
		t.Fatal("the revoked certificate was stored with the stopped request")
	}
}

// An order the CA issued before order_timeout, whose download it put off
// past it (and past the grace of an order the CA is finishing), is
// released at the look that ends the wait, not given up (and revoked):
// the request is ISSUED, and the CA says the certificate is valid. (Time
// passes by the test moving the order's placement two hours back while
// the request waits out the CA's two seconds.)
func TestAnOrderIssuedBeforeItsTimeoutIsReleasedAfterIt(t *testing.T) {
	t.Parallel()
	cf, pb, proxy := proxiedPebbleCertflow(t, nil, func(_ *config.Config, a *config.ACME) { a.OrderTimeout = time.Hour })
	proxy.busyDownloads.Store(1)
	proxy.busyFor.Store(2)
	csr, key := testutil.CSR(t, "late.certflow.test", "late.certflow.test")
	id := submitAsync(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "AcmeServer", "IncludeChain": true}), alice)
	pollUntil(t, cf, id, "the request to wait for its certificate's download", waitingForCA("PebbleProxied", "rate limited"), neverSettledOrIssued(t, id))

	var rec map[string]any
	if err := json.Unmarshal(orderOf(t, cf, id), &rec); err != nil {
		t.Fatal(err)
	}
	rec["Placed"] = time.Now().Add(-2 * time.Hour).UTC()
	moved, _ := json.Marshal(rec)
	rdb := cf.Redis.(*redis.Client)
	if err := rdb.HSet(context.Background(), fmt.Sprintf("%s:request:{%d}", cf.Prefix, id), "o", moved).Err(); err != nil {
		t.Fatal(err)
	}

	st := pollUntil(t, cf, id, "the request to settle", final, nil)
	chain := issuedChain(t, st, key, pb.Roots(t)[0], "late.certflow.test")
	if status, _ := pb.CertStatus(t, chain[0].SerialNumber.Text(16)); status != "Valid" {
		t.Fatalf("the CA says the released certificate is %q; want Valid", status)
	}
}

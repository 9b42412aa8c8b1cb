package app_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/internal/testutil/acmetest"
	"github.com/certflow/certflow/workflow"
)

// An order that is not valid within order_timeout ends the request
// FAILED, saying so, after a wait that kept one timeline entry for the
// placement and every later look (the propagation delay outlasts the
// timeout, so the look at the deadline may be the only one: asynq fires a
// scheduled task up to a second early, which sometimes adds one); the TXT
// record it presented is taken down.
func TestAnOrderPastItsTimeoutFailsTheRequest(t *testing.T) {
	t.Parallel()
	cf, dns := heldCertflow(t, "Slow", "SlowServer", 2*time.Second)
	csr, _ := testutil.CSR(t, "slow.certflow.test", "slow.certflow.test")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "SlowServer"}), "Prefer", "respond-async")
	if resp.Status != http.StatusAccepted {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	id := er.CertificateInformation.KeyfactorRequestId
	r := settled(t, cf, id)
	if r.Disposition != store.Failed || !strings.Contains(r.Message, "did not issue within 2s (order_timeout) of being asked") {
		t.Fatalf("request %s: %q; want FAILED for its order_timeout", r.Disposition, r.Message)
	}
	var issue []workflow.StepRecord
	for _, h := range r.Instance.History {
		if h.ID == "issue" {
			issue = append(issue, h)
		}
	}
	if len(issue) != 1 || issue[0].Outcome != workflow.OutcomeFailed || issue[0].Attempts < 2 {
		t.Fatalf("issue's timeline %+v: want one Failed entry counting the placement and the looks after it", issue)
	}
	if txt, _ := lookupTXT(dns, "_acme-challenge.slow.certflow.test."); len(txt) != 0 {
		t.Fatalf("the presented TXT record is still up after the order was given up: %v", txt)
	}
	if d := r.Instance.Decisions; len(d) != 0 {
		t.Fatalf("looks at the CA were recorded as decisions: %+v", d)
	}
}

// heldCertflow is a certflow whose template tmpl routes to an ACME CA
// caName, a real Pebble, answered over dns-01 through the hook on
// challtestsrv's API with an hour's propagation delay: the CA is never
// asked to look while a test runs, so its orders stay pending, with their
// TXT records up, until order_timeout (orderTimeout) or a stop.
func heldCertflow(t *testing.T, caName, tmpl string, orderTimeout time.Duration) (*testutil.Certflow, *acmetest.ChallSrv) {
	t.Helper()
	dns := acmetest.StartChallSrv(t)
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{DNS: dns})
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.CAs = append(c.CAs, config.NewACMECA(caName, config.ACME{
			Directory: pb.DirectoryURL, CABundle: pb.CABundle, Challenge: config.ChallengeDNS01,
			DNS: config.ACMEDNS{
				PropagationDelay: time.Hour,
				Hook: &config.DNSHook{
					Present:      config.DNSHookCall{URL: dns.MgmtURL + "/set-txt", Body: `{"host": "{fqdn}", "value": "{value}"}`},
					Cleanup:      config.DNSHookCall{URL: dns.MgmtURL + "/clear-txt", Body: `{"host": "{fqdn}"}`},
					AllowPrivate: true,
				},
			},
			PollInterval: 200 * time.Millisecond, MaxPollInterval: 500 * time.Millisecond, OrderTimeout: orderTimeout, Timeout: 5 * time.Second,
		}))
		addTemplate(c, tmpl, func(t *config.Template) { t.CAs = []string{caName} })
	})
	return cf, dns
}

// lookupTXT asks the challenge server's DNS for name's TXT records.
func lookupTXT(dns *acmetest.ChallSrv, name string) ([]string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, dns.DNSAddr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	txt, err := r.LookupTXT(ctx, name)
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return nil, nil
	}
	return txt, err
}

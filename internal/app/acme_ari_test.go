package app_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

const adviceDef = `name: advice
trigger: event:cert.advice
steps:
  - id: note
    uses: metadata
    with:
      set:
        RenewFrom: "${{ certificate.Renewal.Offered ? certificate.Renewal.Start.Format('2006-01-02T15:04:05Z07:00') : 'no advice' }}"
`

// A certificate from an ACME CA that offers renewal information (Pebble
// does) carries the CA's window into event definitions' expressions; a
// built-in CA's carries none.
func TestEventDefinitionsSeeTheACMECAsRenewalAdvice(t *testing.T) {
	t.Parallel()
	dir := shippedDefinitionsWith(t, map[string]string{"advice.yaml": adviceDef})
	cf, _ := acmeCertflow(t, func(c *config.Config) { c.Definitions = dir })
	csr, _ := testutil.CSR(t, "ari.certflow.test", "ari.certflow.test")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "AcmeServer"}), "Prefer", "wait=60")
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	acmeID := er.CertificateInformation.KeyfactorID
	run := fire(t, cf, workflow.Event{Name: "cert.advice", CertificateID: acmeID}, "advice")
	if run.Disposition != store.Completed {
		t.Fatalf("run %s: %s", run.Disposition, run.Message)
	}
	r, _ := cf.App.Store.Get(context.Background(), acmeID)
	from, err := time.Parse(time.RFC3339, r.Metadata()["RenewFrom"])
	if err != nil {
		t.Fatalf("RenewFrom = %q: want the CA's window start (%v)", r.Metadata()["RenewFrom"], err)
	}
	cert, _ := r.Certificate()
	if !from.After(cert.NotBefore) || !from.Before(cert.NotAfter) {
		t.Fatalf("advised renewal from %s: not within the certificate's validity %s – %s", from, cert.NotBefore, cert.NotAfter)
	}

	builtin := issueFor(t, cf, "builtin.example.com", "builtin.example.com")
	run = fire(t, cf, workflow.Event{Name: "cert.advice", CertificateID: builtin}, "advice")
	if r, _ := cf.App.Store.Get(context.Background(), builtin); run.Disposition != store.Completed || r.Metadata()["RenewFrom"] != "no advice" {
		t.Fatalf("built-in certificate: run %s, RenewFrom %q; want no advice", run.Disposition, r.Metadata()["RenewFrom"])
	}
}

// A CA whose renewal information stalls holds up one event's run, for at
// most the advice timeout, and is then left alone for a while: later
// events for its certificates, this one's and another's, run with no
// advice and without asking it.
func TestACAWhoseRenewalInformationStallsIsNotAskedForEveryEvent(t *testing.T) {
	t.Parallel()
	cf, _, proxy := proxiedPebbleCertflow(t, map[string]string{"advice.yaml": adviceDef}, nil)
	var certs []int64
	for _, name := range []string{"stalled-ari.certflow.test", "stalled-ari-2.certflow.test"} {
		csr, _ := testutil.CSR(t, name, name)
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "AcmeServer"}), "Prefer", "wait=60")
		if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("enroll %s: %d %s", name, resp.Status, resp.Body)
		}
		certs = append(certs, er.CertificateInformation.KeyfactorID)
	}
	proxy.mode.Store(proxyStall)
	for _, id := range []int64{certs[0], certs[1], certs[0]} {
		run := fire(t, cf, workflow.Event{Name: "cert.advice", CertificateID: id}, "advice")
		if r, _ := cf.App.Store.Get(context.Background(), id); run.Disposition != store.Completed || r.Metadata()["RenewFrom"] != "no advice" {
			t.Fatalf("certificate %d while its CA stalls: run %s %q, RenewFrom %q; want no advice", id, run.Disposition, run.Message, r.Metadata()["RenewFrom"])
		}
	}
	if n := proxy.stalled.Load(); n != 1 {
		t.Fatalf("the stalled CA was asked %d times for three events; want once, then left alone", n)
	}
}

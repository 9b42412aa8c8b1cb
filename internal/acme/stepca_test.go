package acme_test

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/testutil/acmetest"
)

// step-ca's ACME provisioner, a second, independent ACME server: dns-01
// through the hook on challtestsrv (step-ca's resolver), revocation seen
// on its CRL, and no renewal information.
func TestIssueByDNS01ThroughStepCA(t *testing.T) {
	e := newEnv(t)
	cs := acmetest.StartChallSrv(t)
	sc := acmetest.StartStepCA(t, acmetest.StepCAOptions{Resolver: cs.DNSAddr})
	a := e.open(t, "step", dns01Config(sc.DirectoryURL, sc.CABundle, challSrvHook(cs)))
	names := []string{"step.example.test", "www.step.example.test"}
	req := request(t, names[0], names...)
	o, err := a.Place(context.Background(), req)
	if err != nil {
		t.Fatalf("Place: %v", err)
	}
	p, err := drive(t, a, req, o)
	if err != nil {
		t.Fatalf("Advance: %v", err)
	}
	checkIssued(t, p, req, pool([]*x509.Certificate{sc.Root}), names...)

	// Another process resumes the valid order: the same certificate.
	again, err := e.open(t, "step", dns01Config(sc.DirectoryURL, sc.CABundle, challSrvHook(cs))).Advance(context.Background(), req, p.Order)
	if err != nil || again.Issued == nil || !again.Issued.Leaf.Equal(p.Issued.Leaf) {
		t.Fatalf("another process's Advance of the valid order: %+v, %v", again, err)
	}

	if _, err := a.RenewalInfo(context.Background(), p.Issued.Leaf); !errors.Is(err, ca.ErrNoRenewalInfo) {
		t.Fatalf("RenewalInfo: %v; want ErrNoRenewalInfo (step-ca offers no ARI)", err)
	}
	if err := a.RevokeAtCA(context.Background(), p.Issued.Leaf.Raw, 1); err != nil {
		t.Fatalf("RevokeAtCA: %v", err)
	}
	if !sc.Revoked(t, p.Issued.Leaf.SerialNumber) {
		t.Fatal("step-ca's CRL does not list the revoked certificate")
	}
}

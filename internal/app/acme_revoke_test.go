package app_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
)

// Revocation of a certificate from an ACME CA goes to the CA, and only
// what certflow would revoke: an approver's attempt on a requester's
// certificate reaches no CA; an administrator's revocation shows in the
// CA's status and in certflow's record.
func TestRevocationThroughAnACMECA(t *testing.T) {
	t.Parallel()
	cf, pb := acmeCertflow(t, nil)
	csr, _ := testutil.CSR(t, "rev.certflow.test", "rev.certflow.test")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "AcmeServer"}), "Prefer", "wait=60", "Authorization", bearer(testutil.AliceToken))
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	req, err := cf.App.Store.Get(context.Background(), er.CertificateInformation.KeyfactorRequestId)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := req.Certificate()
	if err != nil || cert == nil {
		t.Fatalf("certificate of request %d: %v", req.ID, err)
	}
	pebbleStatus := func() string {
		s, _ := pb.CertStatus(t, strings.TrimLeft(strings.ToLower(cert.SerialNumber), "0"))
		return s
	}
	if s := pebbleStatus(); s != "Valid" {
		t.Fatalf("Pebble says %q before any revocation", s)
	}
	recorded := func() *store.Certificate {
		c, err := cf.App.Store.Certificate(context.Background(), cert.ID)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	for _, auth := range []string{bearer(testutil.BobToken)} {
		r, rr := revoke(t, cf, auth, map[string]any{"CertificateIds": []int64{cert.ID}, "Reason": 1, "Comment": "not mine"})
		if r.Status == http.StatusOK && len(rr.RevokedIds) > 0 {
			t.Fatalf("%s revoked alice's certificate: %s", auth, r.Body)
		}
	}
	if s := pebbleStatus(); s != "Valid" || recorded().Revocation != nil {
		t.Fatalf("after refused revocations: Pebble %q, record %+v", s, recorded().Revocation)
	}

	r, rr := revoke(t, cf, bearer(testutil.AdminToken), map[string]any{"CertificateIds": []int64{cert.ID}, "Reason": 1, "Comment": "key compromised"})
	if r.Status != http.StatusOK {
		t.Fatalf("admin revocation: %d %s", r.Status, r.Body)
	}
	if len(rr.SuspendedCerts) == 1 {
		settled(t, cf, rr.SuspendedCerts[0].KeyfactorRequestId)
	}
	if s := pebbleStatus(); s != "Revoked" {
		t.Fatalf("Pebble says %q after the revocation", s)
	}
	if rev := recorded().Revocation; rev == nil || rev.Reason != 1 {
		t.Fatalf("certflow's record: %+v; want revoked for keyCompromise", rev)
	}
}

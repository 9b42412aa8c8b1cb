package app_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/testutil"
)

// A renewal of a certificate from an ACME CA goes back to that CA with the
// new CSR, and is issued for the same names only; another requester's
// renewal of it, and one that adds a name, are refused at submit.
func TestARenewalGoesBackToTheACMECAForTheSameNamesOnly(t *testing.T) {
	t.Parallel()
	cf, pb := acmeCertflow(t, nil)
	alice := bearer(testutil.AliceToken)
	names := []string{"renew.certflow.test", "www.renew.certflow.test"}
	csr, _ := testutil.CSR(t, names[0], names...)
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Template": "AcmeServer"}), "Prefer", "wait=60", "Authorization", alice)
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	old := er.CertificateInformation.KeyfactorID

	for _, tc := range []struct {
		name, auth string
		csrNames   []string
		status     int
		message    string
	}{
		{"another requester's renewal", "Basic " + base64.StdEncoding.EncodeToString([]byte("carol:"+testutil.CarolPassword)), names, http.StatusNotFound, "CertificateId"},
		{"a renewal that adds a name", alice, append([]string{"extra.certflow.test"}, names...), http.StatusBadRequest, "its names are not certificate"},
	} {
		fresh, _ := testutil.CSR(t, "", tc.csrNames...)
		r := cf.Do(t, "POST", "/Enrollment/Renew", map[string]any{"CertificateId": old, "CSR": base64.StdEncoding.EncodeToString(fresh)}, "Authorization", tc.auth)
		if r.Status != tc.status || !strings.Contains(string(r.Body), tc.message) {
			t.Fatalf("%s: %d %s; want %d naming %q", tc.name, r.Status, r.Body, tc.status, tc.message)
		}
	}

	// A renewal keeps the certificate's subject, and Pebble's leaves have
	// none (their names are in the SANs): the renewal's CSR has none.
	fresh, key := testutil.CSR(t, "", names...)
	r, rr := renew(t, cf, map[string]any{"CertificateId": old, "CSR": base64.StdEncoding.EncodeToString(fresh)}, "Authorization", alice, "Prefer", "wait=60", "x-certificateformat", "PEM")
	if r.Status != http.StatusOK || rr.RequestDisposition != "ISSUED" || rr.RenewedCertificateId != old {
		t.Fatalf("renew: %d %s", r.Status, r.Body)
	}
	leaf := leafOf(t, rr.Certificates)
	if !pki.SamePublicKey(leaf.PublicKey, key.Public()) {
		t.Fatal("the renewal does not certify the new CSR's key")
	}
	if status, _ := pb.CertStatus(t, fmt.Sprintf("%x", leaf.SerialNumber)); status != "Valid" {
		t.Fatalf("Pebble says %q of the renewal's serial: it was not issued by the ACME CA", status)
	}
	if got, want := fmt.Sprint(leaf.DNSNames), fmt.Sprint(names); got != want {
		t.Fatalf("renewal names %s, want %s", got, want)
	}
}

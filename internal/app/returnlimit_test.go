package app_test

import (
	"net/http"
	"testing"

	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

// TestListingsClampReturnLimit: Keyfactor's clients always send
// pq.returnLimit=1000, over certflow's maximum of 500. Every listing
// answers it with (up to) 500 rows instead of refusing it; a limit that is
// not a positive integer is still refused, naming the parameter.
func TestListingsClampReturnLimit(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, gated("gated", 0, "{roles: [approver]}"))
	pending := submitPending(t, cf, "gated.example.com", testutil.AliceToken).CertificateInformation.KeyfactorRequestId
	denied := submitPending(t, cf, "gated.two.example.com", testutil.AliceToken).CertificateInformation.KeyfactorRequestId
	approveDeny(t, cf, "/Workflow/Certificates/Deny", testutil.BobToken, map[string]any{"CertificateRequestIds": []int64{denied}, "Comment": "no"})
	csr, _ := testutil.CSR(t, "plain.example.com")
	_, issued := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", bearer(testutil.AliceToken))
	if r, _ := generateCSR(t, cf, map[string]any{"Subject": "CN=gen.example.com", "KeyType": "ECC", "Curve": "P-256", "Template": "WebServer"}, "Authorization", bearer(testutil.AliceToken)); r.Status != http.StatusOK {
		t.Fatalf("generate a CSR: %d %s", r.Status, r.Body)
	}
	for _, tc := range []struct {
		path  string
		token string
		rows  int
		want  int64 // the first row's id; 0: not checked
	}{
		{"/Workflow/Certificates/Pending", testutil.BobToken, 1, pending},
		{"/Workflow/Certificates/Denied", testutil.BobToken, 1, denied},
		{"/Certificates", testutil.AliceToken, 1, issued.CertificateInformation.KeyfactorID},
		{"/CSRGeneration/Pending", testutil.AliceToken, 1, 0},
		{"/Workflow/Instances", testutil.AdminToken, 3, 0},
		{"/Security/Roles", testutil.AliceToken, 3, 1},
	} {
		t.Run(tc.path, func(t *testing.T) {
			auth := []string{"Authorization", bearer(tc.token)}
			for _, limit := range []string{"1000", "501"} { // past int64 too: TestParsePage
				r := cf.Do(t, "GET", tc.path+"?pq.returnLimit="+limit+"&pq.pageReturned=1", nil, auth...)
				var rows []struct{ Id any }
				if r.Status != http.StatusOK {
					t.Fatalf("returnLimit=%s: %d %s", limit, r.Status, r.Body)
				}
				r.JSON(t, &rows)
				if len(rows) != tc.rows || (tc.want != 0 && rows[0].Id != float64(tc.want)) {
					t.Fatalf("returnLimit=%s: %s; want %d rows, the first %d", limit, r.Body, tc.rows, tc.want)
				}
			}
			for _, limit := range []string{"all", "-1", "0", "1e3", "-99999999999999999999999"} {
				r := cf.Do(t, "GET", tc.path+"?pq.returnLimit="+limit, nil, auth...)
				assertError(t, r, http.StatusBadRequest, keyfactor.CodeInvalidField, "pq.returnLimit: want a positive integer")
			}
		})
	}
}

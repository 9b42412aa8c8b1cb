package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/testutil"
)

// config.Speed's piggyback and group commit reach the queue client and
// the store; with both off, an enrollment goes through all the same (the
// record written before its task, every pipeline its own round trip),
// and with both on (the default) the start-up probe turned the piggyback
// on, quietly.
func TestTheSpeedSwitchesReachTheStoreAndTheQueue(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{true, false} {
		cf := testutil.StartCertflow(t, func(c *config.Config) { c.Speed.Piggyback, c.Speed.GroupCommit = on, on })
		if got := cf.App.Queue.Piggybacking(); got != on {
			t.Errorf("speed on=%v: piggybacking %v", on, got)
		}
		if got := cf.App.Store.GroupCommit; got != on {
			t.Errorf("speed on=%v: store group commit %v", on, got)
		}
		csr, _ := testutil.CSR(t, "speed.example.com")
		resp := cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, nil), "x-certificateformat", "PEM")
		if resp.Status != http.StatusOK || !strings.Contains(string(resp.Body), `"ISSUED"`) {
			t.Errorf("speed on=%v: enrollment %d %s", on, resp.Status, resp.Body)
		}
		if strings.Contains(cf.Logs.String(), "piggyback") {
			t.Errorf("speed on=%v: the piggyback logged:\n%s", on, cf.Logs)
		}
	}
}

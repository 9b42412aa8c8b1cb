package worker_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
)

// TestAnOverdueApprovalWhoseTimeoutTaskWasLostIsStillDenied deletes the
// scheduled timeout task of a waiting request (as a lost asynq task would
// leave it) and moves its deadline into the past: the reconciler schedules
// the timeout again and the request ends DENIED, not PENDING for ever.
func TestAnOverdueApprovalWhoseTimeoutTaskWasLostIsStillDenied(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	def := "name: gated\ntrigger: enrollment\nsteps:\n  - {id: approval, uses: approval, with: {timeout: 1h}}\n  - {id: issue, uses: issue}\n"
	if err := os.WriteFile(filepath.Join(dir, "gated.yaml"), []byte(def), 0o644); err != nil {
		t.Fatal(err)
	}
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.Worker.ReconcileAfter, c.Worker.TaskTimeout = 300*time.Millisecond, 250*time.Millisecond
	})
	csr, _ := testutil.CSR(t, "overdue.example.com")
	resp := cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, nil), "x-certificateformat", "PEM")
	var a answer
	resp.JSON(t, &a)
	if resp.Status != http.StatusOK || a.CertificateInformation.RequestDisposition != "PENDING" {
		t.Fatalf("submit: %d %s, want 200 PENDING", resp.Status, resp.Body)
	}
	id := a.CertificateInformation.KeyfactorRequestId
	ctx := context.Background()
	r, err := cf.App.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	ins := asynq.NewInspectorFromRedisClient(cf.Redis)
	taskID := "timeout:" + r.Instance.ID + ":approval.0:0"
	if info, err := testutil.ScheduledTask(t, cf.Redis, cf.Config.Queue, taskID); err != nil || info.State != asynq.TaskStateScheduled {
		t.Fatalf("the timeout task %s: %+v, %v; want it scheduled", taskID, info, err)
	}
	if err := ins.DeleteTask(cf.Config.Queue, taskID); err != nil {
		t.Fatal(err)
	}
	if _, err := cf.App.Store.Update(ctx, id, func(r *store.Request) error {
		r.Instance.Wait.Deadline = time.Now().Add(-time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := newWorker(cf).ReconcileOnce(ctx); err != nil || n != 1 {
		t.Fatalf("ReconcileOnce = %d, %v; want the overdue wait scheduled again", n, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := cf.App.Store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Disposition == store.Denied {
			if !strings.Contains(got.Message, "no approval decision within the timeout") {
				t.Errorf("message %q, want the timeout's", got.Message)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the overdue approval was not timed out: %s", got.Disposition)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

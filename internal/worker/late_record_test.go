package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

// A task dequeued before its record exists (the queue's piggyback missed
// an enqueue, and the record followed the task: queue.Client.missed) is
// not lost: the worker tries once more a second later, finds the record
// and runs it, long before the reconciler would.
func TestATaskWhoseRecordComesLateStillRuns(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Worker.ReconcileAfter = time.Hour })
	csr, _ := testutil.CSR(t, "late.example.com")
	ctx := context.Background()
	id, err := cf.App.Store.NewID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cf.App.Queue.EnqueueRun(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(cf.Logs.String(), "task for a request not stored (yet); trying once more") {
		if time.Now().After(deadline) {
			t.Fatal("the worker never found the task without its record")
		}
		time.Sleep(10 * time.Millisecond)
	}
	now := time.Now().UTC()
	r := &store.Request{
		ID: id, Disposition: store.Queued, Submitted: now, Updated: now, Trigger: "enrollment",
		Requester: workflow.Requester{Name: "alice", Roles: []string{config.RoleRequester}}, CSR: csr,
		Input:    workflow.Request{Template: config.DefaultTemplate, Format: "PEM"},
		Instance: workflow.Instance{ID: "late-record-instance"},
	}
	if _, _, err := cf.App.Store.Create(ctx, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	waitIssued(t, cf.App.Store, id, 15*time.Second, "the task's retry did not run the request")
	if strings.Contains(cf.Logs.String(), "dropping it") {
		t.Error("the task was dropped before its record came")
	}
}

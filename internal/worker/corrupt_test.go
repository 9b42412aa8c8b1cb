package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

// A record that does not decode, left in the open set, does not hold up
// the reconciler: the stuck requests after it are still run again. (It is
// the oldest entry for good, as it never makes progress, so a pass that
// stopped at it would never reach another.)
func TestACorruptRecordDoesNotStopTheReconciler(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Worker.ReconcileAfter = time.Hour })
	ctx := context.Background()
	s := cf.App.Store
	corrupt, err := s.NewID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stuck, _ := s.NewID(ctx)
	cf.Redis.HSet(ctx, fmt.Sprintf("%s:request:{%d}", cf.Prefix, corrupt), "v", 1, "d", "not json")
	csr, _ := testutil.CSR(t, "stuck.example.com")
	now := time.Now().UTC()
	r := &store.Request{
		ID: stuck, Disposition: store.Queued, Submitted: now, Updated: now, Trigger: "enrollment",
		Requester: workflow.Requester{Name: "alice", Roles: []string{config.RoleRequester}}, CSR: csr,
		Input:    workflow.Request{Template: config.DefaultTemplate, Format: "PEM"},
		Instance: workflow.Instance{ID: "stuck-instance"},
	}
	if _, _, err := s.Create(ctx, r, time.Hour); err != nil { // no task: lost, as asynq can lose one
		t.Fatal(err)
	}
	open := cf.Prefix + ":open"
	cf.Redis.ZAdd(ctx, open, redis.Z{Score: 1, Member: corrupt}, redis.Z{Score: 2, Member: stuck})
	n, err := newWorker(cf).ReconcileOnce(ctx)
	if err != nil || n != 1 {
		t.Errorf("ReconcileOnce = %d, %v; want the stuck request enqueued again", n, err)
	}
	waitIssued(t, s, stuck, 15*time.Second, "the stuck request behind a corrupt record was not run again")
}

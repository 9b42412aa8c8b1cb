package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/queue"
)

// asynq keeps a scheduled task's time in whole seconds, so a task
// scheduled at a fraction of a second is due up to a second early; one
// scheduled at NotBefore(t) is never due before t.
func TestATimeoutScheduledNotBeforeItsDeadlineIsNeverDueEarlier(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	c, _, _ := newClient(t, rdb, prefix, queue.Options{})
	ctx := context.Background()
	deadline := time.Now().Add(time.Hour).Truncate(time.Second).Add(700 * time.Millisecond)
	due := func(step string, at time.Time) time.Time {
		t.Helper()
		if err := c.EnqueueTimeout(ctx, 9, "inst", step, 0, 0, at); err != nil {
			t.Fatal(err)
		}
		info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo(prefix, "timeout:inst:"+step+".0:0")
		if err != nil {
			t.Fatal(err)
		}
		return info.NextProcessAt
	}
	if got := due("raw", deadline); !got.Before(deadline) {
		t.Logf("asynq now keeps fractions of a second (due %s for %s); NotBefore is no longer needed", got, deadline)
	}
	if got := due("rounded", queue.NotBefore(deadline)); got.Before(deadline) || got.Sub(deadline) > time.Second {
		t.Fatalf("scheduled at NotBefore(%s): due %s; want at or after the deadline, within a second", deadline, got)
	}
	if whole := deadline.Truncate(time.Second); !queue.NotBefore(whole).Equal(whole) {
		t.Fatalf("NotBefore(%s) = %s; a whole second is kept", whole, queue.NotBefore(whole))
	}
}

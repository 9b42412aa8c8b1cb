package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// TestThePendingIndexFollowsTheDisposition walks a request through an
// approval: entering PENDING indexes it by deadline, an escalation moves
// its score, a decision (back to RUNNING) removes it and puts it back in
// the open set at once, and a settled end leaves both.
func TestThePendingIndexFollowsTheDisposition(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	create := func() *store.Request {
		r := newRequest(t, s, "alice", "")
		if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	pendingIDs := func() []int64 {
		ids, err := s.PendingIDs(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	overdue := func(cutoff time.Time) []int64 {
		ids, err := s.OverdueIDs(ctx, cutoff, 100)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	now := time.Now()
	a, b := create(), create()
	a.Disposition = store.Pending
	a.Instance.Status = workflow.StatusSuspended
	a.Instance.Wait = &workflow.Wait{Step: "approval", Deadline: now.Add(time.Hour)}
	b.Disposition = store.Pending
	b.Instance.Wait = &workflow.Wait{Step: "approval"} // no deadline
	for _, r := range []*store.Request{b, a} {
		if err := s.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if got := pendingIDs(); !slices.Equal(got, []int64{a.ID, b.ID}) {
		t.Fatalf("pending = %v, want %d (deadline in an hour) then %d (none)", got, a.ID, b.ID)
	}
	if got := overdue(now.Add(2 * time.Hour)); !slices.Equal(got, []int64{a.ID}) {
		t.Errorf("overdue in two hours = %v, want only %d", got, a.ID)
	}
	if stale, _ := s.Stale(ctx, now.Add(time.Hour), 100); slices.Contains(stale, a.ID) {
		t.Errorf("a pending request is in the open set: the reconciler would run it")
	}
	// Escalation: still pending, a later deadline.
	a.Instance.Wait.Deadline = now.Add(3 * time.Hour)
	if err := s.Save(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got := overdue(now.Add(2 * time.Hour)); len(got) != 0 {
		t.Errorf("overdue after the escalation = %v, want none", got)
	}
	// A decision: RUNNING again, out of the pending index, back in the open set.
	a.Disposition = store.Running
	if err := s.Save(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got := pendingIDs(); !slices.Equal(got, []int64{b.ID}) {
		t.Errorf("pending after the decision = %v, want only %d", got, b.ID)
	}
	if stale, _ := s.Stale(ctx, time.Now().Add(time.Minute), 100); !slices.Contains(stale, a.ID) {
		t.Errorf("a decided request did not rejoin the open set: a lost resume would never be reconciled")
	}
	// Denied straight from PENDING (a stop, say): leaves the index.
	b.Disposition = store.Denied
	if err := s.Save(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got := pendingIDs(); len(got) != 0 {
		t.Errorf("pending after the denial = %v, want none", got)
	}
	got, err := s.GetMany(ctx, []int64{b.ID, 999999, a.ID})
	if err != nil || len(got) != 2 || got[0].ID != b.ID || got[1].ID != a.ID {
		t.Fatalf("GetMany = %v, %v; want b and a, the missing id skipped", got, err)
	}
}

func TestNewestWalksRequestsFromTheNewestDown(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	var ids []int64
	for range 5 {
		r := newRequest(t, s, "alice", "")
		if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	var seen []int64
	next, err := s.Newest(ctx, 0, 100, func(r *store.Request) bool {
		seen = append(seen, r.ID)
		return len(seen) < 3
	})
	if err != nil || !slices.Equal(seen, []int64{ids[4], ids[3], ids[2]}) || next != ids[2] {
		t.Fatalf("Newest = %v next %d, %v; want the three newest, then stop at %d", seen, next, err, ids[2])
	}
	seen = nil
	if _, err := s.Newest(ctx, next, 100, func(r *store.Request) bool { seen = append(seen, r.ID); return true }); err != nil || !slices.Equal(seen, []int64{ids[1], ids[0]}) {
		t.Fatalf("Newest from %d = %v, %v; want the two oldest", next, seen, err)
	}
}

// TestARestartedRequestStaysOpenThoughItsSettlingWasBatched: a FAILED
// request's removal from the open set is batched; restarted before the
// batch is sent, the request must stay in the open set, or a lost run
// task would never be reconciled.
func TestARestartedRequestStaysOpenThoughItsSettlingWasBatched(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	r := newRequest(t, s, "alice", "")
	if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	r, _ = s.Get(ctx, r.ID)
	r.Disposition = store.Failed
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // the restart comes later than the failure
	r.Disposition = store.Queued
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	// Stale sends the batched removals first.
	stale, err := s.Stale(ctx, time.Now().Add(time.Minute), 100)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(stale, r.ID) {
		t.Fatalf("the restarted request %d left the open set with its earlier settling's batch", r.ID)
	}
	// A request that stays settled does leave it.
	q := newRequest(t, s, "alice", "")
	if _, _, err := s.Create(ctx, q, time.Hour); err != nil {
		t.Fatal(err)
	}
	q, _ = s.Get(ctx, q.ID)
	q.Disposition = store.Issued
	if err := s.Save(ctx, q); err != nil {
		t.Fatal(err)
	}
	if stale, _ := s.Stale(ctx, time.Now().Add(time.Minute), 100); slices.Contains(stale, q.ID) {
		t.Errorf("an issued request is still in the open set after the batch was sent")
	}
}

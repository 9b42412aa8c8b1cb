package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/store"
)

// Processes racing to create one CA's ACME account key converge on the
// first stored; another directory has an account of its own.
func TestACMEAccountKeyIsSetOnceAndPerDirectory(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	const dir, other = "https://ca.example.test/dir", "https://other.example.test/dir"
	if _, err := s.ACMEAccount(ctx, "Acme", dir); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no account yet: %v; want ErrNotFound", err)
	}
	const racers = 8
	got := make([][]byte, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			got[i], errs[i] = s.SetACMEAccountKeyIfAbsent(ctx, "Acme", dir, fmt.Appendf(nil, "sealed-%d", i))
		})
	}
	wg.Wait()
	for i := range racers {
		if errs[i] != nil || !bytes.Equal(got[i], got[0]) {
			t.Fatalf("racer %d: %q, %v; want every racer to get %q", i, got[i], errs[i], got[0])
		}
	}
	if err := s.SetACMEAccountURL(ctx, "acme", dir, "https://ca.example.test/acct/1"); err != nil {
		t.Fatal(err)
	}
	// The CA's name is case-insensitive.
	rec, err := s.ACMEAccount(ctx, "ACME", dir)
	if err != nil || !bytes.Equal(rec.SealedKey, got[0]) || rec.URL != "https://ca.example.test/acct/1" {
		t.Fatalf("account %+v, %v", rec, err)
	}
	if _, err := s.ACMEAccount(ctx, "acme", other); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another directory: %v; want ErrNotFound", err)
	}
	if _, err := s.ACMEAccount(ctx, "other-ca", dir); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another CA: %v; want ErrNotFound", err)
	}
}

func TestHTTP01Answers(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	if _, err := s.HTTP01(ctx, "tok"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}
	if err := s.PutHTTP01(ctx, "tok", "tok.thumb", time.Hour); err != nil {
		t.Fatal(err)
	}
	if v, err := s.HTTP01(ctx, "tok"); err != nil || v != "tok.thumb" {
		t.Fatalf("HTTP01: %q, %v", v, err)
	}
	// The answer expires: it lives while its order is validated.
	if ttl := rdb.TTL(ctx, prefix+":acme:http01:tok").Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("answer's TTL %s; want at most an hour", ttl)
	}
	if err := s.DeleteHTTP01(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HTTP01(ctx, "tok"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted token: %v", err)
	}
}

// An order is recorded only under the request's issue claim, the first
// record only once; RetireOrder moves it aside with the record's save,
// and only if that save wins its compare-and-set; a look still under way
// cannot write it back, and it stays until dropped under the claim.
func TestAnOrderIsRecordedUnderTheClaimAndRetiredWithTheRecord(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	r := created(t, s)
	orders := func() (string, string) {
		t.Helper()
		cur, old, err := s.OrderOf(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		return string(cur), string(old)
	}
	_, claim, err := s.ClaimIssue(ctx, r.ID, nil)
	if err != nil || claim == nil {
		t.Fatalf("ClaimIssue = %v, %v", claim, err)
	}
	if err := claim.RecordOrder(ctx, []byte("first"), true); err != nil {
		t.Fatal(err)
	}
	if err := claim.RecordOrder(ctx, []byte("second"), true); !errors.Is(err, store.ErrOrderRecorded) {
		t.Fatalf("a second first record: %v; want ErrOrderRecorded", err)
	}
	if err := claim.RecordOrder(ctx, []byte("moved on"), false); err != nil {
		t.Fatal(err)
	}
	claim.Release(ctx)
	if err := claim.RecordOrder(ctx, []byte("after release"), false); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("a record after the claim was released: %v; want ErrBusy", err)
	}
	if cur, old := orders(); cur != "moved on" || old != "" {
		t.Fatalf("OrderOf = %q, retired %q; want the last record under the claim", cur, old)
	}

	// A stale copy's save loses: the order stays.
	stale, err := s.Get(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, r.ID, func(q *store.Request) error { q.Message = "moved"; return nil }); err != nil {
		t.Fatal(err)
	}
	stale.RetireOrder()
	if err := s.Save(ctx, stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale save: %v; want ErrConflict", err)
	}
	if cur, old := orders(); cur != "moved on" || old != "" {
		t.Fatalf("a lost save retired the order: %q, retired %q", cur, old)
	}
	_, look, err := s.ClaimIssue(ctx, r.ID, nil) // a look still under way
	if err != nil || look == nil {
		t.Fatalf("ClaimIssue = %v, %v", look, err)
	}
	if _, err := s.Update(ctx, r.ID, func(q *store.Request) error { q.RetireOrder(); return nil }); err != nil {
		t.Fatal(err)
	}
	if cur, old := orders(); cur != "" || old != "moved on" {
		t.Fatalf("after RetireOrder: %q, retired %q; want none, retired the last", cur, old)
	}
	if err := look.RecordOrder(ctx, []byte("moved on again"), false); !errors.Is(err, store.ErrOrderRetired) {
		t.Fatalf("an update of a retired order: %v; want ErrOrderRetired", err)
	}
	// Another restart before the step ran keeps the retired order.
	if _, err := s.Update(ctx, r.ID, func(q *store.Request) error { q.RetireOrder(); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := look.RecordOrder(ctx, []byte("new"), true); err != nil {
		t.Fatal(err)
	}
	if cur, old := orders(); cur != "new" || old != "moved on" {
		t.Fatalf("after a new order's first record: %q, retired %q; want both", cur, old)
	}
	// The retired order is dropped once given up, only under the claim.
	look.Release(ctx)
	if err := look.DropRetiredOrder(ctx); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("a drop after the claim was released: %v; want ErrBusy", err)
	}
	_, again, err := s.ClaimIssue(ctx, r.ID, nil)
	if err != nil || again == nil {
		t.Fatalf("ClaimIssue = %v, %v", again, err)
	}
	if err := again.DropRetiredOrder(ctx); err != nil {
		t.Fatal(err)
	}
	if cur, old := orders(); cur != "new" || old != "" {
		t.Fatalf("after the drop: %q, retired %q; want the new one alone", cur, old)
	}
}

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
// record only once; ForgetOrder drops it with the record's save, and
// only if that save wins its compare-and-set.
func TestAnOrderIsRecordedUnderTheClaimAndForgottenWithTheRecord(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	r := created(t, s)
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
	if o, err := s.OrderOf(ctx, r.ID); err != nil || string(o) != "moved on" {
		t.Fatalf("OrderOf = %q, %v; want the last record under the claim", o, err)
	}

	// A stale copy's save loses: the order stays.
	stale, err := s.Get(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, r.ID, func(q *store.Request) error { q.Message = "moved"; return nil }); err != nil {
		t.Fatal(err)
	}
	stale.ForgetOrder()
	if err := s.Save(ctx, stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale save: %v; want ErrConflict", err)
	}
	if o, _ := s.OrderOf(ctx, r.ID); string(o) != "moved on" {
		t.Fatalf("a lost save dropped the order: %q", o)
	}
	_, late, err := s.ClaimIssue(ctx, r.ID, nil) // a look still under way
	if err != nil || late == nil {
		t.Fatalf("ClaimIssue = %v, %v", late, err)
	}
	if _, err := s.Update(ctx, r.ID, func(q *store.Request) error { q.ForgetOrder(); return nil }); err != nil {
		t.Fatal(err)
	}
	if o, err := s.OrderOf(ctx, r.ID); err != nil || o != nil {
		t.Fatalf("OrderOf after ForgetOrder = %q, %v; want none", o, err)
	}
	// The look's update does not bring the forgotten order back.
	if err := late.RecordOrder(ctx, []byte("moved on again"), false); !errors.Is(err, store.ErrOrderForgotten) {
		t.Fatalf("an update of a forgotten order: %v; want ErrOrderForgotten", err)
	}
	if o, _ := s.OrderOf(ctx, r.ID); o != nil {
		t.Fatalf("a look's update brought the forgotten order back: %q", o)
	}
}

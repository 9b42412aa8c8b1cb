package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

func setup(t *testing.T) (*store.Store, *redis.Client, string) {
	t.Helper()
	rdb, prefix := testutil.Redis(t)
	return store.New(rdb, prefix), rdb, prefix
}

func newRequest(t *testing.T, s *store.Store, caller, idemKey string) *store.Request {
	t.Helper()
	id, err := s.NewID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	return &store.Request{
		ID: id, Disposition: store.Queued, Submitted: now, Updated: now, Trigger: "enrollment",
		Requester: workflow.Requester{Name: caller}, CSR: []byte{1, 2, 3, byte(id)},
		IdempotencyKey: idemKey, Instance: workflow.Instance{ID: s.InstanceID(id)},
	}
}

func TestCreateGetSave(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	r := newRequest(t, s, "alice", "")
	id, existing, err := s.Create(ctx, r, time.Hour)
	if err != nil || existing || id != r.ID {
		t.Fatalf("Create = %d, %v, %v; want %d, false, nil", id, existing, err, r.ID)
	}
	got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Requester.Name != "alice" || got.Disposition != store.Queued || string(got.CSR) != string(r.CSR) || got.Input.ID != id {
		t.Fatalf("Get returned %+v", got)
	}
	if rid, err := s.RequestIDOfInstance(r.Instance.ID); err != nil || rid != id {
		t.Fatalf("RequestIDOfInstance = %d, %v; want %d", rid, err, id)
	}
	if _, err := s.RequestIDOfInstance("6ba7b810-9dad-11d1-80b4-00c04fd430c8"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a foreign instance id resolved: %v", err)
	}
	if _, err := store.New(nil, "other-prefix").RequestIDOfInstance(r.Instance.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another deployment's instance id resolved: %v", err)
	}

	t.Run("a save from a stale copy is refused", func(t *testing.T) {
		a, _ := s.Get(ctx, id)
		b, _ := s.Get(ctx, id)
		a.Disposition = store.Running
		if err := s.Save(ctx, a); err != nil {
			t.Fatal(err)
		}
		b.Disposition = store.Failed
		if err := s.Save(ctx, b); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("stale save: err = %v, want ErrConflict", err)
		}
		now, _ := s.Get(ctx, id)
		if now.Disposition != store.Running {
			t.Fatalf("disposition = %s after a refused save, want RUNNING", now.Disposition)
		}
		// The winner's copy keeps working: its version advanced with it.
		a.Message = "second save"
		if err := s.Save(ctx, a); err != nil {
			t.Fatalf("second save from the current copy: %v", err)
		}
	})

	t.Run("Update retries over a concurrent writer", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := 0; i < 10; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Update(ctx, id, func(r *store.Request) error {
					r.Callbacks = append(r.Callbacks, store.CallbackAttempt{Attempt: len(r.Callbacks) + 1})
					return nil
				}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		r, _ := s.Get(ctx, id)
		if len(r.Callbacks) != 10 {
			t.Fatalf("%d attempts recorded by 10 concurrent updates, want 10 (a lost update)", len(r.Callbacks))
		}
	})
}

func TestGetAndSaveOfAMissingRequest(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	if _, err := s.Get(ctx, 999999); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get: err = %v, want ErrNotFound", err)
	}
	r := newRequest(t, s, "alice", "")
	if err := s.Save(ctx, r); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Save of a request never created: err = %v, want ErrNotFound", err)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	first := newRequest(t, s, "alice", "key-1")
	id1, existing, err := s.Create(ctx, first, time.Hour)
	if err != nil || existing {
		t.Fatal(err, existing)
	}
	second := newRequest(t, s, "alice", "key-1")
	id2, existing, err := s.Create(ctx, second, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !existing || id2 != id1 {
		t.Fatalf("same caller and key: got id %d existing=%v, want %d existing=true", id2, existing, id1)
	}
	if _, err := s.Get(ctx, second.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the repeated submit wrote a record of its own (err = %v)", err)
	}
	other := newRequest(t, s, "bob", "key-1")
	id3, existing, err := s.Create(ctx, other, time.Hour)
	if err != nil || existing || id3 == id1 {
		t.Fatalf("another caller's same key must not collide: id %d existing=%v err=%v", id3, existing, err)
	}
	ttl := rdb.PTTL(ctx, idemKeyOf(t, rdb, prefix)).Val()
	if ttl <= 0 || ttl > time.Hour {
		t.Fatalf("idempotency key TTL = %v, want (0, 1h]", ttl)
	}
}

func idemKeyOf(t *testing.T, rdb redis.UniversalClient, prefix string) string {
	keys, err := rdb.Keys(context.Background(), prefix+":idempotency:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("no idempotency key stored: %v", err)
	}
	return keys[0]
}

func TestDeleteLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	r := newRequest(t, s, "alice", "retry-key")
	if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, r); err != nil {
		t.Fatal(err)
	}
	keys := testutil.Keys(t, rdb, prefix)
	for _, k := range keys {
		if k != prefix+":seq:request" {
			t.Errorf("key %s survived Delete", k)
		}
	}
	// The key is free again: a retry creates a request.
	again := newRequest(t, s, "alice", "retry-key")
	if _, existing, err := s.Create(ctx, again, time.Hour); err != nil || existing {
		t.Fatalf("after Delete the idempotency key still answered: existing=%v err=%v", existing, err)
	}
}

func TestSettledRequestsLeaveTheOpenSetAndWakeWaiters(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiters := s.NewWaiters()
	go waiters.Listen(ctx, testLogger(t))
	r := newRequest(t, s, "alice", "")
	r.Updated = time.Now().Add(-time.Hour)
	if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	stale, err := s.Stale(ctx, time.Now().Add(-time.Minute), 10)
	if err != nil || len(stale) != 1 || stale[0] != r.ID {
		t.Fatalf("Stale = %v, %v; want [%d]", stale, err, r.ID)
	}
	got := make(chan *store.Request, 1)
	go func() {
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		defer wcancel()
		res, err := waiters.Wait(wctx, r.ID)
		if err != nil {
			t.Error(err)
		}
		got <- res
	}()
	// An unsettled save refreshes progress: no longer stale.
	r.Disposition = store.Running
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	if stale, _ := s.Stale(ctx, time.Now().Add(-time.Minute), 10); len(stale) != 0 {
		t.Fatalf("a request that just made progress is listed stale: %v", stale)
	}
	r.Disposition = store.Issued
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	res := <-got
	if res == nil || res.Disposition != store.Issued {
		t.Fatalf("waiter returned %+v, want the ISSUED request", res)
	}
	if stale, _ := s.Stale(ctx, time.Now().Add(time.Hour), 10); len(stale) != 0 {
		t.Fatalf("a settled request is still open: %v", stale)
	}
}

// A settle announcement carries the record as saved, certificate and CSR
// included: the waiter answers from it without reading the store (here
// the record is gone by the time the waiter looks).
func TestAWaiterIsAnsweredByTheAnnouncementItself(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiters := listening(t, ctx, s, rdb, prefix)
	r := newRequest(t, s, "alice", "")
	r.CSR = []byte{0x0a, 0x00, '\n', 0x30} // binary, newlines included
	if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	cert, _, err := s.IssueOnce(ctx, r.ID, func(context.Context) (*store.Certificate, error) {
		return &store.Certificate{SerialNumber: "0A", Chain: [][]byte{{0x30, 0x01}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wt := waiters.Register(r.ID)
	defer wt.Close()
	r.Disposition, r.Message = store.Issued, "issued \n with a newline"
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Del(ctx, requestKey(prefix, r.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	got, err := wt.Wait(wctx)
	if err != nil || got == nil {
		t.Fatalf("Wait = %+v, %v; want the ISSUED request from its announcement", got, err)
	}
	if got.ID != r.ID || got.Disposition != store.Issued || got.Message != r.Message || !bytes.Equal(got.CSR, r.CSR) {
		t.Fatalf("announced request %d %s %q CSR %x; want %d ISSUED %q CSR %x", got.ID, got.Disposition, got.Message, got.CSR, r.ID, r.Message, r.CSR)
	}
	gc, err := got.Certificate()
	if err != nil || gc == nil || gc.ID != cert.ID || gc.SerialNumber != "0A" || !bytes.Equal(gc.Chain[0], []byte{0x30, 0x01}) {
		t.Fatalf("announced certificate %+v, %v; want %+v", gc, err, cert)
	}
}

// listening starts a waiters hub and returns once its subscription is live.
func listening(t *testing.T, ctx context.Context, s *store.Store, rdb redis.UniversalClient, prefix string) *store.Waiters {
	t.Helper()
	waiters := s.NewWaiters()
	go waiters.Listen(ctx, testLogger(t))
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := rdb.PubSubNumSub(ctx, prefix+":events").Result()
		if err == nil && n[prefix+":events"] > 0 {
			return waiters
		}
		if time.Now().After(deadline) {
			t.Fatalf("the waiters never subscribed (%v)", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWaitReturnsTheRequestAsItStandsWhenTimeIsUp(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	r := newRequest(t, s, "alice", "")
	if _, _, err := s.Create(context.Background(), r, time.Hour); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	got, err := s.NewWaiters().Wait(ctx, r.ID)
	if !errors.Is(err, context.DeadlineExceeded) || got == nil || got.Disposition != store.Queued {
		t.Fatalf("Wait = %+v, %v; want the QUEUED request and DeadlineExceeded", got, err)
	}
}

func TestIssueOnceSignsOnceUnderConcurrency(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	const requestID = 42
	var signed atomic.Int32
	sign := func(ctx context.Context) (*store.Certificate, error) {
		signed.Add(1)
		time.Sleep(20 * time.Millisecond) // widen the race window
		return &store.Certificate{SerialNumber: "01", Chain: [][]byte{{0x30}}}, nil
	}
	var wg sync.WaitGroup
	ids := make(chan int64, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, _, err := s.IssueOnce(ctx, requestID, sign)
				if errors.Is(err, store.ErrBusy) {
					time.Sleep(5 * time.Millisecond) // as the worker's retry would
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				ids <- c.ID
				return
			}
		}()
	}
	wg.Wait()
	close(ids)
	if n := signed.Load(); n != 1 {
		t.Fatalf("signed %d times, want once", n)
	}
	var first int64
	for id := range ids {
		if first == 0 {
			first = id
		}
		if id != first {
			t.Fatalf("callers got different certificates: %d and %d", first, id)
		}
	}
	c, fresh, err := s.IssueOnce(ctx, requestID, sign)
	if err != nil || fresh || c.ID != first {
		t.Fatalf("a later call: id %d fresh=%v err=%v; want %d, false", c.ID, fresh, err, first)
	}
	byID, err := s.Certificate(ctx, first)
	if err != nil || byID.RequestID != requestID {
		t.Fatalf("Certificate(%d) = %+v, %v", first, byID, err)
	}
}

func TestIssueOnceAfterAFailedSignTriesAgain(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	boom := errors.New("CA offline")
	if _, _, err := s.IssueOnce(ctx, 7, func(context.Context) (*store.Certificate, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the sign error", err)
	}
	if _, err := s.CertificateOf(ctx, 7); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a failed sign stored a certificate: %v", err)
	}
	c, fresh, err := s.IssueOnce(ctx, 7, func(context.Context) (*store.Certificate, error) {
		return &store.Certificate{SerialNumber: "02"}, nil
	})
	if err != nil || !fresh || c.SerialNumber != "02" {
		t.Fatalf("retry after a failed sign: %+v fresh=%v err=%v (lock not released?)", c, fresh, err)
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: time.Second, MaxRetries: -1})
	defer rdb.Close()
	err := rdb.Ping(context.Background()).Err()
	if !store.Unavailable(err) {
		t.Fatalf("Unavailable(%v) = false for a refused connection", err)
	}
	for _, err := range []error{nil, store.ErrConflict, store.ErrNotFound, errors.New("WRONGTYPE")} {
		if store.Unavailable(err) {
			t.Errorf("Unavailable(%v) = true", err)
		}
	}
}

func TestConcurrentSubmitsWithOneIdempotencyKeyMakeOneRequest(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	var created atomic.Int32
	ids := make([]int64, 10)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := newRequest(t, s, "alice", "same-key")
			id, existing, err := s.Create(ctx, r, time.Hour)
			if err != nil {
				t.Error(err)
				return
			}
			if !existing {
				created.Add(1)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	if created.Load() != 1 {
		t.Fatalf("%d requests created for one key, want 1", created.Load())
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("callers were given different requests: %v", ids)
		}
	}
	if n := len(rdb.Keys(ctx, prefix+":request:*").Val()); n != 1 {
		t.Fatalf("%d request records stored, want 1", n)
	}
}

func TestSweepDeletesSettledRequestsPastRetentionOnly(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	settled := newRequest(t, s, "alice", "")
	open := newRequest(t, s, "alice", "")
	for _, r := range []*store.Request{settled, open} {
		if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	settled.Disposition = store.Issued
	if err := s.Save(ctx, settled); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Sweep(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("a sweep within retention deleted %d (%v)", n, err)
	}
	time.Sleep(2100 * time.Millisecond) // OBJECT IDLETIME counts whole seconds
	n, err := s.Sweep(ctx, time.Second)
	if err != nil || n != 1 {
		t.Fatalf("sweep deleted %d (%v), want the settled request only", n, err)
	}
	if _, err := s.Get(ctx, settled.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the settled request survived: %v", err)
	}
	if _, err := s.Get(ctx, open.ID); err != nil {
		t.Fatalf("an unsettled request was swept: %v", err)
	}
}

// A settled save announces the request in the same script; its removal
// from the open set is batched, and done by the time Stale or Sweep looks.
func TestSettledSaveAnnouncesAtOnceAndBatchesTheOpenSet(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	sub := rdb.Subscribe(ctx, prefix+":events")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription is live
		t.Fatal(err)
	}
	var ids []int64
	for range 3 {
		r := newRequest(t, s, "alice", "")
		if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
			t.Fatal(err)
		}
		r.Disposition = store.Issued
		if err := s.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-sub.Channel():
			head, _, _ := strings.Cut(m.Payload, "\n")
			if want := strconv.FormatInt(r.ID, 10) + " ISSUED"; head != want {
				t.Fatalf("announcement %q, want it to start %q", m.Payload, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no announcement")
		}
		ids = append(ids, r.ID)
	}
	if stale, err := s.Stale(ctx, time.Now().Add(time.Hour), 10); err != nil || len(stale) != 0 {
		t.Fatalf("Stale = %v, %v; settled requests are still open", stale, err)
	}
	for _, id := range ids {
		if err := rdb.ZScore(ctx, prefix+":open", strconv.FormatInt(id, 10)).Err(); !errors.Is(err, redis.Nil) {
			t.Errorf("request %d is still in the open set (%v)", id, err)
		}
	}
}

// A PENDING request (it will run again) leaves the open set at once, not
// with a batch that could land after it was re-added.
func TestAPendingSaveLeavesTheOpenSetAtOnce(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	r := created(t, s)
	r.Disposition = store.Pending
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ZScore(ctx, prefix+":open", strconv.FormatInt(r.ID, 10)).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("a PENDING request is still in the open set right after its save (%v)", err)
	}
}

func TestIssuedCertificatesAreIndexed(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	for id, tp := range map[int64]string{11: "AB01", 12: "AB02", 13: "AB03"} {
		if _, _, err := s.IssueOnce(ctx, id, func(context.Context) (*store.Certificate, error) {
			return &store.Certificate{SerialNumber: "0" + strconv.FormatInt(id, 10), Thumbprint: tp}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.CertificateByThumbprint(ctx, "ab02")
	if err != nil || c.ID != 12 {
		t.Fatalf("CertificateByThumbprint(ab02) = %+v, %v; want certificate 12", c, err)
	}
	if _, err := s.CertificateByThumbprint(ctx, "FFFF"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown thumbprint: %v, want ErrNotFound", err)
	}
	// The index entry a losing racer leaves behind resolves to nothing.
	if err := rdb.Set(ctx, prefix+":thumbprint:DEAD", 11, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CertificateByThumbprint(ctx, "DEAD"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a stale thumbprint entry resolved: %v", err)
	}
	ids, err := s.CertificateIDs(ctx, 11, 10)
	if err != nil || len(ids) != 2 || ids[0] != 12 || ids[1] != 13 {
		t.Fatalf("CertificateIDs(after 11) = %v, %v; want [12 13]", ids, err)
	}
}

// created stores a new request of alice's.
func created(t *testing.T, s *store.Store) *store.Request {
	t.Helper()
	r := newRequest(t, s, "alice", "")
	if _, _, err := s.Create(context.Background(), r, time.Hour); err != nil {
		t.Fatal(err)
	}
	return r
}

// requestKey is the Redis key of request id's record.
func requestKey(prefix string, id int64) string {
	return prefix + ":request:{" + strconv.FormatInt(id, 10) + "}"
}

// claimed creates a request and claims its issuance, as the issue step
// does before signing.
func claimed(t *testing.T, s *store.Store) (*store.Request, *store.IssueClaim) {
	t.Helper()
	r := created(t, s)
	existing, claim, err := s.ClaimIssue(context.Background(), r.ID, nil)
	if err != nil || existing != nil || claim == nil {
		t.Fatalf("ClaimIssue = %+v, %v, %v; want a claim", existing, claim, err)
	}
	return r, claim
}

// The certificate the issue step made (Instance.Unsaved) is stored by the
// checkpoint after it, with the record and the inventory's index entries.
func TestACheckpointStoresTheIssuedCertificateWithTheRecord(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	r, claim := claimed(t, s)
	cert := claim.Signed(&store.Certificate{SerialNumber: "0C", Thumbprint: "C0FFEE", Chain: [][]byte{{0x30}}, NotAfter: time.Now().Add(time.Hour).UTC().Truncate(time.Second)}, r.ID)
	r.Instance.Unsaved = []any{cert}
	r.Disposition = store.Issued
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	if r.Instance.Unsaved != nil {
		t.Fatalf("Unsaved = %v after the checkpoint, want it emptied", r.Instance.Unsaved)
	}
	got, err := s.Get(ctx, r.ID)
	if err != nil || got.Disposition != store.Issued {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	stored, err := got.Certificate()
	if err != nil || stored == nil || stored.ID != r.ID || stored.SerialNumber != "0C" || !stored.NotAfter.Equal(cert.NotAfter) {
		t.Fatalf("stored certificate %+v, %v; want %+v", stored, err, cert)
	}
	if c, err := s.CertificateByThumbprint(ctx, "C0FFEE"); err != nil || c.ID != r.ID {
		t.Fatalf("CertificateByThumbprint = %+v, %v", c, err)
	}
	if ids, err := s.CertificateIDs(ctx, 0, 10); err != nil || !slices.Contains(ids, r.ID) {
		t.Fatalf("CertificateIDs = %v, %v; want %d listed", ids, err, r.ID)
	}
	if score, err := rdb.ZScore(ctx, prefix+":certificates:expiry", strconv.FormatInt(r.ID, 10)).Result(); err != nil || int64(score) != cert.NotAfter.Unix() {
		t.Fatalf("expiry index %v, %v; want %d", score, err, cert.NotAfter.Unix())
	}
	// A re-run finds it: no second claim, no second certificate.
	again, claim2, err := s.ClaimIssue(ctx, r.ID, nil)
	if err != nil || claim2 != nil || again == nil || again.SerialNumber != "0C" {
		t.Fatalf("ClaimIssue after the checkpoint = %+v, %v, %v; want the stored certificate", again, claim2, err)
	}
}

// If a certificate was stored meanwhile (another worker, after this one's
// lock expired), the checkpoint writes nothing, says ErrConflict and gives
// the lock up.
func TestACheckpointRefusesASecondCertificate(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	r, claim := claimed(t, s)
	key := requestKey(prefix, r.ID)
	before, _ := rdb.HGetAll(ctx, key).Result()
	winner := `{"ID":` + strconv.FormatInt(r.ID, 10) + `,"SerialNumber":"01","Thumbprint":"0001","NotAfter":"2030-01-01T00:00:00Z"}`
	if err := rdb.HSet(ctx, key, "x", winner).Err(); err != nil {
		t.Fatal(err)
	}
	r.Instance.Unsaved = []any{claim.Signed(&store.Certificate{SerialNumber: "02", Thumbprint: "0002", NotAfter: time.Now()}, r.ID)}
	r.Disposition = store.Issued
	if err := s.Save(ctx, r); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Save = %v, want ErrConflict", err)
	}
	after, _ := rdb.HGetAll(ctx, key).Result()
	if after["v"] != before["v"] || after["d"] != before["d"] || !strings.Contains(after["x"], `"01"`) {
		t.Fatalf("the refused checkpoint wrote: before %v after %v", before, after)
	}
	if n, _ := rdb.Exists(ctx, key+":issue-lock").Result(); n != 0 {
		t.Fatal("the issue lock is still held after the refused checkpoint")
	}
	if len(r.Instance.Unsaved) != 0 {
		t.Fatalf("the refused certificate is still to be saved: %v", r.Instance.Unsaved)
	}
	// The refused certificate left no index entry.
	if c, err := s.CertificateByThumbprint(ctx, "0002"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused certificate is found by its thumbprint: %+v, %v", c, err)
	}
	if err := rdb.ZScore(ctx, prefix+":certificates:expiry", strconv.FormatInt(r.ID, 10)).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("the refused certificate is in the expiry index (%v)", err)
	}
	// Only certificates are records a checkpoint writes.
	r.Instance.Unsaved = []any{"an email"}
	if err := s.Save(ctx, r); err == nil || !strings.Contains(err.Error(), "string") {
		t.Fatalf("Save with a record it cannot write = %v", err)
	}
	if v, _ := rdb.HGet(ctx, key, "v").Result(); v != before["v"] {
		t.Fatalf("version %s after the refused save, want %s", v, before["v"])
	}
}

// A checkpoint whose record changed meanwhile (another worker saved) is
// refused, but its certificate is stored: the next run finds it instead of
// having the CA sign a second one.
func TestACheckpointThatLosesTheRecordStillKeepsItsCertificate(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	r, claim := claimed(t, s)
	other, err := s.Get(ctx, r.ID) // a second worker's view
	if err != nil {
		t.Fatal(err)
	}
	other.Message = "the other worker's progress"
	if err := s.Save(ctx, other); err != nil {
		t.Fatal(err)
	}
	r.Instance.Unsaved = []any{claim.Signed(&store.Certificate{SerialNumber: "0D", Thumbprint: "D00D"}, r.ID)}
	r.Disposition = store.Issued
	if err := s.Save(ctx, r); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Save = %v, want ErrConflict", err)
	}
	got, err := s.Get(ctx, r.ID)
	if err != nil || got.Message != other.Message || got.Disposition != store.Queued {
		t.Fatalf("record %+v, %v; want the other worker's", got, err)
	}
	existing, claim2, err := s.ClaimIssue(ctx, r.ID, nil)
	if err != nil || claim2 != nil || existing == nil || existing.SerialNumber != "0D" {
		t.Fatalf("ClaimIssue after the lost checkpoint = %+v, %v, %v; want certificate 0D", existing, claim2, err)
	}
	if c, err := s.CertificateByThumbprint(ctx, "D00D"); err != nil || c.ID != r.ID {
		t.Fatalf("CertificateByThumbprint = %+v, %v; the kept certificate is not indexed", c, err)
	}
}

// A checkpoint for a request whose record is gone stores nothing and
// leaves no index entry behind.
func TestACheckpointForAVanishedRequestLeavesNoIndexEntry(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	r, claim := claimed(t, s)
	if err := rdb.Del(ctx, requestKey(prefix, r.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	r.Instance.Unsaved = []any{claim.Signed(&store.Certificate{SerialNumber: "03", Thumbprint: "0003", NotAfter: time.Now()}, r.ID)}
	if err := s.Save(ctx, r); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Save = %v, want ErrNotFound", err)
	}
	id := strconv.FormatInt(r.ID, 10)
	for _, k := range []string{prefix + ":certificates", prefix + ":certificates:expiry"} {
		if err := rdb.ZScore(ctx, k, id).Err(); !errors.Is(err, redis.Nil) {
			t.Errorf("%s still lists request %s (%v)", k, id, err)
		}
	}
	if n, _ := rdb.Exists(ctx, prefix+":thumbprint:0003").Result(); n != 0 {
		t.Error("the thumbprint entry is left behind")
	}
}

// A checkpoint whose index entries cannot be written stores neither the
// certificate nor the record (the entries are written before them, in
// the same script), so no certificate is ever missing from the
// inventory; the same checkpoint, once Redis takes it, stores all three.
func TestACheckpointWhoseIndexFailsStoresNothing(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	r, claim := claimed(t, s)
	expiry := prefix + ":certificates:expiry"
	if err := rdb.Set(ctx, expiry, "not a sorted set", 0).Err(); err != nil { // every ZADD to it fails
		t.Fatal(err)
	}
	cert := claim.Signed(&store.Certificate{SerialNumber: "04", Thumbprint: "0004", NotAfter: time.Now().UTC().Truncate(time.Second)}, r.ID)
	r.Instance.Unsaved = []any{cert}
	r.Disposition = store.Issued
	if err := s.Save(ctx, r); err == nil {
		t.Fatal("Save succeeded with an index it could not write")
	}
	got, err := s.Get(ctx, r.ID)
	if err != nil || got.Disposition == store.Issued {
		t.Fatalf("record %+v, %v; want it unsaved", got, err)
	}
	if c, err := got.Certificate(); err != nil || c != nil {
		t.Fatalf("certificate %+v, %v; want none stored", c, err)
	}
	rdb.Del(ctx, expiry)
	r = got
	if _, claim, err = s.ClaimIssue(ctx, r.ID, nil); err != nil || claim == nil {
		t.Fatalf("ClaimIssue after the failed checkpoint = %v, %v; want a claim (the failed one released its own)", claim, err)
	}
	r.Instance.Unsaved = []any{claim.Signed(&store.Certificate{SerialNumber: "04", Thumbprint: "0004", NotAfter: cert.NotAfter}, r.ID)}
	r.Disposition = store.Issued
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ZScore(ctx, expiry, strconv.FormatInt(r.ID, 10)).Err(); err != nil {
		t.Fatalf("stored but not indexed: %v", err)
	}
	if c, err := s.CertificateByThumbprint(ctx, "0004"); err != nil || c.ID != r.ID {
		t.Fatalf("CertificateByThumbprint = %+v, %v", c, err)
	}
}

// A run's GetForRun claims the issuance in the same round trip as the
// read; the issue step's ClaimIssue then uses that claim, and a run that
// did not issue releases it.
func TestARunClaimsItsIssuanceWithItsRead(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	r := created(t, s)
	lock := requestKey(prefix, r.ID) + ":issue-lock"
	got, claim, err := s.GetForRun(ctx, r.ID)
	if err != nil || got.ID != r.ID || claim == nil {
		t.Fatalf("GetForRun = %+v, %v, %v; want the request and a claim", got, claim, err)
	}
	if n, _ := rdb.Exists(ctx, lock).Result(); n != 1 {
		t.Fatal("no issue lock after GetForRun")
	}
	// A second run meanwhile gets no claim, and its issue step waits.
	if _, other, err := s.GetForRun(ctx, r.ID); err != nil || other != nil {
		t.Fatalf("a concurrent GetForRun = %v, %v; want no claim", other, err)
	}
	if _, _, err := s.ClaimIssue(ctx, r.ID, nil); !errors.Is(err, store.ErrBusy) {
		t.Fatalf("ClaimIssue without the run's claim = %v, want ErrBusy", err)
	}
	existing, same, err := s.ClaimIssue(ctx, r.ID, claim)
	if err != nil || existing != nil || same != claim {
		t.Fatalf("ClaimIssue with the run's claim = %v, %v, %v; want that claim", existing, same, err)
	}
	// Not signed under: released at the end of the run.
	claim.ReleaseUnused(ctx)
	if n, _ := rdb.Exists(ctx, lock).Result(); n != 0 {
		t.Fatal("the unused claim's lock is still held")
	}
	// Signed under and stored: the lock is left to expire, and the next
	// run gets no claim (the certificate is there).
	_, claim, _ = s.GetForRun(ctx, r.ID)
	got.Instance.Unsaved = []any{claim.Signed(&store.Certificate{SerialNumber: "05", Thumbprint: "0005"}, r.ID)}
	got.Disposition = store.Issued
	if err := s.Save(ctx, got); err != nil {
		t.Fatal(err)
	}
	claim.ReleaseUnused(ctx)
	if n, _ := rdb.Exists(ctx, lock).Result(); n != 1 {
		t.Fatal("the lock a certificate was signed under was released")
	}
	rdb.Del(ctx, lock)
	if again, c, err := s.GetForRun(ctx, r.ID); err != nil || c != nil || again.Disposition != store.Issued {
		t.Fatalf("GetForRun of an issued request = %+v, %v, %v; want it, and no claim", again, c, err)
	}
	if _, c, err := s.GetForRun(ctx, 1<<40); !errors.Is(err, store.ErrNotFound) || c != nil {
		t.Fatalf("GetForRun of no request = %v, %v; want ErrNotFound and no claim", c, err)
	}
	// Nor does it keep a lock: the record may come after its task (the
	// queue's late write), and the task's retry must be able to issue.
	if n, _ := rdb.Exists(ctx, requestKey(prefix, 1<<40)+":issue-lock").Result(); n != 0 {
		t.Fatal("GetForRun of no request left its issue lock")
	}
}

// With group commit off (config speed.group_commit), each run's read is a
// round trip of its own, however many runs read at once.
func TestGetForRunWithoutGroupCommit(t *testing.T) {
	t.Parallel()
	s, rdb, _ := setup(t)
	s.GroupCommit = false
	ctx := context.Background()
	var ids []int64
	for range 16 {
		ids = append(ids, created(t, s).ID)
	}
	trips := &testutil.RoundTrips{}
	rdb.AddHook(trips)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, claim, err := s.GetForRun(ctx, id)
			if err != nil || r.ID != id || claim == nil {
				t.Errorf("GetForRun(%d) = %v, %v", id, claim, err)
			}
		}()
	}
	wg.Wait()
	if n := trips.N(); n != int64(len(ids)) {
		t.Errorf("%d round trips for %d reads at once, want %d (none shared)", n, len(ids), len(ids))
	}
}

// A run whose record cannot be read does not keep the lock it took with
// the read: its retry would find it in the way.
func TestARunThatCannotReadItsRecordGivesItsClaimUp(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	r := created(t, s)
	key := requestKey(prefix, r.ID)
	if err := rdb.HSet(ctx, key, "d", "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	if _, claim, err := s.GetForRun(ctx, r.ID); err == nil || claim != nil {
		t.Fatalf("GetForRun of an undecodable record = %v, %v; want an error and no claim", claim, err)
	}
	if n, _ := rdb.Exists(ctx, key+":issue-lock").Result(); n != 0 {
		t.Fatal("the lock taken with the failed read is still held")
	}
}

// CreateQueued hands the record's writes to the enqueue; when the enqueue
// fails, or it succeeds but the writes failed, the submit leaves nothing
// behind (record, open set entry, idempotency key) and the error names
// the request. A repeated idempotency key enqueues nothing.
func TestCreateQueuedLeavesNothingBehindWhenItFails(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()

	enqueued := 0
	ok := func(ctx context.Context, writes func(redis.Pipeliner)) error {
		enqueued++
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error { writes(p); return nil })
		return err
	}
	r := newRequest(t, s, "alice", "key-1")
	if id, existing, err := s.CreateQueued(ctx, r, time.Hour, ok, store.KeyChecks{}); err != nil || existing || id != r.ID || enqueued != 1 {
		t.Fatalf("CreateQueued = %d, %v, %v with %d enqueues; want %d, false, nil with 1", id, existing, err, enqueued, r.ID)
	}
	if got, err := s.Get(ctx, r.ID); err != nil || got.Disposition != store.Queued {
		t.Fatalf("Get after CreateQueued = %+v, %v", got, err)
	}
	again := newRequest(t, s, "alice", "key-1")
	if id, existing, err := s.CreateQueued(ctx, again, time.Hour, ok, store.KeyChecks{}); err != nil || !existing || id != r.ID || enqueued != 1 {
		t.Fatalf("repeated key: %d, %v, %v with %d enqueues; want %d, true, nil with 1", id, existing, err, enqueued, r.ID)
	}

	down := errors.New("enqueue failed")
	for _, tt := range []struct {
		name    string
		enqueue store.Enqueue
		want    string
	}{
		{"the enqueue fails after the writes", func(ctx context.Context, writes func(redis.Pipeliner)) error {
			ok(ctx, writes)
			return down
		}, "enqueue failed"},
		{"the enqueue fails before them", func(context.Context, func(redis.Pipeliner)) error { return down }, "enqueue failed"},
		{"the enqueue succeeds without sending them", func(context.Context, func(redis.Pipeliner)) error { return nil }, "did not send the record's writes"},
		{"the writes fail, the enqueue does not", func(ctx context.Context, writes func(redis.Pipeliner)) error {
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, prefix+":open", "not a sorted set", 0) // the ZADD fails: WRONGTYPE
				writes(p)
				return nil
			})
			if err == nil {
				t.Error("the writes did not fail")
			}
			return nil
		}, "WRONGTYPE"},
	} {
		r := newRequest(t, s, "bob", "key-2")
		_, _, err := s.CreateQueued(ctx, r, time.Hour, tt.enqueue, store.KeyChecks{})
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "request "+strconv.FormatInt(r.ID, 10)) {
			t.Errorf("%s: CreateQueued = %v, want an error naming request %d and saying %q", tt.name, err, r.ID, tt.want)
		}
		if _, err := s.Get(ctx, r.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: the record survived (Get: %v)", tt.name, err)
		}
		if keys, _ := rdb.Keys(ctx, prefix+":idempotency:*").Result(); len(keys) != 1 {
			t.Errorf("%s: idempotency keys %v, want only alice's", tt.name, keys)
		}
		if err := rdb.ZScore(ctx, prefix+":open", strconv.FormatInt(r.ID, 10)).Err(); !errors.Is(err, redis.Nil) && !strings.Contains(fmt.Sprint(err), "WRONGTYPE") {
			t.Errorf("%s: the request is still in the open set (%v)", tt.name, err)
		}
		rdb.Del(ctx, prefix+":open")
	}
}

// CreateQueued with a CSR key refuses (ErrGeneratedKey) when a pending CSR
// certflow generated has that key, and creates otherwise; a refused id
// reads as withdrawn (not found) and leaves no open-set entry and no
// idempotency key. On one Redis the check and the ids' blocks cost no
// round trip of their own.
func TestCreateQueuedUnlessTheKeyIsAGeneratedOne(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	csrID, _ := s.NewCSRID(ctx)
	p := &store.PendingCSR{ID: csrID, Requester: "alice", CSR: []byte{1}, KeyID: "genkey", PrivateKey: []byte("sealed"), Created: time.Now().UTC()}
	if err := s.CreatePendingCSR(ctx, p, 100); err != nil {
		t.Fatal(err)
	}
	enqueue := func(ctx context.Context, writes func(redis.Pipeliner)) error {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error { writes(p); return nil })
		return err
	}
	r := newRequest(t, s, "alice", "idem-1")
	if _, _, err := s.CreateQueued(ctx, r, time.Hour, enqueue, store.KeyChecks{UnlessGenerated: "genkey"}); !errors.Is(err, store.ErrGeneratedKey) {
		t.Fatalf("create with a generated key: %v, want ErrGeneratedKey", err)
	}
	if _, err := s.Get(ctx, r.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused request reads as %v, want not found", err)
	}
	if n, _ := rdb.ZCard(ctx, prefix+":open").Result(); n != 0 {
		t.Errorf("%d open-set entries after a refusal", n)
	}
	if keys, _ := rdb.Keys(ctx, prefix+":idempotency:*").Result(); len(keys) != 0 {
		t.Errorf("idempotency keys %v left by a refusal", keys)
	}
	// The same submit, its key married (no check), goes through
	// under a new id and may claim the idempotency key again.
	again := newRequest(t, s, "alice", "idem-1")
	if id, existing, err := s.CreateQueued(ctx, again, time.Hour, enqueue, store.KeyChecks{}); err != nil || existing || id != again.ID || id == r.ID {
		t.Fatalf("create after the refusal = %d, %v, %v", id, existing, err)
	}
	other := newRequest(t, s, "alice", "")
	if _, _, err := s.CreateQueued(ctx, other, time.Hour, enqueue, store.KeyChecks{UnlessGenerated: "otherkey"}); err != nil {
		t.Fatalf("create with a key certflow did not generate: %v", err)
	}
	if got, err := s.Get(ctx, other.ID); err != nil || got.Disposition != store.Queued {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if n, _ := rdb.ZCard(ctx, prefix+":open").Result(); n != 2 {
		t.Errorf("%d open-set entries, want 2", n)
	}
	if ids := []int64{r.ID, again.ID, other.ID}; ids[1] != ids[0]+1 || ids[2] != ids[1]+1 {
		t.Errorf("ids %v, want consecutive", ids)
	}
}

// A key barred for compromise is refused by the create, looked up before
// anything is written: nothing is left behind, not even a withdrawn id's
// marker or a queued task, and another key goes through. The barred check
// comes before the generated-key one, so a generated CSR's key that was
// barred since is refused, not married.
func TestCreateQueuedRefusesABarredKey(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	if err := rdb.SAdd(ctx, prefix+":compromised-keys", "stolen").Err(); err != nil {
		t.Fatal(err)
	}
	csrID, _ := s.NewCSRID(ctx)
	p := &store.PendingCSR{ID: csrID, Requester: "alice", CSR: []byte{1}, KeyID: "stolen", PrivateKey: []byte("sealed"), Created: time.Now().UTC()}
	if err := s.CreatePendingCSR(ctx, p, 100); err != nil {
		t.Fatal(err)
	}
	enqueued := 0
	enqueue := func(ctx context.Context, writes func(redis.Pipeliner)) error {
		enqueued++
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error { writes(p); return nil })
		return err
	}
	for _, checks := range []store.KeyChecks{{Barred: "stolen"}, {Barred: "stolen", UnlessGenerated: "stolen"}} {
		r := newRequest(t, s, "alice", "idem-barred")
		if _, _, err := s.CreateQueued(ctx, r, time.Hour, enqueue, checks); !errors.Is(err, store.ErrKeyCompromised) {
			t.Fatalf("create with a barred key (%+v): %v, want ErrKeyCompromised", checks, err)
		}
		if n, _ := rdb.Exists(ctx, requestKey(prefix, r.ID)).Result(); n != 0 {
			t.Errorf("the refused request %d left its key behind", r.ID)
		}
	}
	if enqueued != 0 {
		t.Errorf("%d tasks enqueued for refused requests", enqueued)
	}
	if n, _ := rdb.ZCard(ctx, prefix+":open").Result(); n != 0 {
		t.Errorf("%d open-set entries after refusals", n)
	}
	if keys, _ := rdb.Keys(ctx, prefix+":idempotency:*").Result(); len(keys) != 0 {
		t.Errorf("idempotency keys %v left by a refusal", keys)
	}
	ok := newRequest(t, s, "alice", "idem-barred")
	if id, existing, err := s.CreateQueued(ctx, ok, time.Hour, enqueue, store.KeyChecks{Barred: "fresh"}); err != nil || existing || id != ok.ID {
		t.Fatalf("create with a fresh key = %d, %v, %v", id, existing, err)
	}
}

// On one Redis, ids come from a block reserved once; an id Redis forgot it
// gave (its data lost while the block was held) is refused, not written
// over the request that has it, and the next id comes from a new block.
func TestNewIDBlocksAndTakenIDs(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	trips := &testutil.RoundTrips{}
	rdb.AddHook(trips)
	var ids []int64
	for range 40 {
		id, err := s.NewID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			t.Fatalf("ids %v, want consecutive from one process", ids)
		}
	}
	if n := trips.N(); n != 2 {
		t.Errorf("%d round trips for 40 ids, want 2 (an INCRBY per block of 32)", n)
	}

	first := newRequest(t, s, "alice", "")
	if _, _, err := s.Create(ctx, first, time.Hour); err != nil {
		t.Fatal(err)
	}
	rdb.Set(ctx, prefix+":seq:request", 0, 0) // Redis "lost" its counter
	s2 := store.New(rdb, prefix)              // another process, a fresh block: 1…32
	var taken *store.Request
	for {
		taken = newRequest(t, s2, "mallory", "idem-x")
		if taken.ID == first.ID {
			break
		}
	}
	// The same create sent again (go-redis re-sends a pipeline whose
	// answer it lost) is its own write, not a taken id.
	if id, existing, err := s.Create(ctx, first, time.Hour); err != nil || existing || id != first.ID {
		t.Fatalf("create sent again = %d, %v, %v; want the same success", id, existing, err)
	}
	if _, _, err := s2.Create(ctx, taken, time.Hour); !errors.Is(err, store.ErrIDTaken) {
		t.Fatalf("create under a taken id: %v, want ErrIDTaken", err)
	}
	if got, err := s.Get(ctx, first.ID); err != nil || got.Requester.Name != "alice" {
		t.Fatalf("the request that had the id: %+v, %v", got, err)
	}
	if keys, _ := rdb.Keys(ctx, prefix+":idempotency:*").Result(); len(keys) != 0 {
		t.Errorf("idempotency keys %v left by the refusal", keys)
	}
	if next, _ := s2.NewID(ctx); next <= 32 {
		t.Errorf("after a taken id the next is %d, want one from a new block", next)
	}
}

// An id withdrawn at its creation (its CSR's key was a generated one:
// ErrGeneratedKey) is not a request: reads of many requests, and the
// listings that walk the newest, skip it as they skip a missing id,
// rather than fail while its marker lasts.
func TestReadsOfManyRequestsSkipAWithdrawnID(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	kept := newRequest(t, s, "alice", "")
	if _, _, err := s.Create(ctx, kept, time.Hour); err != nil {
		t.Fatal(err)
	}
	withdrawn := newRequest(t, s, "alice", "")
	rdb.Set(ctx, prefix+":csr-key:generated", 1, time.Hour)
	if _, _, err := s.CreateQueued(ctx, withdrawn, time.Hour, nil, store.KeyChecks{UnlessGenerated: "generated"}); !errors.Is(err, store.ErrGeneratedKey) {
		t.Fatalf("create with a generated key: %v, want ErrGeneratedKey", err)
	}
	rs, err := s.GetMany(ctx, []int64{withdrawn.ID, kept.ID})
	if err != nil || len(rs) != 1 || rs[0].ID != kept.ID {
		t.Errorf("GetMany = %d requests, %v; want request %d alone", len(rs), err, kept.ID)
	}
	var seen []int64
	if _, err := s.Newest(ctx, 0, 100, func(r *store.Request) bool { seen = append(seen, r.ID); return true }); err != nil || len(seen) != 1 || seen[0] != kept.ID {
		t.Errorf("Newest saw %v, %v; want request %d alone", seen, err, kept.ID)
	}
}

// go-redis sends a pipeline again when its answer is lost (a connection
// cut after Redis ran it). A new request's record rides in one pipeline
// with its task, so a worker may run the task, and checkpoint the record,
// before the write comes again: that is still the submit's own write, not
// an id another request took (the submit would then create a second
// request for the same CSR, and a second certificate be issued).
func TestACreateSentAgainAfterItsRunCheckpointedIsItsOwn(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	r := newRequest(t, s, "alice", "idem-again")
	sends := 0
	enqueue := func(ctx context.Context, writes func(redis.Pipeliner)) error {
		send := func() error {
			sends++
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error { writes(p); return nil })
			return err
		}
		if err := send(); err != nil {
			return err
		}
		run, err := s.Get(ctx, r.ID) // the task's run, checkpointing
		if err != nil {
			return err
		}
		run.Disposition = store.Running
		if err := s.Save(ctx, run); err != nil {
			return err
		}
		return send() // the answer was lost: all of it again
	}
	id, existing, err := s.CreateQueued(ctx, r, time.Hour, enqueue, store.KeyChecks{})
	if sends != 2 {
		t.Fatalf("the writes were sent %d times, want 2", sends)
	}
	if err != nil || existing || id != r.ID {
		t.Fatalf("CreateQueued = %d, %v, %v; want %d: the write sent again is the submit's own", id, existing, err, r.ID)
	}
	if got, err := s.Get(ctx, r.ID); err != nil || got.Disposition != store.Running {
		t.Errorf("the record after the write came again: %+v, %v; want the run's checkpoint kept", got, err)
	}
	if keys, _ := rdb.Keys(ctx, prefix+":idempotency:*").Result(); len(keys) != 1 {
		t.Errorf("idempotency keys %v, want the submit's, kept", keys)
	}
}

package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/store"
)

// TestSetCSRStoresOneCSRWhenWorkersRace: two workers generating a PFX
// request's key at once end with one CSR and one key; the loser learns it
// lost (ErrHasCSR) and the record holds the winner's.
func TestSetCSRStoresOneCSRWhenWorkersRace(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	r := newRequest(t, s, "alice", "")
	r.CSR = nil // a PFX request: no CSR until the worker makes one
	if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	const racers = 8
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine, err := s.Get(ctx, r.ID)
			if err != nil {
				errs[i] = err
				return
			}
			mine.PrivateKey = []byte{byte(i)}
			errs[i] = s.SetCSR(ctx, mine, []byte{0xC5, byte(i)})
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner == -1:
			winner = i
		case err == nil:
			t.Fatalf("racers %d and %d both stored a CSR", winner, i)
		case !errors.Is(err, store.ErrHasCSR) && !errors.Is(err, store.ErrConflict):
			t.Fatalf("racer %d: %v", i, err)
		}
	}
	if winner == -1 {
		t.Fatal("no racer stored a CSR")
	}
	got, err := s.Get(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.CSR) != string([]byte{0xC5, byte(winner)}) || string(got.PrivateKey) != string([]byte{byte(winner)}) {
		t.Fatalf("stored CSR %x with key %x; want the winner's (%d)", got.CSR, got.PrivateKey, winner)
	}
	// A later save keeps the CSR (Save writes only the record).
	got.Message = "saved"
	if err := s.Save(ctx, got); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Get(ctx, r.ID); string(again.CSR) != string(got.CSR) {
		t.Fatal("Save lost the CSR")
	}
	if err := s.SetCSR(ctx, got, []byte{1}); !errors.Is(err, store.ErrHasCSR) {
		t.Fatalf("a second SetCSR: %v, want ErrHasCSR", err)
	}
}

func TestPendingCSRLifecycle(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	var ps []*store.PendingCSR
	for i := range 3 {
		id, err := s.NewCSRID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p := &store.PendingCSR{ID: id, Requester: "alice", CSR: []byte{byte(i)}, KeyID: "key" + string(rune('a'+i)), PrivateKey: []byte("sealed"), Created: time.Now().UTC()}
		if err := s.CreatePendingCSR(ctx, p, 100); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if got, err := s.PendingCSRByKey(ctx, "keyb"); err != nil || got.ID != ps[1].ID {
		t.Fatalf("by key: %+v, %v", got, err)
	}
	if _, err := s.PendingCSRByKey(ctx, "nokey"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unknown key: %v", err)
	}
	if ids, err := s.PendingCSRIDs(ctx, ps[0].ID, 10); err != nil || len(ids) != 2 || ids[0] != ps[1].ID {
		t.Fatalf("ids after the first: %v, %v", ids, err)
	}
	if err := s.DeletePendingCSR(ctx, ps[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PendingCSR(ctx, ps[1].ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted, but: %v", err)
	}
	if _, err := s.PendingCSRByKey(ctx, "keyb"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted, but found by key: %v", err)
	}
	if ids, _ := s.PendingCSRIDs(ctx, 0, 10); len(ids) != 2 {
		t.Fatalf("listing after a delete: %v", ids)
	}
}

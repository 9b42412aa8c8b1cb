package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
)

// BenchmarkIssueOnce is the store's share of one issuance against the real
// Redis: lock, check, store (the signing itself is free here).
func BenchmarkIssueOnce(b *testing.B) {
	rdb, prefix := testutil.Redis(b)
	s := store.New(rdb, prefix)
	ctx := context.Background()
	sign := func(context.Context) (*store.Certificate, error) {
		return &store.Certificate{SerialNumber: "01", Chain: [][]byte{{0x30}}}, nil
	}
	var id int64
	for b.Loop() {
		id++
		if _, fresh, err := s.IssueOnce(ctx, id, sign); err != nil || !fresh {
			b.Fatal(fresh, err)
		}
	}
}

// BenchmarkSettle is the store's write path of one short-lived request
// against the real Redis: create it, then save it settled.
func BenchmarkSettle(b *testing.B) {
	rdb, prefix := testutil.Redis(b)
	s := store.New(rdb, prefix)
	ctx := context.Background()
	for b.Loop() {
		id, err := s.NewID(ctx)
		if err != nil {
			b.Fatal(err)
		}
		now := time.Now().UTC()
		r := &store.Request{ID: id, Disposition: store.Queued, Submitted: now, Updated: now, CSR: []byte{1}}
		if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
			b.Fatal(err)
		}
		r.Disposition = store.Issued
		if err := s.Save(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

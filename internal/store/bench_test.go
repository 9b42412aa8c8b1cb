package store_test

import (
	"context"
	"testing"

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

package store

import (
	"context"
	"fmt"
	"sync"
)

// idBlock is the rest of a block of request ids this process reserved.
type idBlock struct {
	mu         sync.Mutex
	next, last int64 // next > last: none left
}

// requestIDBlock is how many request ids NewID reserves at a time. A
// process that stops leaves the rest of its block unused: request ids
// have gaps, and ids from different processes interleave out of time
// order (they were never in order across concurrent submits anyway).
const requestIDBlock = 32

// NewID allocates a request id. It reserves requestIDBlock ids at a time
// and hands them out without a round trip; a request created under an id
// Redis forgot it gave (its data lost) is refused with ErrIDTaken rather
// than written over another.
func (s *Store) NewID(ctx context.Context) (int64, error) {
	b := &s.ids
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.next == 0 || b.next > b.last {
		last, err := s.rdb.IncrBy(ctx, s.keys.requestSeq(), requestIDBlock).Result()
		if err != nil {
			return 0, fmt.Errorf("allocate request id: %w", err)
		}
		b.next, b.last = last-requestIDBlock+1, last
	}
	b.next++
	return b.next - 1, nil
}

// dropIDs forgets the rest of the current block of ids (one was taken).
func (s *Store) dropIDs() {
	s.ids.mu.Lock()
	s.ids.next = 0
	s.ids.mu.Unlock()
}

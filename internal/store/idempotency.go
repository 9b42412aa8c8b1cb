package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// IdempotentRequest returns the request an Idempotency-Key of requester
// names (0: none, or expired): what CreateQueued answers a repeat with,
// read without creating anything. A step that submits requests looks
// here first, so that its repeat neither checks nor claims anything again.
func (s *Store) IdempotentRequest(ctx context.Context, requester, key string) (int64, error) {
	id, err := s.rdb.Get(ctx, s.keys.idempotency(requester, key)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read idempotency key: %w", err)
	}
	return id, nil
}

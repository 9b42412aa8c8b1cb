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

// noteRenewalScript records, in field "rn" of a certificate's request
// hash (beside the revocation claim "rv"), the request that renews it,
// if the record exists.
var noteRenewalScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'x') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'rn', ARGV[1])
return 1
`)

// NoteRenewal records that request reqID renews certificate certID, for
// RenewalUnderWay: the renew step notes the renewals it submits, so that
// a second expiry event while the first renewal waits for approval makes
// no second one.
func (s *Store) NoteRenewal(ctx context.Context, certID, reqID int64) error {
	if err := noteRenewalScript.Run(ctx, s.rdb, []string{s.keys.request(certID)}, reqID).Err(); err != nil {
		return fmt.Errorf("note the renewal of certificate %d: %w", certID, err)
	}
	return nil
}

// RenewalUnderWay returns the renewal of certificate certID that
// NoteRenewal recorded while it is not settled (0: none, or it settled:
// issued — then the certificate is superseded —, denied or failed).
func (s *Store) RenewalUnderWay(ctx context.Context, certID int64) (int64, error) {
	id, err := s.rdb.HGet(ctx, s.keys.request(certID), "rn").Int64()
	if errors.Is(err, redis.Nil) || err == nil && id <= 0 {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	r, err := s.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil || r.Disposition.Final() {
		return 0, err
	}
	return id, nil
}

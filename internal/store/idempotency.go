package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

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

// renewLock is held while an automated renewal of certificate id is
// decided and submitted (LockRenewal).
func (k keys) renewLock(id int64) string {
	return k.prefix + ":renew-lock:{" + strconv.FormatInt(id, 10) + "}"
}

// renewLockTTL bounds how long a crashed holder blocks the next renewal.
const renewLockTTL = time.Minute

// LockRenewal takes the lock under which an automated renewal of
// certificate certID checks RenewalUnderWay, submits and notes its
// request, so that runs at the same time (two definitions on one event)
// cannot both find no renewal under way and both submit one. It waits
// for a holder (up to wait) and returns the release, or an error that
// a retry may clear.
func (s *Store) LockRenewal(ctx context.Context, certID int64, wait time.Duration) (release func(), err error) {
	key, token := s.keys.renewLock(certID), randomToken()
	deadline := time.Now().Add(wait)
	for {
		ok, err := s.rdb.SetNX(ctx, key, token, renewLockTTL).Result()
		if err != nil {
			return nil, fmt.Errorf("lock the renewal of certificate %d: %w", certID, err)
		}
		if ok {
			return func() { releaseScript.Run(context.WithoutCancel(ctx), s.rdb, []string{key}, token) }, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("certificate %d: another renewal is still being submitted after %s; tried again later", certID, wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

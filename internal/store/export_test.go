package store

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// SetExpiryHooks lets tests shorten the expiry watch's lock TTL and act
// between a pass's batches (cancel its context: a crash).
func SetExpiryHooks(s *Store, lockTTL time.Duration, afterBatch func(batch int)) {
	s.expiryLockFor, s.expiryBatchHook = lockTTL, afterBatch
}

// ExpiryKeys names the watch's keys for tests: the due set, its recorded
// thresholds, its lock.
func ExpiryKeys(s *Store) (due, config, lock string) {
	return s.keys.expiryDue(), s.keys.expiryConfig(), s.keys.expiryLock()
}

// ExpiryBatchUnlocked decides ids as a pass's batch does, without the
// watch's lock.
func ExpiryBatchUnlocked(s *Store, ctx context.Context, now time.Time, th []ExpiryThreshold, ids []string) error {
	_, err := s.expiryBatch(ctx, now, th, ids)
	return err
}

// ParseThresholdForTest reads "14d" as the tests write thresholds.
func ParseThresholdForTest(s string) (time.Duration, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
	return time.Duration(n) * 24 * time.Hour, err
}

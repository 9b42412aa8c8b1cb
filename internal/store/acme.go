package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// ACMEAccount is an ACME CA's account at one directory: its key, sealed
// under the KEK by the caller, and its URL (the kid) once registered.
type ACMEAccount struct {
	SealedKey []byte
	URL       string
}

// acmeDirField names a directory's fields in the account hash.
func acmeDirField(kind, directory string) string {
	sum := sha256.Sum256([]byte(directory))
	return kind + ":" + hex.EncodeToString(sum[:])
}

// ACMEAccount reads CA ca's account at directory: ErrNotFound when no key
// was stored yet; URL is empty until the account is registered.
func (s *Store) ACMEAccount(ctx context.Context, ca, directory string) (ACMEAccount, error) {
	vals, err := s.rdb.HMGet(ctx, s.keys.acmeAccount(ca), acmeDirField("k", directory), acmeDirField("u", directory)).Result()
	if err != nil {
		return ACMEAccount{}, err
	}
	key, _ := vals[0].(string)
	if key == "" {
		return ACMEAccount{}, ErrNotFound
	}
	url, _ := vals[1].(string)
	return ACMEAccount{SealedKey: []byte(key), URL: url}, nil
}

// SetACMEAccountKeyIfAbsent stores sealed as CA ca's account key at
// directory unless one is stored already, and returns the stored one:
// processes racing to create the account converge on one key.
func (s *Store) SetACMEAccountKeyIfAbsent(ctx context.Context, ca, directory string, sealed []byte) ([]byte, error) {
	key, field := s.keys.acmeAccount(ca), acmeDirField("k", directory)
	pipe := s.rdb.TxPipeline()
	pipe.HSetNX(ctx, key, field, sealed)
	get := pipe.HGet(ctx, key, field)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	return []byte(get.Val()), nil
}

// SetACMEAccountURL records the URL CA ca's account at directory was
// registered under. Registering one key again gives its one URL, so a
// race between two processes writes one value.
func (s *Store) SetACMEAccountURL(ctx context.Context, ca, directory, url string) error {
	return s.rdb.HSet(ctx, s.keys.acmeAccount(ca), acmeDirField("u", directory), url).Err()
}

// PutHTTP01 stores the key authorization answering an http-01 token for
// ttl.
func (s *Store) PutHTTP01(ctx context.Context, token, keyAuth string, ttl time.Duration) error {
	return s.rdb.Set(ctx, s.keys.acmeHTTP01(token), keyAuth, ttl).Err()
}

// HTTP01 reads the key authorization for an http-01 token: ErrNotFound
// when none is stored.
func (s *Store) HTTP01(ctx context.Context, token string) (string, error) {
	v, err := s.rdb.Get(ctx, s.keys.acmeHTTP01(token)).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrNotFound
	}
	return v, err
}

// DeleteHTTP01 removes an http-01 token's key authorization.
func (s *Store) DeleteHTTP01(ctx context.Context, token string) error {
	return s.rdb.Del(ctx, s.keys.acmeHTTP01(token)).Err()
}

// RenewalAdvice returns the cached renewal advice of a certificate (nil:
// none cached).
func (s *Store) RenewalAdvice(ctx context.Context, certID int64) ([]byte, error) {
	data, err := s.rdb.Get(ctx, s.keys.renewalAdvice(certID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return data, err
}

// SetRenewalAdvice caches a certificate's renewal advice for ttl (the CA
// says when to ask again).
func (s *Store) SetRenewalAdvice(ctx context.Context, certID int64, data []byte, ttl time.Duration) error {
	return s.rdb.Set(ctx, s.keys.renewalAdvice(certID), data, ttl).Err()
}

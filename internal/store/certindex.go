package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// CertificateOf returns the certificate issued for a request.
func (s *Store) CertificateOf(ctx context.Context, requestID int64) (*Certificate, error) {
	data, err := s.rdb.HGet(ctx, s.keys.request(requestID), "x").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("certificate of request %d: %w", requestID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load certificate of request %d: %w", requestID, err)
	}
	return s.decodeStored(ctx, requestID, data)
}

// Certificate returns the certificate a Get found with the request: nil
// (and no error) when none was issued.
func (r *Request) Certificate() (*Certificate, error) {
	if len(r.cert) == 0 {
		return nil, nil
	}
	return decodeCertificate(r.ID, r.cert, r.issuers)
}

// Certificate loads a certificate by its id, which is the id of the
// request that issued it.
func (s *Store) Certificate(ctx context.Context, id int64) (*Certificate, error) {
	return s.CertificateOf(ctx, id)
}

// CertificateByThumbprint loads a certificate by its SHA-1 thumbprint
// (hex, any case).
func (s *Store) CertificateByThumbprint(ctx context.Context, thumbprint string) (*Certificate, error) {
	tp := strings.ToUpper(thumbprint)
	id, err := s.rdb.Get(ctx, s.keys.thumbprint(tp)).Int64()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("certificate with thumbprint %s: %w", tp, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("look up thumbprint %s: %w", tp, err)
	}
	c, err := s.CertificateOf(ctx, id)
	if err == nil && c.Thumbprint != tp {
		// The index entry of a certificate that lost the race to be
		// stored (see IssueOnce).
		return nil, fmt.Errorf("certificate with thumbprint %s: %w", tp, ErrNotFound)
	}
	return c, err
}

// CertificatePage returns up to n certificate ids from the inventory,
// oldest first, from position offset (0: the oldest), and how many
// certificates the inventory holds, in one round trip: a page of the
// whole inventory, read by rank (ZRANGE), whatever its size.
func (s *Store) CertificatePage(ctx context.Context, offset, n int64) (ids []int64, total int64, err error) {
	pipe := s.rdb.Pipeline()
	count := pipe.ZCard(ctx, s.keys.certificates())
	var page *redis.StringSliceCmd
	if n > 0 {
		page = pipe.ZRange(ctx, s.keys.certificates(), offset, offset+n-1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, 0, fmt.Errorf("list certificates: %w", err)
	}
	if page != nil {
		ids = parseIDs(page.Val())
	}
	return ids, count.Val(), nil
}

// CertificateIDs returns up to limit certificate ids from the inventory,
// oldest first, starting after id after (0: from the first).
func (s *Store) CertificateIDs(ctx context.Context, after int64, limit int64) ([]int64, error) {
	members, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.keys.certificates(), Start: "(" + strconv.FormatInt(after, 10), Stop: "+inf", ByScore: true, Count: limit,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	return parseIDs(members), nil
}

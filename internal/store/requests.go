package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Get loads a request.
func (s *Store) Get(ctx context.Context, id int64) (*Request, error) {
	return s.loaded(ctx, id, s.rdb.HMGet(ctx, s.keys.request(id), "v", "d", "x", "c"))
}

// loaded makes a request of the answer to an HMGET of its v, d, x and c.
func (s *Store) loaded(ctx context.Context, id int64, get *redis.SliceCmd) (*Request, error) {
	vals, err := get.Result()
	if err != nil {
		return nil, fmt.Errorf("load request %d: %w", id, err)
	}
	r, err := decodeRequest(id, vals)
	if r == nil && err == nil {
		return nil, fmt.Errorf("request %d: %w", id, ErrNotFound)
	}
	if err == nil {
		err = s.resolveChains(ctx, r)
	}
	return r, err
}

// decodeRequest makes a request of an HMGET of its hash's v, d, x and,
// when asked for, c; nil (and no error) when there is no such record.
func decodeRequest(id int64, vals []any) (*Request, error) {
	str := func(i int) string {
		if i >= len(vals) {
			return ""
		}
		v, _ := vals[i].(string)
		return v
	}
	v, d := str(0), str(1)
	if v == "0" && d == "" {
		return nil, fmt.Errorf("request %d: %w", id, ErrWithdrawn)
	}
	if v == "" || d == "" {
		return nil, nil
	}
	r := &Request{}
	js, err := unpack(nil, bytesOf(d))
	if err != nil {
		return nil, fmt.Errorf("decode request %d: %w: %w", id, err, ErrCorrupt)
	}
	if err := unmarshal(js, r); err != nil {
		return nil, fmt.Errorf("decode request %d: %w", id, err)
	}
	r.version, _ = strconv.ParseInt(v, 10, 64)
	r.cert, r.loaded = bytesOf(str(2)), r.Disposition // read only by decodeCertificate
	r.indexedMeta = r.Metadata()
	if c := str(3); c != "" {
		r.CSR = []byte(c)
	}
	return r, nil
}

// GetMany loads the requests with the given ids in one round trip;
// missing ones are skipped, and so are withdrawn ids (not requests).
func (s *Store) GetMany(ctx context.Context, ids []int64) ([]*Request, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, s.keys.request(id), "v", "d", "x")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load requests: %w", err)
	}
	out := make([]*Request, 0, len(ids))
	for i, c := range cmds {
		vals, err := c.Result()
		if err != nil {
			continue
		}
		r, err := decodeRequest(ids[i], vals)
		if errors.Is(err, ErrWithdrawn) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	if err := s.resolveChains(ctx, out...); err != nil {
		return nil, err
	}
	return out, nil
}

// Visit loads the requests with the given ids, a hundred per round trip,
// and calls visit for each that exists, in order, until it returns false.
func (s *Store) Visit(ctx context.Context, ids []int64, visit func(*Request) bool) error {
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 100)]
		ids = ids[len(batch):]
		rs, err := s.GetMany(ctx, batch)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if !visit(r) {
				return nil
			}
		}
	}
	return nil
}

// Newest walks requests from the newest down, before request id before (0:
// from the newest), calling visit for each until it returns false or scan
// records were read. It returns the id to continue from (0: no more).
// Listings use it; the CSR is not loaded.
func (s *Store) Newest(ctx context.Context, before int64, scan int, visit func(*Request) bool) (next int64, err error) {
	if before <= 0 {
		top, err := s.rdb.Get(ctx, s.keys.requestSeq()).Int64()
		if errors.Is(err, redis.Nil) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read request counter: %w", err)
		}
		before = top + 1
	}
	const batch = 100
	for read := 0; before > 1 && read < scan; {
		n := min(int64(batch), before-1, int64(scan-read))
		ids := make([]int64, n)
		for i := range ids {
			ids[i] = before - 1 - int64(i)
		}
		rs, err := s.GetMany(ctx, ids)
		if err != nil {
			return 0, err
		}
		before -= n
		read += int(n)
		for _, r := range rs {
			if !visit(r) {
				return r.ID, nil
			}
		}
	}
	if before <= 1 {
		return 0, nil
	}
	return before, nil
}

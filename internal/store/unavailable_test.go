package store_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
)

// A record that does not decode is ErrCorrupt, never Unavailable: Redis
// answered, and a 503 (or a worker retrying for ever) would hide it.
func TestACorruptRecordIsNotUnavailable(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	for id, d := range map[int64]string{1: `{"id":1,"disposition":"QUE`, 2: `{"id":`, 3: `not json`} {
		rdb.HSet(ctx, fmt.Sprintf("%s:request:{%d}", prefix, id), "v", 1, "d", d)
		_, err := s.Get(ctx, id)
		if !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("record %q: Get error %v, want ErrCorrupt", d, err)
		}
		if store.Unavailable(err) {
			t.Errorf("record %q: %v counted as Redis unavailable", d, err)
		}
	}
}

// Redis stopped, unreachable, or cutting its answer short is Unavailable.
func TestRedisDownIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	get := func(url string) error {
		opts, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		opts.MaxRetries, opts.DialTimeout = -1, time.Second
		rdb := redis.NewClient(opts)
		defer rdb.Close()
		_, err = store.New(rdb, testutil.Prefix(t)).Get(ctx, 1)
		return err
	}

	srv := testutil.StartRedisServer(t)
	if err := get(srv.URL()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get on a running Redis: %v, want ErrNotFound", err)
	}
	srv.Kill()
	if err := get(srv.URL()); !store.Unavailable(err) {
		t.Errorf("Redis stopped: %v not counted as unavailable", err)
	}
	if err := get("redis://127.0.0.1:1/0"); !store.Unavailable(err) {
		t.Errorf("Redis unreachable: %v not counted as unavailable", err)
	}

	// A Redis that dies mid-answer: the reply is cut short
	// (io.ErrUnexpectedEOF from the connection, not from a decoder).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				if _, err := c.Read(buf); err == nil {
					c.Write([]byte("*4\r\n$1\r\n1\r\n$100\r\n{\"id\""))
				}
			}()
		}
	}()
	if err := get("redis://" + ln.Addr().String() + "/0"); !store.Unavailable(err) {
		t.Errorf("answer cut short: %v not counted as unavailable", err)
	} else {
		t.Logf("answer cut short: %v", err)
	}
}

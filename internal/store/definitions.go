package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// SaveDefinition keeps the source of a definition version (once; versions
// are content hashes, so the source never changes).
func (s *Store) SaveDefinition(ctx context.Context, name, version string, source []byte) error {
	return s.rdb.SetNX(ctx, s.keys.definition(name, version), source, 0).Err()
}

// Definition returns the stored source of a definition version.
func (s *Store) Definition(ctx context.Context, name, version string) ([]byte, error) {
	b, err := s.rdb.Get(ctx, s.keys.definition(name, version)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("definition %s@%s: %w", name, version, ErrNotFound)
	}
	return b, err
}

// AnnounceReload asks every certflow process to reload its definitions;
// from identifies the sender, which has reloaded already.
func (s *Store) AnnounceReload(ctx context.Context, from string) error {
	return s.rdb.Publish(ctx, s.keys.reload(), from).Err()
}

// OnReload calls reload with the sender of every announcement until ctx
// ends; subscribed (if not nil) is closed once announcements are heard.
func (s *Store) OnReload(ctx context.Context, reload func(from string), subscribed chan<- struct{}) {
	s.follow(ctx, s.keys.reload(), reload, subscribed)
}

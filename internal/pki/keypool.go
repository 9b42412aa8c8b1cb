package pki

import (
	"context"
	"crypto"
	"sync/atomic"
)

// KeyPool bounds the private keys generated at once on a client's
// behalf. Generation is CPU-bound (an RSA-4096 key takes about a second
// of one core, and longer ones far more), so requests beyond the pool are
// turned away before doing any work rather than queued: TryAcquire never
// waits.
type KeyPool struct {
	slots    chan struct{}
	generate atomic.Pointer[func(KeySpec) (crypto.Signer, error)]
}

// NewKeyPool returns a pool of n slots (at least 1) that generates with
// KeySpec.Generate.
func NewKeyPool(n int) *KeyPool {
	p := &KeyPool{slots: make(chan struct{}, max(n, 1))}
	p.SetGenerator(KeySpec.Generate)
	return p
}

// SetGenerator replaces how the pool makes keys: a seam for tests that
// count generations or hold a slot. Slots already taken keep the
// generator they will call.
func (p *KeyPool) SetGenerator(f func(KeySpec) (crypto.Signer, error)) {
	p.generate.Store(&f)
}

// Size is the number of slots.
func (p *KeyPool) Size() int { return cap(p.slots) }

// KeySlot is a taken slot of a KeyPool: the right to generate one key.
type KeySlot struct {
	pool     *KeyPool
	generate func(KeySpec) (crypto.Signer, error)
	released atomic.Bool
}

// TryAcquire takes a slot if one is free (ok false, at once, when none
// is). The caller must Release it.
func (p *KeyPool) TryAcquire() (slot *KeySlot, ok bool) {
	select {
	case p.slots <- struct{}{}:
		return &KeySlot{pool: p, generate: *p.generate.Load()}, true
	default:
		return nil, false
	}
}

// Acquire takes a slot, waiting for one until ctx ends: for generation
// that is queued work anyway (a PFX enrollment's key, in the worker).
func (p *KeyPool) Acquire(ctx context.Context) (*KeySlot, error) {
	select {
	case p.slots <- struct{}{}:
		return &KeySlot{pool: p, generate: *p.generate.Load()}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Generate makes a key of spec in the slot.
func (s *KeySlot) Generate(spec KeySpec) (crypto.Signer, error) {
	return s.generate(spec)
}

// Release frees the slot; again, or on nil, it does nothing.
func (s *KeySlot) Release() {
	if s != nil && s.released.CompareAndSwap(false, true) {
		<-s.pool.slots
	}
}

package pki_test

import (
	"context"
	"crypto"
	"errors"
	"testing"

	"github.com/certflow/certflow/internal/pki"
)

func TestKeyPoolTurnsAwayWhenFullAndFreesOnRelease(t *testing.T) {
	t.Parallel()
	p := pki.NewKeyPool(2)
	a, ok1 := p.TryAcquire()
	b, ok2 := p.TryAcquire()
	if !ok1 || !ok2 || p.Size() != 2 {
		t.Fatalf("two slots of two: %v %v (size %d)", ok1, ok2, p.Size())
	}
	if _, ok := p.TryAcquire(); ok {
		t.Fatal("a third slot of two")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire on a full pool with its context over: %v", err)
	}
	a.Release()
	a.Release() // twice frees one slot, not two
	c, ok := p.TryAcquire()
	if !ok {
		t.Fatal("no slot after a release")
	}
	if _, ok := p.TryAcquire(); ok {
		t.Fatal("a double release freed two slots")
	}
	b.Release()
	c.Release()
	var nilSlot *pki.KeySlot
	nilSlot.Release()
}

func TestKeyPoolSlotsGenerateWithTheGeneratorOfTheirTime(t *testing.T) {
	t.Parallel()
	p := pki.NewKeyPool(1)
	calls := 0
	p.SetGenerator(func(spec pki.KeySpec) (crypto.Signer, error) { calls++; return spec.Generate() })
	s, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	spec, _ := pki.ParseKeySpec("ECC", 0, "P-256")
	if k, err := s.Generate(spec); err != nil || k == nil || calls != 1 {
		t.Fatalf("%v %v calls %d", k, err, calls)
	}
}

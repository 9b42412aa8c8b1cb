package ca_test

import (
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/ca"
)

func TestReadChainReturnsTheIssuingCAThenTheRootWithoutTheKEK(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, _, err := ca.OpenBuiltin(dir, "First", "ecdsa-p256", newKEK(t), true)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := ca.OpenBuiltin(dir, "Second", "ecdsa-p256", newKEK(t), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []*ca.Builtin{a, b} {
		chain, err := ca.ReadChain(dir, want.Name())
		if err != nil {
			t.Fatal(err)
		}
		if len(chain) != 2 || !chain[0].Equal(want.Issuing()) || !chain[1].Equal(want.Root()) {
			t.Fatalf("ReadChain(%s) is not [issuing, root] of that CA", want.Name())
		}
	}
	if _, err := ca.ReadChain(dir, "Missing"); err == nil || !strings.Contains(err.Error(), "built-in CA Missing") {
		t.Fatalf("ReadChain of a CA never created = %v, want an error naming it", err)
	}
}

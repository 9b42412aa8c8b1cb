package store_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
)

// issued stores a settled request with a certificate valid until
// notAfter, as the issue step would. The certificate is a real one, for a
// fresh key, so that its key can be read (a keyCompromise revocation
// bars it).
func issued(t *testing.T, s *store.Store, notAfter time.Time) *store.Certificate {
	t.Helper()
	c, _ := issuedWithKey(t, s, notAfter, nil)
	return c
}

// issuedWithKey is issued for key's public key (a fresh one when nil),
// which it returns.
func issuedWithKey(t *testing.T, s *store.Store, notAfter time.Time, key crypto.Signer) (*store.Certificate, crypto.Signer) {
	t.Helper()
	ctx := context.Background()
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "store.example.com"},
		NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	r := newRequest(t, s, "alice", "")
	if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	c, _, err := s.IssueOnce(ctx, r.ID, func(context.Context) (*store.Certificate, error) {
		return &store.Certificate{
			Chain: [][]byte{der}, SerialNumber: fmt.Sprintf("0A%04X", r.ID), Thumbprint: fmt.Sprintf("TP%038d", r.ID),
			Authority: `certflow\TestCA`, NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter,
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Disposition = store.Issued
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	return c, key
}

func TestSweepKeepsRecordsOfUnexpiredCertificatesAndCleansTheIndexes(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	valid := issued(t, s, time.Now().Add(24*time.Hour))
	expired := issued(t, s, time.Now().Add(-time.Hour))
	if _, changed, err := s.RevokeCertificate(ctx, expired.ID, store.Revocation{Reason: 1, RequestID: 999}); err != nil || !changed {
		t.Fatalf("revoke: %v %v", changed, err)
	}
	if err := s.AddRevoked(ctx, "TestCA", store.RevokedEntry{Serial: expired.SerialNumber, CertificateID: expired.ID}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRevoked(ctx, "TestCA", store.RevokedEntry{Serial: valid.SerialNumber, CertificateID: valid.ID}); err != nil {
		t.Fatal(err)
	}
	plain := newRequest(t, s, "alice", "")
	if _, _, err := s.Create(ctx, plain, time.Hour); err != nil {
		t.Fatal(err)
	}
	plain.Disposition = store.Denied
	if err := s.Save(ctx, plain); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond) // OBJECT IDLETIME counts whole seconds
	n, err := s.Sweep(ctx, time.Second)
	if err != nil || n != 2 {
		t.Fatalf("sweep deleted %d (%v), want the denied request and the expired certificate's", n, err)
	}
	if _, err := s.Get(ctx, valid.ID); err != nil {
		t.Fatalf("the record of a certificate valid for another day was swept: %v", err)
	}
	if c, err := s.CertificateByThumbprint(ctx, valid.Thumbprint); err != nil || c.ID != valid.ID {
		t.Fatalf("the valid certificate's thumbprint index: %v %v", c, err)
	}
	for _, id := range []int64{expired.ID, plain.ID} {
		if _, err := s.Get(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("request %d survived: %v", id, err)
		}
	}
	if _, err := s.CertificateByThumbprint(ctx, expired.Thumbprint); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the swept certificate's thumbprint still resolves: %v", err)
	}
	if n, _ := rdb.Exists(ctx, prefix+":thumbprint:"+expired.Thumbprint).Result(); n != 0 {
		t.Error("the swept certificate's thumbprint key is left")
	}
	ids, err := s.CertificateIDs(ctx, 0, 100)
	if err != nil || !slices.Equal(ids, []int64{valid.ID}) {
		t.Errorf("inventory %v (%v), want only %d", ids, err, valid.ID)
	}
	if _, err := rdb.ZScore(ctx, prefix+":certificates:expiry", fmt.Sprint(expired.ID)).Result(); err == nil {
		t.Error("the swept certificate is left in the expiry index")
	}
	entries, err := s.RevokedEntries(ctx, "TestCA")
	if err != nil || len(entries) != 1 || entries[0].CertificateID != valid.ID {
		t.Errorf("revocation list %+v (%v), want only the unexpired certificate", entries, err)
	}
	// Unexpired: kept however long it idles.
	if n, err := s.Sweep(ctx, time.Second); err != nil || n != 0 {
		t.Errorf("a second sweep deleted %d (%v)", n, err)
	}
}

func TestRevokeCertificateRecordsOnce(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	c := issued(t, s, time.Now().Add(time.Hour))
	first := store.Revocation{Reason: 1, Comment: "stolen", RequestID: 10, By: "alice"}
	got, changed, err := s.RevokeCertificate(ctx, c.ID, first)
	if err != nil || !changed || got.Revocation.RequestID != 10 {
		t.Fatalf("first revocation: %+v %v %v", got, changed, err)
	}
	got, changed, err = s.RevokeCertificate(ctx, c.ID, store.Revocation{Reason: 4, RequestID: 11})
	if err != nil || changed || got.Revocation.RequestID != 10 || got.Revocation.Comment != "stolen" {
		t.Fatalf("second revocation: %+v %v %v, want the first kept", got.Revocation, changed, err)
	}
	loaded, err := s.Certificate(ctx, c.ID)
	if err != nil || loaded.Revocation == nil || loaded.Revocation.Reason != 1 || loaded.Thumbprint != c.Thumbprint {
		t.Fatalf("stored: %+v %v", loaded, err)
	}
	if _, _, err := s.RevokeCertificate(ctx, 999999, first); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking no certificate: %v", err)
	}
}

// A revocation for keyCompromise bars the certificate's key with the
// revocation itself, in one script; another reason bars nothing; a re-run
// of a keyCompromise revocation bars the key again.
func TestRevokeForKeyCompromiseBarsTheKey(t *testing.T) {
	t.Parallel()
	s, _, prefix := setup(t)
	ctx := context.Background()
	keyID := func(k crypto.Signer) string {
		id, err := pki.PublicKeyID(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	compromised := func(k crypto.Signer) bool {
		ok, err := s.KeyCompromised(ctx, keyID(k))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	superseded, supersededKey := issuedWithKey(t, s, time.Now().Add(time.Hour), nil)
	if _, changed, err := s.RevokeCertificate(ctx, superseded.ID, store.Revocation{Reason: 4, RequestID: 20}); err != nil || !changed {
		t.Fatalf("revoke superseded: %v %v", changed, err)
	}
	if compromised(supersededKey) {
		t.Fatal("a revocation for superseded barred the key")
	}
	stolen, stolenKey := issuedWithKey(t, s, time.Now().Add(time.Hour), nil)
	// A second certificate for the same key, not revoked: the bar
	// is on the key, whichever certificate carries it.
	twin, _ := issuedWithKey(t, s, time.Now().Add(time.Hour), stolenKey)
	if compromised(stolenKey) {
		t.Fatal("a key is barred before any revocation")
	}
	if _, changed, err := s.RevokeCertificate(ctx, stolen.ID, store.Revocation{Reason: store.ReasonKeyCompromise, RequestID: 21}); err != nil || !changed {
		t.Fatalf("revoke for keyCompromise: %v %v", changed, err)
	}
	if !compromised(stolenKey) {
		t.Fatal("a revocation for keyCompromise did not bar the key")
	}
	if loaded, _ := s.Certificate(ctx, twin.ID); loaded.Revocation != nil {
		t.Fatal("barring the key revoked the other certificate that carries it")
	}
	// Lost bar (a revocation from before bars existed): a re-run
	// restores it.
	s.Redis().Del(ctx, prefix+":compromised-keys")
	if _, changed, err := s.RevokeCertificate(ctx, stolen.ID, store.Revocation{Reason: store.ReasonKeyCompromise, RequestID: 21}); err != nil || changed {
		t.Fatalf("re-run: %v %v", changed, err)
	}
	if !compromised(stolenKey) {
		t.Fatal("a re-run of the keyCompromise revocation did not bar the key again")
	}
}

// BarCompromisedKeys bars the keys of the keyCompromise entries of a CA's
// revocation list (revocations recorded before keys were barred), and
// only those; an entry whose certificate is gone is skipped.
func TestBarCompromisedKeysFromTheRevocationList(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	stolen, stolenKey := issuedWithKey(t, s, time.Now().Add(time.Hour), nil)
	superseded, supersededKey := issuedWithKey(t, s, time.Now().Add(time.Hour), nil)
	for _, e := range []store.RevokedEntry{
		{Serial: stolen.SerialNumber, Reason: store.ReasonKeyCompromise, CertificateID: stolen.ID, NotAfter: stolen.NotAfter},
		{Serial: superseded.SerialNumber, Reason: 4, CertificateID: superseded.ID, NotAfter: superseded.NotAfter},
		{Serial: "0BADC0DE", Reason: store.ReasonKeyCompromise, CertificateID: 999999, NotAfter: stolen.NotAfter},
	} {
		if err := s.AddRevoked(ctx, "TestCA", e); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.BarCompromisedKeys(ctx, "TestCA")
	if err != nil || n != 1 {
		t.Fatalf("BarCompromisedKeys = %d, %v; want 1", n, err)
	}
	for _, k := range []struct {
		key  crypto.Signer
		want bool
	}{{stolenKey, true}, {supersededKey, false}} {
		id, _ := pki.PublicKeyID(k.key.Public())
		if got, err := s.KeyCompromised(ctx, id); err != nil || got != k.want {
			t.Errorf("KeyCompromised = %v, %v; want %v", got, err, k.want)
		}
	}
	if members, _ := rdb.SMembers(ctx, prefix+":compromised-keys").Result(); len(members) != 1 {
		t.Fatalf("compromised keys %v, want one", members)
	}
}

func TestClaimRevocationAdmitsOneRevocationAtATime(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	c := issued(t, s, time.Now().Add(time.Hour))
	never := func(context.Context, int64) (bool, error) { return false, nil }
	always := func(context.Context, int64) (bool, error) { return true, nil }
	if _, err := s.ClaimRevocation(ctx, c.ID, 100, never); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if _, err := s.ClaimRevocation(ctx, c.ID, 100, never); err != nil {
		t.Fatalf("the holder claiming again: %v", err)
	}
	if holder, err := s.ClaimRevocation(ctx, c.ID, 101, never); !errors.Is(err, store.ErrConflict) || holder != 100 {
		t.Fatalf("a second claim while the first runs: %d %v", holder, err)
	}
	if _, err := s.ClaimRevocation(ctx, c.ID, 102, always); err != nil {
		t.Fatalf("a claim over a finished revocation: %v", err)
	}
	if h, err := s.RevocationHolder(ctx, c.ID); err != nil || h != 102 {
		t.Fatalf("holder %d %v, want 102", h, err)
	}
	if err := s.ReleaseRevocation(ctx, c.ID, 101); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.RevocationHolder(ctx, c.ID); h != 102 {
		t.Fatalf("a non-holder released the claim: holder %d", h)
	}
	if err := s.ReleaseRevocation(ctx, c.ID, 102); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.RevocationHolder(ctx, c.ID); h != 0 {
		t.Fatalf("holder %d after release", h)
	}
	if _, err := s.ClaimRevocation(ctx, 999999, 103, never); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claiming no certificate: %v", err)
	}
}

func TestSaveCRLKeepsTheHighestNumber(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	if _, err := s.CRL(ctx, "TestCA"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no CRL yet: %v", err)
	}
	n1, _ := s.NextCRLNumber(ctx, "TestCA", 0)
	n2, _ := s.NextCRLNumber(ctx, "testca", 0) // names ignore case
	if n2 != n1+1 {
		t.Fatalf("numbers %d then %d", n1, n2)
	}
	now := time.Now().UTC().Truncate(time.Second)
	if ok, err := s.SaveCRL(ctx, "TestCA", &store.CRL{Number: n2, DER: []byte("two"), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}); err != nil || !ok {
		t.Fatalf("save %d: %v %v", n2, ok, err)
	}
	if ok, err := s.SaveCRL(ctx, "TestCA", &store.CRL{Number: n1, DER: []byte("one"), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}); err != nil || ok {
		t.Fatalf("a lower number replaced a higher one: %v %v", ok, err)
	}
	c, err := s.CRL(ctx, "TESTCA")
	if err != nil || c.Number != n2 || string(c.DER) != "two" || !c.NextUpdate.Equal(now.Add(time.Hour)) {
		t.Fatalf("CRL %+v %v", c, err)
	}
}

// The counter goes up by one unless the floor is higher; then it jumps to
// the floor and counts on from there (a lower floor later changes
// nothing), exactly, above 2^53 too (Lua's numbers are doubles).
func TestNextCRLNumberTakesTheFloorWhenTheCounterIsBelowIt(t *testing.T) {
	t.Parallel()
	s, _, _ := setup(t)
	ctx := context.Background()
	const big = 1<<60 + 3
	for i, c := range []struct{ floor, want int64 }{
		{0, 1}, {0, 2}, {1000, 1000}, {5, 1001}, {1001, 1002}, {big, big}, {0, big + 1}, {-7, big + 2},
	} {
		n, err := s.NextCRLNumber(ctx, "FloorCA", c.floor)
		if err != nil || n != c.want {
			t.Fatalf("call %d, floor %d: %d, want %d (%v)", i, c.floor, n, c.want, err)
		}
	}
}

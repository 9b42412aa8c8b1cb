package ca_test

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
)

func TestPublishCRLListsUnexpiredRevocationsSignedByTheIssuingCA(t *testing.T) {
	t.Parallel()
	b, st := openCA(t, "Corp", "rsa-2048"), newStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	for _, e := range []store.RevokedEntry{
		{Serial: "0A01", RevokedAt: now.Add(-time.Hour), InvalidityDate: now.Add(-50 * time.Hour), Reason: 1, NotAfter: now.Add(time.Hour), CertificateID: 1},
		{Serial: "0A02", RevokedAt: now.Add(-48 * time.Hour), Reason: 4, NotAfter: now.Add(-time.Hour), CertificateID: 2}, // expired
		{Serial: "0A03", RevokedAt: now, Reason: 0, NotAfter: now.Add(time.Hour), CertificateID: 3},
	} {
		if err := st.AddRevoked(ctx, "corp", e); err != nil {
			t.Fatal(err)
		}
	}
	crl, err := ca.PublishCRL(ctx, st, b, now)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := st.CRL(ctx, "Corp")
	if err != nil || stored.Number != crl.Number || string(stored.DER) != string(crl.DER) {
		t.Fatalf("stored CRL %+v %v", stored, err)
	}
	parsed, err := parseCRL(crl.DER)
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.CheckSignatureFrom(b.Issuing()); err != nil {
		t.Fatalf("signature: %v", err)
	}
	got := map[string]int{}
	for _, e := range parsed.RevokedCertificateEntries {
		got[e.SerialNumber.Text(16)] = e.ReasonCode
		// RFC 5280 5.3.2: invalidityDate, non-critical GeneralizedTime,
		// only where the entry has one.
		var inv []time.Time
		for _, ext := range e.Extensions {
			if ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 24}) {
				var d time.Time
				if _, err := asn1.UnmarshalWithParams(ext.Value, &d, "generalized"); err != nil || ext.Critical {
					t.Fatalf("invalidityDate %x critical=%v: %v", ext.Value, ext.Critical, err)
				}
				inv = append(inv, d)
			}
		}
		wantInv := e.SerialNumber.Text(16) == "a01"
		if wantInv && (len(inv) != 1 || !inv[0].Equal(now.Add(-50*time.Hour))) || !wantInv && len(inv) != 0 {
			t.Errorf("serial %s: invalidityDate %v", e.SerialNumber.Text(16), inv)
		}
		if wantInv && !e.RevocationTime.Equal(now.Add(-time.Hour)) {
			t.Errorf("serial a01 revoked at %s, want %s", e.RevocationTime, now.Add(-time.Hour))
		}
	}
	if len(got) != 2 || got["a01"] != 1 || got["a03"] != 0 {
		t.Fatalf("entries %v, want a01 (keyCompromise) and a03 (unspecified), not the expired a02", got)
	}
	if !parsed.NextUpdate.Equal(crl.NextUpdate) || parsed.NextUpdate.Sub(parsed.ThisUpdate) != ca.CRLValidity || parsed.Number.Int64() != crl.Number {
		t.Fatalf("thisUpdate %s nextUpdate %s number %s", parsed.ThisUpdate, parsed.NextUpdate, parsed.Number)
	}
	// An older signer finishing later does not replace it.
	next, err := ca.PublishCRL(ctx, st, b, now)
	if err != nil || next.Number <= crl.Number {
		t.Fatalf("second CRL %d after %d: %v", next.Number, crl.Number, err)
	}
	if ok, err := st.SaveCRL(ctx, "Corp", crl); err != nil || ok {
		t.Fatalf("an older CRL replaced a newer one: %v %v", ok, err)
	}
}

func parseCRL(der []byte) (*x509.RevocationList, error) { return x509.ParseRevocationList(der) }

// A store that forgot the CRL counter (the in-memory Redis restarted, a
// Redis restored from an older backup) still gets a CRL numbered above the
// last one the CA signed: the number is at least the signing time. Both
// x509 and OpenSSL read the numbers.
func TestCRLNumbersIncreaseWhenTheStoreForgetsTheCounter(t *testing.T) {
	t.Parallel()
	b := openCA(t, "Forgetful", "ecdsa-p256")
	ctx := context.Background()
	var last *big.Int
	for i := range 3 {
		crl, err := ca.PublishCRL(ctx, newStore(t), b, time.Now()) // a fresh, empty store each time
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := x509.ParseRevocationList(crl.DER)
		if err != nil {
			t.Fatal(err)
		}
		if parsed.Number.Int64() != crl.Number || testutil.OpenSSLCRLNumber(t, crl.DER).Cmp(parsed.Number) != 0 {
			t.Fatalf("CRL %d: x509 reads number %s, openssl %s, published %d", i, parsed.Number, testutil.OpenSSLCRLNumber(t, crl.DER), crl.Number)
		}
		if last != nil && parsed.Number.Cmp(last) <= 0 {
			t.Fatalf("CRL %d of a fresh store: number %s after %s", i, parsed.Number, last)
		}
		last = parsed.Number
	}
}

// Workers re-signing one CA's CRL at once each get a number of their own,
// and the published CRL is the highest numbered.
func TestConcurrentCRLSignersGetDistinctNumbers(t *testing.T) {
	t.Parallel()
	b, st := openCA(t, "Busy", "ecdsa-p256"), newStore(t)
	ctx := context.Background()
	now := time.Now() // one instant: the floor is the same for all of them
	const signers = 16
	numbers := make(chan int64, signers)
	var wg sync.WaitGroup
	for range signers {
		wg.Go(func() {
			crl, err := ca.PublishCRL(ctx, st, b, now)
			if err != nil {
				t.Error(err)
				return
			}
			numbers <- crl.Number
		})
	}
	wg.Wait()
	close(numbers)
	seen := map[int64]bool{}
	var highest int64
	for n := range numbers {
		if seen[n] {
			t.Fatalf("number %d given twice", n)
		}
		seen[n] = true
		highest = max(highest, n)
	}
	published, err := st.CRL(ctx, "Busy")
	if err != nil || published.Number != highest || len(seen) != signers || highest < ca.CRLNumberFloor(now) {
		t.Fatalf("published %+v (%v), highest %d of %d numbers", published, err, highest, len(seen))
	}
}

// openCA opens a new built-in CA hierarchy named name.
func openCA(t *testing.T, name, keyType string) *ca.Builtin {
	t.Helper()
	b, _, err := ca.OpenBuiltin(t.TempDir(), name, keyType, newKEK(t), true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newStore is an empty store under a prefix of the test's own.
func newStore(t *testing.T) *store.Store {
	rdb, prefix := testutil.Redis(t)
	return store.New(rdb, prefix)
}

package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/pki"
)

func newKEK(t *testing.T) *pki.KEK {
	t.Helper()
	raw := make([]byte, 32)
	rand.Read(raw)
	k, err := pki.NewKEK(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestBuiltinHierarchyIsCreatedOnceAndReused(t *testing.T) {
	t.Parallel()
	dir, kek := t.TempDir(), newKEK(t)
	b1, created, err := ca.OpenBuiltin(dir, "Corp", "ecdsa-p256", kek, true)
	if err != nil || !created {
		t.Fatalf("first open: created=%v err=%v", created, err)
	}
	b2, created, err := ca.OpenBuiltin(dir, "Corp", "ecdsa-p256", kek, true)
	if err != nil || created {
		t.Fatalf("second open: created=%v err=%v", created, err)
	}
	if !b1.Root().Equal(b2.Root()) || !b1.Issuing().Equal(b2.Issuing()) {
		t.Fatal("the second open made a different hierarchy")
	}
	for _, f := range []string{"root.key.sealed", "issuing.key.sealed"} {
		st, err := os.Stat(filepath.Join(dir, "ca", "Corp", f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
		data, _ := os.ReadFile(filepath.Join(dir, "ca", "Corp", f))
		if _, err := x509.ParsePKCS8PrivateKey(data); err == nil {
			t.Errorf("%s is a plain PKCS#8 key", f)
		}
	}
	if _, _, err := ca.OpenBuiltin(dir, "Corp", "ecdsa-p256", newKEK(t), false); err == nil {
		t.Fatal("the CA opened under a different KEK")
	}
	if _, _, err := ca.OpenBuiltin(t.TempDir(), "Corp", "ecdsa-p256", kek, false); err == nil {
		t.Fatal("opening a CA that does not exist without create succeeded")
	}
}

func TestConcurrentFirstStartsAgreeOnOneHierarchy(t *testing.T) {
	t.Parallel()
	dir, kek := t.TempDir(), newKEK(t)
	var wg sync.WaitGroup
	roots := make([]*x509.Certificate, 6)
	for i := range roots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _, err := ca.OpenBuiltin(dir, "Race", "ecdsa-p256", kek, true)
			if err != nil {
				t.Error(err)
				return
			}
			roots[i] = b.Root()
		}()
	}
	wg.Wait()
	for i, r := range roots {
		if r == nil || !r.Equal(roots[0]) {
			t.Fatalf("start %d got a different root", i)
		}
	}
}

func TestIssueSignsWhatWasAskedAndChainsToTheRoot(t *testing.T) {
	t.Parallel()
	for _, keyType := range []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048"} {
		t.Run(keyType, func(t *testing.T) {
			t.Parallel()
			b, _, err := ca.OpenBuiltin(t.TempDir(), "Issuing", keyType, newKEK(t), true)
			if err != nil {
				t.Fatal(err)
			}
			leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			issued, err := b.Issue(context.Background(), &ca.Request{
				Subject: pkix.Name{CommonName: "svc.example.com"}, PublicKey: leafKey.Public(),
				DNSNames: []string{"svc.example.com"}, Validity: 24 * time.Hour,
				KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(issued.Chain) != 3 {
				t.Fatalf("chain of %d, want leaf, issuing, root", len(issued.Chain))
			}
			root, _ := x509.ParseCertificate(issued.Chain[2])
			inter, _ := x509.ParseCertificate(issued.Chain[1])
			roots, inters := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(root)
			inters.AddCert(inter)
			leaf := issued.Leaf
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, DNSName: "svc.example.com"}); err != nil {
				t.Fatal(err)
			}
			if leaf.IsCA || leaf.NotAfter.Sub(leaf.NotBefore) > 24*time.Hour+2*time.Minute || time.Until(leaf.NotBefore) > 0 {
				t.Fatalf("leaf profile: CA=%v validity %v..%v", leaf.IsCA, leaf.NotBefore, leaf.NotAfter)
			}
			if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() < 64 {
				t.Fatalf("serial %v lacks 64 bits of entropy", leaf.SerialNumber)
			}
			if !inter.MaxPathLenZero || inter.MaxPathLen != 0 {
				t.Fatal("the issuing CA may sign further CAs")
			}
			if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
				t.Fatal("leaf key type changed")
			}
		})
	}
}

func TestIssueCapsValidityAtTheIssuingCA(t *testing.T) {
	t.Parallel()
	b, _, err := ca.OpenBuiltin(t.TempDir(), "Cap", "ecdsa-p256", newKEK(t), true)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	issued, err := b.Issue(context.Background(), &ca.Request{Subject: pkix.Name{CommonName: "x"}, PublicKey: key.Public(), Validity: 100 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if issued.Leaf.NotAfter.After(b.Issuing().NotAfter) {
		t.Fatal("a leaf outlives its issuer")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Issue(ctx, &ca.Request{PublicKey: key.Public(), Validity: time.Hour}); err == nil {
		t.Fatal("Issue ignored a cancelled context")
	}
}

func mustKEK(tb testing.TB, raw []byte) *pki.KEK {
	tb.Helper()
	k, err := pki.NewKEK(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

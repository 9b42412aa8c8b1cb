package store_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/store"
)

// testCA is a root and an issuing CA under it.
type testCA struct {
	chain [][]byte // issuing, root
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, rootTmpl, &key.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{chain: [][]byte{der, rootDER}, cert: cert, key: key}
}

// issue makes a certificate for request id as the issue step would.
func (ca *testCA) issue(t *testing.T, id int64) *store.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cn := fmt.Sprintf("host%d.example.com", id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(id + 100), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	c := &store.Certificate{
		Chain: append([][]byte{der}, ca.chain...), SerialNumber: fmt.Sprintf("%X", leaf.SerialNumber), Thumbprint: fmt.Sprintf("%040X", id),
		IssuerDN: leaf.Issuer.String(), SubjectDN: leaf.Subject.String(), NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(),
		Authority: `certflow\` + ca.cert.Subject.CommonName, Template: "WebServer", Requester: "alice", Issued: time.Now().UTC(),
	}
	c.Describe(leaf)
	return c
}

// issueWith stores a settled request with ca's certificate: through
// IssueOnce, or through the checkpoint (Instance.Unsaved) as the worker
// does.
func issueWith(t *testing.T, s *store.Store, ca *testCA, checkpoint bool) *store.Certificate {
	t.Helper()
	ctx := context.Background()
	r := created(t, s)
	var c *store.Certificate
	if checkpoint {
		_, claim, err := s.ClaimIssue(ctx, r.ID, nil)
		if err != nil || claim == nil {
			t.Fatalf("ClaimIssue = %v, %v", claim, err)
		}
		c = claim.Signed(ca.issue(t, r.ID), r.ID)
		r.Instance.Unsaved = []any{c}
	} else {
		var err error
		c, _, err = s.IssueOnce(ctx, r.ID, func(context.Context) (*store.Certificate, error) { return ca.issue(t, r.ID), nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	r.Disposition, r.Message = store.Issued, "Issued"
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	return c
}

// readsEverywhere checks that every way of reading certificate want, by a
// process that has never seen its chain, finds it whole.
func readsEverywhere(t *testing.T, rdb *redis.Client, prefix string, want *store.Certificate) {
	t.Helper()
	ctx := context.Background()
	same := func(how string, got *store.Certificate, err error) {
		t.Helper()
		if err != nil || got == nil {
			t.Fatalf("%s: %+v, %v", how, got, err)
		}
		if !slices.EqualFunc(got.Chain, want.Chain, bytes.Equal) {
			t.Fatalf("%s: a chain of %d certificates, want the %d it was issued with", how, len(got.Chain), len(want.Chain))
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(want)
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: read\n%s\nwant\n%s", how, a, b)
		}
	}
	fresh := func() *store.Store { return store.New(rdb, prefix) } // a cache of its own, empty
	c, err := fresh().Certificate(ctx, want.ID)
	same("Certificate", c, err)
	c, err = fresh().CertificateByThumbprint(ctx, want.Thumbprint)
	same("CertificateByThumbprint", c, err)
	r, err := fresh().Get(ctx, want.ID)
	if err != nil {
		t.Fatal(err)
	}
	c, err = r.Certificate()
	same("Get", c, err)
	rs, err := fresh().GetMany(ctx, []int64{want.ID, want.ID + 1000})
	if err != nil || len(rs) != 1 {
		t.Fatalf("GetMany = %d records, %v", len(rs), err)
	}
	c, err = rs[0].Certificate()
	same("GetMany", c, err)
	c, claim, err := fresh().ClaimIssue(ctx, want.ID, nil)
	if claim != nil {
		t.Fatal("ClaimIssue claimed an issued request")
	}
	same("ClaimIssue", c, err)
}

func chainKeys(t *testing.T, rdb *redis.Client, prefix string) []string {
	t.Helper()
	ks, err := rdb.Keys(context.Background(), prefix+":chain:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ks)
	return ks
}

// The chain above a leaf is stored once for all the certificates issued
// with it, and every read gives each certificate the whole chain it was
// issued with, CA rollover included.
func TestCertificatesShareTheirStoredChain(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	old := newTestCA(t, "Old Issuing CA")
	var certs []*store.Certificate
	for i := range 4 {
		certs = append(certs, issueWith(t, s, old, i%2 == 0))
	}
	if ks := chainKeys(t, rdb, prefix); len(ks) != 1 {
		t.Fatalf("chain keys %v; want one for the four certificates", ks)
	}
	for _, c := range certs {
		x, err := rdb.HGet(ctx, requestKey(prefix, c.ID), "x").Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(x, old.chain[0]) || bytes.Contains(x, old.chain[1]) || !bytes.Contains(x, c.Chain[0]) {
			t.Fatalf("certificate %d is stored with its issuers' DER, or without its leaf's", c.ID)
		}
		readsEverywhere(t, rdb, prefix, c)
	}
	// The CA rolls over: its new certificates have their chain, the old
	// ones keep theirs.
	rolled := newTestCA(t, "New Issuing CA")
	newer := issueWith(t, s, rolled, true)
	if ks := chainKeys(t, rdb, prefix); len(ks) != 2 {
		t.Fatalf("chain keys %v; want one per chain", ks)
	}
	readsEverywhere(t, rdb, prefix, newer)
	readsEverywhere(t, rdb, prefix, certs[0])
	// A listing page of both, read by a process that knows neither chain.
	rs, err := store.New(rdb, prefix).GetMany(ctx, []int64{certs[1].ID, newer.ID, certs[2].ID})
	if err != nil || len(rs) != 3 {
		t.Fatalf("GetMany = %d, %v", len(rs), err)
	}
	for i, want := range []*store.Certificate{certs[1], newer, certs[2]} {
		got, err := rs[i].Certificate()
		if err != nil || !slices.EqualFunc(got.Chain, want.Chain, bytes.Equal) {
			t.Fatalf("GetMany's certificate %d: %v", want.ID, err)
		}
	}
}

// A chain key that is lost makes its certificates fail to read as
// corrupt, not as something else; the next certificate stored with that
// chain, by any process, restores it for all of them.
func TestALostChainIsReportedAndRestoredByTheNextCertificate(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	ca := newTestCA(t, "Issuing CA")
	c := issueWith(t, s, ca, true)
	if err := rdb.Del(ctx, chainKeys(t, rdb, prefix)...).Err(); err != nil {
		t.Fatal(err)
	}
	cold := store.New(rdb, prefix)
	if got, err := cold.Certificate(ctx, c.ID); !errors.Is(err, store.ErrCorrupt) || store.Unavailable(err) || !strings.Contains(err.Error(), "chain") {
		t.Fatalf("Certificate with its chain gone = %+v, %v; want ErrCorrupt naming the chain", got, err)
	}
	r, err := cold.Get(ctx, c.ID)
	if err != nil {
		t.Fatalf("Get = %v; the record itself reads", err)
	}
	if got, err := r.Certificate(); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Request.Certificate with its chain gone = %+v, %v; want ErrCorrupt", got, err)
	}
	if rs, err := cold.GetMany(ctx, []int64{c.ID}); err != nil || len(rs) != 1 {
		t.Fatalf("GetMany = %d, %v: one bad certificate does not fail a page", len(rs), err)
	}
	issueWith(t, store.New(rdb, prefix), ca, false)
	readsEverywhere(t, rdb, prefix, c)
}

// Records and certificates stored by earlier versions (JSON, the chain in
// base64 in every certificate) read as they did; a revocation rewrites
// the certificate in the current format, and a save packs the record.
func TestRecordsOfTheOldFormatStillRead(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	d, err := os.ReadFile("testdata/settled-request.json")
	if err != nil {
		t.Fatal(err)
	}
	x, err := os.ReadFile("testdata/certificate.json")
	if err != nil {
		t.Fatal(err)
	}
	var want store.Certificate
	if err := json.Unmarshal(x, &want); err != nil || len(want.Chain) != 3 {
		t.Fatalf("testdata certificate: %v", err)
	}
	var wantReq store.Request
	json.Unmarshal(d, &wantReq)
	// Request 1 as an earlier version left it, its certificate indexed.
	key := requestKey(prefix, 1)
	if err := rdb.HSet(ctx, key, "v", 5, "d", d, "c", []byte{0x30, 0x03, 0x02, 0x01, 0x01}, "n", "0123456789abcdef", "x", x).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.Set(ctx, prefix+":thumbprint:"+want.Thumbprint, 1, 0)
	rdb.ZAdd(ctx, prefix+":certificates", redis.Z{Score: 1, Member: 1})

	readsEverywhere(t, rdb, prefix, &want)
	r, err := s.Get(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(r)
	b, _ := json.Marshal(&wantReq)
	if !bytes.Equal(a, b) {
		t.Fatalf("old record read as\n%s\nwant\n%s", a, b)
	}

	// Revoked: stored anew, chain by reference, everything else the same.
	rev := store.Revocation{Reason: 4, EffectiveDate: time.Now().UTC().Truncate(time.Second), Date: time.Now().UTC().Truncate(time.Second), By: "admin", RequestID: 2}
	if _, changed, err := s.RevokeCertificate(ctx, 1, rev); err != nil || !changed {
		t.Fatalf("RevokeCertificate = %v, %v", changed, err)
	}
	stored, _ := rdb.HGet(ctx, key, "x").Bytes()
	if len(stored) == 0 || stored[0] == '{' || len(stored) >= len(x)/2 {
		t.Fatalf("revoked certificate stored in %d bytes (first %q); want the compact format", len(stored), stored[:1])
	}
	if ks := chainKeys(t, rdb, prefix); len(ks) != 1 {
		t.Fatalf("chain keys %v after rewriting an old certificate", ks)
	}
	want.Revocation = &rev
	readsEverywhere(t, rdb, prefix, &want)

	// A save of the old record packs it; it reads the same.
	r.Message = "saved again"
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	if packed, _ := rdb.HGet(ctx, key, "d").Bytes(); packed[0] == '{' || len(packed) >= len(d)/2 {
		t.Fatalf("settled record saved in %d bytes; want it packed", len(packed))
	}
	again, err := store.New(rdb, prefix).Get(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	wantReq.Message, wantReq.Updated = "saved again", r.Updated
	a, _ = json.Marshal(again)
	b, _ = json.Marshal(&wantReq)
	if !bytes.Equal(a, b) {
		t.Fatalf("packed record read as\n%s\nwant\n%s", a, b)
	}
}

// Only what has settled is packed: a running record stays JSON (it is
// rewritten at every checkpoint), a settled one is packed, and one that
// runs again (a PENDING request decided) is JSON again.
func TestSettledRecordsArePacked(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx := context.Background()
	r := created(t, s)
	key := requestKey(prefix, r.ID)
	first := func() byte {
		d, err := rdb.HGet(ctx, key, "d").Bytes()
		if err != nil || len(d) == 0 {
			t.Fatalf("d: %v", err)
		}
		return d[0]
	}
	for _, step := range []struct {
		disp   store.Disposition
		packed bool
	}{{store.Running, false}, {store.Pending, true}, {store.Running, false}, {store.Denied, true}} {
		r.Disposition = step.disp
		r.Message = "now " + string(step.disp)
		if err := s.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
		if got := first() != '{'; got != step.packed {
			t.Fatalf("%s: packed %v, want %v", step.disp, got, step.packed)
		}
		got, err := s.Get(ctx, r.ID)
		if err != nil || got.Disposition != step.disp || got.Message != r.Message || !got.Updated.Equal(r.Updated) {
			t.Fatalf("%s: read back %+v, %v", step.disp, got, err)
		}
	}
	// A damaged packed record is corrupt, not Redis being away.
	rdb.HSet(ctx, key, "d", []byte{0x01, 0x85})
	if _, err := s.Get(ctx, r.ID); !errors.Is(err, store.ErrCorrupt) || store.Unavailable(err) {
		t.Fatalf("Get of a damaged packed record = %v; want ErrCorrupt", err)
	}
}

// A client waiting in a process that has never seen the certificate's
// chain is answered from the announcement, the chain read once.
func TestAWaiterInAnotherProcessGetsTheWholeChain(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api := store.New(rdb, prefix)
	waiters := listening(t, ctx, api, rdb, prefix)
	ca := newTestCA(t, "Issuing CA")
	r := created(t, s)
	wt := waiters.Register(r.ID)
	defer wt.Close()
	_, claim, err := s.ClaimIssue(ctx, r.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := claim.Signed(ca.issue(t, r.ID), r.ID)
	r.Instance.Unsaved = []any{c}
	r.Disposition = store.Issued
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	got, err := wt.Wait(wctx)
	if err != nil || got.Disposition != store.Issued {
		t.Fatalf("Wait = %+v, %v", got, err)
	}
	gc, err := got.Certificate()
	if err != nil || !slices.EqualFunc(gc.Chain, c.Chain, bytes.Equal) {
		t.Fatalf("the waiter's certificate: %v", err)
	}
}

package steps_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

// recordingRevoker stands for a CA that revokes by itself; it records
// what it was asked to revoke.
type recordingRevoker struct {
	ca.Authority
	revoked [][]byte
}

func (r *recordingRevoker) RevokeAtCA(_ context.Context, leaf []byte, _ int) error {
	r.revoked = append(r.revoked, leaf)
	return nil
}

// A given-up order's certificate is revoked only if it is the request's
// (its CSR's key), no request's record holds it, and the request's issue
// claim is still the caller's: a CA that handed two requests one order,
// two requests sharing a CSR, or a lock that lapsed, leave it alone.
func TestOnlyAnUnreleasedCertificateOfTheRequestsKeyIsRevoked(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	st := store.New(rdb, prefix)
	ctx := context.Background()
	newRequest := func() int64 {
		id, _ := st.NewID(ctx)
		now := time.Now().UTC()
		if _, _, err := st.Create(ctx, &store.Request{ID: id, Disposition: store.Queued, Submitted: now, Updated: now, Trigger: "enrollment"}, 0); err != nil {
			t.Fatal(err)
		}
		return id
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"shared.example.com"}}, key)
	csr, _ := x509.ParseCertificateRequest(csrDER)
	names := x509.Certificate{DNSNames: []string{"shared.example.com"}}
	mine, theirs, released := steps.IssuedBy(t, &key.PublicKey, names), steps.IssuedBy(t, &other.PublicKey, names), steps.IssuedBy(t, &key.PublicKey, names)

	// released is in another request's record (one CSR, two requests).
	holder := newRequest()
	if _, _, err := st.IssueOnce(ctx, holder, func(context.Context) (*store.Certificate, error) {
		c := &store.Certificate{Chain: released.Chain, SerialNumber: pki.SerialHex(released.Leaf), Thumbprint: pki.Thumbprint(released.Leaf.Raw),
			NotBefore: released.Leaf.NotBefore, NotAfter: released.Leaf.NotAfter}
		c.Describe(released.Leaf)
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}

	id := newRequest()
	_, claim, err := st.ClaimIssue(ctx, id, nil)
	if err != nil || claim == nil {
		t.Fatalf("ClaimIssue = %v, %v", claim, err)
	}
	run := &workflow.Run{RequestID: id, CSR: csr, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	is := steps.Issue{Store: st}
	rv := &recordingRevoker{}
	// Left alone for good (settled): another key's, a released one.
	if !is.RevokeUnreleased(ctx, run, rv, claim, theirs.Leaf.Raw) || !is.RevokeUnreleased(ctx, run, rv, claim, released.Leaf.Raw) || len(rv.revoked) != 0 {
		t.Fatalf("revoked %d certificates that were another key's or released (or did not settle them)", len(rv.revoked))
	}
	if !is.RevokeUnreleased(ctx, run, rv, claim, mine.Leaf.Raw) || len(rv.revoked) != 1 {
		t.Fatalf("the request's unreleased certificate: %d revocations, want 1", len(rv.revoked))
	}
	// Without the lock: not revoked, and worth trying again.
	claim.Release(ctx)
	if is.RevokeUnreleased(ctx, run, rv, claim, mine.Leaf.Raw) || is.RevokeUnreleased(ctx, run, rv, nil, mine.Leaf.Raw) || len(rv.revoked) != 1 {
		t.Fatal("revoked, or settled, without the request's issue lock")
	}
}

package enroll_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
)

// The enrollment operations are plain Go: a caller, a decoded body, a
// stored request or an *enroll.Error. This test drives them with no HTTP
// at all, against a real Redis and a running worker, as the CLI or another
// front door would.
func TestServiceEnrollsWithoutHTTP(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	a := cf.App
	svc := enroll.New(enroll.Options{Config: a.Config, Store: a.Store, Queue: a.Queue, KEK: a.KEK, Log: a.Log, Definitions: &a.Defs})
	alice := &enroll.Caller{Name: "alice", Roles: []string{config.RoleRequester}}
	ctx := context.Background()

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "plain.example.com"}, DNSNames: []string{"plain.example.com"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	body := func() *keyfactor.EnrollmentCSRRequest {
		return &keyfactor.EnrollmentCSRRequest{
			CSR:       string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
			Template:  config.DefaultTemplate,
			Timestamp: time.Now().UTC().Format(time.RFC3339),
		}
	}

	// A refusal is an *enroll.Error naming the field, and stores nothing.
	before := keysUnder(t, cf)
	bad := body()
	bad.Template = "NoSuchTemplate"
	_, _, err = svc.SubmitCSR(ctx, alice, bad, pki.FormatPEM, false, enroll.Submit{})
	var refusal *enroll.Error
	if !errors.As(err, &refusal) || refusal.Kind != enroll.Invalid || refusal.Field != "Template" || !strings.HasPrefix(refusal.Message, "Template: ") {
		t.Fatalf("an unknown template: %#v, want an Invalid *enroll.Error naming Template", err)
	}
	if after := keysUnder(t, cf); !slices.Equal(before, after) {
		t.Errorf("a refused submit wrote to Redis: keys %v, then %v", before, after)
	}

	// An accepted one is stored, queued, run by the worker and issued.
	var allocated int64
	req, existing, err := svc.SubmitCSR(ctx, alice, body(), pki.FormatPEM, false, enroll.Submit{Allocated: func(id int64) { allocated = id }})
	if err != nil || existing || req.ID == 0 || req.ID != allocated || req.Requester.Name != "alice" {
		t.Fatalf("SubmitCSR: %+v, existing %v, allocated %d, %v", req, existing, allocated, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for req.Disposition != store.Issued {
		if time.Now().After(deadline) {
			t.Fatalf("request %d is %s, want ISSUED", req.ID, req.Disposition)
		}
		time.Sleep(20 * time.Millisecond)
		if req, err = a.Store.Get(ctx, req.ID); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := svc.CertificateOf(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Chain[0])
	if err != nil || !slices.Equal(leaf.DNSNames, []string{"plain.example.com"}) || !leaf.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Fatalf("issued certificate: %v, %v", leaf, err)
	}
}

// keysUnder lists this certflow's Redis keys a submit writes (the
// worker's own loops, CRLs and the sweep, write others meanwhile), sorted.
func keysUnder(t *testing.T, cf *testutil.Certflow) []string {
	t.Helper()
	var keys []string
	for _, k := range testutil.Keys(t, cf.Redis, cf.Prefix) {
		for _, kind := range []string{":request:", ":seq:request", ":idempotency:", ":open", ":pending", ":certificates", ":csr-key:"} {
			if strings.Contains(k, kind) {
				keys = append(keys, k)
				break
			}
		}
	}
	slices.Sort(keys)
	return keys
}

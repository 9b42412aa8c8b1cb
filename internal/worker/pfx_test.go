package worker_test

import (
	"context"
	"crypto/x509"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/internal/worker"
	"github.com/certflow/certflow/workflow"
)

// TestTwoWorkersRunningAPFXRequestAgreeOnOneKey: the same PFX request
// run by two workers at once (a lease lost during a Redis stall) gets one
// key: the worker whose CSR lost the compare-and-set uses the winner's,
// and the one certificate is for the key the request keeps.
func TestTwoWorkersRunningAPFXRequestAgreeOnOneKey(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	ctx := context.Background()
	s := cf.App.Store
	id, err := s.NewID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	r := &store.Request{
		ID: id, Disposition: store.Queued, Submitted: now, Updated: now, Trigger: "enrollment",
		Requester: workflow.Requester{Name: "alice", Roles: []string{config.RoleRequester}},
		Subject:   "CN=race.example.com", CommonName: "race.example.com",
		Input: workflow.Request{
			Template: config.DefaultTemplate, Format: "PFX", HasPrivateKey: true,
			SANs: map[string][]string{"dns": {"race.example.com"}},
			PFX:  &workflow.PFXSpec{Subject: "CN=race.example.com", Key: workflow.KeySpec{Type: "ECC", Bits: 256, Curve: "P-256"}},
		},
		Instance: workflow.Instance{ID: s.InstanceID(id)},
	}
	if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		w := newWorker(cf)
		w.KEK = cf.App.KEK
		wg.Add(1)
		go func(w *worker.Worker) {
			defer wg.Done()
			errs[i] = w.Run(ctx, id, 0)
		}(w)
	}
	wg.Wait()
	// A worker may lose a checkpoint race and return an error for asynq
	// to retry: run once more, as the retry would.
	if errs[0] != nil || errs[1] != nil {
		w := newWorker(cf)
		w.KEK = cf.App.KEK
		if err := w.Run(ctx, id, 0); err != nil {
			t.Fatalf("runs: %v; retry: %v", errs, err)
		}
	}
	got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := got.Certificate()
	if err != nil || got.Disposition != store.Issued || cert == nil {
		t.Fatalf("disposition %s (%s), certificate %v", got.Disposition, got.Message, err)
	}
	der, err := cf.App.KEK.Open(got.PrivateKey, pki.RequestKeyAAD(id))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := x509.ParsePKCS8PrivateKey(der)
	leaf, _ := x509.ParseCertificate(cert.Chain[0])
	csr, _ := x509.ParseCertificateRequest(got.CSR)
	if !pki.SamePublicKey(pki.PublicKeyOf(key), leaf.PublicKey) || !pki.SamePublicKey(csr.PublicKey, leaf.PublicKey) {
		t.Fatal("the certificate is not for the key and CSR the request keeps")
	}
	if n := strings.Count(cf.Logs.String(), `msg="certificate issued"`); n != 1 {
		t.Fatalf("%d certificates signed, want 1", n)
	}
}

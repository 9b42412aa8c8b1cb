package app_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
)

// BenchmarkApproval measures what an approval costs a request: a batch of
// b.N requests submitted asynchronously, approved in one call to
// Keyfactor's queue, until all are ISSUED — beside the same batch with the
// approval step's condition false, in the same run against the same Redis.
// Compare the two sub-benchmarks' ns/op.
//
//	go test -run '^$' -bench Approval -benchtime 300x ./internal/app/
func BenchmarkApproval(b *testing.B) {
	def := "name: gated\ntrigger: enrollment\nsteps:\n" +
		"  - {id: approval, uses: approval, if: 'csr.CommonName startsWith \"gated\"'}\n" +
		"  - {id: issue, uses: issue}\n"
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gated.yaml"), []byte(def), 0o644); err != nil {
		b.Fatal(err)
	}
	cf := testutil.StartCertflow(b, func(c *config.Config) { c.Definitions = dir; c.Worker.Concurrency = 32; c.API.RateLimit = 0 })
	for _, tc := range []struct{ name, cn string }{{"ungated", "plain"}, {"approved", "gated"}} {
		b.Run(tc.name, func(b *testing.B) {
			csrs := make([][]byte, b.N)
			for i := range csrs {
				csrs[i], _ = testutil.CSR(b, tc.cn+strconv.Itoa(i)+".example.com")
			}
			b.ResetTimer()
			ids := make([]int64, b.N)
			var wg sync.WaitGroup
			sem := make(chan struct{}, 16)
			for i := range csrs {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; wg.Done() }()
					r := cf.Do(b, "POST", "/Enrollment/CSR", testutil.EnrollBody(csrs[i], nil), "x-certificateformat", "PEM", "Prefer", "respond-async",
						"Authorization", "Bearer "+testutil.AliceToken)
					if r.Status != http.StatusAccepted {
						b.Errorf("submit: %d %s", r.Status, r.Body)
						return
					}
					var a enrollResponse
					r.JSON(b, &a)
					ids[i] = a.CertificateInformation.KeyfactorRequestId
				}()
			}
			wg.Wait()
			if b.Failed() {
				b.FailNow()
			}
			if tc.name == "approved" {
				waitAll(b, cf, ids, store.Pending)
				if r := cf.Do(b, "POST", "/Workflow/Certificates/Approve", ids, "Authorization", "Bearer "+testutil.BobToken); r.Status != http.StatusOK {
					b.Fatalf("approve: %d %s", r.Status, r.Body)
				}
			}
			waitAll(b, cf, ids, store.Issued)
		})
	}
}

// waitAll polls until every request has the disposition.
func waitAll(b *testing.B, cf *testutil.Certflow, ids []int64, want store.Disposition) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		rs, err := cf.App.Store.GetMany(context.Background(), ids)
		if err != nil {
			b.Fatal(err)
		}
		done := 0
		for _, r := range rs {
			if r.Disposition == want {
				done++
			}
		}
		if done == len(ids) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d requests reached %s", done, len(ids), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

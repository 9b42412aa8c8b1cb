package app_test

import (
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/testutil"
)

// BenchmarkMetadataEditAll measures PUT /Certificates/Metadata/All at its
// bound: one call editing 500 issued certificates (each iteration sets a
// new value, so every record is written), beside the same call changing
// nothing (every record read, none written).
//
//	go test -run '^$' -bench MetadataEditAll -benchtime 20x ./internal/app/
func BenchmarkMetadataEditAll(b *testing.B) {
	cf := testutil.StartCertflow(b, func(c *config.Config) { c.Worker.Concurrency = 16; c.API.RateLimit = 0 })
	const n = 500
	ids := make([]int64, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			csr, _ := testutil.CSR(b, "bulk"+strconv.Itoa(i)+".example.com")
			r := cf.Do(b, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{"Team": "web"}}), "x-certificateformat", "PEM")
			var er enrollResponse
			if r.JSON(b, &er); r.Status != http.StatusOK || er.CertificateInformation.KeyfactorID == 0 {
				b.Errorf("enroll: %d %s", r.Status, r.Body)
				return
			}
			ids[i] = er.CertificateInformation.KeyfactorID
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	put := func(b *testing.B, team string) {
		r := cf.Do(b, "PUT", "/Certificates/Metadata/All", map[string]any{"CertificateIds": ids, "Metadata": map[string]any{"Team": team}})
		if r.Status != http.StatusNoContent {
			b.Fatalf("PUT: %d %s", r.Status, r.Body)
		}
	}
	b.Run("500 written", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			put(b, "team"+strconv.Itoa(i))
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/cert")
	})
	b.Run("500 unchanged", func(b *testing.B) {
		put(b, "same")
		for b.Loop() {
			put(b, "same")
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/cert")
	})
}

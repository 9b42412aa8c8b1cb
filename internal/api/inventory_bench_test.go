package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

// BenchmarkInventory loads an inventory of issued certificates into a
// redis-server of its own, through the store's write path (Create,
// IssueOnce, Save: the records and index entries production writes),
// then measures the inventory's queries through certflow's own API and
// enroll service, and Redis's memory per certificate. Its size is
// CERTFLOW_INVENTORY_N (default 20000); see docs/inventory.md.
//
//	CERTFLOW_INVENTORY_N=1000000 go test -run '^$' -bench Inventory -benchtime 1x ./internal/api
//
// Each sub-benchmark runs its query a fixed number of times whatever
// b.N is (-benchtime 1x is enough) and reports p50-ms and p99-ms; the
// searches the API refuses (400, api.max_scan reached) report the share
// refused as "refused-%", an outcome, not a failure.
func BenchmarkInventory(b *testing.B) {
	n := 20000
	if v := os.Getenv("CERTFLOW_INVENTORY_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 {
			b.Fatalf("CERTFLOW_INVENTORY_N=%q: want an integer of at least 1000", v)
		}
	}
	srv := testutil.StartRedisServer(b)
	cf := testutil.StartCertflow(b, func(c *config.Config) {
		c.RedisURL = srv.URL()
		c.API.RateLimit = 0 // the benchmark is one caller asking fast
	})
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(srv.Port), PoolSize: 128})
	b.Cleanup(func() { rdb.Close() })
	st := store.New(rdb, cf.Prefix)

	before := usedMemory(b, rdb)
	start := time.Now()
	inv := loadInventory(b, ctx, st, n)
	loaded := time.Since(start)
	after := usedMemory(b, rdb)
	if _, got, err := st.CertificatePage(ctx, 0, 0); err != nil || got != int64(n) {
		b.Fatalf("inventory holds %d certificates (%v), want %d", got, err, n)
	}

	b.Run("load", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(loaded.Seconds(), "load-s")
		b.ReportMetric(float64(n)/loaded.Seconds(), "certs/s")
	})
	b.Run("memory", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(float64(after-before)/float64(n), "bytes/cert")
		b.ReportMetric(float64(after-before)/(1<<20), "MiB-total")
		p := cf.Prefix
		sample := func(key string) float64 {
			v, err := rdb.MemoryUsage(ctx, key, 0).Result()
			if err != nil {
				b.Fatalf("MEMORY USAGE %s: %v", key, err)
			}
			return float64(v)
		}
		var hash, tp float64
		fields := map[string]float64{}
		const samples = 200
		for i := range samples {
			c := inv.certs[i*len(inv.certs)/samples]
			key := p + ":request:{" + strconv.FormatInt(c.id, 10) + "}"
			hash += sample(key)
			tp += sample(p + ":thumbprint:" + c.thumbprint)
			for _, f := range []string{"d", "c", "x"} {
				fields[f] += float64(rdb.HStrLen(ctx, key, f).Val())
			}
		}
		b.ReportMetric(hash/samples, "request-hash-bytes")
		// Of which the record (d), the CSR (c), the certificate (x).
		for f, v := range fields {
			b.ReportMetric(v/samples, "field-"+f+"-bytes")
		}
		b.ReportMetric(tp/samples, "thumbprint-key-bytes")
		b.ReportMetric(sample(p+":certificates")/float64(n), "certificates-zset-bytes/cert")
		b.ReportMetric(sample(p+":certificates:expiry")/float64(n), "expiry-zset-bytes/cert")
	})

	api := &apiClient{b: b, base: cf.URL, http: &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
	pick := func(r *mrand.Rand) invCert { return inv.certs[r.IntN(len(inv.certs))] }

	b.Run("get-by-id", func(b *testing.B) {
		measure(b, 500, func(r *mrand.Rand) bool {
			c := pick(r)
			api.get(b, "/Certificates/"+strconv.FormatInt(c.id, 10), 1)
			return true
		})
	})
	b.Run("get-by-thumbprint", func(b *testing.B) {
		measure(b, 500, func(r *mrand.Rand) bool {
			c := pick(r)
			api.get(b, "/Certificates?pq.queryString="+url.QueryEscape(`Thumbprint -eq "`+c.thumbprint+`"`), 1)
			return true
		})
	})
	svc := enroll.New(enroll.Options{Config: cf.Config, Store: st})
	everyone := func(*store.Request) bool { return true }
	b.Run("by-serial-and-issuer", func(b *testing.B) {
		measure(b, 20, func(r *mrand.Rand) bool {
			c := pick(r)
			_, got, err := svc.CertificateBySerial(ctx, c.serial, inv.issuer, everyone)
			if e := (*enroll.Error)(nil); errors.As(err, &e) && e.Code == keyfactor.CodeTooBroad {
				return false
			}
			if err != nil || got.ID != c.id {
				b.Fatalf("serial %s: %v", c.serial, err)
			}
			return true
		})
	})
	deep := int64(n - 50)
	b.Run("deep-page-store", func(b *testing.B) {
		measure(b, 200, func(r *mrand.Rand) bool {
			off := deep - r.Int64N(int64(n)/10)
			ids, _, err := st.CertificatePage(ctx, off, 50)
			if err == nil {
				var rs []*store.Request
				rs, err = st.GetMany(ctx, ids)
				if err == nil && len(rs) != 50 {
					err = fmt.Errorf("%d records", len(rs))
				}
			}
			if err != nil {
				b.Fatal(err)
			}
			return true
		})
	})
	b.Run("deep-page-api", func(b *testing.B) {
		measure(b, 200, func(r *mrand.Rand) bool {
			page := n/50 - r.IntN(n/500+1)
			api.get(b, fmt.Sprintf("/Certificates?pq.returnLimit=50&pq.pageReturned=%d", page), 50)
			return true
		})
	})
	// The CN searches walk the inventory oldest first: a CN of the newest
	// certificates is the worst case, one among the oldest the best.
	cnSearch := func(name, op string, arg func(c invCert) string) {
		b.Run(name, func(b *testing.B) {
			measure(b, 20, func(r *mrand.Rand) bool {
				c := inv.certs[len(inv.certs)-1-r.IntN(len(inv.certs)/10)]
				q := `IssuedCN -` + op + ` "` + arg(c) + `"`
				return api.get(b, "/Certificates?pq.returnLimit=50&pq.queryString="+url.QueryEscape(q), -1)
			})
		})
	}
	cnSearch("cn-eq", "eq", func(c invCert) string { return c.cn })
	cnSearch("cn-startswith", "startswith", func(c invCert) string { return c.cn[:strings.IndexByte(c.cn, '.')] })
	cnSearch("cn-contains", "contains", func(c invCert) string { return c.cn[3:strings.IndexByte(c.cn, '.')] })

	b.Run("full-walk", func(b *testing.B) {
		for b.Loop() {
			seen := make([]bool, inv.maxID+1)
			count := 0
			start := time.Now()
			for page := 1; ; page++ {
				var recs []struct{ Id int64 }
				api.getJSON(b, fmt.Sprintf("/Certificates?pq.returnLimit=500&pq.pageReturned=%d", page), &recs)
				for _, rec := range recs {
					if rec.Id < 1 || rec.Id > inv.maxID || seen[rec.Id] {
						b.Fatalf("certificate %d visited twice or unknown", rec.Id)
					}
					seen[rec.Id] = true
					count++
				}
				if len(recs) < 500 {
					break
				}
			}
			if count != n {
				b.Fatalf("walk visited %d certificates, want %d", count, n)
			}
			b.ReportMetric(time.Since(start).Seconds(), "walk-s")
		}
	})
}

// invCert is what the queries need of a loaded certificate.
type invCert struct {
	id         int64
	thumbprint string
	serial     string
	cn         string
}

type inventory struct {
	certs  []invCert
	maxID  int64
	issuer string
}

// leafPool signs size real leaves under a throwaway ECDSA CA: the
// loader reuses their DER, each stored certificate taking its own
// serial number and thumbprint (the store indexes those fields, not
// the DER).
func leafPool(b *testing.B, size int) (leaves []*x509.Certificate, csrs [][]byte, ca *x509.Certificate) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Inventory Bench CA", Organization: []string{"certflow"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		b.Fatal(err)
	}
	if ca, err = x509.ParseCertificate(der); err != nil {
		b.Fatal(err)
	}
	leaves, csrs = make([]*x509.Certificate, size), make([][]byte, size)
	var wg sync.WaitGroup
	errs := make(chan error, size)
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < size; i += 4 {
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					errs <- err
					return
				}
				cn := fmt.Sprintf("svc%04d.%s.example.com", i, []string{"prod", "test", "dev", "corp"}[i%4])
				tmpl := &x509.Certificate{
					SerialNumber: big.NewInt(int64(i) + 2),
					Subject:      pkix.Name{CommonName: cn, Organization: []string{"Example"}, OrganizationalUnit: []string{"team" + strconv.Itoa(i%17)}},
					DNSNames:     []string{cn, "alt" + strconv.Itoa(i%7) + "." + cn},
					NotBefore:    now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, i%365),
					KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
					CRLDistributionPoints: []string{"http://crl.example.com/bench.crl"},
				}
				der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
				if err == nil {
					csrs[i], err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: tmpl.Subject, DNSNames: tmpl.DNSNames}, key)
				}
				if err == nil {
					leaves[i], err = x509.ParseCertificate(der)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	return leaves, csrs, ca
}

// loadInventory stores n settled, ISSUED requests with their
// certificates the way a worker does: Create (the create script), the
// issue step's IssueOnce (certificate and index entries), and the final
// Save (settled). Many goroutines keep Redis busy: each record is a few
// round trips.
func loadInventory(b *testing.B, ctx context.Context, st *store.Store, n int) *inventory {
	leaves, csrs, ca := leafPool(b, 1000)
	inv := &inventory{certs: make([]invCert, n), issuer: ca.Subject.String()}
	templates := []string{"WebServer", "ClientAuth", "CodeSigning", "Device"}
	requesters := []string{"alice", "carol", "svc-deploy", "svc-mdm", "bob"}
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	workers := 64
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil {
					return
				}
				c, err := storeOne(ctx, st, i, leaves[i%len(leaves)], csrs[i%len(csrs)], ca, templates[i%len(templates)], requesters[i%len(requesters)])
				if err != nil {
					failed.Store(&err)
					return
				}
				inv.certs[i] = c
			}
		})
	}
	wg.Wait()
	if e := failed.Load(); e != nil {
		b.Fatalf("load: %v", *e)
	}
	for _, c := range inv.certs {
		inv.maxID = max(inv.maxID, c.id)
	}
	// The queries pick by position; ids ascend with it only roughly
	// (the goroutines store out of order).
	slices.SortFunc(inv.certs, func(a, b invCert) int { return int(a.id - b.id) })
	return inv
}

func storeOne(ctx context.Context, st *store.Store, i int, leaf *x509.Certificate, csr []byte, ca *x509.Certificate, template, requester string) (invCert, error) {
	id, err := st.NewID(ctx)
	if err != nil {
		return invCert{}, err
	}
	now := time.Now().UTC()
	cn := leaf.Subject.CommonName
	r := &store.Request{
		ID: id, Disposition: store.Queued, Submitted: now, Updated: now, Trigger: "enroll",
		Input: workflow.Request{
			Template: template, CertificateAuthority: `ca.example.com\Bench`, IncludeChain: true, Format: "PEM",
			Metadata: map[string]string{"Owner": "team" + strconv.Itoa(i%17), "CostCenter": strconv.Itoa(1000 + i%50)},
			SANs:     map[string][]string{"dns": leaf.DNSNames}, Timestamp: now,
		},
		Requester: workflow.Requester{Name: requester, Roles: []string{config.RoleRequester}},
		Subject:   leaf.Subject.String(), CommonName: cn,
		CSR: csr,
	}
	if _, _, err := st.Create(ctx, r, time.Hour); err != nil {
		return invCert{}, err
	}
	var serial [16]byte
	binary.BigEndian.PutUint64(serial[:8], uint64(0x4000000000000000)|uint64(i))
	rand.Read(serial[8:])
	sum := sha1.Sum(append(slices.Clip(leaf.Raw), serial[:]...))
	c := &store.Certificate{
		Chain: [][]byte{leaf.Raw, ca.Raw}, SerialNumber: strings.ToUpper(hex.EncodeToString(serial[:])),
		Thumbprint: strings.ToUpper(hex.EncodeToString(sum[:])), IssuerDN: ca.Subject.String(), SubjectDN: leaf.Subject.String(),
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter.Add(time.Duration(i%86400) * time.Second),
		Authority: `ca.example.com\Bench`, Template: template, Requester: requester, Issued: now,
	}
	c.Describe(leaf)
	stored, _, err := st.IssueOnce(ctx, id, func(context.Context) (*store.Certificate, error) { return c, nil })
	if err != nil {
		return invCert{}, err
	}
	r.Disposition, r.Message = store.Issued, "Issued"
	r.Instance = workflow.Instance{
		ID: st.InstanceID(id), Definition: "enroll-" + strings.ToLower(template), Version: "1", Status: workflow.StatusComplete, Next: 3,
		History: []workflow.StepRecord{
			{ID: "check", Uses: "policy/check", Outcome: workflow.OutcomeDone, Started: now, Finished: now},
			{ID: "issue", Uses: "ca/issue", Outcome: workflow.OutcomeDone, Started: now, Finished: now},
			{ID: "notify", Uses: "notify/log", Outcome: workflow.OutcomeDone, Started: now, Finished: now},
		},
		Certificate: stored.Ref(), Started: now,
	}
	if err := st.Save(ctx, r); err != nil {
		return invCert{}, err
	}
	return invCert{id: id, thumbprint: stored.Thumbprint, serial: stored.SerialNumber, cn: cn}, nil
}

// measure runs query runs times (whatever b.N) and reports the p50 and
// p99 of its latency, and the share of runs it reported refused.
func measure(b *testing.B, runs int, query func(r *mrand.Rand) (answered bool)) {
	r := mrand.New(mrand.NewPCG(1, 2))
	for b.Loop() {
		lat := make([]time.Duration, runs)
		refused := 0
		for i := range lat {
			start := time.Now()
			if !query(r) {
				refused++
			}
			lat[i] = time.Since(start)
		}
		slices.Sort(lat)
		ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
		b.ReportMetric(ms(0.5), "p50-ms")
		b.ReportMetric(ms(0.99), "p99-ms")
		b.ReportMetric(100*float64(refused)/float64(runs), "refused-%")
	}
}

type apiClient struct {
	b    *testing.B
	base string
	http *http.Client
}

// get asks path as the administrator and checks the answer holds want
// records (-1: any number; a list answers a JSON array). A 400 with
// the TooBroad code is a refusal: get reports false.
func (a *apiClient) get(b *testing.B, path string, want int) bool {
	status, body := a.do(b, path)
	if status == http.StatusBadRequest && strings.Contains(string(body), keyfactor.CodeTooBroad) {
		return false
	}
	if status != http.StatusOK {
		b.Fatalf("GET %s: %d %s", path, status, body)
	}
	if want < 0 || !strings.HasPrefix(path, "/Certificates?") {
		return true
	}
	var recs []json.RawMessage
	if err := json.Unmarshal(body, &recs); err != nil || len(recs) != want {
		b.Fatalf("GET %s: %d records (%v), want %d", path, len(recs), err, want)
	}
	return true
}

func (a *apiClient) getJSON(b *testing.B, path string, v any) {
	status, body := a.do(b, path)
	if status != http.StatusOK {
		b.Fatalf("GET %s: %d %s", path, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		b.Fatalf("GET %s: %v", path, err)
	}
}

func (a *apiClient) do(b *testing.B, path string) (int, []byte) {
	req, err := http.NewRequest(http.MethodGet, a.base+path, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testutil.AdminToken)
	resp, err := a.http.Do(req)
	if err != nil {
		b.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	return resp.StatusCode, body
}

// usedMemory is INFO memory's used_memory.
func usedMemory(b *testing.B, rdb *redis.Client) int64 {
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("INFO memory has no used_memory")
	return 0
}

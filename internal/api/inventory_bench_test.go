package api_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

// BenchmarkInventory loads an inventory of issued certificates into a
// redis-server of its own, through the store's production write path
// (NewID, Create, ClaimIssue, Save with the certificate as the
// checkpoint's unsaved effect; RevokeCertificate for 5 % of them), builds
// the inventory's indexes as an upgrade would (BuildInventory), then
// measures every kind of certificate query through certflow's own HTTP
// API, Redis's memory per certificate and per index, a full paging walk
// and the consistency check. Its size is CERTFLOW_INVENTORY_N (default
// 20000); see docs/inventory.md.
//
//	CERTFLOW_INVENTORY_N=1000000 go test -run '^$' -bench Inventory -benchtime 1x -timeout 60m ./internal/api
//
// Each query sub-benchmark runs its query a fixed number of times
// whatever b.N is (-benchtime 1x is enough) and reports p50-ms and
// p99-ms, refused-% (the API refused it as too broad: 400 0xA0010007, an
// outcome, not a failure) and counted-% (answers carrying X-Total-Count).
// Every answer is checked against what the loader stored: a wrong record,
// page or count fails the benchmark (after the run, so that one wrong
// answer does not lose an hour's load).
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
		c.Auth.Users = append(c.Auth.Users, config.User{Name: invHeavyRequester, Token: invHeavyToken, Roles: []string{config.RoleRequester}})
	})
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(srv.Port), PoolSize: 128})
	b.Cleanup(func() { rdb.Close() })
	st := store.New(rdb, cf.Prefix)
	ck := &checker{b: b}

	inv := planInventory(n)
	start := time.Now()
	inv.sign(b)
	signed := time.Since(start)

	before := usedMemory(b, rdb)
	start = time.Now()
	inv.load(b, ctx, st)
	loaded := time.Since(start)
	start = time.Now()
	inv.revoke(b, ctx, st)
	revoked := time.Since(start)
	after := usedMemory(b, rdb)
	inv.index()
	if _, got, err := st.CertificatePage(ctx, 0, 0); err != nil || got != int64(n) {
		b.Fatalf("inventory holds %d certificates (%v), want %d", got, err, n)
	}

	// certflow marked the (then empty) store's indexes ready when it
	// started (app.Open builds them inline for a small store), and every
	// certificate above was indexed by its own writes. An upgrade from
	// before the indexes is a store without inv:version: BuildInventory
	// then re-writes every certificate's entries (idempotently here).
	if err := rdb.Del(ctx, cf.Prefix+":inv:version").Err(); err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	built, err := store.New(rdb, cf.Prefix).BuildInventory(ctx)
	buildTime := time.Since(start)
	noScript, noScriptErr := 0.0, ""
	if err != nil && strings.Contains(err.Error(), "NOSCRIPT") {
		// BuildInventory queues its script by EVALSHA in a pipeline,
		// where go-redis cannot fall back to EVAL: on a Redis that has
		// not run that script yet (any Redis after a restart) it fails.
		// Reported (docs/inventory.md); the build is measured once the
		// script is loaded.
		noScript, noScriptErr = 1, fmt.Sprintf("ENGINE BUG: BuildInventory failed after %v: %v; measured again after loading its script through CheckInventory's repair on a one-certificate store", buildTime, err)
		inv.primeRepairScript(b, ctx, rdb, cf.Prefix+"-prime")
		start = time.Now()
		built, err = store.New(rdb, cf.Prefix).BuildInventory(ctx)
		buildTime = time.Since(start)
	}
	if err != nil || built != n {
		b.Fatalf("BuildInventory indexed %d certificates (%v), want %d", built, err, n)
	}
	afterBuild := usedMemory(b, rdb)

	b.Run("load", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(signed.Seconds(), "sign-s")
		b.ReportMetric(loaded.Seconds(), "load-s")
		b.ReportMetric(float64(n)/loaded.Seconds(), "certs/s")
		b.ReportMetric(revoked.Seconds(), "revoke-s")
		b.ReportMetric(float64(inv.revokedCount), "revoked")
	})
	b.Run("build-inventory", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(buildTime.Seconds(), "build-s")
		b.ReportMetric(float64(n)/buildTime.Seconds(), "certs/s")
		b.ReportMetric(float64(afterBuild-after)/float64(n), "growth-bytes/cert")
		b.ReportMetric(noScript, "failed-noscript")
		if noScriptErr != "" {
			b.Log(noScriptErr)
		}
	})
	b.Run("memory", func(b *testing.B) {
		for b.Loop() {
		}
		reportMemory(b, ctx, rdb, cf.Prefix, inv, after-before)
	})

	api := &apiClient{b: b, base: cf.URL, http: &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
	// runs is how many times a query is asked: small the inventory, big.
	runs := func(small, big int) int {
		if n <= 100000 {
			return small
		}
		return big
	}
	invQueries(b, ctx, st, api, ck, inv, runs)

	b.Run("full-walk", func(b *testing.B) {
		for b.Loop() {
			seen := make([]bool, inv.maxID+1)
			count := 0
			start := time.Now()
			pages := 0
			for page := 1; ; page++ {
				a := api.list(testutil.AdminToken, fmt.Sprintf("/Certificates?pq.returnLimit=500&pq.pageReturned=%d", page))
				pages++
				if page == 1 {
					ck.total("full-walk", a, int64(n))
				}
				for _, rec := range a.recs {
					if rec.Id < 1 || rec.Id > inv.maxID || seen[rec.Id] {
						b.Fatalf("certificate %d visited twice or unknown", rec.Id)
					}
					seen[rec.Id] = true
					count++
				}
				if len(a.recs) < 500 {
					break
				}
			}
			if count != n {
				b.Fatalf("walk visited %d certificates, want %d", count, n)
			}
			took := time.Since(start)
			b.ReportMetric(took.Seconds(), "walk-s")
			b.ReportMetric(float64(took.Milliseconds())/float64(pages), "ms/page")
		}
	})
	b.Run("x-total-count", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(float64(ck.counted.Load()), "checked")
		b.ReportMetric(float64(ck.wrongCount.Load()), "wrong")
	})
	b.Run("check-inventory", func(b *testing.B) {
		for b.Loop() {
			cctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
			start := time.Now()
			rep, err := st.CheckInventory(cctx, false)
			took := time.Since(start)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				b.Logf("CheckInventory did not finish in %v", took)
				b.ReportMetric(took.Seconds(), "gave-up-after-s")
				continue
			}
			if err != nil {
				b.Fatal(err)
			}
			if rep.Certificates != n || len(rep.Missing)+len(rep.Stale) > 0 {
				b.Errorf("CheckInventory: %d certificates, %d missing (%q), %d stale (%q); want %d, none", rep.Certificates, len(rep.Missing), rep.Missing[:min(5, len(rep.Missing))], len(rep.Stale), rep.Stale[:min(5, len(rep.Stale))], n)
			}
			b.ReportMetric(took.Seconds(), "check-s")
		}
	})
	if w := ck.wrongCount.Load(); w > 0 {
		b.Errorf("%d wrong answers (see above)", w)
	}
}

// invQueries are the query sub-benchmarks.
func invQueries(b *testing.B, ctx context.Context, st *store.Store, api *apiClient, ck *checker, inv *inventory, runs func(small, big int) int) {
	n := len(inv.certs)
	pick := func(r *mrand.Rand) *invCert { return &inv.certs[r.IntN(n)] }
	admin := testutil.AdminToken
	qs := func(q string) string { return "&pq.queryString=" + url.QueryEscape(q) }
	// randomPage is a random page of 50 of an answer of total records.
	randomPage := func(r *mrand.Rand, total int) int { return 1 + r.IntN(max(1, (total+49)/50)) }
	// list asks a search, page page of 50, and checks the answer: its
	// count is total (-1: not checked), its ids are want (nil: not
	// checked), else each record satisfies ok and there are as many as
	// the page should hold.
	list := func(name, token, query string, page int, total int64, want []int64, ok func(*certRec) bool) probe {
		a := api.list(token, fmt.Sprintf("/Certificates?pq.returnLimit=50&pq.pageReturned=%d", page)+query)
		if a.refused {
			return a.probe
		}
		ck.total(name, a, total)
		switch {
		case want != nil:
			ck.ids(name, a, want)
		case total >= 0:
			ck.size(name, a, int(min(50, max(0, total-int64(page-1)*50))))
		}
		for i := range a.recs {
			if ok != nil && !ok(&a.recs[i]) {
				ck.wrong("%s: %s page %d: record %d does not match", name, query, page, a.recs[i].Id)
				break
			}
		}
		return a.probe
	}

	b.Run("get-by-id", func(b *testing.B) {
		measure(b, runs(500, 500), func(r *mrand.Rand) probe {
			c := pick(r)
			a := api.getOne(admin, "/Certificates/"+strconv.FormatInt(c.id, 10))
			if a.one.Id != c.id {
				ck.wrong("get-by-id %d: answered %d", c.id, a.one.Id)
			}
			return a.probe
		})
	})
	b.Run("thumbprint", func(b *testing.B) {
		measure(b, runs(500, 500), func(r *mrand.Rand) probe {
			c := pick(r)
			return list("thumbprint", admin, qs(`Thumbprint -eq "`+c.thumbprint+`"`), 1, 1, []int64{c.id}, nil)
		})
	})
	b.Run("serial-and-issuer", func(b *testing.B) {
		measure(b, runs(500, 500), func(r *mrand.Rand) probe {
			c := pick(r)
			a := api.download(admin, keyfactor.CertificateDownloadRequest{SerialNumber: c.serial, IssuerDN: inv.issuers[c.ca]})
			if !a.refused && a.serial != c.serial {
				ck.wrong("download by serial %s: got serial %s", c.serial, a.serial)
			}
			return a.probe
		})
	})
	b.Run("cn-eq", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			c := pick(r)
			cn := hostCN(c.host)
			return list("cn-eq", admin, qs(`IssuedCN -eq "`+cn+`"`), 1, int64(inv.hostCount[c.host]), nil,
				func(rec *certRec) bool { return rec.IssuedCN == cn })
		})
	})
	b.Run("cn-startswith", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			c := pick(r)
			p := hostPrefix(c.host)
			total := inv.prefixCount(c.host)
			return list("cn-startswith", admin, qs(`IssuedCN -startswith "`+p+`"`), randomPage(r, total), int64(total), nil,
				func(rec *certRec) bool { return strings.HasPrefix(rec.IssuedCN, p) })
		})
	})
	b.Run("san-eq", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			c := pick(r)
			san := "www." + hostCN(c.host)
			return list("san-eq", admin, qs(`SAN -eq "`+san+`"`), 1, int64(inv.hostCount[c.host]), nil,
				func(rec *certRec) bool { return rec.hasSAN(func(v string) bool { return v == san }) })
		})
	})
	b.Run("san-startswith", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			c := pick(r)
			p := "www." + hostPrefix(c.host)
			total := inv.prefixCount(c.host)
			return list("san-startswith", admin, qs(`SAN -startswith "`+p+`"`), randomPage(r, total), int64(total), nil,
				func(rec *certRec) bool { return rec.hasSAN(func(v string) bool { return strings.HasPrefix(v, p) }) })
		})
	})
	b.Run("state-revoked", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			page := randomPage(r, len(inv.revokedIDs))
			return list("state-revoked", admin, qs(`CertState -eq 2`), page, int64(len(inv.revokedIDs)), pageOfIDs(inv.revokedIDs, page), nil)
		})
	})
	active := int64(n - len(inv.revokedIDs))
	b.Run("state-active-first", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			return list("state-active-first", admin, qs(`CertState -eq 1`), 1, active, nil, func(rec *certRec) bool { return rec.CertState == 1 })
		})
	})
	b.Run("state-active-random-page", func(b *testing.B) {
		measure(b, runs(100, 20), func(r *mrand.Rand) probe {
			return list("state-active-random-page", admin, qs(`CertState -eq 1`), randomPage(r, int(active)), active, nil, func(rec *certRec) bool { return rec.CertState == 1 })
		})
	})
	b.Run("template-eq", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			t := r.IntN(len(invTemplates))
			ids := inv.byTemplate[t]
			page := randomPage(r, len(ids))
			return list("template-eq", admin, qs(`TemplateName -eq "`+invTemplates[t].name+`"`), page, int64(len(ids)), pageOfIDs(ids, page), nil)
		})
	})
	b.Run("notafter-week", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			lo, hi := inv.window(r, 7*24*time.Hour)
			total := inv.expiringIn(lo, hi)
			return list("notafter-week", admin, qs(`NotAfter -ge "`+rfc3339(lo)+`" AND NotAfter -lt "`+rfc3339(hi)+`"`), randomPage(r, total), int64(total), nil,
				func(rec *certRec) bool { return rec.NotAfter.Unix() >= lo && rec.NotAfter.Unix() < hi })
		})
	})
	b.Run("metadata-owner", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			o := r.IntN(invOwners)
			ids := inv.byOwner[o]
			page := randomPage(r, len(ids))
			return list("metadata-owner", admin, qs(`Metadata.Owner -eq "`+ownerName(o)+`"`), page, int64(len(ids)), pageOfIDs(ids, page), nil)
		})
	})
	b.Run("metadata-costcenter", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			cc := r.IntN(invCostCenters)
			total := inv.ccCount[cc]
			name := costCenterName(cc)
			return list("metadata-costcenter", admin, qs(`Metadata.CostCenter -eq "`+name+`"`), randomPage(r, total), int64(total), nil,
				func(rec *certRec) bool { return rec.Metadata["CostCenter"] == name })
		})
	})
	b.Run("and-template-owner", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			t, o := r.IntN(len(invTemplates)), r.IntN(invOwners)
			total := inv.templateOwner[t][o]
			tn, on := invTemplates[t].name, ownerName(o)
			return list("and-template-owner", admin, qs(`TemplateName -eq "`+tn+`" AND Metadata.Owner -eq "`+on+`"`), randomPage(r, total), int64(total), nil,
				func(rec *certRec) bool { return rec.TemplateName == tn && rec.Metadata["Owner"] == on })
		})
	})
	b.Run("and-owner-notafter-month", func(b *testing.B) {
		measure(b, runs(200, 100), func(r *mrand.Rand) probe {
			o := r.IntN(invOwners)
			lo, hi := inv.window(r, 30*24*time.Hour)
			total := 0
			for i := range inv.certs {
				if c := &inv.certs[i]; int(c.owner) == o && c.notAfter >= lo && c.notAfter < hi {
					total++
				}
			}
			on := ownerName(o)
			return list("and-owner-notafter-month", admin, qs(`Metadata.Owner -eq "`+on+`" AND NotAfter -ge "`+rfc3339(lo)+`" AND NotAfter -lt "`+rfc3339(hi)+`"`), randomPage(r, total), int64(total), nil,
				func(rec *certRec) bool {
					return rec.Metadata["Owner"] == on && rec.NotAfter.Unix() >= lo && rec.NotAfter.Unix() < hi
				})
		})
	})
	b.Run("cn-contains", func(b *testing.B) {
		measure(b, runs(50, 20), func(r *mrand.Rand) probe {
			c := pick(r)
			sub := fmt.Sprintf("-%07d.", c.host)
			return list("cn-contains", admin, qs(`IssuedCN -contains "`+sub+`"`), 1, int64(inv.hostCount[c.host]), nil,
				func(rec *certRec) bool { return strings.Contains(rec.IssuedCN, sub) })
		})
	})
	b.Run("sort-notafter-deep", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			// A page in the middle half of the inventory by expiry.
			page := n/200 + 1 + r.IntN(max(1, n/100))
			return list("sort-notafter-deep", admin, "&pq.sortField=NotAfter&pq.sortAscending=0", page, int64(n), pageOfIDs(inv.byExpiry, page), nil)
		})
	})
	b.Run("requester-own-listing", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			ids := inv.heavyIDs
			page := randomPage(r, len(ids))
			return list("requester-own-listing", invHeavyToken, "", page, int64(len(ids)), pageOfIDs(ids, page), nil)
		})
	})
	b.Run("requester-own-template", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			t := r.IntN(len(invTemplates))
			var ids []int64
			for _, id := range inv.heavyIDs {
				if int(inv.byID(id).template) == t {
					ids = append(ids, id)
				}
			}
			page := randomPage(r, len(ids))
			return list("requester-own-template", invHeavyToken, qs(`TemplateName -eq "`+invTemplates[t].name+`"`), page, int64(len(ids)), pageOfIDs(ids, page), nil)
		})
	})
	b.Run("deep-page-store", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			off := int64(n-50) - r.Int64N(int64(n)/10)
			start := time.Now()
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
			return probe{took: time.Since(start)}
		})
	})
	b.Run("deep-page-api", func(b *testing.B) {
		measure(b, runs(200, 200), func(r *mrand.Rand) probe {
			page := n/50 - r.IntN(n/500+1)
			return list("deep-page-api", admin, "", page, int64(n), pageOfIDs(inv.ids, page), nil)
		})
	})
}

// Who and what the loader stores.
const (
	invOwners      = 50
	invCostCenters = 1000
	invRequesters  = 300
	// The requester who lists her own certificates: she holds
	// invHeavyCerts of them, whatever N.
	invHeavyRequester = "dave"
	invHeavyToken     = "dave-inventory-token"
	invHeavyCerts     = 3000
	invRevokedPercent = 5
)

var invTemplates = []struct {
	name     string
	weight   int
	validity time.Duration
	eku      x509.ExtKeyUsage
}{
	{"WebServer", 40, 90 * 24 * time.Hour, x509.ExtKeyUsageServerAuth},
	{"ClientAuth", 25, 365 * 24 * time.Hour, x509.ExtKeyUsageClientAuth},
	{"Device", 20, 730 * 24 * time.Hour, x509.ExtKeyUsageClientAuth},
	{"CodeSigning", 10, 365 * 24 * time.Hour, x509.ExtKeyUsageCodeSigning},
	{"EmailProtection", 5, 365 * 24 * time.Hour, x509.ExtKeyUsageEmailProtection},
}

var invCAs = []struct {
	authority, cn string
	weight        int
}{
	{`ca1.example.com\IssuingCA1`, "Example Issuing CA 1", 70},
	{`ca2.example.com\IssuingCA2`, "Example Issuing CA 2", 30},
}

var (
	hostKinds = []string{"web", "api", "db", "mail", "vpn", "app"}
	hostEnvs  = []string{"prod", "test", "dev", "corp"}
)

// hostCN is the CN of host h: "web-0012345.prod.example07.com". About two
// certificates carry each (renewals).
func hostCN(h int32) string {
	return fmt.Sprintf("%s-%07d.%s.example%02d.com", hostKinds[h%6], h, hostEnvs[(h/6)%4], (h/24)%20)
}

// hostSANs are host h's DNS names: its CN, www., and for half the hosts
// an internal name.
func hostSANs(h int32) []string {
	cn := hostCN(h)
	out := []string{cn, "www." + cn}
	if h%2 == 0 {
		out = append(out, fmt.Sprintf("%s-%07d.%s.internal", hostKinds[h%6], h, hostEnvs[(h/6)%4]))
	}
	return out
}

// hostPrefix is the CN prefix shared by the hosts of h's kind in h's
// thousand ("web-0012"): some 330 certificates.
func hostPrefix(h int32) string { return fmt.Sprintf("%s-%04d", hostKinds[h%6], h/1000) }

func ownerName(o int) string      { return fmt.Sprintf("team%02d", o) }
func costCenterName(c int) string { return strconv.Itoa(100000 + c) }
func requesterName(k uint16) string {
	if k == 0 {
		return invHeavyRequester
	}
	return fmt.Sprintf("user%03d", k)
}

// invCert is what the loader stored of one certificate, for the queries
// to ask and check.
type invCert struct {
	id                  int64
	host                int32
	notBefore, notAfter int64 // unix seconds
	template, ca, owner uint8
	costCenter          uint16
	requester           uint16 // 0: invHeavyRequester
	revoked             bool
	thumbprint, serial  string
}

type inventory struct {
	certs    []invCert
	ders     [][]byte // leaf DER by position, until loaded
	primeDER []byte   // the first, kept for primeRepairScript
	csrs     [][]byte // a pool of CSRs (the record's CSR)
	keys     []*ecdsa.PrivateKey
	caCerts  []*x509.Certificate
	caKeys   []*ecdsa.PrivateKey
	issuers  []string // IssuerDN by CA
	now      time.Time

	revokedCount int
	// Filled by index, after loading.
	maxID         int64
	ids           []int64 // all, ascending
	byTemplate    [][]int64
	byOwner       [][]int64
	ccCount       []int
	templateOwner [][]int
	hostCount     []int32
	revokedIDs    []int64
	heavyIDs      []int64
	byExpiry      []int64 // ids in the expiry index's order
	notAfters     []int64 // sorted
	pos           map[int64]int32
}

// pick returns an index into weights, chosen by weight.
func pickWeighted(r *mrand.Rand, weights []int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	x := r.IntN(total)
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// planInventory decides every certificate's attributes (deterministic
// for a given n): hosts, templates, CAs, requesters, metadata, dates.
func planInventory(n int) *inventory {
	inv := &inventory{certs: make([]invCert, n), now: time.Now().UTC().Truncate(time.Second)}
	r := mrand.New(mrand.NewPCG(17, uint64(n)))
	hosts := max(1, n/2)
	heavyEvery := max(1, n/invHeavyCerts)
	var tw, cw []int
	for _, t := range invTemplates {
		tw = append(tw, t.weight)
	}
	for _, c := range invCAs {
		cw = append(cw, c.weight)
	}
	span := int64(730 * 24 * 3600)
	for i := range inv.certs {
		c := &inv.certs[i]
		c.host = int32(r.IntN(hosts))
		c.template = uint8(pickWeighted(r, tw))
		c.ca = uint8(pickWeighted(r, cw))
		c.owner = uint8(r.IntN(invOwners))
		c.costCenter = uint16(r.IntN(invCostCenters))
		c.requester = uint16(1 + r.IntN(invRequesters))
		if i%heavyEvery == 0 && i/heavyEvery < invHeavyCerts {
			c.requester = 0
		}
		c.notBefore = inv.now.Unix() - r.Int64N(span)
		c.notAfter = c.notBefore + int64(invTemplates[c.template].validity/time.Second)
		c.revoked = r.IntN(100) < invRevokedPercent
	}
	return inv
}

// sign makes the CAs, a pool of 1 000 leaf keys with a CSR each, and
// one real leaf per certificate, signed by its CA, with its own subject,
// SANs, serial number and dates (so every indexed field is the leaf's, and
// the stored DER is of the size a real one is). The CSR a record keeps
// is the pool's (its key's): it is not indexed.
func (inv *inventory) sign(b *testing.B) {
	for _, ca := range invCAs {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: ca.cn, Organization: []string{"Example Corp"}, Country: []string{"US"}},
			NotBefore: inv.now.AddDate(-5, 0, 0), NotAfter: inv.now.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			b.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			b.Fatal(err)
		}
		inv.caCerts, inv.caKeys = append(inv.caCerts, cert), append(inv.caKeys, key)
		inv.issuers = append(inv.issuers, pki.NameString(cert.RawSubject, cert.Subject))
	}
	const pool = 1000
	inv.keys, inv.csrs = make([]*ecdsa.PrivateKey, pool), make([][]byte, pool)
	for i := range pool {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: hostCN(int32(i))}, DNSNames: hostSANs(int32(i))}, key)
		if err != nil {
			b.Fatal(err)
		}
		inv.keys[i], inv.csrs[i] = key, csr
	}
	inv.ders = make([][]byte, len(inv.certs))
	parallel(b, 4, len(inv.certs), func(i int) error {
		c := &inv.certs[i]
		serial := make([]byte, 16)
		rand.Read(serial)
		serial[0] = serial[0]&0x7f | 0x40
		cn := hostCN(c.host)
		t := invTemplates[c.template]
		tmpl := &x509.Certificate{
			SerialNumber: new(big.Int).SetBytes(serial),
			Subject:      pkix.Name{CommonName: cn, Organization: []string{"Example Corp"}, OrganizationalUnit: []string{ownerName(int(c.owner))}},
			DNSNames:     hostSANs(c.host),
			NotBefore:    time.Unix(c.notBefore, 0), NotAfter: time.Unix(c.notAfter, 0),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{t.eku},
			CRLDistributionPoints: []string{"http://crl.example.com/" + invCAs[c.ca].cn[len(invCAs[c.ca].cn)-1:] + ".crl"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, inv.caCerts[c.ca], &inv.keys[i%pool].PublicKey, inv.caKeys[c.ca])
		inv.ders[i] = der
		return err
	})
}

// parallel runs do(i) for i in [0, n) on workers goroutines, failing b at
// the first error.
func parallel(b *testing.B, workers, n int, do func(i int) error) {
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil {
					return
				}
				if err := do(i); err != nil {
					failed.Store(&err)
					return
				}
			}
		})
	}
	wg.Wait()
	if e := failed.Load(); e != nil {
		b.Fatalf("%v", *e)
	}
}

// load stores every certificate the way a worker does (storeOne), 64 at
// a time.
func (inv *inventory) load(b *testing.B, ctx context.Context, st *store.Store) {
	inv.primeDER = inv.ders[0]
	parallel(b, 64, len(inv.certs), func(i int) error { return inv.storeOne(ctx, st, i) })
	inv.ders = nil
}

// primeRepairScript has Redis run (and so cache) the script
// BuildInventory pipelines: it stores one certificate under prefix,
// drops its thumbprint key and has CheckInventory repair it (outside a
// pipeline, where go-redis falls back to EVAL), then deletes the prefix's
// keys.
func (inv *inventory) primeRepairScript(b *testing.B, ctx context.Context, rdb *redis.Client, prefix string) {
	side := &inventory{certs: slices.Clone(inv.certs[:1]), ders: [][]byte{inv.primeDER}, csrs: inv.csrs, caCerts: inv.caCerts}
	st := store.New(rdb, prefix)
	if err := side.storeOne(ctx, st, 0); err != nil {
		b.Fatal(err)
	}
	rdb.Del(ctx, prefix+":thumbprint:"+side.certs[0].thumbprint)
	if rep, err := st.CheckInventory(ctx, true); err != nil || len(rep.Missing) != 1 {
		b.Fatalf("priming the repair script: %+v, %v", rep, err)
	}
	iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
}

// storeOne stores certificate i through the production write path: NewID,
// Create (the create script), the issue step's ClaimIssue and
// IssueClaim.Signed, and the final checkpoint's Save, which stores the
// certificate (Instance.Unsaved), every index entry of it and of its
// metadata, and the settled ISSUED record in one script.
func (inv *inventory) storeOne(ctx context.Context, st *store.Store, i int) error {
	p := &inv.certs[i]
	leaf, err := x509.ParseCertificate(inv.ders[i])
	if err != nil {
		return err
	}
	id, err := st.NewID(ctx)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	template := invTemplates[p.template].name
	requester := requesterName(p.requester)
	authority := invCAs[p.ca].authority
	subject := pki.NameString(leaf.RawSubject, leaf.Subject)
	r := &store.Request{
		ID: id, Disposition: store.Queued, Submitted: now, Updated: now, Trigger: "enroll",
		Input: workflow.Request{
			Template: template, CertificateAuthority: authority, IncludeChain: true, Format: "PEM",
			Metadata: map[string]string{"Owner": ownerName(int(p.owner)), "CostCenter": costCenterName(int(p.costCenter))},
			SANs:     map[string][]string{"dns": leaf.DNSNames}, Timestamp: now,
		},
		Requester: workflow.Requester{Name: requester, Roles: []string{config.RoleRequester}},
		Subject:   subject, CommonName: leaf.Subject.CommonName,
		CSR: inv.csrs[i%len(inv.csrs)],
	}
	if _, _, err := st.Create(ctx, r, time.Hour); err != nil {
		return err
	}
	existing, claim, err := st.ClaimIssue(ctx, id, nil)
	if err != nil {
		return err
	}
	if existing != nil || claim == nil {
		return fmt.Errorf("request %d: has a certificate already", id)
	}
	c := &store.Certificate{
		Chain:        [][]byte{leaf.Raw, inv.caCerts[p.ca].Raw},
		SerialNumber: pki.SerialHex(leaf), Thumbprint: pki.Thumbprint(leaf.Raw),
		IssuerDN: pki.NameString(leaf.RawIssuer, leaf.Issuer), SubjectDN: subject,
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		Authority: authority, Template: template, Requester: requester, Issued: now,
	}
	c.Describe(leaf)
	claim.Signed(c, id)
	r.Disposition, r.Message = store.Issued, "Issued"
	r.Instance = workflow.Instance{
		ID: st.InstanceID(id), Definition: "enroll-" + strings.ToLower(template), Version: "1", Status: workflow.StatusComplete, Next: 3,
		History: []workflow.StepRecord{
			{ID: "check", Uses: "policy/check", Outcome: workflow.OutcomeDone, Started: now, Finished: now},
			{ID: "issue", Uses: "ca/issue", Outcome: workflow.OutcomeDone, Started: now, Finished: now},
			{ID: "notify", Uses: "notify/log", Outcome: workflow.OutcomeDone, Started: now, Finished: now},
		},
		Certificate: c.Ref(), Started: now,
		Unsaved: []any{c},
	}
	if err := st.Save(ctx, r); err != nil {
		return err
	}
	p.id, p.thumbprint, p.serial = id, c.Thumbprint, c.SerialNumber
	return nil
}

// revoke revokes the planned 5 % (reason 4, superseded), 64 at a time.
func (inv *inventory) revoke(b *testing.B, ctx context.Context, st *store.Store) {
	var todo []int64
	for _, c := range inv.certs {
		if c.revoked {
			todo = append(todo, c.id)
		}
	}
	inv.revokedCount = len(todo)
	now := time.Now().UTC()
	parallel(b, 64, len(todo), func(i int) error {
		_, changed, err := st.RevokeCertificate(ctx, todo[i], store.Revocation{Reason: 4, EffectiveDate: now, Date: now, By: "admin", Comment: "superseded"})
		if err == nil && !changed {
			err = fmt.Errorf("certificate %d: revoked already", todo[i])
		}
		return err
	})
}

// index fills what the queries check their answers against.
func (inv *inventory) index() {
	n := len(inv.certs)
	// Positions by id ascending: the inventory's own order.
	slices.SortFunc(inv.certs, func(a, b invCert) int { return int(a.id - b.id) })
	inv.pos = make(map[int64]int32, n)
	inv.ids = make([]int64, n)
	inv.byTemplate, inv.byOwner = make([][]int64, len(invTemplates)), make([][]int64, invOwners)
	inv.ccCount = make([]int, invCostCenters)
	inv.templateOwner = make([][]int, len(invTemplates))
	for t := range inv.templateOwner {
		inv.templateOwner[t] = make([]int, invOwners)
	}
	inv.hostCount = make([]int32, max(1, n/2))
	inv.notAfters = make([]int64, n)
	for i := range inv.certs {
		c := &inv.certs[i]
		inv.pos[c.id] = int32(i)
		inv.ids[i] = c.id
		inv.maxID = max(inv.maxID, c.id)
		inv.byTemplate[c.template] = append(inv.byTemplate[c.template], c.id)
		inv.byOwner[c.owner] = append(inv.byOwner[c.owner], c.id)
		inv.ccCount[c.costCenter]++
		inv.templateOwner[c.template][c.owner]++
		inv.hostCount[c.host]++
		inv.notAfters[i] = c.notAfter
		if c.revoked {
			inv.revokedIDs = append(inv.revokedIDs, c.id)
		}
		if c.requester == 0 {
			inv.heavyIDs = append(inv.heavyIDs, c.id)
		}
	}
	slices.Sort(inv.notAfters)
	// The expiry index's order: by NotAfter, ties by member (the id in
	// decimal), as Redis orders a sorted set.
	inv.byExpiry = slices.Clone(inv.ids)
	slices.SortFunc(inv.byExpiry, func(a, b int64) int {
		ea, eb := inv.byID(a).notAfter, inv.byID(b).notAfter
		if ea != eb {
			return int(ea - eb)
		}
		return strings.Compare(strconv.FormatInt(a, 10), strconv.FormatInt(b, 10))
	})
}

func (inv *inventory) byID(id int64) *invCert { return &inv.certs[inv.pos[id]] }

// prefixCount is how many certificates carry hostPrefix(h).
func (inv *inventory) prefixCount(h int32) int {
	total := 0
	for x := h / 1000 * 1000; x < h/1000*1000+1000 && int(x) < len(inv.hostCount); x++ {
		if x%6 == h%6 {
			total += int(inv.hostCount[x])
		}
	}
	return total
}

// window is a random [lo, hi) of NotAfter, width long, within the
// inventory's expiry dates.
func (inv *inventory) window(r *mrand.Rand, width time.Duration) (lo, hi int64) {
	w := int64(width / time.Second)
	first, last := inv.notAfters[0], inv.notAfters[len(inv.notAfters)-1]
	lo = first + r.Int64N(max(1, last-first-w))
	return lo, lo + w
}

// expiringIn counts the certificates with lo <= NotAfter < hi.
func (inv *inventory) expiringIn(lo, hi int64) int {
	a := sort.Search(len(inv.notAfters), func(i int) bool { return inv.notAfters[i] >= lo })
	z := sort.Search(len(inv.notAfters), func(i int) bool { return inv.notAfters[i] >= hi })
	return z - a
}

func pageOfIDs(ids []int64, page int) []int64 {
	lo := min((page-1)*50, len(ids))
	return ids[lo:min(lo+50, len(ids))]
}

func rfc3339(unix int64) string { return time.Unix(unix, 0).UTC().Format(time.RFC3339) }

// reportMemory reports Redis's memory per certificate: used_memory's
// growth, the request hash and its fields, and each index's share.
func reportMemory(b *testing.B, ctx context.Context, rdb *redis.Client, p string, inv *inventory, delta int64) {
	n := float64(len(inv.certs))
	usage := func(key string) float64 {
		v, err := rdb.MemoryUsage(ctx, key, 0).Result()
		if err != nil {
			b.Fatalf("MEMORY USAGE %s: %v", key, err)
		}
		return float64(v)
	}
	b.ReportMetric(float64(delta)/n, "bytes/cert")
	b.ReportMetric(float64(delta)/(1<<20), "MiB-total")
	var hash, tp float64
	fields := map[string]float64{}
	const samples = 1000
	for i := range samples {
		c := inv.certs[i*len(inv.certs)/samples]
		key := p + ":request:{" + strconv.FormatInt(c.id, 10) + "}"
		hash += usage(key)
		tp += usage(p + ":thumbprint:" + c.thumbprint)
		for _, f := range []string{"d", "c", "x"} {
			fields[f] += float64(rdb.HStrLen(ctx, key, f).Val())
		}
	}
	b.ReportMetric(hash/samples, "request-hash-bytes")
	// Of which the record (d), the CSR (c), the certificate (x).
	for f, v := range fields {
		b.ReportMetric(v/samples, "field-"+f+"-bytes")
	}
	indexes := tp / samples
	b.ReportMetric(tp/samples, "idx-thumbprint-bytes/cert")
	for _, k := range []struct{ name, key string }{
		{"certificates", ":certificates"}, {"expiry", ":certificates:expiry"}, {"notbefore", ":inv:notbefore"},
		{"name-cn", ":inv:name:cn"}, {"name-dn", ":inv:name:dn"}, {"name-san", ":inv:name:san"}, {"name-serial", ":inv:name:serial"},
		{"revoked", ":inv:revoked"},
	} {
		v := usage(p+k.key) / n
		indexes += v
		b.ReportMetric(v, "idx-"+k.name+"-bytes/cert")
	}
	for _, kind := range []string{"template", "ca", "requester", "md"} {
		var sum float64
		keys := 0
		iter := rdb.Scan(ctx, 0, p+":inv:"+kind+":*", 10000).Iterator()
		for iter.Next(ctx) {
			sum += usage(iter.Val())
			keys++
		}
		if err := iter.Err(); err != nil {
			b.Fatal(err)
		}
		indexes += sum / n
		b.ReportMetric(sum/n, "idx-"+kind+"-sets-bytes/cert")
		b.ReportMetric(float64(keys), "idx-"+kind+"-sets")
	}
	b.ReportMetric(indexes, "idx-all-bytes/cert")
}

// measure runs query runs times (whatever b.N) and reports the p50 and
// p99 of its latency, the share of runs refused and, of the others, the
// share that carried a count.
func measure(b *testing.B, runs int, query func(r *mrand.Rand) probe) {
	r := mrand.New(mrand.NewPCG(1, 2))
	for b.Loop() {
		lat := make([]time.Duration, runs)
		refused, counted, lists := 0, 0, 0
		for i := range lat {
			p := query(r)
			lat[i] = p.took
			switch {
			case p.refused:
				refused++
			case p.list:
				lists++
				if p.counted {
					counted++
				}
			}
		}
		slices.Sort(lat)
		ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
		b.ReportMetric(ms(0.5), "p50-ms")
		b.ReportMetric(ms(0.99), "p99-ms")
		b.ReportMetric(100*float64(refused)/float64(runs), "refused-%")
		if lists > 0 {
			b.ReportMetric(100*float64(counted)/float64(lists), "counted-%")
		}
	}
}

// probe is one query's outcome: how long its round trip took, and
// whether it was refused or answered with a count.
type probe struct {
	took                   time.Duration
	refused, list, counted bool
}

// certRec is what the checks read of a certificate record.
type certRec struct {
	Id                     int64
	IssuedCN               string
	TemplateName           string
	RequesterName          string
	NotAfter               time.Time
	CertState              int
	SerialNumber           string
	SubjectAltNameElements []struct{ Value string }
	Metadata               map[string]string
}

func (c *certRec) hasSAN(ok func(string) bool) bool {
	return slices.ContainsFunc(c.SubjectAltNameElements, func(s struct{ Value string }) bool { return ok(s.Value) })
}

// answer is an API answer.
type answer struct {
	probe
	total  int64 // X-Total-Count, -1 if absent
	recs   []certRec
	one    certRec
	serial string // a download's leaf serial number
	path   string
}

type apiClient struct {
	b    *testing.B
	base string
	http *http.Client
}

// list asks a GET /Certificates search as token's holder. A 400 with the
// TooBroad code is a refusal.
func (a *apiClient) list(token, path string) *answer {
	status, header, body, took := a.do(token, http.MethodGet, path, nil)
	ans := &answer{probe: probe{took: took, list: true}, total: -1, path: path}
	if status == http.StatusBadRequest && bytes.Contains(body, []byte(keyfactor.CodeTooBroad)) {
		ans.refused = true
		return ans
	}
	if status != http.StatusOK {
		a.b.Fatalf("GET %s: %d %s", path, status, body)
	}
	if v := header.Get("X-Total-Count"); v != "" {
		ans.counted = true
		ans.total, _ = strconv.ParseInt(v, 10, 64)
	}
	if err := json.Unmarshal(body, &ans.recs); err != nil {
		a.b.Fatalf("GET %s: %v", path, err)
	}
	return ans
}

// getOne asks GET path (one record) as token's holder.
func (a *apiClient) getOne(token, path string) *answer {
	status, _, body, took := a.do(token, http.MethodGet, path, nil)
	if status != http.StatusOK {
		a.b.Fatalf("GET %s: %d %s", path, status, body)
	}
	ans := &answer{probe: probe{took: took}, total: -1, path: path}
	if err := json.Unmarshal(body, &ans.one); err != nil {
		a.b.Fatalf("GET %s: %v", path, err)
	}
	return ans
}

// download asks POST /Certificates/Download (PEM, the leaf) as token's
// holder.
func (a *apiClient) download(token string, req keyfactor.CertificateDownloadRequest) *answer {
	data, _ := json.Marshal(req)
	status, _, body, took := a.do(token, http.MethodPost, "/Certificates/Download", data)
	ans := &answer{probe: probe{took: took}, total: -1}
	if status == http.StatusBadRequest && bytes.Contains(body, []byte(keyfactor.CodeTooBroad)) {
		ans.refused = true
		return ans
	}
	var resp keyfactor.CertificateDownloadResponse
	if status != http.StatusOK || json.Unmarshal(body, &resp) != nil {
		a.b.Fatalf("POST /Certificates/Download %s: %d %s", data, status, body)
	}
	content, err := base64.StdEncoding.DecodeString(resp.Content)
	if err != nil {
		a.b.Fatal(err)
	}
	if blk, _ := pem.Decode(content); blk != nil {
		if leaf, err := x509.ParseCertificate(blk.Bytes); err == nil {
			ans.serial = pki.SerialHex(leaf)
		}
	}
	return ans
}

// do sends a request and times its round trip, body read included.
func (a *apiClient) do(token, method, path string, body []byte) (int, http.Header, []byte, time.Duration) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := a.http.Do(req)
	if err != nil {
		a.b.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil {
		a.b.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data, took
}

// checker collects wrong answers without stopping the run.
type checker struct {
	b          *testing.B
	counted    atomic.Int64 // counts compared
	wrongCount atomic.Int64
}

func (c *checker) wrong(format string, args ...any) {
	if c.wrongCount.Add(1) <= 20 {
		c.b.Logf("WRONG: "+format, args...)
	}
}

// total compares an answer's count, when it has one, with want (-1: any).
func (c *checker) total(name string, a *answer, want int64) {
	if a.total < 0 || want < 0 {
		return
	}
	c.counted.Add(1)
	if a.total != want {
		c.wrong("%s: %s: X-Total-Count %d, want %d", name, a.path, a.total, want)
	}
}

// ids compares an answer's ids with want, in order.
func (c *checker) ids(name string, a *answer, want []int64) {
	got := make([]int64, len(a.recs))
	for i, r := range a.recs {
		got[i] = r.Id
	}
	if !slices.Equal(got, want) {
		c.wrong("%s: %s: ids %v… (%d), want %v… (%d)", name, a.path, got[:min(5, len(got))], len(got), want[:min(5, len(want))], len(want))
	}
}

// size checks an answer holds want records.
func (c *checker) size(name string, a *answer, want int) {
	if len(a.recs) != want {
		c.wrong("%s: %s: %d records, want %d", name, a.path, len(a.recs), want)
	}
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

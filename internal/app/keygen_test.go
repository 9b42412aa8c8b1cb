package app_test

import (
	"crypto"
	"net/http"
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
	"github.com/certflow/certflow/internal/testutil"
)

// countGenerations makes cf's key pools (the API's and the worker's)
// count the keys they generate.
func countGenerations(cf *testutil.Certflow) *atomic.Int64 {
	var n atomic.Int64
	for _, pool := range []*pki.KeyPool{cf.App.KeyPool, cf.App.WorkerKeyPool} {
		pool.SetGenerator(func(spec pki.KeySpec) (crypto.Signer, error) {
			n.Add(1)
			return spec.Generate()
		})
	}
	return &n
}

// TestPolicyKeyGenerationRefusesBeforeGenerating: a key that the policy
// does not allow — the template's, or without a template the default
// (RSA 2048/3072/4096, P-256/P-384, no Ed25519) — is refused with 400
// naming the field that chose it, before any key is generated (the
// pool's generator is never called) and with nothing stored, on every
// path that generates keys: CSR generation and PFX enrollment, with a
// template and without (a standalone CA).
func TestPolicyKeyGenerationRefusesBeforeGenerating(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.CAs = append(c.CAs, config.CA{Name: "Standalone", Host: "cahost", Type: "builtin", KeyType: "ecdsa-p256", Standalone: true, MaxValidity: time.Hour})
	})
	generated := countGenerations(cf)
	gen := func(change map[string]any) map[string]any {
		b := map[string]any{"Subject": "CN=gen.example.com", "KeyType": "RSA", "KeyLength": 2048}
		for k, v := range change {
			if v == nil {
				delete(b, k)
			} else {
				b[k] = v
			}
		}
		return b
	}
	standalone := func(change map[string]any) map[string]any {
		b := pfxBody(map[string]any{"Template": nil, "CertificateAuthority": `cahost\Standalone`})
		for k, v := range change {
			b[k] = v
		}
		return b
	}
	const genPath, pfxPath = "/CSRGeneration/Generate", "/Enrollment/PFX"
	const E = keyfactor.CodeInvalidField
	cases := []struct {
		name, path string
		body       map[string]any
		field      string
	}{
		{"RSA 8192 without a template", genPath, gen(map[string]any{"KeyLength": 8192}), "KeyLength: key generation without a template does not allow RSA 8192-bit keys (allowed: 2048, 3072, 4096)"},
		{"RSA 6144 without a template", genPath, gen(map[string]any{"KeyLength": 6144}), "KeyLength: key generation without a template does not allow RSA 6144-bit"},
		{"RSA 2056 (a multiple of 8 nobody uses)", genPath, gen(map[string]any{"KeyLength": 2056}), "KeyLength: key generation without a template does not allow RSA 2056-bit"},
		{"RSA 4097", genPath, gen(map[string]any{"KeyLength": 4097}), "KeyLength:"},
		{"RSA 1024", genPath, gen(map[string]any{"KeyLength": 1024}), "KeyLength:"},
		{"RSA of a negative length", genPath, gen(map[string]any{"KeyLength": -2048}), "KeyLength:"},
		{"RSA of 2^40 bits", genPath, gen(map[string]any{"KeyLength": int64(1) << 40}), "KeyLength:"},
		{"ECC P-521 without a template", genPath, gen(map[string]any{"KeyType": "ECC", "KeyLength": nil, "Curve": "P-521"}), "Curve: key generation without a template does not allow ECC curve P-521"},
		{"ECC P-521 by size without a template", genPath, gen(map[string]any{"KeyType": "ECC", "KeyLength": 521}), "Curve: key generation without a template does not allow ECC curve P-521"},
		{"ECC on an unknown curve", genPath, gen(map[string]any{"KeyType": "ECC", "KeyLength": nil, "Curve": "secp256k1"}), "Curve: unknown curve"},
		{"Ed25519 without a template", genPath, gen(map[string]any{"KeyType": "Ed25519", "KeyLength": nil}), "KeyType: key generation without a template does not allow Ed25519 keys"},
		{"an unknown key type", genPath, gen(map[string]any{"KeyType": "DSA"}), "KeyType:"},
		{"RSA 8192 where the template forbids it", genPath, gen(map[string]any{"Template": config.DefaultTemplate, "KeyLength": 8192}), "KeyLength: template WebServer does not allow RSA 8192"},
		{"Ed25519 where the template forbids it", genPath, gen(map[string]any{"Template": config.DefaultTemplate, "KeyType": "Ed25519", "KeyLength": nil}), "KeyType: template WebServer does not allow Ed25519"},
		{"PFX RSA 8192 from a standalone CA", pfxPath, standalone(map[string]any{"KeyType": "RSA", "KeyLength": 8192}), "KeyLength: key generation without a template does not allow RSA 8192-bit"},
		{"PFX Ed25519 from a standalone CA", pfxPath, standalone(map[string]any{"KeyType": "Ed25519"}), "KeyType: key generation without a template does not allow Ed25519"},
		{"PFX P-521 from a standalone CA", pfxPath, standalone(map[string]any{"KeyType": "ECC", "Curve": "P-521"}), "Curve: key generation without a template does not allow ECC curve P-521"},
		{"PFX RSA 8192 where the template forbids it", pfxPath, pfxBody(map[string]any{"KeyType": "RSA", "KeyLength": 8192}), "KeyLength: template WebServer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := cf.Do(t, "POST", tc.path, tc.body, "x-certificateformat", "PFX", "Authorization", bearer(testutil.AliceToken))
			assertError(t, r, http.StatusBadRequest, E, tc.field)
			var e keyfactor.Error
			r.JSON(t, &e)
			if field, _, _ := strings.Cut(tc.field, ":"); !strings.HasPrefix(e.Message, field+":") {
				t.Fatalf("the message does not start with the field: %s", r.Body)
			}
		})
	}
	if n := generated.Load(); n != 0 {
		t.Fatalf("%d keys were generated for refused requests", n)
	}
	for _, k := range testutil.Keys(t, cf.Redis, cf.Prefix) {
		if requestRecord.MatchString(k) || strings.Contains(k, ":csr") || strings.Contains(k, ":idempotency:") {
			t.Errorf("a refused generation left %s behind", k)
		}
	}
	// The seam counts: what the policy allows is generated, once each.
	for _, body := range []map[string]any{gen(nil), gen(map[string]any{"KeyType": "ECC", "KeyLength": nil, "Curve": "P-384"})} {
		if r, _ := generateCSR(t, cf, body, "Authorization", bearer(testutil.AliceToken)); r.Status != http.StatusOK {
			t.Fatalf("an allowed generation: %d %s", r.Status, r.Body)
		}
	}
	if r, pr := enrollPFX(t, cf, standalone(map[string]any{"KeyType": "ECC", "Curve": "P-256"}), "Authorization", bearer(testutil.AliceToken)); pr.CertificateInformation.Pkcs12Blob == "" {
		t.Fatalf("an allowed PFX from the standalone CA: %d %s", r.Status, r.Body)
	}
	if n := generated.Load(); n != 3 {
		t.Fatalf("%d keys generated for three allowed requests", n)
	}
}

// TestPolicyKeyGenerationPoolFullAnswers429: with every slot of the key
// pool busy, a generation is turned away with 429 and Retry-After before
// any work (the generator is not entered); once a slot frees, the next
// one is served. The requests that held the slots are answered in full.
func TestPolicyKeyGenerationPoolFullAnswers429(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.API.KeyGenerationConcurrency = 2 })
	var entered atomic.Int64
	inside := make(chan struct{})
	release := make(chan struct{})
	cf.App.KeyPool.SetGenerator(func(spec pki.KeySpec) (crypto.Signer, error) {
		entered.Add(1)
		inside <- struct{}{}
		<-release
		return spec.Generate()
	})
	body := map[string]any{"Subject": "CN=pool.example.com", "KeyType": "ECC", "Curve": "P-256"}
	alice := []string{"Authorization", bearer(testutil.AliceToken)}
	var wg sync.WaitGroup
	held := make([]*testutil.Response, 2)
	for i := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			held[i] = cf.Do(t, "POST", "/CSRGeneration/Generate", body, alice...)
		}()
		<-inside // the slot is taken and the work begun
	}
	r := cf.Do(t, "POST", "/CSRGeneration/Generate", body, alice...)
	assertError(t, r, http.StatusTooManyRequests, keyfactor.CodeRateLimited, "key generation: all 2 slots")
	if r.Header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q, want 1", r.Header.Get("Retry-After"))
	}
	if n := entered.Load(); n != 2 {
		t.Fatalf("the generator was entered %d times; the refused request must do no work", n)
	}
	close(release)
	wg.Wait()
	for i, r := range held {
		if r.Status != http.StatusOK {
			t.Errorf("request %d that held a slot: %d %s", i, r.Status, r.Body)
		}
	}
	go func() { <-inside }()
	if r := cf.Do(t, "POST", "/CSRGeneration/Generate", body, alice...); r.Status != http.StatusOK {
		t.Fatalf("after the slots freed: %d %s", r.Status, r.Body)
	}
}

// TestPolicyKeyGenerationQueuedPFXDoesNotStarveTheAPI: a backlog of PFX
// enrollments holding every slot of the worker's key pool leaves the
// API's generation free: another caller's CSR generation is served, not
// turned away with 429.
func TestPolicyKeyGenerationQueuedPFXDoesNotStarveTheAPI(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.API.KeyGenerationConcurrency = 2 })
	inside := make(chan struct{}, 8)
	release := make(chan struct{})
	cf.App.WorkerKeyPool.SetGenerator(func(spec pki.KeySpec) (crypto.Signer, error) {
		inside <- struct{}{}
		<-release
		return spec.Generate()
	})
	defer close(release)
	for range 4 {
		r := cf.Do(t, "POST", "/Enrollment/PFX", pfxBody(map[string]any{"KeyType": "ECC", "Curve": "P-256"}), "x-certificateformat", "PFX", "Prefer", "respond-async", "Authorization", bearer(testutil.AliceToken))
		if r.Status != http.StatusAccepted {
			t.Fatalf("PFX enrollment: %d %s", r.Status, r.Body)
		}
	}
	for range 2 { // both worker slots busy
		select {
		case <-inside:
		case <-time.After(10 * time.Second):
			t.Fatal("the worker's key pool never generated")
		}
	}
	body := map[string]any{"Subject": "CN=free.example.com", "KeyType": "ECC", "Curve": "P-256"}
	if r := cf.Do(t, "POST", "/CSRGeneration/Generate", body, "Authorization", bearer(testutil.AdminToken)); r.Status != http.StatusOK {
		t.Fatalf("CSR generation while the worker's pool is full: %d %s; want 200", r.Status, r.Body)
	}
}

// TestPolicyKeyGenerationOutlastingTheRedisDeadlineIsStored: a key that
// takes longer to generate than api.redis_timeout (here: the generator
// waits past it) is still stored and answered 200, not 503 after the
// work: the store gets a deadline of its own once the key exists.
func TestPolicyKeyGenerationOutlastingTheRedisDeadlineIsStored(t *testing.T) {
	t.Parallel()
	const redisTimeout = 300 * time.Millisecond
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.API.RedisTimeout = redisTimeout })
	cf.App.KeyPool.SetGenerator(func(spec pki.KeySpec) (crypto.Signer, error) {
		time.Sleep(3 * redisTimeout) // longer than the whole Redis budget of a request before
		return spec.Generate()
	})
	r, c := generateCSR(t, cf, map[string]any{"Subject": "CN=slow.example.com", "KeyType": "ECC", "Curve": "P-256"}, "Authorization", bearer(testutil.AliceToken))
	if r.Status != http.StatusOK || c.Id == 0 {
		t.Fatalf("a slow generation answered %d: %s", r.Status, r.Body)
	}
	if g := cf.Do(t, "GET", "/CSRGeneration/Pending/"+strconv.FormatInt(c.Id, 10), nil, "Authorization", bearer(testutil.AliceToken)); g.Status != http.StatusOK {
		t.Fatalf("the generated CSR was not stored: %d %s", g.Status, g.Body)
	}
}

// TestPolicyKeyGenerationRedisDownAnswers503BeforeAnyWork: a store that
// does not answer is found out before the key is made — at the look at
// the requester's pending CSRs, or at the CSR's id — so the 503 comes
// with no work done (the generator is never entered), and the next
// request, once Redis answers, is served.
func TestPolicyKeyGenerationRedisDownAnswers503BeforeAnyWork(t *testing.T) {
	t.Parallel()
	opts, err := redis.ParseURL(testutil.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := testutil.StartFreezeProxy(t, opts.Addr)
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.RedisURL = proxy.URL(); c.API.RedisTimeout = time.Second })
	t.Cleanup(proxy.Close) // runs before certflow stops: see FreezeProxy.Close
	generated := countGenerations(cf)
	body := map[string]any{"Subject": "CN=down.example.com", "KeyType": "ECC", "Curve": "P-256"}
	alice := []string{"Authorization", bearer(testutil.AliceToken)}
	for _, at := range []struct{ what, command, key string }{
		{"the count of pending CSRs", "ZCARD", cf.Prefix + ":csrs-of:"},
		{"the CSR's id", "INCR", cf.Prefix + ":seq:csr"},
	} {
		proxy.FreezeAt(at.command, at.key)
		r := cf.Do(t, "POST", "/CSRGeneration/Generate", body, alice...)
		if !proxy.Frozen() {
			t.Fatalf("the proxy never saw %s (%s)", at.what, at.command)
		}
		assertError(t, r, http.StatusServiceUnavailable, keyfactor.CodeUnavailable, "unavailable")
		if n := generated.Load(); n != 0 {
			t.Fatalf("Redis hung at %s: %d keys generated before the 503", at.what, n)
		}
		proxy.Unfreeze()
	}
	if r, _ := generateCSR(t, cf, body, alice...); r.Status != http.StatusOK || generated.Load() != 1 {
		t.Fatalf("once Redis answers: %d %s (%d generated)", r.Status, r.Body, generated.Load())
	}
}

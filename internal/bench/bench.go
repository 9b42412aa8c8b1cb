// Package bench measures certflow the way an operator would: N distinct
// CSRs enrolled over HTTP by C concurrent clients, timed until the last is
// ISSUED, next to bare asynq processing N no-op tasks with the same worker
// concurrency against the same Redis in the same run. Figures are reported
// as a ratio to that baseline, since absolute figures drift on shared
// machines.
package bench

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/app"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/queue"
)

// Options say what to measure.
type Options struct {
	Requests    int
	Concurrency int
	// Target is a running certflow's base URL; empty starts one in-process.
	Target string
	// Token authenticates against Target (CERTFLOW_TOKEN, else
	// CERTFLOW_ADMIN_TOKEN: the approver commands' variables).
	Token string
	// Key is the CSRs' key type: "ec" (P-256) or "rsa" (2048).
	Key string
	// RedisURL is the Redis the baseline (and an in-process certflow)
	// uses; empty starts an embedded one for an in-process run.
	RedisURL string
	// Rate, when positive, paces submissions at this many per second
	// (open loop) instead of as fast as the clients go.
	Rate float64
	// WorkerConcurrency is the worker's (and the baseline's) concurrency.
	WorkerConcurrency int
	// Definitions folder for an in-process run.
	Definitions string
	// Off names the speed shortcuts an in-process certflow runs without
	// (config.Speed.TurnOff), to measure each against its fallback.
	Off []string
	// Progress receives a progress line while it runs.
	Progress io.Writer
	// CPUProfile, if set, receives a CPU profile of the timed enrollment
	// phase only (not CSR generation, not the baseline).
	CPUProfile io.Writer
	// Authority names a certificate authority of type acme in the
	// configuration file Config: after the built-in CA's load, the
	// in-process certflow makes the same load through it (an external CA:
	// every enrollment is an ACME order, answered when the certificate
	// comes). Its http-01 challenges are answered on the file's
	// acme_client.http01_listen, which must be where the CA looks.
	Authority string
	// Config is the configuration file Authority is read from (its
	// certificate_authorities entry and acme_client); the rest of the
	// in-process certflow's configuration stays the bench's own.
	Config string
}

// Result is what bench reports; its JSON is the command's last line.
type Result struct {
	EnrollmentsPerS        float64 `json:"enrollments_per_s"`
	AsynqNoopPerS          float64 `json:"asynq_noop_per_s"`
	Ratio                  float64 `json:"ratio"`
	P50ms                  float64 `json:"p50_ms"`
	P99ms                  float64 `json:"p99_ms"`
	RedisCmdsPerEnrollment float64 `json:"redis_cmds_per_enrollment"`
	RSSMB                  float64 `json:"rss_mb"`
	Requests               int     `json:"requests"`
	Concurrency            int     `json:"concurrency"`
	RedisBytesPerRequest   float64 `json:"redis_bytes_per_request"`
	// CPUusPerEnrollment is this process's CPU time (user + system) per
	// enrollment while enrolling: certflow's and, in-process, the HTTP
	// clients'. RedisCPUusPerEnrollment is the Redis server's (INFO cpu;
	// it counts every client's commands). On a shared machine they vary
	// less than throughput, which waits for CPU the neighbours use.
	CPUusPerEnrollment      float64 `json:"cpu_us_per_enrollment"`
	RedisCPUusPerEnrollment float64 `json:"redis_cpu_us_per_enrollment"`
	// The same for the baseline's no-op tasks.
	CPUusPerNoop      float64 `json:"cpu_us_per_noop"`
	RedisCPUusPerNoop float64 `json:"redis_cpu_us_per_noop"`
	// RoundTripsPerEnrollment and RoundTripsPerNoop count the in-process
	// run's Redis round trips (a pipeline is one; pub/sub is not counted)
	// through its one client: certflow's and asynq's alike. They do not
	// depend on the machine's load.
	RoundTripsPerEnrollment float64 `json:"round_trips_per_enrollment,omitempty"`
	RoundTripsPerNoop       float64 `json:"round_trips_per_noop,omitempty"`
	// Errors is always 0: a run in which any enrollment failed returns
	// an error instead of figures. Kept for readers of the JSON line.
	Errors int `json:"errors"`
	// RedisCommands breaks RedisCmdsPerEnrollment down by command
	// (commands run inside Lua scripts count under their own names).
	RedisCommands map[string]float64 `json:"-"`
	// Authority is the load through Options.Authority, when one was named.
	Authority *AuthorityResult `json:"authority,omitempty"`
}

// AuthorityResult is the same load as the built-in CA's, through an
// external (ACME) certificate authority, in the same run.
type AuthorityResult struct {
	Name            string  `json:"name"`
	EnrollmentsPerS float64 `json:"enrollments_per_s"`
	// Ratio is EnrollmentsPerS over the built-in CA's.
	Ratio float64 `json:"ratio_to_builtin"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
}

// Run measures.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Requests < 1 || o.Concurrency < 1 {
		return nil, errors.New("--requests and --concurrency must be at least 1")
	}
	o.WorkerConcurrency = cmp(o.WorkerConcurrency, config.DefaultConcurrency)
	authority, acmeClient, err := externalAuthority(o)
	if err != nil {
		return nil, err
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	fmt.Fprintf(progress, "generating %d %s CSRs…\n", o.Requests, o.Key)
	csrs, err := makeCSRs(o.Requests, o.Key)
	if err != nil {
		return nil, err
	}
	res := &Result{Requests: o.Requests, Concurrency: o.Concurrency}
	target, token, rdb, stop, err := setup(ctx, &o, authority, acmeClient)
	if err != nil {
		return nil, err
	}
	defer stop()
	if rdb != nil {
		fmt.Fprintln(progress, "baseline: bare asynq no-op tasks…")
		redisBefore, _ := redisCPU(ctx, rdb)
		cpuBefore, rtBefore := processCPU(), roundTrips.n.Load()
		if res.AsynqNoopPerS, err = asynqBaseline(ctx, rdb, o.Requests, o.WorkerConcurrency, o.Concurrency); err != nil {
			return nil, fmt.Errorf("asynq baseline: %w", err)
		}
		res.CPUusPerNoop = float64((processCPU() - cpuBefore).Microseconds()) / float64(o.Requests)
		res.RoundTripsPerNoop = float64(roundTrips.n.Load()-rtBefore) / float64(o.Requests)
		redisAfter, _ := redisCPU(ctx, rdb)
		res.RedisCPUusPerNoop = (redisAfter - redisBefore) * 1e6 / float64(o.Requests)
	}
	var before map[string]int64
	var memBefore int64
	var redisCPUBefore float64
	if rdb != nil {
		before, _ = commandStats(ctx, rdb)
		memBefore, _ = usedMemory(ctx, rdb)
		redisCPUBefore, _ = redisCPU(ctx, rdb)
	}
	if o.CPUProfile != nil {
		if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
			return nil, err
		}
	}
	cpuBefore, rtBefore := processCPU(), roundTrips.n.Load()
	lat, elapsed, err := enroll(ctx, target, token, csrs, config.DefaultTemplate, o.Concurrency, o.Rate, progress)
	if o.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return nil, err
	}
	res.CPUusPerEnrollment = float64((processCPU() - cpuBefore).Microseconds()) / float64(o.Requests)
	if o.Target == "" {
		res.RoundTripsPerEnrollment = float64(roundTrips.n.Load()-rtBefore) / float64(o.Requests)
	}
	res.EnrollmentsPerS = float64(o.Requests) / elapsed.Seconds()
	if res.AsynqNoopPerS > 0 {
		res.Ratio = res.EnrollmentsPerS / res.AsynqNoopPerS
	}
	res.P50ms, res.P99ms = percentile(lat, 0.50), percentile(lat, 0.99)
	if rdb != nil {
		redisCPUAfter, _ := redisCPU(ctx, rdb)
		res.RedisCPUusPerEnrollment = (redisCPUAfter - redisCPUBefore) * 1e6 / float64(o.Requests)
		// An embedded Redis (no CERTFLOW_REDIS_URL) keeps no command
		// statistics: then there are none to report.
		after, err := commandStats(ctx, rdb)
		memAfter, _ := usedMemory(ctx, rdb)
		if err == nil && before != nil {
			after["info"] -= 4 // the INFO calls themselves are not the enrollments'
			res.RedisCommands = map[string]float64{}
			var total int64
			for cmd, n := range after {
				if d := n - before[cmd]; d > 0 {
					total += d
					res.RedisCommands[cmd] = float64(d) / float64(o.Requests)
				}
			}
			res.RedisCmdsPerEnrollment = float64(total) / float64(o.Requests)
		}
		res.RedisBytesPerRequest = float64(memAfter-memBefore) / float64(o.Requests)
	}
	if authority != nil {
		if res.Authority, err = throughAuthority(ctx, o, authority.Name, target, token, res.EnrollmentsPerS, progress); err != nil {
			return nil, err
		}
	}
	res.RSSMB = peakRSSMB()
	return res, nil
}

// authorityTemplate is the template the in-process certflow routes to
// Options.Authority: the default template's policy, served by that CA.
const authorityTemplate = "BenchAuthority"

// externalAuthority reads Options.Authority's CA and the acme_client
// settings from Options.Config (nil: no authority named).
func externalAuthority(o Options) (*config.CA, config.ACMEClient, error) {
	if o.Authority == "" {
		if o.Config != "" {
			return nil, config.ACMEClient{}, errors.New("--config is read for --authority only; name the authority too")
		}
		return nil, config.ACMEClient{}, nil
	}
	if o.Target != "" {
		return nil, config.ACMEClient{}, errors.New("--authority runs the in-process certflow through that CA; it cannot be combined with --target")
	}
	if o.Config == "" {
		return nil, config.ACMEClient{}, fmt.Errorf("--authority %q needs --config: the configuration file that defines it", o.Authority)
	}
	cfg, err := config.Load(o.Config)
	if err != nil {
		return nil, config.ACMEClient{}, fmt.Errorf("--config: %w", err)
	}
	var names []string
	for i := range cfg.CAs {
		c := &cfg.CAs[i]
		names = append(names, c.Name)
		if !strings.EqualFold(c.Name, o.Authority) {
			continue
		}
		if !c.IsACME() {
			return nil, config.ACMEClient{}, fmt.Errorf("--authority %q is a CA of type %s in %s; the bench compares the built-in CA with one of type acme", o.Authority, c.Type, o.Config)
		}
		if strings.EqualFold(c.Name, config.DefaultCAName) {
			return nil, config.ACMEClient{}, fmt.Errorf("--authority %q has the name of the bench's built-in CA; rename it in %s", o.Authority, o.Config)
		}
		if c.ACME.Challenge == config.ChallengeHTTP01 && cfg.ACMEClient.HTTP01Listen == "" {
			return nil, config.ACMEClient{}, fmt.Errorf("--authority %q validates by http-01: %s must set acme_client.http01_listen to the address the CA's http-01 requests reach", o.Authority, o.Config)
		}
		return c, cfg.ACMEClient, nil
	}
	return nil, config.ACMEClient{}, fmt.Errorf("--authority %q: no certificate authority of that name in %s (it has %s)", o.Authority, o.Config, strings.Join(names, ", "))
}

// throughAuthority makes the same load again (new CSRs: new names, new
// requests) through the external authority's template, after the
// built-in CA's, and reports its rate next to builtinPerS.
func throughAuthority(ctx context.Context, o Options, name, target, token string, builtinPerS float64, progress io.Writer) (*AuthorityResult, error) {
	fmt.Fprintf(progress, "through certificate authority %s: generating %d %s CSRs…\n", name, o.Requests, o.Key)
	csrs, err := makeCSRs(o.Requests, o.Key)
	if err != nil {
		return nil, err
	}
	lat, elapsed, err := enroll(ctx, target, token, csrs, authorityTemplate, o.Concurrency, o.Rate, progress)
	if err != nil {
		return nil, fmt.Errorf("through certificate authority %s: %w", name, err)
	}
	r := &AuthorityResult{Name: name, EnrollmentsPerS: float64(o.Requests) / elapsed.Seconds()}
	if builtinPerS > 0 {
		r.Ratio = r.EnrollmentsPerS / builtinPerS
	}
	r.P50ms, r.P99ms = percentile(lat, 0.50), percentile(lat, 0.99)
	return r, nil
}

func cmp(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// setup returns the base URL and token to load, a Redis client for the
// baseline and command counts (nil if none is known), and a stop func.
func setup(ctx context.Context, o *Options, authority *config.CA, acmeClient config.ACMEClient) (target, token string, rdb redis.UniversalClient, stop func(), err error) {
	if o.Target != "" {
		if o.RedisURL != "" {
			opts, err := redis.ParseURL(o.RedisURL)
			if err != nil {
				return "", "", nil, nil, err
			}
			rdb = redis.NewClient(opts)
		}
		return strings.TrimRight(o.Target, "/"), o.Token, rdb, func() {
			if rdb != nil {
				rdb.Close()
			}
		}, nil
	}
	cfg := config.Default()
	suffix := randomHex(4)
	cfg.RedisURL = o.RedisURL
	cfg.KeyPrefix, cfg.Queue = "certflow-bench-"+suffix, "certflow-bench-"+suffix
	dir, err := os.MkdirTemp("", "certflow-bench-")
	if err != nil {
		return "", "", nil, nil, err
	}
	cfg.DataDir, cfg.Listen = dir, "127.0.0.1:0"
	cfg.TLS.Listen = config.TLSOff // the bench speaks plain HTTP; 8443 may be another certflow's
	cfg.KEKFile = dir + "/kek"
	cfg.Worker.Concurrency = o.WorkerConcurrency
	cfg.API.MaxSyncWait = 10 * time.Minute
	cfg.API.RateLimit = 0 // measuring, not defending
	if o.Definitions != "" {
		cfg.Definitions = o.Definitions
	}
	if err := cfg.Speed.TurnOff(o.Off...); err != nil {
		os.RemoveAll(dir)
		return "", "", nil, nil, err
	}
	if authority != nil {
		// The external CA next to the built-in one, and a template of
		// the default policy that routes to it.
		tmpl := cfg.Templates[0]
		tmpl.Name, tmpl.DisplayName, tmpl.CAs = authorityTemplate, authorityTemplate, []string{authority.Name}
		cfg.CAs = append(cfg.CAs, *authority)
		cfg.Templates = append(cfg.Templates, tmpl)
		cfg.ACMEClient = acmeClient
		if err := cfg.Validate(); err != nil {
			os.RemoveAll(dir)
			return "", "", nil, nil, fmt.Errorf("--authority %q: %w", authority.Name, err)
		}
	}
	token = "bench-" + randomHex(16)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	a, err := app.Open(&cfg, app.RoleBoth, token, log, io.Discard)
	if err != nil {
		os.RemoveAll(dir)
		return "", "", nil, nil, err
	}
	a.Redis.AddHook(&roundTrips)
	rctx, cancel := context.WithCancel(ctx)
	addrc := make(chan net.Addr, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.ServeAPI(rctx, func(addr net.Addr) { addrc <- addr }) }()
	go func() { defer wg.Done(); a.RunWorker(rctx) }()
	addr := <-addrc
	stop = func() {
		cancel()
		wg.Wait()
		cleanup(context.Background(), a.Redis, cfg.KeyPrefix)
		a.Close()
		os.RemoveAll(dir)
	}
	return "http://" + addr.String(), token, a.Redis, stop, nil
}

// cleanup deletes what a bench run stored under its prefix and queue.
func cleanup(ctx context.Context, rdb redis.UniversalClient, prefix string) {
	for _, pattern := range []string{prefix + ":*", queue.QueueKeyPrefix(prefix) + "*", queue.QueueKeyPrefix(prefix+"-noop") + "*"} {
		iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Unlink(ctx, iter.Val())
		}
	}
	rdb.SRem(ctx, queue.AllQueuesKey, prefix, prefix+"-noop")
}

func makeCSRs(n int, keyType string) ([][]byte, error) {
	// RSA keys are slow to make: a small pool of keys signs distinct CSRs.
	var keys []crypto.Signer
	for i := 0; i < min(n, 16); i++ {
		var k crypto.Signer
		var err error
		switch keyType {
		case "ec", "":
			k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		case "rsa":
			k, err = rsa.GenerateKey(rand.Reader, 2048)
		default:
			return nil, fmt.Errorf("--key %q: want ec or rsa", keyType)
		}
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	out := make([][]byte, n)
	for i := range out {
		cn := fmt.Sprintf("bench-%d-%s.example.com", i, randomHex(3))
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		}, keys[i%len(keys)])
		if err != nil {
			return nil, err
		}
		out[i] = der
	}
	return out, nil
}

// enroll submits every CSR synchronously (the API answers once the
// workflow settled), so each latency is submit-to-issued. Any submit
// that did not come back issued fails the run: a throughput of refused
// requests (429 from a rate-limited target, say) measures nothing.
func enroll(ctx context.Context, target, token string, csrs [][]byte, templateName string, concurrency int, rate float64, progress io.Writer) ([]time.Duration, time.Duration, error) {
	headers := http.Header{
		"Authorization": {"Bearer " + token}, "Content-Type": {"application/json"}, "X-Certificateformat": {"DER"},
	}
	clients := make([]*loadClient, concurrency)
	for i := range clients {
		c, err := newLoadClient(target, headers)
		if err != nil {
			return nil, 0, err
		}
		defer c.Close()
		clients[i] = c
	}
	template, _ := json.Marshal(templateName)
	lat := make([]time.Duration, len(csrs))
	var next, done atomic.Int64
	var failures tally
	start := time.Now()
	stopProgress, progressStopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(progressStopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				fmt.Fprintf(progress, "\r%d/%d issued, %.0f/s   ", done.Load(), len(csrs), float64(done.Load())/time.Since(start).Seconds())
			}
		}
	}()
	var wg sync.WaitGroup
	for _, client := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			for {
				i := next.Add(1) - 1
				if i >= int64(len(csrs)) || ctx.Err() != nil {
					return
				}
				if rate > 0 {
					due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
					time.Sleep(time.Until(due))
				}
				t0 := time.Now()
				body = enrollmentBody(body[:0], csrs[i], template, t0)
				if err := submit(ctx, client, body); err != nil {
					failures.add(err)
					continue
				}
				lat[i] = time.Since(t0)
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopProgress)
	<-progressStopped // its last line is written before the summary, not beside it
	fmt.Fprintf(progress, "\r%d/%d issued in %s\n", done.Load(), len(csrs), elapsed.Round(time.Millisecond))
	if failures.n > 0 {
		return nil, elapsed, fmt.Errorf("%d of %d enrollments failed, so the run measures nothing: %s", failures.n, len(csrs), &failures)
	}
	ok := lat[:0:0]
	for _, l := range lat {
		if l > 0 {
			ok = append(ok, l)
		}
	}
	return ok, elapsed, nil
}

// tally counts failed submits by reason, for the run's error.
type tally struct {
	mu      sync.Mutex
	n       int
	reasons map[string]int
	order   []string
}

func (t *tally) add(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reasons == nil {
		t.reasons = map[string]int{}
	}
	reason := err.Error()
	if t.reasons[reason] == 0 {
		t.order = append(t.order, reason)
	}
	t.reasons[reason]++
	t.n++
}

// String names the reasons, most frequent first (at most 5).
func (t *tally) String() string {
	order := slices.Clone(t.order)
	slices.SortStableFunc(order, func(a, b string) int { return t.reasons[b] - t.reasons[a] })
	var parts []string
	for i, r := range order {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d other reasons", len(order)-5))
			break
		}
		parts = append(parts, fmt.Sprintf("%d × %s", t.reasons[r], r))
	}
	return strings.Join(parts, "; ")
}

// enrollmentBody appends POST /Enrollment/CSR's JSON body for csr (DER)
// to b: {"CSR": base64, "Template": template (JSON), "Timestamp": now}.
func enrollmentBody(b, csr, template []byte, now time.Time) []byte {
	b = append(b, `{"CSR":"`...)
	b = base64.StdEncoding.AppendEncode(b, csr)
	b = append(b, `","Template":`...)
	b = append(b, template...)
	b = append(b, `,"Timestamp":"`...)
	b = now.UTC().AppendFormat(b, time.RFC3339)
	return append(b, `"}`...)
}

// submit posts one enrollment and checks that it came back issued.
func submit(ctx context.Context, client *loadClient, body []byte) error {
	status, data, err := client.post(ctx, "/Enrollment/CSR", body)
	if err != nil {
		return err
	}
	var answer struct {
		CertificateInformation struct{ RequestDisposition, DispositionMessage string }
	}
	if err := json.Unmarshal(data, &answer); err != nil {
		return fmt.Errorf("answer %d: %w", status, err)
	}
	if info := answer.CertificateInformation; status != 200 || info.RequestDisposition != "ISSUED" {
		return refusal(status, info.RequestDisposition, info.DispositionMessage, data)
	}
	return nil
}

// refusal says why a submit did not come back issued: the status, the
// disposition (with its message: a CA's problem, say) or Keyfactor's
// Message, and what to do about a 429.
func refusal(status int, disposition, message string, data []byte) error {
	var e struct{ ErrorCode, Message string }
	json.Unmarshal(data, &e)
	why := fmt.Sprintf("%d %s", status, http.StatusText(status))
	switch {
	case status == http.StatusTooManyRequests:
		why += " (rate limited: the target's api.rate_limit and rate_burst are per identity; raise them for the bench user or lower --concurrency / --rate)"
	case e.Message != "":
		why += ": " + e.Message
	case disposition != "":
		why += ", disposition " + disposition
		if message != "" {
			why += ": " + message
		}
	}
	return errors.New(why)
}

// asynqBaseline enqueues n no-op tasks from `enqueuers` goroutines while
// a server with the given concurrency processes them, and returns tasks
// per second from the first enqueue to the last completion.
func asynqBaseline(ctx context.Context, rdb redis.UniversalClient, n, concurrency, enqueuers int) (float64, error) {
	queue := "certflow-bench-" + randomHex(4) + "-noop"
	defer cleanup(context.Background(), rdb, strings.TrimSuffix(queue, "-noop"))
	var processed atomic.Int64
	finished := make(chan struct{})
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: concurrency, Queues: map[string]int{queue: 1}, TaskCheckInterval: config.DefaultPollInterval,
		LogLevel: asynq.ErrorLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(context.Context, *asynq.Task) error {
		if processed.Add(1) == int64(n) {
			close(finished)
		}
		return nil
	})
	if err := srv.Start(mux); err != nil {
		return 0, err
	}
	defer srv.Shutdown()
	client := asynq.NewClientFromRedisClient(rdb)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var enqErr atomic.Value
	for i := 0; i < enqueuers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := client.EnqueueContext(ctx, asynq.NewTask("noop", nil), asynq.Queue(queue)); err != nil {
					enqErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if e, ok := enqErr.Load().(error); ok {
		return 0, e
	}
	select {
	case <-finished:
	case <-time.After(10 * time.Minute):
		return 0, fmt.Errorf("only %d of %d no-op tasks processed", processed.Load(), n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// commandStats reads calls per command from INFO commandstats.
func commandStats(ctx context.Context, rdb redis.UniversalClient) (map[string]int64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, rest, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, _ := strconv.ParseInt(calls, 10, 64)
		out[name] = n
	}
	return out, nil
}

func usedMemory(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no used_memory in INFO memory")
}

// roundTrips counts the in-process run's Redis round trips.
var roundTrips rtCounter

type rtCounter struct{ n atomic.Int64 }

func (c *rtCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *rtCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "info" { // the bench's own
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (c *rtCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// redisCPU is the Redis server's CPU seconds so far (user + system).
func redisCPU(ctx context.Context, rdb redis.UniversalClient) (float64, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		for _, k := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(line, k); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				total += f
			}
		}
	}
	return total, nil
}

// processCPU is this process's CPU time so far (user + system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return float64(s[i].Microseconds()) / 1000
}

// peakRSSMB reads the process's peak resident set (Linux VmHWM).
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// measure is a row of Print's table.
type measure struct {
	name string
	v    float64
	unit string
}

// printMeasures writes rows of Print's table, indented, the values
// aligned whatever the indent.
func printMeasures(w io.Writer, indent string, ms []measure) {
	for _, m := range ms {
		fmt.Fprintf(w, "%s%-*s %12.2f %s\n", indent, 28-len(indent), m.name, m.v, m.unit)
	}
}

// Print writes the human-readable table, then the JSON line last.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "\n%-28s %12s\n", "measure", "value")
	printMeasures(w, "", []measure{
		{"enrollments per second", r.EnrollmentsPerS, "/s"},
		{"bare asynq no-ops per second", r.AsynqNoopPerS, "/s"},
		{"ratio (certflow / asynq)", r.Ratio, ""},
		{"p50 submit→issued", r.P50ms, "ms"},
		{"p99 submit→issued", r.P99ms, "ms"},
		{"Redis commands / enrollment", r.RedisCmdsPerEnrollment, ""},
		{"Redis bytes / request", r.RedisBytesPerRequest, "B"},
		{"CPU / enrollment", r.CPUusPerEnrollment, "µs"},
		{"Redis CPU / enrollment", r.RedisCPUusPerEnrollment, "µs"},
		{"CPU / no-op task", r.CPUusPerNoop, "µs"},
		{"Redis CPU / no-op task", r.RedisCPUusPerNoop, "µs"},
		{"Redis round trips / enr.", r.RoundTripsPerEnrollment, ""},
		{"Redis round trips / no-op", r.RoundTripsPerNoop, ""},
		{"peak RSS", r.RSSMB, "MB"},
	})
	fmt.Fprintf(w, "%-28s %12d\n%-28s %12d\n%-28s %12d\n", "requests", r.Requests, "concurrency", r.Concurrency, "errors", r.Errors)
	if a := r.Authority; a != nil {
		fmt.Fprintf(w, "through certificate authority %s:\n", a.Name)
		printMeasures(w, "  ", []measure{
			{"enrollments per second", a.EnrollmentsPerS, "/s"},
			{"ratio (it / built-in CA)", a.Ratio, ""},
			{"p50 submit→issued", a.P50ms, "ms"},
			{"p99 submit→issued", a.P99ms, "ms"},
		})
	}
	if len(r.RedisCommands) > 0 {
		names := slices.SortedFunc(maps.Keys(r.RedisCommands), func(a, b string) int {
			return cmpFloat(r.RedisCommands[b], r.RedisCommands[a])
		})
		fmt.Fprintf(w, "Redis commands per enrollment:")
		for _, n := range names {
			fmt.Fprintf(w, " %s %.2f", n, r.RedisCommands[n])
		}
		fmt.Fprintln(w)
	}
	line, _ := json.Marshal(r)
	fmt.Fprintln(w, string(line))
}

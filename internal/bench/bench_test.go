package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/internal/testutil/acmetest"
)

// TestRunMeasuresRealEnrollments runs the whole bench (its own certflow,
// a redis-server of its own, since Redis counts every client's commands)
// on a few requests: every enrollment must come back ISSUED, and every
// figure the issue asks for must be there and plausible.
func TestRunMeasuresRealEnrollments(t *testing.T) {
	redis := testutil.StartRedisServer(t)
	var progress bytes.Buffer
	res, err := Run(context.Background(), Options{
		Requests: 60, Concurrency: 4, WorkerConcurrency: 4, RedisURL: redis.URL(),
		Definitions: testutil.DefinitionsDir(), Progress: &progress,
	})
	if err != nil { // any enrollment not issued fails the run
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if res.EnrollmentsPerS <= 0 || res.AsynqNoopPerS <= 0 || res.Ratio != res.EnrollmentsPerS/res.AsynqNoopPerS {
		t.Errorf("rates: %v enrollments/s, %v no-ops/s, ratio %v", res.EnrollmentsPerS, res.AsynqNoopPerS, res.Ratio)
	}
	if res.P50ms <= 0 || res.P99ms < res.P50ms {
		t.Errorf("latencies: p50 %v ms, p99 %v ms", res.P50ms, res.P99ms)
	}
	// An enrollment is a handful of round trips and a few dozen commands
	// (a dozen of them the inventory's index entries, written inside the
	// script that stores the certificate); zero would mean the counters
	// missed them.
	if res.RedisCmdsPerEnrollment < 10 || res.RedisCmdsPerEnrollment > 60 {
		t.Errorf("%v Redis commands per enrollment, want 10–60", res.RedisCmdsPerEnrollment)
	}
	if res.RoundTripsPerEnrollment < 1 || res.RoundTripsPerEnrollment > 10 || res.RoundTripsPerNoop < 2 {
		t.Errorf("round trips: %v per enrollment, %v per no-op", res.RoundTripsPerEnrollment, res.RoundTripsPerNoop)
	}
	if res.CPUusPerEnrollment <= 0 || res.RSSMB <= 0 || res.RedisBytesPerRequest <= 0 {
		t.Errorf("CPU %v µs, RSS %v MB, Redis %v B per request", res.CPUusPerEnrollment, res.RSSMB, res.RedisBytesPerRequest)
	}
}

// TestRunWithShortcutsOff runs the in-process certflow without its speed
// shortcuts: it still enrolls, and one client at a time (so that group
// commit has nothing to share) a submit costs a round trip more without
// the piggyback, which is what the switch is for.
func TestRunWithShortcutsOff(t *testing.T) {
	redis := testutil.StartRedisServer(t)
	run := func(off ...string) *Result {
		t.Helper()
		var progress bytes.Buffer
		res, err := Run(context.Background(), Options{
			Requests: 30, Concurrency: 1, WorkerConcurrency: 1, RedisURL: redis.URL(),
			Definitions: testutil.DefinitionsDir(), Progress: &progress, Off: off,
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	on := run()
	off := run("piggyback", "group_commit", "leaf_encoder")
	if off.RoundTripsPerEnrollment < on.RoundTripsPerEnrollment+0.5 {
		t.Errorf("round trips per enrollment: %v with the shortcuts, %v without; want about one more without", on.RoundTripsPerEnrollment, off.RoundTripsPerEnrollment)
	}
	if _, err := Run(context.Background(), Options{Requests: 1, Concurrency: 1, RedisURL: redis.URL(), Off: []string{"turbo"}}); err == nil || !strings.Contains(err.Error(), `"turbo"`) {
		t.Errorf("an unknown shortcut: err = %v, want one naming it", err)
	}
}

// TestRunOnTheEmbeddedRedis is `certflow bench` with no Redis configured:
// the in-process certflow runs on the zero-setup mode's Redis — a
// redis-server child when one is on the PATH (command statistics
// reported), else the in-memory one, which keeps none. The run used to
// panic at its end (assignment to entry in nil map) reading them; it
// reports the figures it has.
func TestRunOnTheEmbeddedRedis(t *testing.T) {
	res, err := Run(context.Background(), Options{
		Requests: 10, Concurrency: 2, WorkerConcurrency: 2, Definitions: testutil.DefinitionsDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.EnrollmentsPerS <= 0 || res.AsynqNoopPerS <= 0 || res.P50ms <= 0 {
		t.Errorf("figures: %+v", res)
	}
	if _, err := exec.LookPath("redis-server"); err == nil {
		if res.RedisCmdsPerEnrollment <= 0 {
			t.Errorf("no command counts from the child redis-server: %+v", res)
		}
	} else if res.RedisCommands != nil || res.RedisCmdsPerEnrollment != 0 {
		t.Errorf("command counts from a Redis that keeps none: %v", res.RedisCommands)
	}
}

// TestARunWithRefusedRequestsFails: against a target that rate-limits
// the bench's identity, requests come back 429; the run reports how many
// failed and why, and no throughput.
func TestARunWithRefusedRequestsFails(t *testing.T) {
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.API.RateLimit, c.API.RateBurst = 1, 1 })
	res, err := Run(context.Background(), Options{
		Requests: 12, Concurrency: 3, Target: cf.URL, Token: testutil.AliceToken,
	})
	if err == nil {
		t.Fatalf("a rate-limited run succeeded: %+v", res)
	}
	for _, want := range []string{"enrollments failed", "of 12", "429 Too Many Requests", "rate_limit"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if res != nil {
		t.Errorf("figures reported for a failed run: %+v", res)
	}
	// A wrong token: every request refused, the reason named once.
	_, err = Run(context.Background(), Options{Requests: 3, Concurrency: 1, Target: cf.URL, Token: "wrong"})
	if err == nil || !strings.Contains(err.Error(), "3 of 3 enrollments failed") || !strings.Contains(err.Error(), "3 × 401") {
		t.Errorf("wrong token: %v", err)
	}
}

// acmeBenchConfig writes a configuration file with a builtin CA and an
// acme CA named Pebble (its http-01 answered on httpPort) and returns
// its path.
func acmeBenchConfig(t *testing.T, pb *acmetest.Pebble, httpPort int, extra string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "certflow.yaml")
	cfg := fmt.Sprintf(`acme_client: {http01_listen: "127.0.0.1:%d"}
certificate_authorities:
  - {name: CertflowIssuingCA, type: builtin}
  - name: Pebble
    type: acme
    acme: {directory: "%s", ca_bundle: "%s", poll_interval: 200ms, max_poll_interval: 1s, timeout: 5s}
%s`, httpPort, pb.DirectoryURL, pb.CABundle, extra)
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestRunThroughAnACMEAuthority runs the bench with --authority naming a
// real Pebble: after the built-in CA's load, the same load goes through
// Pebble (each enrollment an order whose http-01 challenge the bench's
// certflow answers), and both rates come back, with their ratio.
func TestRunThroughAnACMEAuthority(t *testing.T) {
	redis := testutil.StartRedisServer(t)
	port := testutil.FreePort(t)
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: port})
	var progress bytes.Buffer
	res, err := Run(context.Background(), Options{
		Requests: 12, Concurrency: 4, WorkerConcurrency: 4, RedisURL: redis.URL(),
		Definitions: testutil.DefinitionsDir(), Progress: &progress,
		Authority: "pebble", Config: acmeBenchConfig(t, pb, port, ""),
	})
	if err != nil { // any enrollment not issued, by either CA, fails the run
		t.Fatalf("%v\n%s", err, progress.String())
	}
	a := res.Authority
	if a == nil || a.Name != "Pebble" {
		t.Fatalf("no figures through Pebble: %+v", res)
	}
	if res.EnrollmentsPerS <= 0 || a.EnrollmentsPerS <= 0 || a.Ratio != a.EnrollmentsPerS/res.EnrollmentsPerS {
		t.Errorf("rates: built-in %v/s, Pebble %v/s, ratio %v", res.EnrollmentsPerS, a.EnrollmentsPerS, a.Ratio)
	}
	if a.P50ms <= 0 || a.P99ms < a.P50ms {
		t.Errorf("latencies through Pebble: p50 %v ms, p99 %v ms", a.P50ms, a.P99ms)
	}
	var out bytes.Buffer
	res.Print(&out)
	for _, want := range []string{"through certificate authority Pebble:", "ratio (it / built-in CA)", `"authority":{"name":"Pebble","enrollments_per_s":`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestRunThroughAnAuthorityThatRefusesFails: every enrollment through
// the authority fails at the CA (its http-01 requests reach a port where
// nobody answers), so the run fails saying how many and the CA's
// problem, with no figures.
func TestRunThroughAnAuthorityThatRefusesFails(t *testing.T) {
	redis := testutil.StartRedisServer(t)
	port := testutil.FreePort(t)
	pb := acmetest.StartPebble(t, acmetest.PebbleOptions{HTTPPort: port})
	// Nobody answers http-01 on this port: validation fails.
	file := acmeBenchConfig(t, pb, testutil.FreePort(t), "")
	res, err := Run(context.Background(), Options{
		Requests: 3, Concurrency: 3, WorkerConcurrency: 2, RedisURL: redis.URL(),
		Definitions: testutil.DefinitionsDir(), Authority: "Pebble", Config: file,
	})
	if err == nil {
		t.Fatalf("a run whose orders fail succeeded: %+v", res)
	}
	for _, want := range []string{"through certificate authority Pebble", "3 of 3 enrollments failed", "disposition FAILED", "urn:ietf:params:acme:error:connection"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestRunWithABadAuthority: each wrong --authority or --config is refused
// before anything runs, naming the flag or setting.
func TestRunWithABadAuthority(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	acme := `certificate_authorities:
  - {name: CertflowIssuingCA, type: builtin}
  - {name: Pebble, type: acme, acme: {directory: "https://127.0.0.1:14000/dir"}}
`
	noListen := write("nolisten.yaml", acme)
	withListen := write("listen.yaml", acme+"acme_client: {http01_listen: \"127.0.0.1:5002\"}\n")
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no config", Options{Authority: "Pebble"}, "--authority \"Pebble\" needs --config"},
		{"config without authority", Options{Config: withListen}, "--config is read for --authority only"},
		{"unknown authority", Options{Authority: "Nope", Config: withListen}, `--authority "Nope": no certificate authority of that name in ` + withListen + " (it has CertflowIssuingCA, Pebble)"},
		{"builtin authority", Options{Authority: "CertflowIssuingCA", Config: withListen}, "is a CA of type builtin"},
		{"http-01 without a listener", Options{Authority: "Pebble", Config: noListen}, "acme_client.http01_listen"},
		{"with a target", Options{Authority: "Pebble", Config: withListen, Target: "http://127.0.0.1:1"}, "cannot be combined with --target"},
		{"missing config file", Options{Authority: "Pebble", Config: filepath.Join(dir, "none.yaml")}, "--config: read config"},
		{"invalid config file", Options{Authority: "Pebble", Config: write("bad.yaml", "frobnicate: 1\n")}, "unknown key \"frobnicate\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Requests, tc.o.Concurrency = 1, 1
			res, err := Run(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q (result %+v)", err, tc.want, res)
			}
		})
	}
}

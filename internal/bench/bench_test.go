package bench

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/testutil"
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

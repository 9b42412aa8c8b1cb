package api

import (
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// failUntilLocked spends key's budget at now and returns the lockout.
func failUntilLocked(t *testing.T, th *throttle, key string, now time.Time) time.Duration {
	t.Helper()
	for i := 0; i < 100; i++ {
		if ref := th.begin(key, now); ref != nil {
			t.Fatalf("attempt %d refused before any lockout: %+v", i, ref)
		}
		if d := th.fail(key, now); d > 0 {
			return d
		}
	}
	t.Fatal("never locked")
	return 0
}

func TestThrottleLockoutDoublesUpToTheCap(t *testing.T) {
	t.Parallel()
	th := newThrottle(3, time.Minute, 70*time.Second)
	now := t0
	if d := failUntilLocked(t, th, "k", now); d != 20*time.Second {
		t.Fatalf("first lockout %s, want a minute / 3", d)
	}
	for _, want := range []time.Duration{40 * time.Second, 70 * time.Second, 70 * time.Second} {
		if ref := th.begin("k", now); ref == nil || ref.wait <= 0 {
			t.Fatalf("an attempt during the lockout was let through")
		}
		now = now.Add(th.lockLeft("k", now))
		// One attempt after each lockout; failing it locks again, longer.
		if ref := th.begin("k", now); ref != nil {
			t.Fatalf("the attempt after a lockout refused: %+v", ref)
		}
		if d := th.fail("k", now); d != want {
			t.Fatalf("next lockout %s, want %s", d, want)
		}
	}
	// Quiet for a whole period after the lockout: failures and strikes
	// have drained, and the full budget is back with the first lockout.
	now = now.Add(th.lockLeft("k", now) + time.Minute)
	if d := failUntilLocked(t, th, "k", now); d != 20*time.Second {
		t.Fatalf("lockout after a quiet period %s, want 20s again", d)
	}
}

// lockLeft is how long key stays locked out at now.
func (t *throttle) lockLeft(key string, now time.Time) time.Duration {
	if ref := t.locked(key, now); ref != nil {
		return ref.wait
	}
	return 0
}

func TestThrottleFailuresDrainAtTheBudgetRate(t *testing.T) {
	t.Parallel()
	th := newThrottle(6, time.Minute, time.Hour)
	now := t0
	for i := range 5 {
		th.begin("k", now)
		if d := th.fail("k", now); d != 0 {
			t.Fatalf("failure %d locked", i)
		}
	}
	// Ten seconds drain one failure (6 a minute): two more fit, the second
	// of which fills the budget.
	now = now.Add(10 * time.Second)
	th.begin("k", now)
	if d := th.fail("k", now); d != 0 {
		t.Fatal("a drained failure did not make room")
	}
	th.begin("k", now)
	if d := th.fail("k", now); d != 10*time.Second {
		t.Fatalf("the failure filling the budget locked for %s, want 10s", d)
	}
}

// TestThrottleAttemptsInFlightCannotOverrunTheBudget: checks running at
// once each hold a place in the budget, so a burst of parallel guesses
// gets no more tries than a sequence.
func TestThrottleAttemptsInFlightCannotOverrunTheBudget(t *testing.T) {
	t.Parallel()
	th := newThrottle(3, time.Minute, time.Hour)
	for i := range 3 {
		if ref := th.begin("k", t0); ref != nil {
			t.Fatalf("attempt %d refused", i)
		}
	}
	if ref := th.begin("k", t0); ref == nil || ref.wait != time.Second {
		t.Fatalf("a fourth attempt in flight: %+v, want refused for 1s", ref)
	}
	// A cancelled reservation gives its place back; a success on the name
	// forgets it all.
	th.cancel("k")
	if ref := th.begin("k", t0); ref != nil {
		t.Fatalf("after a cancel: %+v", ref)
	}
	th.fail("k", t0)
	th.succeed("k")
	th.succeed("k")
	if th.len() != 0 {
		t.Fatalf("%d keys after the successes, want 0", th.len())
	}
}

func TestThrottleMemoryIsBoundedAndLockoutsSurviveAFlood(t *testing.T) {
	t.Parallel()
	th := newThrottle(2, time.Minute, time.Hour)
	th.capacity = 100
	failUntilLocked(t, th, "victim", t0)
	for i := range 10 * th.capacity {
		key := "random-" + strconv.Itoa(i)
		th.begin(key, t0)
		th.fail(key, t0)
	}
	if n := th.len(); n > th.capacity {
		t.Fatalf("%d keys held, capacity %d", n, th.capacity)
	}
	if th.lockLeft("victim", t0) == 0 {
		t.Fatal("a flood of fresh keys evicted a lockout")
	}
}

// A name's failures short of a lockout survive a flood of fresh names with
// one failure each: the guesser cannot reset the name's count by flooding.
func TestThrottleFailuresShortOfALockoutSurviveAFlood(t *testing.T) {
	t.Parallel()
	th := newThrottle(10, time.Hour, time.Hour)
	th.capacity = 100
	for i := range 9 {
		th.begin("victim", t0)
		if d := th.fail("victim", t0); d != 0 {
			t.Fatalf("failure %d locked", i)
		}
	}
	for i := range 10 * th.capacity {
		key := "random-" + strconv.Itoa(i)
		th.begin(key, t0)
		th.fail(key, t0)
	}
	th.begin("victim", t0)
	if d := th.fail("victim", t0); d == 0 {
		t.Fatal("the tenth failure did not lock: the flood reset the name's count")
	}
}

func TestThrottleAddr(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ remote, want string }{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:1234", "192.0.2.1"},
		{"[2001:db8:a:b:1:2:3:4]:1234", "2001:db8:a:b::/64"},
		{"[2001:db8:a:b::ffff]:1234", "2001:db8:a:b::/64"},
		{"[2001:db8:a:c::1]:1234", "2001:db8:a:c::/64"},
		{"@", "@"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		if got := throttleAddr(r); got != tt.want {
			t.Errorf("%s: key %q, want %q", tt.remote, got, tt.want)
		}
	}
}

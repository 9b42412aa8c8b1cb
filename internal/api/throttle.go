package api

import (
	lru "container/list"
	"net"
	"net/http"
	"sync"
	"time"
)

// throttle keeps a budget of failed logins per key (a client address, a
// user name) and locks a key out once it has spent it. It is consulted
// before any credential is checked: begin reserves an attempt, end settles
// it. Reserving first means concurrent attempts cannot overrun the budget
// while their checks are in flight.
//
// A key may fail budget times at once; its failures then drain at budget
// per period. The failure that fills the budget locks the key for one
// failure's share of the period (period/budget), with one attempt allowed
// after it; each lockout that follows before the failures have drained
// doubles, up to maxLock. Failures do not drain while the key is locked.
//
// The state is in this process's memory, bounded to capacity keys: when
// full, of the oldest few keys that are not locked out the one with the
// fewest failures is forgotten (a locked one only when all of them are
// locked), so a flood of random names or addresses costs bounded memory
// and cannot push out a key's record of guesses.
type throttle struct {
	budget   float64
	period   time.Duration
	maxLock  time.Duration
	capacity int

	mu      sync.Mutex
	entries map[string]*lru.Element // of *throttleEntry
	order   lru.List                // most recently used at the front
}

type throttleEntry struct {
	key      string
	level    float64   // failures not yet drained
	at       time.Time // when level was last drained
	until    time.Time // locked out until
	strikes  int       // lockouts since the failures last drained away
	inflight int       // attempts begun and not yet ended
	// noted is set once a refusal has been logged in the current
	// lockout, so a hammering client costs one log line per lockout.
	noted bool
}

// throttleCapacity bounds each throttle's keys: about 230 bytes each, 15 MB in all.
const throttleCapacity = 1 << 16

// evictScan is how many of the least recently used keys eviction looks
// through for the one to forget (evict).
const evictScan = 16

func newThrottle(budget int, period, maxLock time.Duration) *throttle {
	return &throttle{
		budget: float64(budget), period: period, maxLock: maxLock,
		capacity: throttleCapacity, entries: map[string]*lru.Element{},
	}
}

// refusal says why an attempt was refused.
type refusal struct {
	wait time.Duration
	// first is true for the first refusal of the key's current lockout.
	first bool
}

// locked reports, without reserving anything, whether key is locked out.
func (t *throttle) locked(key string, now time.Time) *refusal {
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.entries[key]
	if !ok {
		return nil
	}
	e := el.Value.(*throttleEntry)
	if now.Before(e.until) {
		return t.refuse(e, e.until.Sub(now))
	}
	return nil
}

// begin reserves an attempt for key, or refuses it: the key is locked out,
// or its remaining budget is taken by attempts in flight.
func (t *throttle) begin(key string, now time.Time) *refusal {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entry(key, now)
	if now.Before(e.until) {
		return t.refuse(e, e.until.Sub(now))
	}
	t.drain(e, now)
	if e.level+float64(e.inflight)+1 > t.budget {
		// Only attempts in flight can get here (the failure that fills
		// the budget locks the key): they settle within a second or so.
		return t.refuse(e, time.Second)
	}
	e.inflight++
	return nil
}

// cancel gives back a reservation whose attempt was not made.
func (t *throttle) cancel(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if el, ok := t.entries[key]; ok {
		e := el.Value.(*throttleEntry)
		e.inflight = max(0, e.inflight-1)
	}
}

// fail settles a reserved attempt as a failure. It returns the lockout this
// failure started, or 0.
func (t *throttle) fail(key string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entry(key, now)
	e.inflight = max(0, e.inflight-1)
	t.drain(e, now)
	e.level++
	if e.level < t.budget {
		return 0
	}
	e.strikes++
	lock := t.period / time.Duration(t.budget)
	for i := 1; i < e.strikes && lock < t.maxLock; i++ {
		lock *= 2
	}
	lock = max(min(lock, t.maxLock), time.Millisecond)
	e.until, e.at = now.Add(lock), now.Add(lock)
	// One attempt after the lockout; failing it locks again, for longer.
	e.level = t.budget - 1
	e.noted = false
	return lock
}

// succeed settles a reserved attempt as a success and forgets key's
// failures: a user name is clear once its owner has logged in.
func (t *throttle) succeed(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.entries[key]
	if !ok {
		return
	}
	e := el.Value.(*throttleEntry)
	e.inflight = max(0, e.inflight-1)
	if e.inflight == 0 {
		t.order.Remove(el)
		delete(t.entries, key)
		return
	}
	e.level, e.strikes, e.until = 0, 0, time.Time{}
}

// release settles a reserved attempt that succeeded without touching the
// key's failures (an address: one good login behind a NAT must not clear
// the failures of a guesser behind the same one).
func (t *throttle) release(key string) { t.cancel(key) }

// entry returns key's entry, creating it (and making room) when needed,
// and marks it used. Called with t.mu held.
func (t *throttle) entry(key string, now time.Time) *throttleEntry {
	if el, ok := t.entries[key]; ok {
		t.order.MoveToFront(el)
		return el.Value.(*throttleEntry)
	}
	if len(t.entries) >= t.capacity {
		t.evict(now)
	}
	e := &throttleEntry{key: key, at: now}
	t.entries[key] = t.order.PushFront(e)
	return e
}

// evict forgets one key: of the oldest evictScan that are neither locked
// out nor in flight, the one with the fewest failures (the least recently
// used among equals), else the least recently used of all. Keys that
// still hold failures outlast those that hold fewer, so a flood of fresh
// names (one failure each) cannot push out a name's record of guesses.
func (t *throttle) evict(now time.Time) {
	victim := t.order.Back()
	best := -1.0
	for el, n := t.order.Back(), 0; el != nil && n < evictScan; el, n = el.Prev(), n+1 {
		e := el.Value.(*throttleEntry)
		if now.Before(e.until) || e.inflight != 0 {
			continue
		}
		t.drain(e, now)
		if best < 0 || e.level < best {
			victim, best = el, e.level
		}
	}
	if victim != nil {
		t.order.Remove(victim)
		delete(t.entries, victim.Value.(*throttleEntry).key)
	}
}

// drain lets e's failures run off at budget per period since they last
// did; never during a lockout. Once none are left, its strikes are
// forgiven too. Called with t.mu held.
func (t *throttle) drain(e *throttleEntry, now time.Time) {
	if !now.After(e.at) {
		return
	}
	e.level -= t.budget * float64(now.Sub(e.at)) / float64(t.period)
	e.at = now
	if e.level <= 0 {
		e.level, e.strikes = 0, 0
	}
}

func (t *throttle) refuse(e *throttleEntry, wait time.Duration) *refusal {
	r := &refusal{wait: wait, first: !e.noted}
	e.noted = true
	return r
}

// len is the number of keys held.
func (t *throttle) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// throttleAddr is the key of r's client address in the address throttle:
// the connection's IP address, its /64 for IPv6 (one subscriber's
// allocation, which a guesser could otherwise walk through). Proxy
// headers such as X-Forwarded-For are not trusted.
func throttleAddr(r *http.Request) string {
	host := clientAddr(r)
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return host
	case ip.To4() != nil:
		return ip.To4().String()
	default:
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
}

package store

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Waiters lets API handlers wait for requests to settle. One Redis
// subscription per process serves every waiter; a periodic re-read covers
// announcements lost while the subscription reconnects.
type Waiters struct {
	s       *Store
	mu      sync.Mutex
	waiting map[int64]map[chan *Request]struct{}
}

// NewWaiters returns a hub; call Listen to connect it.
func (s *Store) NewWaiters() *Waiters {
	return &Waiters{s: s, waiting: map[int64]map[chan *Request]struct{}{}}
}

// Listen relays settle announcements to waiters until ctx ends.
func (w *Waiters) Listen(ctx context.Context, log *slog.Logger) {
	w.s.follow(ctx, w.s.keys.events(), func(payload string) {
		a, err := parseAnnouncement(payload)
		if err != nil {
			log.Warn("malformed settle announcement", "err", err)
			if a.id == 0 {
				return
			}
			a.vals = nil // the waiter reads the store
		}
		w.wake(a, log)
	}, nil)
}

// parseAnnouncement reads an announcement. When only its record part is
// malformed, the error comes with the request id.
//
// announcement is a settle announcement: "<id> <disposition>" and, from
// the save script (see saveScript), a second line "<version> <len d>
// <len x> <len c>" followed by the record's d, x and c fields as saved.
type announcement struct {
	id int64
	// vals are the record's fields as Get's HMGET answers them; nil when
	// the announcement carries no record (a waiter then reads the store).
	vals []any
}

func parseAnnouncement(payload string) (announcement, error) {
	head, rest, hasRecord := strings.Cut(payload, "\n")
	idText, _, _ := strings.Cut(head, " ")
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		return announcement{}, fmt.Errorf("announcement %.40q: request id: %w", head, err)
	}
	a := announcement{id: id}
	if !hasRecord {
		return a, nil
	}
	sizes, body, _ := strings.Cut(rest, "\n")
	f := strings.Fields(sizes)
	if len(f) != 4 {
		return a, fmt.Errorf("announcement for request %d: %d sizes, want 4", id, len(f))
	}
	vals := []any{f[0]}
	for _, n := range f[1:] {
		size, err := strconv.Atoi(n)
		if err != nil || size < 0 || size > len(body) {
			return a, fmt.Errorf("announcement for request %d: field size %q does not fit its %d bytes", id, n, len(body))
		}
		vals, body = append(vals, body[:size]), body[size:]
	}
	a.vals = vals
	return a, nil
}

// follow calls fn with every message on channel until ctx ends (go-redis
// resubscribes by itself after a reconnect). subscribed, if not nil, is
// closed once Redis confirmed the subscription (or could not be asked):
// from then on no message is missed.
func (s *Store) follow(ctx context.Context, channel string, fn func(payload string), subscribed chan<- struct{}) {
	ps := s.rdb.Subscribe(ctx, channel)
	defer ps.Close()
	if subscribed != nil {
		// The first reply is the subscription's confirmation; Channel()
		// would subscribe in the background, with no such moment.
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ps.Receive(rctx)
		cancel()
		close(subscribed)
	}
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			fn(m.Payload)
		}
	}
}

// wake hands an announced request to whoever waits for it: decoded from
// the announcement (only when somebody waits), or nil to say "read the
// store".
func (w *Waiters) wake(a announcement, log *slog.Logger) {
	w.mu.Lock()
	chans := make([]chan *Request, 0, len(w.waiting[a.id]))
	for c := range w.waiting[a.id] {
		chans = append(chans, c)
	}
	w.mu.Unlock()
	for _, c := range chans {
		var r *Request
		if a.vals != nil {
			// Each waiter gets its own copy: handlers may change theirs.
			var err error
			if r, err = decodeRequest(a.id, a.vals); err != nil {
				log.Warn("undecodable settle announcement; the waiter reads the store", "request", a.id, "err", err)
			}
		}
		offer(c, r)
	}
}

// offer puts r in c (capacity 1), replacing what a reader has not taken:
// a record outranks a bare wake-up.
func offer(c chan *Request, r *Request) {
	for {
		select {
		case c <- r:
			return
		default:
		}
		select {
		case old := <-c:
			if old != nil && r == nil {
				r = old
			}
		default:
		}
	}
}

// waitPoll is the fallback re-read interval.
const waitPoll = time.Second

// Waiter is one client's wait for one request.
type Waiter struct {
	w  *Waiters
	id int64
	c  chan *Request
	// seen is the newest version read from the store: an announcement
	// still on its way from before it is no answer.
	seen int64
}

// Register starts listening for request id's settle announcement. Register
// before the request can settle (before enqueueing it), and the first
// answer needs no read of the store.
func (w *Waiters) Register(id int64) *Waiter {
	c := make(chan *Request, 1)
	w.mu.Lock()
	if w.waiting[id] == nil {
		w.waiting[id] = map[chan *Request]struct{}{}
	}
	w.waiting[id][c] = struct{}{}
	w.mu.Unlock()
	return &Waiter{w: w, id: id, c: c}
}

// Close stops listening.
func (wt *Waiter) Close() {
	w := wt.w
	w.mu.Lock()
	delete(w.waiting[wt.id], wt.c)
	if len(w.waiting[wt.id]) == 0 {
		delete(w.waiting, wt.id)
	}
	w.mu.Unlock()
}

// Wait returns the request once it has settled (Request.Answered), or as it stands when ctx
// ends (with ctx's error). An announcement that carries the settled record
// answers at once; otherwise the store is read when an announcement comes,
// once a second in case one was lost, and when time is up.
func (wt *Waiter) Wait(ctx context.Context) (*Request, error) {
	tick := time.NewTicker(waitPoll)
	defer tick.Stop()
	for {
		var done bool
		select {
		case <-ctx.Done():
			done = true
		case r := <-wt.c:
			// The certificate's chain comes from the cache (else from
			// Redis, else the store is read below).
			if r != nil && r.Answered() && r.version >= wt.seen && wt.w.s.resolveChains(ctx, r) == nil {
				return r, nil
			}
		case <-tick.C:
		}
		// Reads use a context of their own so that a deadline reached while
		// waiting still lets us report the request as it stands.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		r, err := wt.w.s.Get(rctx, wt.id)
		cancel()
		if err != nil || r.Answered() {
			return r, err
		}
		wt.seen = r.version
		if done {
			return r, ctx.Err()
		}
	}
}

// Wait registers for request id and waits for it (see Waiter.Wait); the
// request may have settled already.
func (w *Waiters) Wait(ctx context.Context, id int64) (*Request, error) {
	wt := w.Register(id)
	defer wt.Close()
	offer(wt.c, nil) // read once at once: it may have settled before Register
	return wt.Wait(ctx)
}

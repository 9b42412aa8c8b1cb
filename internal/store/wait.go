package store

import (
	"context"
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
	waiting map[int64]map[chan struct{}]struct{}
}

// NewWaiters returns a hub; call Listen to connect it.
func (s *Store) NewWaiters() *Waiters {
	return &Waiters{s: s, waiting: map[int64]map[chan struct{}]struct{}{}}
}

// Listen relays settle announcements to waiters until ctx ends.
func (w *Waiters) Listen(ctx context.Context, log *slog.Logger) {
	w.s.follow(ctx, w.s.keys.events(), func(payload string) {
		idText, _, _ := strings.Cut(payload, " ")
		id, err := strconv.ParseInt(idText, 10, 64)
		if err != nil {
			log.Warn("malformed settle announcement", "payload", payload)
			return
		}
		w.wake(id)
	}, nil)
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

func (w *Waiters) wake(id int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for c := range w.waiting[id] {
		select {
		case c <- struct{}{}:
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
	c  chan struct{}
}

// Register starts listening for request id's settle announcement. Register
// before the request can settle (before enqueueing it), and the first
// answer needs no read of the store.
func (w *Waiters) Register(id int64) *Waiter {
	c := make(chan struct{}, 1)
	w.mu.Lock()
	if w.waiting[id] == nil {
		w.waiting[id] = map[chan struct{}]struct{}{}
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

// Wait returns the request once it has settled, or as it stands when ctx
// ends (with ctx's error). The store is read when an announcement comes,
// once a second in case one was lost, and when time is up.
func (wt *Waiter) Wait(ctx context.Context) (*Request, error) {
	tick := time.NewTicker(waitPoll)
	defer tick.Stop()
	for {
		var done bool
		select {
		case <-ctx.Done():
			done = true
		case <-wt.c:
		case <-tick.C:
		}
		// Reads use a context of their own so that a deadline reached while
		// waiting still lets us report the request as it stands.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		r, err := wt.w.s.Get(rctx, wt.id)
		cancel()
		if err != nil || r.Disposition.Settled() {
			return r, err
		}
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
	select {
	case wt.c <- struct{}{}: // read once at once: it may have settled before Register
	default:
	}
	return wt.Wait(ctx)
}

// Package testclock is a clock tests move by hand. It imports nothing of
// certflow, so that any package's own tests can use it.
package testclock

import (
	"sync"
	"time"
)

// Clock is a clock that moves only when told to, so that tests wait out
// lockouts and deadlines without sleeping.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock standing at t.
func New(t time.Time) *Clock { return &Clock{now: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

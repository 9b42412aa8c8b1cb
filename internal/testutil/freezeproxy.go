package testutil

import (
	"bytes"
	"net"
	"sync"
	"testing"
)

// FreezeProxy is a TCP proxy to a Redis that can freeze at an exact
// command: once armed, the first client write holding that command (a
// RESP bulk string, e.g. "HSET") and every other given text (a key, say)
// is swallowed, and from then on nothing
// more reaches Redis and nothing more comes back, while every connection
// stays open — Redis hanging at a chosen point of a caller's sequence of
// commands. Unfreeze lets traffic flow again.
type FreezeProxy struct {
	Addr string

	mu      sync.Mutex
	trigger [][]byte // what the freezing write holds; nil: not armed
	frozen  bool
	thawed  *sync.Cond
	ln      net.Listener
	conns   []net.Conn
	// closeOnce: Close runs once.
	closeOnce sync.Once
}

// StartFreezeProxy proxies a free loopback port to target (host:port)
// until the test ends.
func StartFreezeProxy(t testing.TB, target string) *FreezeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &FreezeProxy{Addr: ln.Addr().String(), ln: ln}
	p.thawed = sync.NewCond(&p.mu)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go p.pipe(up, c, true)  // client → Redis
			go p.pipe(c, up, false) // Redis → client
		}
	}()
	t.Cleanup(p.Close)
	return p
}

// Close stops the proxy and closes every connection through it (once).
// A test whose certflow goes through the proxy registers it again after
// starting certflow, so that it runs first: a command swallowed by a
// freeze leaves its connection waiting for ever (asynq's subscription
// would then hold up the worker's shutdown); closed, it fails instead.
func (p *FreezeProxy) Close() {
	p.closeOnce.Do(func() {
		p.ln.Close()
		p.Unfreeze()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
}

// URL is the proxy's redis:// URL.
func (p *FreezeProxy) URL() string { return "redis://" + p.Addr + "/0" }

// FreezeAt arms the proxy to freeze at the next write holding command
// and every one of texts (ignoring case).
func (p *FreezeProxy) FreezeAt(command string, texts ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.trigger = [][]byte{bytes.ToLower([]byte("\r\n" + command + "\r\n"))}
	for _, s := range texts {
		p.trigger = append(p.trigger, bytes.ToLower([]byte(s)))
	}
}

func (p *FreezeProxy) matches(b []byte) bool {
	b = bytes.ToLower(b) // go-redis spells commands in lower case
	for _, t := range p.trigger {
		if !bytes.Contains(b, t) {
			return false
		}
	}
	return p.trigger != nil
}

// Frozen reports whether the proxy has frozen.
func (p *FreezeProxy) Frozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

// Unfreeze disarms the proxy and lets traffic flow again. What was
// swallowed stays lost, as a write that never reached a hung Redis.
func (p *FreezeProxy) Unfreeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.trigger, p.frozen = nil, false
	p.thawed.Broadcast()
}

// pipe copies src to dst; toRedis is the client-to-Redis direction,
// where the trigger is looked for.
func (p *FreezeProxy) pipe(dst, src net.Conn, toRedis bool) {
	defer dst.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if toRedis && !p.frozen && p.matches(buf[:n]) {
				p.frozen = true
			}
			swallow := p.frozen && toRedis
			for p.frozen && !toRedis {
				p.thawed.Wait() // answers wait until thawed
			}
			p.mu.Unlock()
			if !swallow {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

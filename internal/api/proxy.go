package api

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/certflow/certflow/internal/config"
)

// maxForwardedHops bounds how many X-Forwarded-For entries are read from
// the right: a chain of proxies is short, and a client may send a long
// header of its own in front of the addresses the proxies appended.
const maxForwardedHops = 16

// trustedProxies is api.trusted_proxies, parsed (validated at load).
type trustedProxies []netip.Prefix

func parseTrustedProxies(entries []string) trustedProxies {
	var ps trustedProxies
	for _, e := range entries {
		if p, err := config.ParseProxy(e); err == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

func (ps trustedProxies) trusts(a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// clientAddr is the client's address as RemoteAddr should carry it: the
// connection's own, unless that is a trusted proxy, in which case the
// right-most X-Forwarded-For address that is not a trusted proxy (the
// left part of the header is the client's to write, so it is never
// believed past the first untrusted hop). A header that does not parse
// leaves the last trusted hop: the proxy's address, throttled as one
// client, never an address a client chose.
func (ps trustedProxies) clientAddr(r *http.Request) string {
	if len(ps) == 0 {
		return r.RemoteAddr
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !ps.trusts(peer) {
		return r.RemoteAddr
	}
	// Read from the right, entry by entry, at most maxForwardedHops of
	// them: the header's left part may be a client's megabyte of commas.
	values := r.Header.Values("X-Forwarded-For")
	read := 0
	for v := len(values) - 1; v >= 0 && read < maxForwardedHops; v-- {
		rest := values[v]
		for read < maxForwardedHops {
			i := strings.LastIndexByte(rest, ',')
			a, err := netip.ParseAddr(strings.TrimSpace(rest[i+1:]))
			if err != nil {
				return r.RemoteAddr
			}
			if !ps.trusts(a) {
				return net.JoinHostPort(a.Unmap().String(), "0")
			}
			read++
			if i < 0 {
				break
			}
			rest = rest[:i]
		}
	}
	return r.RemoteAddr
}

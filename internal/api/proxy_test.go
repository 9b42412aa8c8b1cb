package api

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestTrustedProxiesClientAddr: only a trusted proxy's X-Forwarded-For is
// read, right to left, past other trusted proxies; whatever a client
// writes itself (the header's left part, a header sent straight to
// certflow, garbage) never picks the address it is throttled by.
func TestTrustedProxiesClientAddr(t *testing.T) {
	t.Parallel()
	ps := parseTrustedProxies([]string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"})
	long := strings.Repeat("198.51.100.9, ", 40) + "10.0.0.2"
	for _, tt := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"no proxy: the header is ignored", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5:4000"},
		{"a trusted proxy: the client it names", "10.1.2.3:4000", []string{"198.51.100.1"}, "198.51.100.1:0"},
		{"a single trusted address", "192.0.2.7:4000", []string{"198.51.100.1"}, "198.51.100.1:0"},
		{"a client's own entries left of the real one are not believed", "10.1.2.3:4000", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1:0"},
		{"a chain of trusted proxies is walked", "10.1.2.3:4000", []string{"198.51.100.1, 10.9.9.9", "192.0.2.7"}, "198.51.100.1:0"},
		{"IPv6 through an IPv6 proxy", "[2001:db8::1]:4000", []string{"2001:db8:ffff::1, 2600::5"}, "[2600::5]:0"},
		{"an IPv4-mapped proxy address", "[::ffff:10.0.0.1]:4000", []string{"198.51.100.1"}, "198.51.100.1:0"},
		{"a trusted proxy without the header stays itself", "10.1.2.3:4000", nil, "10.1.2.3:4000"},
		{"a header that does not parse stays the proxy", "10.1.2.3:4000", []string{"198.51.100.1, not-an-ip"}, "10.1.2.3:4000"},
		{"only trusted hops: the proxy", "10.1.2.3:4000", []string{"10.0.0.9"}, "10.1.2.3:4000"},
		{"more hops than are read: the proxy", "10.1.2.3:4000", []string{strings.Repeat("10.0.0.1, ", 20) + "10.0.0.2"}, "10.1.2.3:4000"},
		{"a long client-written prefix is not read", "10.1.2.3:4000", []string{long}, "198.51.100.9:0"},
		{"a megabyte of commas before the real client", "10.1.2.3:4000", []string{strings.Repeat(",", 1<<20) + "198.51.100.9"}, "198.51.100.9:0"},
		{"an empty entry next to the proxy stays the proxy", "10.1.2.3:4000", []string{strings.Repeat(",", 1<<20)}, "10.1.2.3:4000"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := ps.clientAddr(r); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.1.2.3:4000"
	r.Header.Set("X-Forwarded-For", "198.51.100.1")
	if got := trustedProxies(nil).clientAddr(r); got != r.RemoteAddr {
		t.Errorf("with no trusted proxies: %q", got)
	}
}

package acmetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// ChallSrv is a pebble-challtestsrv: a DNS server (UDP and TCP) whose
// records a test sets through its management interface. Names without a
// record of their own resolve to 127.0.0.1 (A) and to nothing (AAAA). Its
// HTTP-01, HTTPS, TLS-ALPN-01 and DoH servers are off.
type ChallSrv struct {
	DNSAddr string // host:port, UDP and TCP
	MgmtURL string // http://127.0.0.1:<port>

	client *http.Client
}

// StartChallSrv starts a pebble-challtestsrv on free ports; it is killed
// when the test ends.
func StartChallSrv(t testing.TB) *ChallSrv {
	t.Helper()
	bin := Binary(t, "pebble-challtestsrv")
	dir := t.TempDir()
	dnsPort, mgmtPort := freePort(t, true), freePort(t, false)
	c := &ChallSrv{
		DNSAddr: fmt.Sprintf("127.0.0.1:%d", dnsPort),
		MgmtURL: fmt.Sprintf("http://127.0.0.1:%d", mgmtPort),
		client:  &http.Client{Timeout: 5 * time.Second},
	}
	p := startProcess(t, "pebble-challtestsrv", dir, bin, []string{
		"-defaultIPv4", "127.0.0.1",
		"-defaultIPv6", "",
		"-dnsserver", c.DNSAddr,
		"-management", fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
	}, nil)
	p.waitReady(t, func() error {
		// Ready when both the management interface and DNS over TCP answer.
		if err := c.post("/clear-txt", map[string]string{"host": "acmetest-ready.invalid."}); err != nil {
			return err
		}
		conn, err := net.DialTimeout("tcp", c.DNSAddr, time.Second)
		if err != nil {
			return err
		}
		return conn.Close()
	})
	return c
}

// SetTXT adds value to the TXT records of fqdn (e.g.
// "_acme-challenge.example.test."; a missing final dot is added). Values
// accumulate until ClearTXT, as an authorization for a name and its
// wildcard needs two.
func (c *ChallSrv) SetTXT(t testing.TB, fqdn, value string) {
	t.Helper()
	if err := c.post("/set-txt", map[string]string{"host": dnsFQDN(fqdn), "value": value}); err != nil {
		t.Fatalf("challtestsrv: set TXT %s: %v", fqdn, err)
	}
}

// ClearTXT removes every TXT record of fqdn.
func (c *ChallSrv) ClearTXT(t testing.TB, fqdn string) {
	t.Helper()
	if err := c.post("/clear-txt", map[string]string{"host": dnsFQDN(fqdn)}); err != nil {
		t.Fatalf("challtestsrv: clear TXT %s: %v", fqdn, err)
	}
}

// AddA adds ip to the A records of host (which then no longer resolves to
// the default 127.0.0.1 unless ip is it).
func (c *ChallSrv) AddA(t testing.TB, host, ip string) {
	t.Helper()
	if err := c.post("/add-a", map[string]any{"host": dnsFQDN(host), "addresses": []string{ip}}); err != nil {
		t.Fatalf("challtestsrv: add A %s: %v", host, err)
	}
}

func (c *ChallSrv) post(path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := c.client.Post(c.MgmtURL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errStatus(resp)
	}
	return nil
}

func dnsFQDN(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// A loadClient is one load-generating client: a single keep-alive
// HTTP/1.1 connection, each request written with one write and its answer
// read on the same goroutine, as wrk and hey do. net/http's Transport
// costs a reader and a writer goroutine and two hand-offs per request;
// on a 2-core machine shared with the certflow being measured, that was
// about a tenth of all CPU, charged to certflow's figure though no
// deployment pays it. Not safe for concurrent use: one per client.
type loadClient struct {
	addr   string      // host:port to dial
	host   string      // Host header
	base   string      // the target's path, prefixed to each request's
	tls    *tls.Config // nil for http
	header []byte      // fixed request headers, each ending in CRLF
	conn   net.Conn
	br     *bufio.Reader
	req    []byte
	stop   func() bool // unregisters the close-on-cancel of conn
}

// newLoadClient returns a client for base (http or https URL) that sends
// headers with every request.
func newLoadClient(base string, headers http.Header) (*loadClient, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("--target %q: %w", base, err)
	}
	c := &loadClient{host: u.Host, base: strings.TrimRight(u.Path, "/")}
	port := u.Port()
	switch u.Scheme {
	case "http":
		port = cmpString(port, "80")
	case "https":
		port = cmpString(port, "443")
		c.tls = &tls.Config{ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}}
	default:
		return nil, fmt.Errorf("--target %q: want an http or https URL", base)
	}
	c.addr = net.JoinHostPort(u.Hostname(), port)
	for name, values := range headers {
		for _, v := range values {
			c.header = append(c.header, name+": "+v+"\r\n"...)
		}
	}
	return c, nil
}

func cmpString(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

// post sends one POST and returns the answer's status and body (read to
// its end, so the connection can carry the next request). Any failure
// closes the connection; the next call dials afresh. A POST is never
// re-sent: an enrollment that might have arrived is not made twice.
func (c *loadClient) post(ctx context.Context, path string, body []byte) (int, []byte, error) {
	if err := c.connect(ctx); err != nil {
		return 0, nil, err
	}
	c.req = append(c.req[:0], "POST "...)
	c.req = append(c.req, c.base...)
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, c.host...)
	c.req = append(c.req, "\r\nContent-Length: "...)
	c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
	c.req = append(c.req, "\r\n"...)
	c.req = append(c.req, c.header...)
	c.req = append(c.req, "\r\n"...)
	c.req = append(c.req, body...)
	if _, err := c.conn.Write(c.req); err != nil {
		return 0, nil, c.fail(ctx, err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, nil, c.fail(ctx, err)
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, nil, c.fail(ctx, err)
	}
	if resp.Close {
		c.Close()
	}
	return resp.StatusCode, answer, nil
}

func (c *loadClient) connect(ctx context.Context) error {
	if c.conn != nil {
		return nil
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return err
	}
	if c.tls != nil {
		tc := tls.Client(conn, c.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return err
		}
		conn = tc
	}
	c.conn = conn
	if c.br == nil {
		c.br = bufio.NewReaderSize(conn, 16<<10)
	} else {
		c.br.Reset(conn)
	}
	// A cancelled run must not leave a client blocked on a read.
	c.stop = context.AfterFunc(ctx, func() { conn.Close() })
	return nil
}

// fail closes the connection after err and returns err, or the context's
// error when the run was cancelled (which is what closed the connection).
func (c *loadClient) fail(ctx context.Context, err error) error {
	c.Close()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Close closes the connection, if any.
func (c *loadClient) Close() {
	if c.conn == nil {
		return
	}
	c.stop()
	c.conn.Close()
	c.conn = nil
}

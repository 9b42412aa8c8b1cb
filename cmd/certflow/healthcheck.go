package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/app"
	"github.com/certflow/certflow/internal/redact"
)

// runHealthcheck is `certflow healthcheck`: a container's health probe
// (the distroless image has no curl). It asks the API's public /readyz,
// or with --redis (a worker, which serves no HTTP) pings the configured
// Redis; it prints one line and exits 0 when healthy, 1 otherwise.
func runHealthcheck(args []string, stdout, stderr io.Writer) error {
	fset := newFlagSet("healthcheck", "[--url URL] [--cacert FILE] [--redis] [flags]",
		"Exit 0 if certflow's API answers GET /readyz with 200 (it checks Redis too), else 1.\n"+
			"With --redis, ping the configured Redis instead: the check for a worker, which serves no HTTP.", stderr)
	var s app.Settings
	settingFlags(fset, &s, "config", "redis-url", "data-dir", "listen")
	url := fset.String("url", "", "the API's base URL, http or https (default: from --listen / CERTFLOW_LISTEN, on loopback)")
	cacert := fset.String("cacert", "", "CA certificates to trust for an https URL (default <data-dir>/ca-bundle.pem when it exists, else the system's)")
	checkRedis := fset.Bool("redis", false, "ping the configured Redis instead of the API")
	timeout := fset.Duration("timeout", 5*time.Second, "give up after this long")
	positional, err := parseArgs(fset, args)
	if err != nil {
		return err
	}
	if err := noArgs(fset, positional); err != nil {
		return err
	}
	cfg, err := app.LoadConfig(s.FromEnv())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if *checkRedis {
		return pingRedis(ctx, cfg.RedisURL, stdout)
	}
	base := *url
	if base == "" {
		base = "http://" + loopbackAddr(cfg.Listen)
	}
	bundle, explicit := *cacert, *cacert != ""
	if !explicit {
		bundle = filepath.Join(cfg.DataDir, "ca-bundle.pem")
	}
	client, err := healthClient(bundle, explicit)
	if err != nil {
		return err
	}
	target := strings.TrimSuffix(base, "/") + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	shown := redact.URL(target)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stdout, "unhealthy: %s: %v\n", shown, err)
		return exitCode(1)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stdout, "unhealthy: %s: %s %s\n", shown, resp.Status, strings.TrimSpace(string(body)))
		return exitCode(1)
	}
	fmt.Fprintf(stdout, "healthy: %s: %s\n", shown, resp.Status)
	return nil
}

// loopbackAddr is where a probe on the same host reaches an API listening
// on addr: a wildcard or empty host means the loopback address.
func loopbackAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// healthClient trusts the CA bundle at path for https (certflow's own CA,
// as its TLS listener writes it); a default bundle that does not exist
// leaves the system's roots, a named one must exist.
func healthClient(path string, explicit bool) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // a health probe asks the address it names
	pem, err := os.ReadFile(path)
	switch {
	case err == nil:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", path)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	case explicit || !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("--cacert: %w", err)
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

func pingRedis(ctx context.Context, url string, stdout io.Writer) error {
	if url == "" {
		return errors.New("--redis: no Redis configured (CERTFLOW_REDIS_URL or --redis-url)")
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return fmt.Errorf("redis url: %w", err)
	}
	opts.MaxRetries = -1
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	shown := redact.URL(url)
	if err := rdb.Ping(ctx).Err(); err != nil {
		fmt.Fprintf(stdout, "unhealthy: Redis %s: %v\n", shown, err)
		return exitCode(1)
	}
	fmt.Fprintf(stdout, "healthy: Redis %s answers\n", shown)
	return nil
}

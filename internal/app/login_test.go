package app_test

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/internal/testutil/testclock"
)

// credential is one login attempt: a Basic user name and password, or
// (user "Bearer") a bearer token, sent from a loopback address of its own.
type credential struct {
	from, user, secret string
}

// loginFrom sends GET /Status/Endpoints with c from c.from: every
// 127.0.0.0/8 address is this host's, so the server sees a distinct
// client address without trusting any proxy header.
func loginFrom(t *testing.T, cf *testutil.Certflow, c credential) *testutil.Response {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.from)}}
	tr := &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(context.Background(), "GET", cf.URL+"/Status/Endpoints", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.user == "Bearer" {
		req.Header.Set("Authorization", "Bearer "+c.secret)
	} else {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(c.user+":"+c.secret)))
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("login from %s: %v", c.from, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := &testutil.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
	testutil.CheckContract(t, req, nil, out)
	return out
}

// TestPolicyLoginThrottling: each row is a guesser's run of failed logins.
// Once a budget is spent, the right credential is refused too (429,
// Retry-After, the budget named), no more than the budget's guesses were
// ever checked, and after the Retry-After the right credential works.
// Defaults: 30 failures per address and minute, 10 per user name and hour.
func TestPolicyLoginThrottling(t *testing.T) {
	t.Parallel()
	const perAddress, perName = config.DefaultAuthFailuresPerMinute, config.DefaultAuthFailuresPerUserPerHour
	repeat := func(n int, f func(i int) credential) []credential {
		var cs []credential
		for i := range n {
			cs = append(cs, f(i))
		}
		return cs
	}
	spread := func(i int) string { return "127.0.1." + strconv.Itoa(i+1) }
	tests := []struct {
		name     string
		guesses  []credential
		parallel bool
		right    credential
		// budget is the most guesses that may have been checked (401);
		// limit is the budget the refusal names.
		budget int
		limit  string
	}{
		{
			name:    "40 wrong passwords then the right one from the same address",
			guesses: repeat(40, func(i int) credential { return credential{"127.0.0.2", "carol", "wrong-" + strconv.Itoa(i)} }),
			right:   credential{"127.0.0.2", "carol", testutil.CarolPassword},
			budget:  perName, limit: "user name",
		},
		{
			name:    "one name's password guessed from 40 addresses, then the right one from another",
			guesses: repeat(40, func(i int) credential { return credential{spread(i), "carol", "wrong-" + strconv.Itoa(i)} }),
			right:   credential{"127.0.0.3", "carol", testutil.CarolPassword},
			budget:  perName, limit: "user name",
		},
		{
			name: "one name under different domain prefixes",
			guesses: repeat(40, func(i int) credential {
				return credential{spread(i), []string{`CORP\carol`, `OTHER\carol`, "carol"}[i%3], "wrong-" + strconv.Itoa(i)}
			}),
			right:  credential{"127.0.0.4", `CORP\carol`, testutil.CarolPassword},
			budget: perName, limit: "user name",
		},
		{
			name:    "a token user's name with guessed passwords over Basic",
			guesses: repeat(40, func(i int) credential { return credential{spread(i), "bob", "guess-" + strconv.Itoa(i)} }),
			right:   credential{"127.0.0.5", "bob", testutil.BobToken},
			budget:  perName, limit: "user name",
		},
		{
			name:    "random unknown names from one address",
			guesses: repeat(60, func(i int) credential { return credential{"127.0.0.6", "nobody-" + strconv.Itoa(i), "guess"} }),
			right:   credential{"127.0.0.6", "carol", testutil.CarolPassword},
			budget:  perAddress, limit: "address",
		},
		{
			name:    "bearer token guessing from one address",
			guesses: repeat(60, func(i int) credential { return credential{"127.0.0.7", "Bearer", "guess-" + strconv.Itoa(i)} }),
			right:   credential{"127.0.0.7", "Bearer", testutil.AliceToken},
			budget:  perAddress, limit: "address",
		},
		{
			name:     "40 wrong passwords for one name sent at once",
			guesses:  repeat(40, func(i int) credential { return credential{spread(i), "carol", "wrong-" + strconv.Itoa(i)} }),
			parallel: true,
			right:    credential{"127.0.0.8", "carol", testutil.CarolPassword},
			budget:   perName, limit: "user name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cf := testutil.StartCertflow(t, nil)
			clock := testclock.New(time.Now())
			cf.App.Auth.SetClock(clock.Now)

			answers := make([]*testutil.Response, len(tt.guesses))
			var wg sync.WaitGroup
			for i, g := range tt.guesses {
				if !tt.parallel {
					answers[i] = loginFrom(t, cf, g)
					continue
				}
				wg.Go(func() { answers[i] = loginFrom(t, cf, g) })
			}
			wg.Wait()
			checked := 0
			for i, r := range answers {
				switch r.Status {
				case http.StatusUnauthorized:
					checked++
				case http.StatusTooManyRequests:
				default:
					t.Fatalf("guess %d: %d %s", i, r.Status, r.Body)
				}
			}
			if checked > tt.budget || checked == 0 {
				t.Fatalf("%d of %d guesses were checked, want 1 to %d", checked, len(tt.guesses), tt.budget)
			}

			r := loginFrom(t, cf, tt.right)
			assertError(t, r, http.StatusTooManyRequests, keyfactor.CodeRateLimited, "failed authentications")
			assertError(t, r, http.StatusTooManyRequests, keyfactor.CodeRateLimited, tt.limit)
			wait, err := strconv.Atoi(r.Header.Get("Retry-After"))
			if err != nil || wait < 1 || time.Duration(wait)*time.Second > config.DefaultAuthMaxLockout {
				t.Fatalf("Retry-After %q, want whole seconds up to the maximum lockout", r.Header.Get("Retry-After"))
			}
			clock.Advance(time.Duration(wait)*time.Second - time.Second)
			if r := loginFrom(t, cf, tt.right); r.Status != http.StatusTooManyRequests {
				t.Fatalf("the right credential a second before Retry-After: %d", r.Status)
			}
			clock.Advance(time.Second)
			if r := loginFrom(t, cf, tt.right); r.Status != http.StatusOK {
				t.Fatalf("the right credential after Retry-After: %d %s", r.Status, r.Body)
			}

			logs := cf.Logs.String()
			who := "addr=" + tt.right.from
			if tt.limit == "user name" {
				who = "user=" + tt.guesses[len(tt.guesses)-1].user[strings.LastIndex(tt.guesses[len(tt.guesses)-1].user, `\`)+1:]
			}
			if !strings.Contains(logs, "login locked out") || !strings.Contains(logs, "login refused") || !strings.Contains(logs, who) {
				t.Fatalf("the lockout and a refusal are not logged with %s", who)
			}
			for _, g := range append(tt.guesses, tt.right) {
				if strings.Contains(logs, g.secret) {
					t.Fatalf("a guessed or right secret %q reached the log", g.secret)
				}
			}
		})
	}
}

// TestLoginLockoutsDouble: a name that fails again right after its lockout
// is locked for twice as long, and an address that keeps failing likewise.
func TestLoginLockoutsDouble(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	clock := testclock.New(time.Now())
	cf.App.Auth.SetClock(clock.Now)
	retryAfter := func(c credential) int {
		t.Helper()
		r := loginFrom(t, cf, c)
		if r.Status != http.StatusTooManyRequests {
			t.Fatalf("%s from %s: %d, want 429", c.user, c.from, r.Status)
		}
		s, _ := strconv.Atoi(r.Header.Get("Retry-After"))
		return s
	}
	wrong := credential{"127.0.2.1", "carol", "wrong"}
	for range config.DefaultAuthFailuresPerUserPerHour {
		loginFrom(t, cf, wrong)
	}
	first := retryAfter(wrong)
	if first != 6*60 {
		t.Fatalf("first lockout of a name %ds, want 360 (an hour / 10)", first)
	}
	clock.Advance(time.Duration(first) * time.Second)
	if r := loginFrom(t, cf, wrong); r.Status != http.StatusUnauthorized {
		t.Fatalf("the one try after a lockout: %d", r.Status)
	}
	if second := retryAfter(wrong); second != 2*first {
		t.Fatalf("second lockout %ds, want %d", second, 2*first)
	}
}

// TestLoginThrottleBehindTrustedProxies: behind a TLS-terminating proxy
// every client arrives from the proxy's address. With the proxy in
// api.trusted_proxies a guesser is locked out by its own forwarded
// address and others behind the same proxy still log in; without it,
// a forwarded address the client writes itself does not escape the
// lockout of the address it connects from.
func TestLoginThrottleBehindTrustedProxies(t *testing.T) {
	t.Parallel()
	guess := func(cf *testutil.Certflow, xff string) int {
		return cf.Do(t, "GET", "/Status/Endpoints", nil, "Authorization", "Bearer guess", "X-Forwarded-For", xff).Status
	}
	login := func(cf *testutil.Certflow, xff string) int {
		return cf.Do(t, "GET", "/Status/Endpoints", nil, "Authorization", "Bearer "+testutil.AliceToken, "X-Forwarded-For", xff).Status
	}
	locked := func(cf *testutil.Certflow, xff func(i int) string) {
		t.Helper()
		for i := 0; ; i++ {
			if i > 10*config.DefaultAuthFailuresPerMinute {
				t.Fatal("guessing was never locked out")
			}
			if guess(cf, xff(i)) == http.StatusTooManyRequests {
				return
			}
		}
	}

	behind := testutil.StartCertflow(t, func(c *config.Config) { c.API.TrustedProxies = []string{"127.0.0.0/8"} })
	locked(behind, func(int) string { return "198.51.100.1" })
	if got := login(behind, "198.51.100.1"); got != http.StatusTooManyRequests {
		t.Errorf("the guesser's own address logged in: %d, want 429", got)
	}
	if got := login(behind, "198.51.100.2"); got != http.StatusOK {
		t.Errorf("another client behind the same proxy: %d, want 200", got)
	}

	direct := testutil.StartCertflow(t, nil)
	locked(direct, func(i int) string { return "198.51.100." + strconv.Itoa(i%250+1) })
	if got := login(direct, "203.0.113.77"); got != http.StatusTooManyRequests {
		t.Errorf("a client-written X-Forwarded-For escaped the lockout: %d, want 429", got)
	}
}

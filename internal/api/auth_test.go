package api

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/testutil/testclock"
)

const (
	testAliceToken = "alice-token"
	testBobToken   = "bob-token"
	testCarolPass  = "carol-password"
)

var testHashes sync.Map // cost → bcrypt hash of testCarolPass

func testHash(cost int) string {
	if h, ok := testHashes.Load(cost); ok {
		return h.(string)
	}
	h, _ := bcrypt.GenerateFromPassword([]byte(testCarolPass), cost)
	testHashes.Store(cost, string(h))
	return string(h)
}

// authBundle is an Authenticator with a fake clock, a log, and a count of
// its bcrypt comparisons with the cost of each hash compared.
type authBundle struct {
	auth  *Authenticator
	clock *testclock.Clock
	logs  *bytes.Buffer
	mu    sync.Mutex
	costs []int
}

func (b *authBundle) comparisons() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.costs...)
}

// setupAuth builds an Authenticator for alice and bob (token users) and
// carol (password user, hashed at cost), with change applied to the
// config.
func setupAuth(t testing.TB, cost int, change func(*config.Config)) *authBundle {
	t.Helper()
	cfg := config.Default()
	cfg.Auth.Users = []config.User{
		{Name: "alice", Token: testAliceToken, Roles: []string{config.RoleRequester}},
		{Name: "bob", Token: testBobToken, Roles: []string{config.RoleApprover}},
		{Name: "carol", PasswordHash: testHash(cost), Roles: []string{config.RoleRequester}},
	}
	if change != nil {
		change(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b := &authBundle{clock: testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), logs: &bytes.Buffer{}}
	b.auth = NewAuthenticator(&cfg, "", slog.New(slog.NewTextHandler(b.logs, nil)))
	b.auth.SetClock(b.clock.Now)
	compare := b.auth.compare
	b.auth.compare = func(hash, password []byte) error {
		c, err := bcrypt.Cost(hash)
		if err != nil {
			t.Errorf("compared against a hash that is not bcrypt: %v", err)
		}
		b.mu.Lock()
		b.costs = append(b.costs, c)
		b.mu.Unlock()
		return compare(hash, password)
	}
	return b
}

// basicReq is a request from addr with Basic credentials user:pass (none
// when user is "-") or, for user "Bearer", the bearer token pass.
func basicReq(addr, user, pass string) *http.Request {
	r := httptest.NewRequest("GET", "/status/endpoints", nil)
	r.RemoteAddr = addr + ":40000"
	if strings.Contains(addr, ":") {
		r.RemoteAddr = "[" + addr + "]:40000"
	}
	switch user {
	case "-":
	case "Bearer":
		r.Header.Set("Authorization", "Bearer "+pass)
	default:
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	}
	return r
}

// TestFailedLoginsCostTheSame proves, by counting through the compare
// seam rather than by timing, that every failed Basic login does the same
// work: one bcrypt comparison at the configured cost, whoever the name
// belongs to.
func TestFailedLoginsCostTheSame(t *testing.T) {
	t.Parallel()
	const cost = bcrypt.MinCost + 1
	b := setupAuth(t, cost, nil)
	if got, _ := bcrypt.Cost(b.auth.dummy); got != cost {
		t.Fatalf("dummy hash cost %d, want the configured %d", got, cost)
	}
	tests := []struct {
		name, user, pass string
		comparisons      int
	}{
		{"an unknown name", "mallory", "guess", 1},
		{"an unknown name with a domain", `CORP\mallory`, "guess", 1},
		{"an unknown name with a password beyond bcrypt's 72 bytes", "mallory", strings.Repeat("x", 200), 1},
		{"a token user with a wrong password", "alice", "guess", 1},
		{"a token user with another user's token", "alice", testBobToken, 1},
		{"a password user with a wrong password", "carol", "guess", 1},
		{"a password user with an empty password", "carol", "", 1},
		{"a bearer token that is nobody's (it names no user)", "Bearer", "guess", 0},
	}
	for i, tt := range tests {
		before := len(b.comparisons())
		l := b.auth.login(basicReq("192.0.2."+strconv.Itoa(i+1), tt.user, tt.pass))
		if l.id != nil || l.wait != 0 {
			t.Fatalf("%s: got %+v, want a plain failure", tt.name, l)
		}
		costs := b.comparisons()[before:]
		if len(costs) != tt.comparisons {
			t.Errorf("%s: %d bcrypt comparisons, want %d", tt.name, len(costs), tt.comparisons)
		}
		for _, c := range costs {
			if c != cost {
				t.Errorf("%s: compared at cost %d, want %d", tt.name, c, cost)
			}
		}
	}
}

func TestDummyHashTakesTheHighestConfiguredCostAndWarnsOfUnequalOnes(t *testing.T) {
	t.Parallel()
	b := setupAuth(t, bcrypt.MinCost, func(c *config.Config) {
		c.Auth.Users = append(c.Auth.Users, config.User{Name: "dave", PasswordHash: testHash(bcrypt.MinCost + 2)})
	})
	if got, _ := bcrypt.Cost(b.auth.dummy); got != bcrypt.MinCost+2 {
		t.Fatalf("dummy hash cost %d, want %d", got, bcrypt.MinCost+2)
	}
	if !strings.Contains(b.logs.String(), "different costs") {
		t.Fatalf("no warning of unequal costs in %q", b.logs.String())
	}
}

// TestNoCredentialIsCheckedWhileLockedOut: once a name has spent its
// budget the right password is refused too, without a comparison; after
// the lockout it works, and the success clears the name's failures.
func TestNoCredentialIsCheckedWhileLockedOut(t *testing.T) {
	t.Parallel()
	b := setupAuth(t, bcrypt.MinCost, func(c *config.Config) { c.API.AuthFailuresPerUserPerHour, c.API.AuthMaxLockout = 3, time.Hour })
	for i := range 3 {
		if l := b.auth.login(basicReq("192.0.2.1", "carol", "wrong")); l.id != nil || l.wait != 0 {
			t.Fatalf("failure %d: %+v", i, l)
		}
	}
	before := len(b.comparisons())
	l := b.auth.login(basicReq("192.0.2.1", "carol", testCarolPass))
	if l.id != nil || l.wait != 20*time.Minute || !strings.Contains(l.why, "user name") {
		t.Fatalf("the right password after the budget: %+v, want refused for 20m (an hour / 3) naming the user name", l)
	}
	if n := len(b.comparisons()) - before; n != 0 {
		t.Fatalf("%d bcrypt comparisons while locked out, want none", n)
	}
	b.clock.Advance(l.wait - time.Second)
	if l := b.auth.login(basicReq("192.0.2.2", "carol", testCarolPass)); l.wait != time.Second {
		t.Fatalf("a second before the end, from another address: %+v, want refused for 1s", l)
	}
	b.clock.Advance(time.Second)
	if l := b.auth.login(basicReq("192.0.2.1", "carol", testCarolPass)); l.id == nil || l.id.Name != "carol" {
		t.Fatalf("the right password after the lockout: %+v", l)
	}
	// The success cleared the name: a full budget again, not one try.
	for i := range 2 {
		if l := b.auth.login(basicReq("192.0.2.1", "carol", "wrong")); l.wait != 0 {
			t.Fatalf("failure %d after a success: refused %+v", i, l)
		}
	}
}

// TestOneNameFromManyAddresses: a guesser spread over addresses is
// stopped by the name's budget, and only that name is held.
func TestOneNameFromManyAddresses(t *testing.T) {
	t.Parallel()
	b := setupAuth(t, bcrypt.MinCost, nil) // 10 per user and hour, 30 per address and minute
	for i := range 10 {
		if l := b.auth.login(basicReq("198.51.100."+strconv.Itoa(i+1), "carol", "wrong")); l.wait != 0 {
			t.Fatalf("guess %d: refused early", i)
		}
	}
	l := b.auth.login(basicReq("198.51.100.200", "carol", testCarolPass))
	if l.wait == 0 || !strings.Contains(l.why, "user name") {
		t.Fatalf("the right password from a new address: %+v, want refused for the user name", l)
	}
	if l := b.auth.login(basicReq("198.51.100.1", "alice", testAliceToken)); l.id == nil {
		t.Fatalf("another name from a guessing address: %+v", l)
	}
	if l := b.auth.login(basicReq("198.51.100.1", "Bearer", testBobToken)); l.id == nil {
		t.Fatalf("a bearer token from a guessing address: %+v", l)
	}
}

// TestBearerGuessesSpendTheAddressBudget: tokens name no user, so only the
// address holds them; once it is spent, the right token is refused too.
func TestBearerGuessesSpendTheAddressBudget(t *testing.T) {
	t.Parallel()
	b := setupAuth(t, bcrypt.MinCost, func(c *config.Config) { c.API.AuthFailuresPerMinute = 5 })
	for i := range 5 {
		if l := b.auth.login(basicReq("2001:db8:1:2::"+strconv.Itoa(i+1), "Bearer", "guess-"+strconv.Itoa(i))); l.wait != 0 {
			t.Fatalf("guess %d refused early", i)
		}
	}
	// Another address of the same /64 is the same client.
	l := b.auth.login(basicReq("2001:db8:1:2:ffff::9", "Bearer", testAliceToken))
	if l.wait != 12*time.Second || !strings.Contains(l.why, "address") {
		t.Fatalf("alice's token from the guessing /64: %+v, want refused for 12s (a minute / 5) naming the address", l)
	}
	if l := b.auth.login(basicReq("2001:db8:1:3::1", "Bearer", testAliceToken)); l.id == nil {
		t.Fatalf("alice's token from the next /64: %+v", l)
	}
	if n := len(b.comparisons()); n != 0 {
		t.Fatalf("%d bcrypt comparisons for bearer tokens", n)
	}
	// A request without credentials guesses nothing, but meets the lockout.
	if l := b.auth.login(basicReq("2001:db8:1:2::1", "-", "")); l.wait == 0 {
		t.Fatalf("no credentials from a locked address: %+v, want refused", l)
	}
	b.clock.Advance(12 * time.Second)
	if l := b.auth.login(basicReq("2001:db8:1:2::1", "Bearer", testAliceToken)); l.id == nil {
		t.Fatalf("alice's token after the lockout: %+v", l)
	}
}

func TestRequestsWithoutCredentialsSpendNoBudget(t *testing.T) {
	t.Parallel()
	b := setupAuth(t, bcrypt.MinCost, func(c *config.Config) { c.API.AuthFailuresPerMinute = 1 })
	for i := range 50 {
		if l := b.auth.login(basicReq("192.0.2.7", "-", "")); l.wait != 0 || l.id != nil {
			t.Fatalf("request %d without credentials: %+v", i, l)
		}
	}
	if l := b.auth.login(basicReq("192.0.2.7", "Bearer", testAliceToken)); l.id == nil {
		t.Fatalf("a token after 50 requests without credentials: %+v", l)
	}
}

// TestPasswordChecksAreBounded: while every password-check slot is taken
// (a flood of Basic logins), a login is refused with 429 before any
// comparison and spends no budget.
func TestPasswordChecksAreBounded(t *testing.T) {
	t.Parallel()
	b := setupAuth(t, bcrypt.MinCost, func(c *config.Config) { c.API.AuthFailuresPerMinute, c.API.AuthFailuresPerUserPerHour = 1, 1 })
	b.auth.checkWait = 0
	for range cap(b.auth.checks) {
		b.auth.checks <- struct{}{}
	}
	for _, user := range []string{"mallory", "alice", "carol"} {
		l := b.auth.login(basicReq("192.0.2.1", user, "guess"))
		if l.wait != time.Second || l.why != errBusy.Error() {
			t.Fatalf("%s with every slot taken: %+v, want refused as busy", user, l)
		}
	}
	if n := len(b.comparisons()); n != 0 {
		t.Fatalf("%d comparisons with every slot taken", n)
	}
	if l := b.auth.login(basicReq("192.0.2.1", "Bearer", testAliceToken)); l.id == nil {
		t.Fatalf("a bearer token needs no slot: %+v", l)
	}
	for range cap(b.auth.checks) {
		<-b.auth.checks
	}
	// The refusals spent neither the address's budget nor carol's (one each).
	if l := b.auth.login(basicReq("192.0.2.1", "carol", testCarolPass)); l.id == nil {
		t.Fatalf("carol once a slot is free: %+v", l)
	}
	if !strings.Contains(b.logs.String(), "password-check slot") {
		t.Fatalf("the refusals are not logged:\n%s", b.logs.String())
	}
}

// TestRefusalsAreLoggedOncePerLockout: with the address and the name, and
// never the password.
func TestRefusalsAreLoggedOncePerLockout(t *testing.T) {
	t.Parallel()
	b := setupAuth(t, bcrypt.MinCost, func(c *config.Config) { c.API.AuthFailuresPerUserPerHour = 1 })
	b.auth.login(basicReq("192.0.2.9", "carol", "wrong-secret-1"))
	for range 5 {
		b.auth.login(basicReq("192.0.2.9", "carol", testCarolPass))
	}
	logs := b.logs.String()
	if n := strings.Count(logs, "login refused"); n != 1 {
		t.Fatalf("%d refusal lines, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, "login locked out") || !strings.Contains(logs, "addr=192.0.2.9") || !strings.Contains(logs, "user=carol") {
		t.Fatalf("the log lacks the lockout, address or user:\n%s", logs)
	}
	if strings.Contains(logs, "wrong-secret") || strings.Contains(logs, testCarolPass) {
		t.Fatalf("a password reached the log:\n%s", logs)
	}
}

// BenchmarkAuthFailure measures one failed Basic login of each kind, at
// bcrypt's default cost, so that the figures can be compared: they should
// be equal (bearer, which names no user, for reference). cpu-ms/op is the
// process's CPU time per login, steadier than ns/op on a busy machine.
func BenchmarkAuthFailure(b *testing.B) {
	bundle := setupAuth(b, bcrypt.DefaultCost, func(c *config.Config) {
		c.API.AuthFailuresPerMinute, c.API.AuthFailuresPerUserPerHour = 1<<30, 1<<30
	})
	for _, bb := range []struct{ name, user, pass string }{
		{"unknown-name", "mallory", "guess"},
		{"token-user", "alice", "guess"},
		{"password-user", "carol", "guess"},
		{"bearer", "Bearer", "guess"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			r := basicReq("192.0.2.1", bb.user, bb.pass)
			cpu := cpuTime()
			for b.Loop() {
				if l := bundle.auth.login(r); l.id != nil || l.wait != 0 {
					b.Fatalf("%+v", l)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
}

package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/enroll"
)

// Authenticator checks HTTP Basic and Bearer credentials against the
// configured users, under a throttle of failed logins per client address
// and per user name that is consulted before any credential is checked.
// Tokens are compared as SHA-256 digests, so the table holds no plain token
// and lookups take constant time per candidate.
//
// Every failed Basic login costs the same: one bcrypt comparison at the
// configured hashes' cost, whether the name is a password user's, a token
// user's or nobody's, so neither the answer nor its time tells which names
// exist.
type Authenticator struct {
	byToken map[[32]byte]*enroll.Caller
	users   map[string]config.User
	// dummy is compared against when there is no password hash to compare
	// with (an unknown name, a token user): a bcrypt hash of the highest
	// cost the configured hashes have.
	dummy []byte
	// compare is bcrypt.CompareHashAndPassword; tests count its calls.
	compare func(hash, password []byte) error
	// checks holds a slot per bcrypt comparison running, so that a flood
	// of logins from many addresses takes at most that many cores; a login
	// that finds none free within checkWait is refused (429).
	checks    chan struct{}
	checkWait time.Duration
	busyLog   atomic.Int64 // unix seconds of the last "busy" warning

	// oidc checks JWT-shaped bearer tokens when auth.oidc is on (UseOIDC).
	oidc *oidcVerifier
	// jwtAdminToken: the admin token is JWT-shaped, which UseOIDC refuses.
	jwtAdminToken bool

	byAddr, byName *throttle
	clock          atomic.Pointer[func() time.Time]
	log            *slog.Logger

	// bcrypt is deliberately slow; remember recent successes briefly.
	mu    sync.Mutex
	basic map[[32]byte]basicHit
}

type basicHit struct {
	id      *enroll.Caller
	expires time.Time
}

const basicCacheTTL = 5 * time.Minute

// checkWait is how long a login waits for a password-check slot.
const checkWait = 2 * time.Second

// errBusy is a login that found every password-check slot taken.
var errBusy = errors.New("too many logins are being checked at once")

// NewAuthenticator builds the credential tables and the failed-login
// throttles from cfg (auth.users and the api.auth_* budgets). adminToken,
// when set, is a bearer token with the admin role (CERTFLOW_ADMIN_TOKEN).
func NewAuthenticator(cfg *config.Config, adminToken string, log *slog.Logger) *Authenticator {
	a := &Authenticator{
		byToken: map[[32]byte]*enroll.Caller{}, users: map[string]config.User{}, basic: map[[32]byte]basicHit{},
		compare: bcrypt.CompareHashAndPassword, log: log,
		checks: make(chan struct{}, max(2, runtime.GOMAXPROCS(0))), checkWait: checkWait,
		byAddr: newThrottle(cfg.API.AuthFailuresPerMinute, time.Minute, cfg.API.AuthMaxLockout),
		byName: newThrottle(cfg.API.AuthFailuresPerUserPerHour, time.Hour, cfg.API.AuthMaxLockout),
	}
	now := time.Now
	a.clock.Store(&now)
	// Hashes of unequal costs make a wrong password cost more for some
	// names than for others.
	cost, unequalCosts := 0, false
	for _, u := range cfg.Auth.Users {
		a.users[u.Name] = u
		if c, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil {
			unequalCosts = unequalCosts || (cost != 0 && c != cost)
			cost = max(cost, c)
		}
		if u.Token == "" {
			continue
		}
		id := &enroll.Caller{Name: u.Name, Roles: u.Roles}
		if hexSum, ok := strings.CutPrefix(u.Token, "sha256:"); ok {
			var sum [32]byte
			if b, err := hex.DecodeString(hexSum); err == nil && len(b) == 32 {
				copy(sum[:], b)
				a.byToken[sum] = id
			}
			continue
		}
		a.byToken[sha256.Sum256([]byte(u.Token))] = id
	}
	a.jwtAdminToken = config.LooksLikeJWT(adminToken)
	if adminToken != "" {
		a.byToken[sha256.Sum256([]byte(adminToken))] = &enroll.Caller{Name: config.AdminName, Roles: []string{config.RoleAdmin}}
	}
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	secret := make([]byte, 18)
	rand.Read(secret)
	a.dummy, _ = bcrypt.GenerateFromPassword([]byte(hex.EncodeToString(secret)), cost)
	if unequalCosts {
		log.Warn("the users' bcrypt hashes have different costs: a wrong password takes longer for some names than for others, which tells them apart; rehash them at one cost", "dummy_cost", cost)
	}
	return a
}

// UseOIDC makes a's bearer JWTs checked against cfg's issuer (when
// cfg.Enabled). With it on, a JWT-shaped bearer token is only ever
// checked as a JWT, never looked up among the configured tokens; its
// errors are a bad auth.oidc.ca_file and a JWT-shaped admin token, which
// could then never log in.
func (a *Authenticator) UseOIDC(cfg config.OIDC) error {
	if !cfg.Enabled() {
		return nil
	}
	if a.jwtAdminToken {
		return errors.New("CERTFLOW_ADMIN_TOKEN looks like a JWT: with auth.oidc on, it would be checked against the issuer and never log in; choose another")
	}
	o, err := newOIDCVerifier(cfg, a.now, a.log)
	if err != nil {
		return err
	}
	a.oidc = o
	return nil
}

// SetClock replaces the throttles' clock (time.Now), for tests that step
// through lockouts without sleeping.
func (a *Authenticator) SetClock(now func() time.Time) { a.clock.Store(&now) }

func (a *Authenticator) now() time.Time { return (*a.clock.Load())() }

// loginResult is the outcome of login: an identity, a refusal (wait > 0: over
// budget, answer 429), or neither (answer 401).
type loginResult struct {
	id   *enroll.Caller
	wait time.Duration
	// why names the exhausted budget, for the 429's message.
	why string
	// refusal says why credentials were refused, for the 401's message
	// ("" for the usual one).
	refusal string
	// down: the credentials could not be checked (the identity provider
	// is unreachable); answer 503 with this message.
	down string
}

// login authenticates r's caller. The throttles come first: while r's
// address or the Basic user name is over its failed-login budget, the
// answer is a refusal and no credential is checked at all, the right one
// included. A request without credentials only meets the address's
// lockout; it spends no budget.
func (a *Authenticator) login(r *http.Request) loginResult {
	cred := credentialsOf(r)
	addr := throttleAddr(r)
	now := a.now()
	if cred.kind == credNone {
		if ref := a.byAddr.locked(addr, now); ref != nil {
			return a.refused(ref, "address", addr, cred.user)
		}
		return loginResult{}
	}
	if ref := a.byAddr.begin(addr, now); ref != nil {
		return a.refused(ref, "address", addr, cred.user)
	}
	var name string
	if cred.kind == credBasic {
		name = nameKey(cred.user)
		if ref := a.byName.begin(name, now); ref != nil {
			a.byAddr.cancel(addr)
			return a.refused(ref, "user", addr, cred.user)
		}
	}
	var id *enroll.Caller
	var refusal string
	var err error
	if cred.kind == credBearer && a.oidc != nil && config.LooksLikeJWT(cred.secret) {
		id, refusal, err = a.oidc.check(r.Context(), cred.secret)
	} else {
		id, err = a.verify(r.Context(), cred)
	}
	if err != nil { // errBusy, errIdPUnavailable: nothing was checked, nothing is counted
		a.byAddr.cancel(addr)
		if name != "" {
			a.byName.cancel(name)
		}
		if errors.Is(err, errIdPUnavailable) {
			return loginResult{down: err.Error()}
		}
		if t := time.Now().Unix(); a.busyLog.Load() < t-60 {
			a.busyLog.Store(t)
			a.log.Warn("logins refused: every password-check slot is taken (a flood of Basic logins?)", "slots", cap(a.checks), "addr", addr)
		}
		return loginResult{wait: time.Second, why: errBusy.Error()}
	}
	now = a.now()
	if id != nil {
		a.byAddr.release(addr)
		if name != "" {
			a.byName.succeed(name)
		}
		return loginResult{id: id}
	}
	if refusal != "" {
		a.log.Info("login refused: "+refusal, "addr", addr)
	}
	if d := a.byAddr.fail(addr, now); d > 0 {
		a.log.Info("login locked out: too many failed authentications from this address", "addr", addr, "user", logName(cred.user), "for", d)
	}
	if name != "" {
		if d := a.byName.fail(name, now); d > 0 {
			a.log.Info("login locked out: too many failed authentications for this user name", "addr", addr, "user", logName(cred.user), "for", d)
		}
	}
	return loginResult{refusal: refusal}
}

func (a *Authenticator) refused(ref *refusal, limit, addr, user string) loginResult {
	why := "too many failed authentications from this address"
	if limit == "user" {
		why = "too many failed authentications for this user name"
	}
	if ref.first {
		a.log.Info("login refused: "+why, "addr", addr, "user", logName(user), "retry_after", ref.wait.Round(time.Second))
	}
	return loginResult{wait: ref.wait, why: why}
}

type credKind int

const (
	credNone credKind = iota
	credBearer
	credBasic
)

// credentials are what a request presents: a bearer token, or a Basic
// user name (without a DOMAIN\ prefix) and password.
type credentials struct {
	kind   credKind
	user   string
	secret string
}

func credentialsOf(r *http.Request) credentials {
	h := r.Header.Get("Authorization")
	if token, ok := cutPrefixFold(h, "Bearer "); ok {
		return credentials{kind: credBearer, secret: strings.TrimSpace(token)}
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return credentials{}
	}
	// Keyfactor clients send DOMAIN\user; certflow users have no domain.
	if i := strings.LastIndex(user, `\`); i >= 0 {
		user = user[i+1:]
	}
	return credentials{kind: credBasic, user: user, secret: pass}
}

// verify checks credentials. A failed Basic login makes exactly one bcrypt
// comparison whoever the name belongs to; a bearer token is one digest
// look-up (it names no user, so its cost tells nothing). Its error is
// errBusy, when no comparison could be made.
func (a *Authenticator) verify(ctx context.Context, c credentials) (*enroll.Caller, error) {
	if c.kind == credBearer {
		return a.byToken[sha256.Sum256([]byte(c.secret))], nil
	}
	u, ok := a.users[c.user]
	switch {
	case !ok:
		_, err := a.bcrypt(ctx, a.dummy, c.secret)
		return nil, err
	case u.Token != "":
		// A token user may present the token as the Basic password, for
		// clients that only speak Basic.
		id := a.byToken[sha256.Sum256([]byte(c.secret))]
		if id != nil && subtle.ConstantTimeCompare([]byte(id.Name), []byte(u.Name)) == 1 {
			return id, nil
		}
		_, err := a.bcrypt(ctx, a.dummy, c.secret)
		return nil, err
	}
	key := sha256.Sum256([]byte(u.Name + "\x00" + c.secret + "\x00" + u.PasswordHash))
	a.mu.Lock()
	hit, ok := a.basic[key]
	a.mu.Unlock()
	if ok && time.Now().Before(hit.expires) {
		return hit.id, nil
	}
	if match, err := a.bcrypt(ctx, []byte(u.PasswordHash), c.secret); !match {
		return nil, err
	}
	id := &enroll.Caller{Name: u.Name, Roles: u.Roles}
	a.mu.Lock()
	if len(a.basic) > 10000 {
		clear(a.basic)
	}
	a.basic[key] = basicHit{id: id, expires: time.Now().Add(basicCacheTTL)}
	a.mu.Unlock()
	return id, nil
}

// bcrypt compares password with hash in a password-check slot, waiting
// for one up to checkWait (errBusy when none came free).
func (a *Authenticator) bcrypt(ctx context.Context, hash []byte, password string) (bool, error) {
	select {
	case a.checks <- struct{}{}:
	default:
		t := time.NewTimer(a.checkWait)
		defer t.Stop()
		select {
		case a.checks <- struct{}{}:
		case <-t.C:
			return false, errBusy
		case <-ctx.Done():
			return false, errBusy
		}
	}
	defer func() { <-a.checks }()
	return a.compare(hash, []byte(password)) == nil, nil
}

// nameKey is a user name's key in the name throttle: a fixed-size digest,
// so a long name costs no more memory than a short one.
func nameKey(user string) string {
	sum := sha256.Sum256([]byte(user))
	return string(sum[:])
}

// logName is a user name as the log shows it: at most 64 bytes of it.
func logName(user string) string { return truncate(user, 64) }

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

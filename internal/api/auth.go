package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/certflow/certflow/internal/config"
)

// Identity is an authenticated caller.
type Identity struct {
	Name  string
	Roles []string
}

// Has reports whether the caller holds any of roles; admin holds them all.
func (id *Identity) Has(roles ...string) bool {
	if slices.Contains(id.Roles, config.RoleAdmin) {
		return true
	}
	for _, r := range roles {
		if slices.Contains(id.Roles, r) {
			return true
		}
	}
	return false
}

// Authenticator checks HTTP Basic and Bearer credentials against the
// configured users. Tokens are compared as SHA-256 digests, so the table
// holds no plain token and lookups take constant time per candidate.
type Authenticator struct {
	byToken map[[32]byte]*Identity
	users   map[string]config.User
	// bcrypt is deliberately slow; remember recent successes briefly.
	mu    sync.Mutex
	basic map[[32]byte]basicHit
}

type basicHit struct {
	id      *Identity
	expires time.Time
}

const basicCacheTTL = 5 * time.Minute

// dummyHash is compared against for unknown users (cost 10, as typical
// configured hashes are).
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("certflow-no-such-user"), bcrypt.DefaultCost)

// NewAuthenticator builds the credential tables. adminToken, when set, is
// a bearer token with the admin role (CERTFLOW_ADMIN_TOKEN).
func NewAuthenticator(users []config.User, adminToken string) *Authenticator {
	a := &Authenticator{byToken: map[[32]byte]*Identity{}, users: map[string]config.User{}, basic: map[[32]byte]basicHit{}}
	for _, u := range users {
		a.users[u.Name] = u
		if u.Token == "" {
			continue
		}
		id := &Identity{Name: u.Name, Roles: u.Roles}
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
	if adminToken != "" {
		a.byToken[sha256.Sum256([]byte(adminToken))] = &Identity{Name: config.AdminName, Roles: []string{config.RoleAdmin}}
	}
	return a
}

// Authenticate returns the caller of r, or nil.
func (a *Authenticator) Authenticate(r *http.Request) *Identity {
	h := r.Header.Get("Authorization")
	if token, ok := cutPrefixFold(h, "Bearer "); ok {
		return a.byToken[sha256.Sum256([]byte(strings.TrimSpace(token)))]
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return nil
	}
	// Keyfactor clients send DOMAIN\user; certflow users have no domain.
	if i := strings.LastIndex(user, `\`); i >= 0 {
		user = user[i+1:]
	}
	u, ok := a.users[user]
	if !ok {
		// Spend bcrypt's time anyway: the answer's timing must not tell
		// which user names exist.
		bcrypt.CompareHashAndPassword(dummyHash, []byte(pass))
		return nil
	}
	if u.Token != "" {
		// A token user may present the token as the Basic password, for
		// clients that only speak Basic.
		id := a.byToken[sha256.Sum256([]byte(pass))]
		if id != nil && subtle.ConstantTimeCompare([]byte(id.Name), []byte(u.Name)) == 1 {
			return id
		}
		return nil
	}
	key := sha256.Sum256([]byte(u.Name + "\x00" + pass + "\x00" + u.PasswordHash))
	a.mu.Lock()
	hit, ok := a.basic[key]
	a.mu.Unlock()
	if ok && time.Now().Before(hit.expires) {
		return hit.id
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(pass)) != nil {
		return nil
	}
	id := &Identity{Name: u.Name, Roles: u.Roles}
	a.mu.Lock()
	if len(a.basic) > 10000 {
		clear(a.basic)
	}
	a.basic[key] = basicHit{id: id, expires: time.Now().Add(basicCacheTTL)}
	a.mu.Unlock()
	return id
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

package store

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/workflow"

	"github.com/certflow/certflow/internal/pki"
)

// SAN is one subject alternative name of an issued certificate. Type is
// the GeneralName tag of RFC 5280 (1 rfc822Name, 2 dNSName, 6 URI, 7
// iPAddress), the numbering Keyfactor's SubjectAltNameElements use.
type SAN struct {
	Type  int    `json:"Type"`
	Value string `json:"Value"`
}

// GeneralName tags of the SAN types certflow issues.
const (
	SANEmail = 1
	SANDNS   = 2
	SANURI   = 6
	SANIP    = 7
)

// Revocation is how and when a certificate was revoked.
type Revocation struct {
	// Reason is RFC 5280's CRLReason (0 unspecified … 6 certificateHold).
	Reason  int    `json:"Reason"`
	Comment string `json:"Comment,omitempty"`
	// EffectiveDate is from when the certificate is taken as invalid:
	// the requester's EffectiveDate, else when the revocation was asked.
	EffectiveDate time.Time `json:"EffectiveDate"`
	// InvalidityDate is the requester's EffectiveDate when one was given
	// and lies before the revocation was asked (zero otherwise): the CRL
	// entry's invalidityDate.
	InvalidityDate time.Time `json:"InvalidityDate,omitzero"`
	// Date is when the revoke step recorded it: the revocation time the
	// CRL carries (RFC 5280 5.1.2.6: when the CA processed it).
	Date time.Time `json:"Date"`
	// By is who asked; RequestID the revocation request that did it.
	By        string `json:"By"`
	RequestID int64  `json:"RequestID"`
	// Depth is the revocation request's EventDepth, for its event.
	Depth int `json:"-"`
}

// Describe fills the certificate's descriptive fields (subject parts,
// key, signature, usages, SANs) from its parsed leaf.
func (c *Certificate) Describe(leaf *x509.Certificate) {
	c.IssuedCN = leaf.Subject.CommonName
	c.IssuedOU = strings.Join(leaf.Subject.OrganizationalUnit, ", ")
	if len(leaf.EmailAddresses) > 0 {
		c.IssuedEmail = leaf.EmailAddresses[0]
	}
	c.KeyType, c.KeySizeInBits, _ = pki.DescribeKey(leaf.PublicKey)
	c.Curve = pki.CurveName(leaf.PublicKey)
	c.SigningAlgorithm = leaf.SignatureAlgorithm.String()
	c.KeyUsage = int(leaf.KeyUsage)
	c.ExtKeyUsages = nil
	for _, u := range leaf.ExtKeyUsage {
		if i := slices.IndexFunc(pki.EKUs, func(e pki.EKU) bool { return e.Usage == u }); i >= 0 {
			c.ExtKeyUsages = append(c.ExtKeyUsages, pki.EKUs[i].OID)
		}
	}
	for _, u := range leaf.UnknownExtKeyUsage {
		c.ExtKeyUsages = append(c.ExtKeyUsages, u.String())
	}
	c.SANs = nil
	for _, v := range leaf.DNSNames {
		c.SANs = append(c.SANs, SAN{Type: SANDNS, Value: v})
	}
	for _, v := range leaf.IPAddresses {
		c.SANs = append(c.SANs, SAN{Type: SANIP, Value: v.String()})
	}
	for _, v := range leaf.EmailAddresses {
		c.SANs = append(c.SANs, SAN{Type: SANEmail, Value: v})
	}
	for _, v := range leaf.URIs {
		c.SANs = append(c.SANs, SAN{Type: SANURI, Value: v.String()})
	}
	c.CRLDistributionPoints = leaf.CRLDistributionPoints
}

// CAName is the logical name of the CA that issued the certificate
// (Authority is in Keyfactor's host\logical form).
func (c *Certificate) CAName() string {
	if i := strings.LastIndex(c.Authority, `\`); i >= 0 {
		return c.Authority[i+1:]
	}
	return c.Authority
}

// certCASScript replaces a certificate's JSON only if it is still what
// the caller read (compare-and-set on the value), and changes its index
// entries in the same script (indexOps).
// KEYS: request, the ops' keys; ARGV: expected JSON, new JSON, the
// number of additions, the ops. -1: no certificate.
var certCASScript = redis.NewScript(applyOpsLua + `
local cur = redis.call('HGET', KEYS[1], 'x')
if not cur then return -1 end
if cur ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[3])
apply(2, 4, n)
redis.call('HSET', KEYS[1], 'x', ARGV[2])
apply(2 + n, 4 + 3 * n, #KEYS - 1 - n)
return 1
`)

// ReasonKeyCompromise is RFC 5280's CRLReason keyCompromise.
const ReasonKeyCompromise = 1

// revokeCompromisedScript is certCASScript that also adds the
// certificate's key to the compromised keys, in the same script: the
// revocation is never recorded without its key being barred.
// KEYS: request, compromised keys, the ops' keys; ARGV: expected JSON,
// new JSON, key id, the number of additions, the ops.
var revokeCompromisedScript = redis.NewScript(applyOpsLua + `
local cur = redis.call('HGET', KEYS[1], 'x')
if not cur then return -1 end
if cur ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[4])
apply(3, 5, n)
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], 'x', ARGV[2])
apply(3 + n, 5 + 3 * n, #KEYS - 2 - n)
return 1
`)

// RevokeCertificate records rev on certificate id, once: a certificate
// revoked already is returned as it is, with changed false (the caller
// compares its RequestID with its own to tell a re-run from a race). The
// one change a revocation may see is to keyCompromise: a certificate
// revoked for another reason, revoked again for keyCompromise, takes that
// reason (and rev's request, comment and invalidity date) while keeping
// its first revocation date, so that a key cannot be kept out of the bar
// by revoking its certificate for a harmless reason first.
//
// A revocation for keyCompromise also bars the certificate's public key
// (KeyCompromised) in the same script as the revocation, so that no
// revocation is ever recorded with its key still certifiable. A
// certificate revoked for keyCompromise already has its key barred again
// (idempotent), which repairs a bar lost to a crash.
func (s *Store) RevokeCertificate(ctx context.Context, id int64, rev Revocation) (c *Certificate, changed bool, err error) {
	for attempt := 0; attempt < 10; attempt++ {
		old, err := s.rdb.HGet(ctx, s.keys.request(id), "x").Bytes()
		if errors.Is(err, redis.Nil) {
			return nil, false, fmt.Errorf("certificate %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return nil, false, fmt.Errorf("load certificate %d: %w", id, err)
		}
		c, err := s.decodeStored(ctx, id, old)
		if err != nil {
			return nil, false, err
		}
		next := rev
		if prev := c.Revocation; prev != nil {
			if prev.Reason == ReasonKeyCompromise || rev.Reason != ReasonKeyCompromise {
				// Revoked already (a re-run of the same request, or
				// another's): its key barred again if compromised.
				if prev.Reason == ReasonKeyCompromise {
					if err := s.barKey(ctx, c); err != nil {
						return nil, false, err
					}
				}
				return c, false, nil
			}
			// Revoked for another reason, and now known compromised:
			// the reason becomes keyCompromise and the key is barred,
			// the revocation date stays the first one's.
			next.Date = prev.Date
			if next.InvalidityDate.IsZero() || next.InvalidityDate.After(prev.Date) {
				// Invalid from after it was revoked says nothing.
				next.InvalidityDate = prev.InvalidityDate
			}
		}
		keyID := ""
		if next.Reason == ReasonKeyCompromise {
			if keyID, err = certificateKeyID(c); err != nil {
				return nil, false, err
			}
		}
		var ops indexOps
		before := s.keys.certEntries(c)
		c.Revocation = &next
		ops.change(before, s.keys.certEntries(c))
		// The watch warns no more of a revoked certificate's expiry, and
		// the event goes with the revocation.
		ops.remove([]indexEntry{{key: s.keys.expiryDue(), member: strconv.FormatInt(id, 10)}})
		ops.add(s.eventEntries([]workflow.Event{{
			Name: workflow.EventCertificateRevoked, CertificateID: id, RequestID: next.RequestID, Depth: next.Depth,
			Data: map[string]any{
				"Reason": next.Reason, "Comment": next.Comment, "RevokedBy": next.By, "SerialNumber": c.SerialNumber,
				"IssuedCN": c.IssuedCN, "Template": c.Template, "CertificateAuthority": c.Authority,
			},
		}}))
		enc, err := s.encodeCertificate(c) // a certificate of the old format is rewritten in the new
		if err != nil {
			return nil, false, err
		}
		ops.add(enc.chainOps)
		data := enc.data
		var res int64
		if keyID != "" {
			keys, args := ops.encode([]string{s.keys.request(id), s.keys.compromisedKeys()}, []any{old, data, keyID, len(ops.adds)})
			res, err = revokeCompromisedScript.Run(ctx, s.rdb, keys, args...).Int64()
		} else {
			keys, args := ops.encode([]string{s.keys.request(id)}, []any{old, data, len(ops.adds)})
			res, err = certCASScript.Run(ctx, s.rdb, keys, args...).Int64()
		}
		switch {
		case err != nil:
			return nil, false, fmt.Errorf("revoke certificate %d: %w", id, err)
		case res == -1:
			return nil, false, fmt.Errorf("certificate %d: %w", id, ErrNotFound)
		case res == 1:
			s.chainStored(enc)
			return c, true, nil
		}
	}
	return nil, false, fmt.Errorf("revoke certificate %d: %w", id, ErrConflict)
}

// certificateKeyID is the PublicKeyID of c's public key.
func certificateKeyID(c *Certificate) (string, error) {
	if len(c.Chain) == 0 {
		return "", fmt.Errorf("certificate %d has no DER", c.ID)
	}
	leaf, err := x509.ParseCertificate(c.Chain[0])
	if err != nil {
		return "", fmt.Errorf("certificate %d does not parse: %w", c.ID, err)
	}
	return pki.PublicKeyID(leaf.PublicKey)
}

// barKey adds a certificate's key to the compromised keys.
func (s *Store) barKey(ctx context.Context, c *Certificate) error {
	keyID, err := certificateKeyID(c)
	if err != nil {
		return err
	}
	if err := s.rdb.SAdd(ctx, s.keys.compromisedKeys(), keyID).Err(); err != nil {
		return fmt.Errorf("bar the key of certificate %d: %w", c.ID, err)
	}
	return nil
}

// KeyCompromised reports whether keyID (pki.PublicKeyID of a public key)
// is the key of a certificate revoked for keyCompromise: such a key is
// never certified again. One round trip, shared with other goroutines'
// pipelines where it can (execBatched): every submit and every issue step
// asks.
func (s *Store) KeyCompromised(ctx context.Context, keyID string) (bool, error) {
	pipe := s.rdb.Pipeline()
	cmd := pipe.SIsMember(ctx, s.keys.compromisedKeys(), keyID)
	if err := s.execBatched(ctx, pipe); err != nil {
		return false, fmt.Errorf("look up compromised keys: %w", err)
	}
	ok, err := cmd.Result()
	if err != nil {
		return false, fmt.Errorf("look up compromised keys: %w", err)
	}
	return ok, nil
}

// claimScript makes a revocation request the holder of a certificate's
// revocation claim if the claim is what the caller expects ("" for none).
// KEYS: the certificate's request; ARGV: new holder, expected holder.
// Returns "ok", "missing" (no certificate) or the current holder.
var claimScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'x') == 0 then return 'missing' end
local cur = redis.call('HGET', KEYS[1], 'rv') or ''
if cur ~= ARGV[2] and cur ~= ARGV[1] then return cur end
redis.call('HSET', KEYS[1], 'rv', ARGV[1])
return 'ok'
`)

// releaseClaimScript drops a revocation claim if reqID still holds it.
var releaseClaimScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'rv') == ARGV[1] then return redis.call('HDEL', KEYS[1], 'rv') end
return 0
`)

// ClaimRevocation makes revocation request reqID the one that revokes
// certificate certID: one revocation per certificate is under way at a
// time. When another request holds the claim, stale decides whether that
// one is over without revoking (then reqID takes its place); otherwise
// its id is returned with ErrConflict. ErrNotFound: no such certificate.
func (s *Store) ClaimRevocation(ctx context.Context, certID, reqID int64, stale func(ctx context.Context, holder int64) (bool, error)) (int64, error) {
	expect := ""
	for attempt := 0; attempt < 10; attempt++ {
		res, err := claimScript.Run(ctx, s.rdb, []string{s.keys.request(certID)}, reqID, expect).Text()
		switch {
		case err != nil:
			return 0, fmt.Errorf("claim revocation of certificate %d: %w", certID, err)
		case res == "ok":
			return 0, nil
		case res == "missing":
			return 0, fmt.Errorf("certificate %d: %w", certID, ErrNotFound)
		}
		holder, _ := strconv.ParseInt(res, 10, 64)
		over, err := stale(ctx, holder)
		if err != nil {
			return holder, err
		}
		if !over {
			return holder, ErrConflict
		}
		expect = res
	}
	return 0, fmt.Errorf("claim revocation of certificate %d: %w", certID, ErrConflict)
}

// RevocationHolder returns the revocation request that holds certificate
// certID's revocation claim (0: none).
func (s *Store) RevocationHolder(ctx context.Context, certID int64) (int64, error) {
	v, err := s.rdb.HGet(ctx, s.keys.request(certID), "rv").Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return v, err
}

// RevocationOver reports whether revocation request holder is over:
// settled (whether it revoked or not) or gone; no request (0) is over
// too. It is what ClaimRevocation's stale asks in production.
func (s *Store) RevocationOver(ctx context.Context, holder int64) (bool, error) {
	if holder <= 0 {
		return true, nil
	}
	r, err := s.Get(ctx, holder)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return r.Disposition.Final(), nil
}

// RevocationUnderWay returns the revocation request under way for
// certificate certID: the one that holds its claim, while it is not over
// (RevocationOver). 0: none.
func (s *Store) RevocationUnderWay(ctx context.Context, certID int64) (int64, error) {
	holder, err := s.RevocationHolder(ctx, certID)
	if err != nil || holder == 0 {
		return 0, err
	}
	over, err := s.RevocationOver(ctx, holder)
	if err != nil || over {
		return 0, err
	}
	return holder, nil
}

// ReleaseRevocation drops reqID's claim on certificate certID (a submit
// that was refused after claiming).
func (s *Store) ReleaseRevocation(ctx context.Context, certID, reqID int64) error {
	return releaseClaimScript.Run(ctx, s.rdb, []string{s.keys.request(certID)}, reqID).Err()
}

// RevokedEntry is one certificate on a CA's revocation list.
type RevokedEntry struct {
	Serial string `json:"Serial"` // upper-case hex
	// RevokedAt is when the CA processed the revocation.
	RevokedAt time.Time `json:"RevokedAt"`
	// InvalidityDate, when set, is the earlier date from when the
	// requester says the certificate was invalid (RFC 5280 5.3.2).
	InvalidityDate time.Time `json:"InvalidityDate,omitzero"`
	Reason         int       `json:"Reason"`
	NotAfter       time.Time `json:"NotAfter"`
	CertificateID  int64     `json:"CertificateID"`
}

// AddRevoked puts a certificate on its CA's revocation list (again: the
// same entry twice is one).
func (s *Store) AddRevoked(ctx context.Context, ca string, e RevokedEntry) error {
	data, err := marshal(e)
	if err != nil {
		return err
	}
	if err := s.rdb.HSet(ctx, s.keys.caRevoked(ca), strings.ToUpper(e.Serial), data).Err(); err != nil {
		return fmt.Errorf("add certificate %d to the revocation list of %s: %w", e.CertificateID, ca, err)
	}
	return nil
}

// RevokedEntries returns a CA's revocation list, read in batches (HSCAN),
// so a long list does not block Redis.
func (s *Store) RevokedEntries(ctx context.Context, ca string) ([]RevokedEntry, error) {
	var out []RevokedEntry
	iter := s.rdb.HScan(ctx, s.keys.caRevoked(ca), 0, "", 1000).Iterator()
	for i := 0; iter.Next(ctx); i++ {
		if i%2 == 0 {
			continue // the field (serial); its value follows
		}
		var e RevokedEntry
		if err := unmarshal([]byte(iter.Val()), &e); err != nil {
			return nil, fmt.Errorf("revocation list of %s: %w", ca, err)
		}
		out = append(out, e)
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("read the revocation list of %s: %w", ca, err)
	}
	return out, nil
}

// BarCompromisedKeys bars (see KeyCompromised) the key of every
// certificate on ca's revocation list revoked for keyCompromise: for
// revocations recorded before keys were barred with them. It returns how
// many entries it barred (again: barring is idempotent). A certificate
// whose record is gone is skipped.
func (s *Store) BarCompromisedKeys(ctx context.Context, ca string) (int, error) {
	entries, err := s.RevokedEntries(ctx, ca)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if e.Reason != ReasonKeyCompromise {
			continue
		}
		c, err := s.Certificate(ctx, e.CertificateID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		if err := s.barKey(ctx, c); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// CRL is a CA's signed certificate revocation list, as published.
type CRL struct {
	Number     int64
	DER        []byte
	ThisUpdate time.Time
	NextUpdate time.Time
}

// NextCRLNumber allocates a CA's next CRL number: the counter's next
// value, or floor when that is higher (the counter is then set to floor).
// Take it before reading the entries that go in the CRL: then the CRL
// with the highest number holds every entry whose signer took a number
// (see SaveCRL). The counter is incremented atomically in Redis, so
// numbers stay unique and increasing however many workers sign at once;
// the floor (ca.CRLNumberFloor: the signing time) keeps them increasing
// when the counter was lost (an in-memory store restarted, a Redis
// restored from an older backup).
func (s *Store) NextCRLNumber(ctx context.Context, ca string, floor int64) (int64, error) {
	n, err := nextCRLNumberScript.Run(ctx, s.rdb, []string{s.keys.caCRLNumber(ca)}, strconv.FormatInt(max(floor, 0), 10)).Int64()
	if err != nil {
		return 0, fmt.Errorf("allocate a CRL number for %s: %w", ca, err)
	}
	return n, nil
}

// nextCRLNumberScript is INCR with a floor. KEYS: crl-number; ARGV: floor
// (a decimal without sign or leading zeros). It compares and answers the
// decimal strings, not Lua's numbers: those are doubles, exact only up to
// 2^53.
var nextCRLNumberScript = redis.NewScript(`
redis.call('INCR', KEYS[1])
local n, f = redis.call('GET', KEYS[1]), ARGV[1]
if #n < #f or (#n == #f and n < f) then
  redis.call('SET', KEYS[1], f)
  return f
end
return n
`)

// saveCRLScript stores a CRL unless one with a higher number is stored.
// KEYS: crl; ARGV: number, der, thisUpdate, nextUpdate (unix seconds).
var saveCRLScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if tonumber(ARGV[1]) <= cur then return 0 end
redis.call('HSET', KEYS[1], 'n', ARGV[1], 'der', ARGV[2], 'this', ARGV[3], 'next', ARGV[4])
return 1
`)

// SaveCRL publishes a CA's CRL if no CRL with a higher number is
// published already (two signers racing: the later-numbered wins). It
// reports whether c was stored.
func (s *Store) SaveCRL(ctx context.Context, ca string, c *CRL) (bool, error) {
	n, err := saveCRLScript.Run(ctx, s.rdb, []string{s.keys.caCRL(ca)}, c.Number, c.DER, c.ThisUpdate.Unix(), c.NextUpdate.Unix()).Int64()
	if err != nil {
		return false, fmt.Errorf("publish the CRL of %s: %w", ca, err)
	}
	return n == 1, nil
}

// CRL returns a CA's published CRL; ErrNotFound when none is.
func (s *Store) CRL(ctx context.Context, ca string) (*CRL, error) {
	vals, err := s.rdb.HMGet(ctx, s.keys.caCRL(ca), "n", "der", "this", "next").Result()
	if err != nil {
		return nil, fmt.Errorf("load the CRL of %s: %w", ca, err)
	}
	str := func(i int) string { v, _ := vals[i].(string); return v }
	if str(1) == "" {
		return nil, fmt.Errorf("CRL of %s: %w", ca, ErrNotFound)
	}
	n, _ := strconv.ParseInt(str(0), 10, 64)
	this, _ := strconv.ParseInt(str(2), 10, 64)
	next, _ := strconv.ParseInt(str(3), 10, 64)
	return &CRL{Number: n, DER: []byte(str(1)), ThisUpdate: time.Unix(this, 0).UTC(), NextUpdate: time.Unix(next, 0).UTC()}, nil
}

// ClaimCRLRefresh reports whether this process should re-sign a CA's CRL
// now: at most one process per ttl does.
func (s *Store) ClaimCRLRefresh(ctx context.Context, ca string, ttl time.Duration) (bool, error) {
	return s.rdb.SetNX(ctx, s.keys.caCRLLock(ca), "1", ttl).Result()
}

// ReleaseCRLRefresh ends a claim taken with ClaimCRLRefresh once the CRL
// is published (a duplicate publish after a lost claim is harmless: the
// higher number wins).
func (s *Store) ReleaseCRLRefresh(ctx context.Context, ca string) error {
	return s.rdb.Del(ctx, s.keys.caCRLLock(ca)).Err()
}

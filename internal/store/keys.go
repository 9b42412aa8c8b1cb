package store

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// keys builds every Redis key certflow uses; the layout lives here and
// nowhere else. Keys of one request share the {<id>} hash tag, so what must
// change together (the record, its certificate, its issue lock) stays in
// one Redis Cluster slot. The store runs on one Redis (see New), where a
// few scripts span two slots (the create and the revocation scripts):
// those are what Cluster support would have to split.
type keys struct{ prefix string }

func (k keys) requestSeq() string { return k.prefix + ":seq:request" }

// request holds the request record: a hash of v (version), d (the
// record's JSON, packed once the request has settled: pack.go), c (the
// CSR's DER), n (the create script's digest of the first d), and once
// issued x (the certificate: certcodec.go), rv (see below) and, for a
// while, m (see saveScript).
func (k keys) request(id int64) string {
	return k.prefix + ":request:{" + strconv.FormatInt(id, 10) + "}"
}

// certificates is a sorted set of the ids of issued certificates, scored
// by id: the inventory's index, for listing and paging.
func (k keys) certificates() string { return k.prefix + ":certificates" }

// thumbprint maps a certificate's SHA-1 thumbprint (upper-case hex) to its id.
func (k keys) thumbprint(tp string) string { return k.prefix + ":thumbprint:" + tp }

// chain holds a certificate chain above a leaf, stored once for every
// certificate issued with it, named by the SHA-256 of its bytes (see
// certV1 in certcodec.go).
func (k keys) chain(ref chainRef) string { return k.prefix + ":chain:" + hex.EncodeToString(ref[:]) }

// certExpiry is a sorted set of certificate ids scored by their NotAfter
// (unix seconds): the retention sweep reads it instead of the records, so
// that it never resets their idle time.
func (k keys) certExpiry() string { return k.prefix + ":certificates:expiry" }

// A certificate's pending or done revocation is claimed in the field
// "rv" of its request's hash (the id of the revocation request), so the
// claim and the certificate share a slot; the renewal the renew step
// submitted for it is noted in the field "rn" (NoteRenewal).

// ca names the keys of one CA's revocation list; they share the
// {<name>} hash tag (name lower-cased).
func (k keys) ca(name string) string {
	return k.prefix + ":ca:{" + strings.ToLower(name) + "}"
}

// caRevoked is a hash of a CA's revoked certificates: upper-case hex
// serial → JSON entry (revocation time, reason, NotAfter).
func (k keys) caRevoked(name string) string { return k.ca(name) + ":revoked" }

// caCRL holds a CA's current CRL: a hash of n (CRL number), der, this and
// next (thisUpdate, nextUpdate; unix seconds).
func (k keys) caCRL(name string) string { return k.ca(name) + ":crl" }

// caCRLNumber is the counter of a CA's CRL numbers.
func (k keys) caCRLNumber(name string) string { return k.ca(name) + ":crl-number" }

// caCRLLock lets one process at a time re-sign a CA's CRL on schedule.
func (k keys) caCRLLock(name string) string { return k.ca(name) + ":crl-lock" }

// compromisedKeys is a set of the public-key ids (pki.PublicKeyID) of
// certificates revoked for keyCompromise: no request certifying one of
// them is accepted or signed again. It is never trimmed.
func (k keys) compromisedKeys() string { return k.prefix + ":compromised-keys" }

// issueLock serialises the issue step of one request.
func (k keys) issueLock(id int64) string { return k.request(id) + ":issue-lock" }

// renewalAdvice caches a certificate's CA's renewal advice (ARI).
func (k keys) renewalAdvice(id int64) string { return k.request(id) + ":ari" }

// idempotency maps (caller, Idempotency-Key) to a request id. The key is
// hashed: it is client input of any length.
func (k keys) idempotency(caller, key string) string {
	sum := sha256.Sum256([]byte(caller + "\x00" + key))
	return k.prefix + ":idempotency:" + hex.EncodeToString(sum[:16])
}

// open is a sorted set of unsettled request ids scored by their last
// progress (unix ms); the reconciler reads it.
func (k keys) open() string { return k.prefix + ":open" }

// pending is a sorted set of the ids of requests waiting for approval
// (PENDING), scored by their wait's deadline (unix ms; 2^52 for none).
func (k keys) pending() string { return k.prefix + ":pending" }

// definition holds the source of one definition version, so an instance
// pinned to it can resume after the files changed.
func (k keys) definition(name, version string) string {
	return k.prefix + ":definition:" + name + "@" + version
}

// reload is the pub/sub channel that asks every process to reload its
// workflow definitions.
func (k keys) reload() string { return k.prefix + ":reload" }

// sweepLock lets one process at a time sweep expired requests.
func (k keys) sweepLock() string { return k.prefix + ":sweep-lock" }

// events is the pub/sub channel on which settled requests are announced.
func (k keys) events() string { return k.prefix + ":events" }

// csrSeq allocates the ids of CSRs certflow generated (POST
// /CSRGeneration/Generate).
func (k keys) csrSeq() string { return k.prefix + ":seq:csr" }

// pendingCSR holds a generated CSR with its sealed private key (JSON),
// until it is enrolled with forceEnroll or deleted.
func (k keys) pendingCSR(id int64) string {
	return k.prefix + ":csr:{" + strconv.FormatInt(id, 10) + "}"
}

// pendingCSRClaim is held (SET NX, with a TTL) by the one submit that is
// enrolling a pending CSR with forceEnroll, so that two at once cannot
// both take its key.
func (k keys) pendingCSRClaim(id int64) string { return k.pendingCSR(id) + ":claim" }

// pendingCSRs is a sorted set of the ids of pending generated CSRs,
// scored by id: the listing's index.
func (k keys) pendingCSRs() string { return k.prefix + ":csrs" }

// pendingCSRsOf is a sorted set of one requester's pending CSR ids: what
// api.max_pending_csrs bounds. The name is hashed: it is client input.
func (k keys) pendingCSRsOf(requester string) string {
	sum := sha256.Sum256([]byte(requester))
	return k.prefix + ":csrs-of:" + hex.EncodeToString(sum[:16])
}

// csrByKey maps the hex SHA-256 of a generated CSR's SubjectPublicKeyInfo
// to its pending CSR id, so that the CSR is recognised when it comes back
// through POST /Enrollment/CSR.
func (k keys) csrByKey(keyID string) string { return k.prefix + ":csr-key:" + keyID }

// acmeAccount is a hash of one ACME CA's accounts (name lower-cased, in
// its own {<name>} hash tag), one per directory URL: k:<dir> holds the
// account key sealed under the KEK, u:<dir> the account URL (its kid)
// once registered, where <dir> is the hex SHA-256 of the directory URL
// (a CA pointed at a new directory gets a new account there).
func (k keys) acmeAccount(ca string) string {
	return k.prefix + ":acme:{" + strings.ToLower(ca) + "}:account"
}

// acmeHTTP01 holds the key authorization answering one http-01
// challenge token, for whichever API process the ACME CA reaches.
func (k keys) acmeHTTP01(token string) string { return k.prefix + ":acme:http01:" + token }

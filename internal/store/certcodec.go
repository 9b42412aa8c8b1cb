package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// How an issued certificate is stored (field x of its request's hash).
//
// The chain above the leaf (the issuing CA and up) is the same for every
// certificate a CA issues, so it is stored once per distinct chain, under
// a key named by its SHA-256 (keys.chain), and the certificate refers to
// it. The leaf is kept as DER, and the rest of the record (what the
// inventory shows and searches without parsing the DER) as packed JSON
// (pack.go):
//
//	certV1
//	n                          number of chain references: 0 or 1
//	n × 32 bytes               SHA-256 of the chain blob (chainBlob)
//	uvarint, bytes             the leaf's DER
//	the rest                   the Certificate's JSON without Chain, packed
//
// A certificate stored before this format is its JSON with the whole
// chain in base64 ('{' first): it reads as it always did, and is
// rewritten in this format when it changes (a revocation).
//
// The chain a certificate refers to is the one it was issued with: a CA
// that rolls over to a new key or a new parent makes a new chain, under a
// new key, and the certificates issued before keep theirs. A chain key is
// never deleted (the certificates of retention's sweep do not own it;
// there is one per CA chain ever used). It is written in the same script
// as the first certificate this process stores with it, ahead of the
// certificate, and again at most every chainRewrite after that: should it
// ever be lost, the next certificate issued with the chain restores it
// for every certificate that refers to it.
const certV1 = 0x02

type chainRef [sha256.Size]byte

// chainBlob is how a chain above a leaf is stored: each certificate's DER
// with its length before it (uvarint).
func chainBlob(issuers [][]byte) []byte {
	n := 0
	for _, der := range issuers {
		n += binary.MaxVarintLen64 + len(der)
	}
	blob := make([]byte, 0, n)
	for _, der := range issuers {
		blob = binary.AppendUvarint(blob, uint64(len(der)))
		blob = append(blob, der...)
	}
	return blob
}

// parseChainBlob is chainBlob's inverse. The DER it returns shares
// blob's memory.
func parseChainBlob(blob []byte) ([][]byte, error) {
	var out [][]byte
	for len(blob) > 0 {
		n, k := binary.Uvarint(blob)
		if k <= 0 || n == 0 || n > uint64(len(blob)-k) {
			return nil, errors.New("chain blob is damaged")
		}
		out = append(out, blob[k:k+int(n)])
		blob = blob[k+int(n):]
	}
	return out, nil
}

// encodedCert is a certificate as stored, with what storing it needs.
type encodedCert struct {
	data []byte
	ref  chainRef
	// chainOps write the chain key (before x): empty when this process
	// wrote it lately. Once the certificate is stored, chainStored.
	chainOps []indexEntry
}

// encodeCertificate encodes c for field x and readies its chain: cached
// at once (the certificate's own readers find it), and stored with the
// certificate unless this process stored it lately.
func (s *Store) encodeCertificate(c *Certificate) (*encodedCert, error) {
	bare := *c // c may be shared: its Chain is left as it is
	bare.Chain = nil
	js, err := marshal(&bare)
	if err != nil {
		return nil, err
	}
	var leaf []byte
	if len(c.Chain) > 0 {
		leaf = c.Chain[0]
	}
	e := &encodedCert{}
	data := make([]byte, 0, 2+sha256.Size+binary.MaxVarintLen64+len(leaf)+len(js)/2)
	data = append(data, certV1)
	if len(c.Chain) > 1 {
		var write bool
		e.ref, write = s.chains.name(c.Chain[1:])
		data = append(append(data, 1), e.ref[:]...)
		if write {
			e.chainOps = []indexEntry{{key: s.keys.chain(e.ref), member: string(chainBlob(c.Chain[1:])), str: true}}
		}
	} else {
		data = append(data, 0)
	}
	data = binary.AppendUvarint(data, uint64(len(leaf)))
	data = append(data, leaf...)
	e.data = pack(data, js)
	return e, nil
}

// chainStored records that e's chain key was written.
func (s *Store) chainStored(e *encodedCert) {
	if len(e.chainOps) > 0 {
		s.chains.stored(e.ref)
	}
}

// certRef returns the chain a stored certificate refers to, if any,
// without decoding it.
func certRef(data []byte) (chainRef, bool) {
	var ref chainRef
	if len(data) < 2+len(ref) || data[0] != certV1 || data[1] != 1 {
		return ref, false
	}
	copy(ref[:], data[2:])
	return ref, true
}

// decodeCertificate decodes a stored certificate (field x). issuers is
// the chain above the leaf that it refers to (resolveChains,
// Store.issuers); a certificate of the format before chains were shared
// carries its own and needs none.
func decodeCertificate(requestID int64, data []byte, issuers [][]byte) (*Certificate, error) {
	c := &Certificate{}
	if len(data) == 0 || data[0] != certV1 {
		if err := unmarshal(data, c); err != nil {
			return nil, fmt.Errorf("decode certificate of request %d: %w", requestID, err)
		}
		return c, nil
	}
	bad := func(what string) error {
		return fmt.Errorf("decode certificate of request %d: %s: %w", requestID, what, ErrCorrupt)
	}
	if len(data) < 2 || data[1] > 1 {
		return nil, bad("no chain reference count")
	}
	refs := int(data[1])
	rest := data[2:]
	if len(rest) < refs*sha256.Size {
		return nil, bad("short chain reference")
	}
	rest = rest[refs*sha256.Size:]
	if refs == 1 && issuers == nil {
		ref, _ := certRef(data)
		return nil, bad(fmt.Sprintf("its chain %x is not in the store", ref[:8]))
	}
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) {
		return nil, bad("leaf length")
	}
	leaf := rest[k : k+int(n)]
	js, err := unpack(nil, rest[k+int(n):])
	if err != nil {
		return nil, fmt.Errorf("decode certificate of request %d: %w: %w", requestID, err, ErrCorrupt)
	}
	if err := unmarshal(js, c); err != nil {
		return nil, fmt.Errorf("decode certificate of request %d: %w", requestID, err)
	}
	c.Chain = nil
	if len(leaf) > 0 {
		c.Chain = make([][]byte, 0, 1+len(issuers))
		c.Chain = append(append(c.Chain, leaf), issuers...)
	}
	return c, nil
}

// decodeStored decodes a certificate read from field x, its chain
// resolved (from the cache, else from Redis).
func (s *Store) decodeStored(ctx context.Context, requestID int64, data []byte) (*Certificate, error) {
	var issuers [][]byte
	if ref, ok := certRef(data); ok {
		got, err := s.issuers(ctx, []chainRef{ref})
		if err != nil {
			return nil, fmt.Errorf("certificate of request %d: %w", requestID, err)
		}
		if issuers = got[ref]; issuers == nil {
			return nil, fmt.Errorf("certificate of request %d: its chain %x is not stored: %w", requestID, ref[:8], ErrCorrupt)
		}
	}
	return decodeCertificate(requestID, data, issuers)
}

// resolveChains finds the chains the certificates of rs refer to (the
// cache, else one round trip to Redis) and hands each request its own,
// for Request.Certificate. A chain that is not stored is left out: that
// request's Certificate reports it.
func (s *Store) resolveChains(ctx context.Context, rs ...*Request) error {
	var refs []chainRef
	for _, r := range rs {
		if ref, ok := certRef(r.cert); ok && r.issuers == nil {
			refs = append(refs, ref)
		}
	}
	if len(refs) == 0 {
		return nil
	}
	got, err := s.issuers(ctx, refs)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if ref, ok := certRef(r.cert); ok && r.issuers == nil {
			r.issuers = got[ref]
		}
	}
	return nil
}

// issuers returns the chains named by refs: from the cache, and those it
// lacks from Redis in one round trip (then cached). A chain not stored,
// or whose bytes do not hash to its name, is absent from the answer.
func (s *Store) issuers(ctx context.Context, refs []chainRef) (map[chainRef][][]byte, error) {
	out := make(map[chainRef][][]byte, 1)
	var missing []chainRef
	for _, ref := range refs {
		if _, done := out[ref]; done {
			continue
		}
		if chain, ok := s.chains.get(ref); ok {
			out[ref] = chain
		} else if !containsRef(missing, ref) {
			missing = append(missing, ref)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	names := make([]string, len(missing))
	for i, ref := range missing {
		names[i] = s.keys.chain(ref)
	}
	vals, err := s.rdb.MGet(ctx, names...).Result()
	if err != nil {
		return nil, fmt.Errorf("load certificate chains: %w", err)
	}
	for i, ref := range missing {
		v, _ := vals[i].(string)
		blob := []byte(v)
		if v == "" || sha256.Sum256(blob) != ref {
			continue
		}
		chain, err := parseChainBlob(blob)
		if err != nil {
			continue
		}
		s.chains.add(ref, chain)
		out[ref] = chain
	}
	return out, nil
}

func containsRef(refs []chainRef, ref chainRef) bool {
	for _, r := range refs {
		if r == ref {
			return true
		}
	}
	return false
}

// chainRewrite is how long this process trusts a chain key it wrote to
// be there: after it, the next certificate stored with the chain writes
// it again (see certV1).
const chainRewrite = time.Minute

// chainCacheSize bounds the chains a process keeps; there is one per CA
// chain in use, so it is never reached but by a store with that many CAs
// (the cache then starts over).
const chainCacheSize = 1024

// chainCache holds the chains this process has read or written. They
// never change (a chain's name is its hash): an entry is never stale.
type chainCache struct {
	mu sync.RWMutex
	m  map[chainRef]*chainEntry
	// last is the chain last named for a certificate to store: the next
	// one is most likely issued with it too, and is named without hashing.
	last *chainEntry
}

type chainEntry struct {
	ref chainRef
	// issuers is the cache's own copy: it is handed to every certificate
	// decoded with the chain, and nobody changes it.
	issuers [][]byte
	// stored is when this process last wrote the chain key (zero: never).
	stored time.Time
}

func (cc *chainCache) get(ref chainRef) ([][]byte, bool) {
	cc.mu.RLock()
	defer cc.mu.RUnlock()
	e, ok := cc.m[ref]
	if !ok {
		return nil, false
	}
	return e.issuers, true
}

// add caches the chain named ref (read from Redis: issuers is not shared).
func (cc *chainCache) add(ref chainRef, issuers [][]byte) *chainEntry {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.addLocked(ref, issuers)
}

func (cc *chainCache) addLocked(ref chainRef, issuers [][]byte) *chainEntry {
	if e, ok := cc.m[ref]; ok {
		return e
	}
	if cc.m == nil || len(cc.m) >= chainCacheSize {
		cc.m, cc.last = map[chainRef]*chainEntry{}, nil
	}
	e := &chainEntry{ref: ref, issuers: issuers}
	cc.m[ref] = e
	return e
}

// name returns the name of the chain above a leaf about to be stored,
// caching it, and whether its key should be written with the leaf's
// certificate (this process has not stored it within chainRewrite).
func (cc *chainCache) name(issuers [][]byte) (ref chainRef, write bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	e := cc.last
	if e == nil || !slices.EqualFunc(e.issuers, issuers, bytes.Equal) {
		blob := chainBlob(issuers)
		own, _ := parseChainBlob(blob) // a copy of the caller's
		e = cc.addLocked(sha256.Sum256(blob), own)
		cc.last = e
	}
	return e.ref, time.Since(e.stored) >= chainRewrite
}

func (cc *chainCache) stored(ref chainRef) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if e, ok := cc.m[ref]; ok {
		e.stored = time.Now()
	}
}

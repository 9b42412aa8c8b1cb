package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// saveScript is the compare-and-set update of a request record; a
// settled one is announced in the same call (PUBLISH names no key, so
// this stays a one-slot script on Redis Cluster). The announcement
// carries the record as saved (see announcement), so a client waiting
// for it needs no read of its own. A certificate issued since the last
// checkpoint (Instance.Unsaved) is stored with the record, only if the
// request has none yet: -2 when it has, and nothing is written. It is
// stored even when the record changed meanwhile (0): the signature is
// made, and the next run must find it rather than sign again.
//
// The inventory's index entries change in the same script (indexOps):
// the certificate's with it, its metadata's with the record, additions
// before the write and removals after. The metadata's come in two forms,
// and the script picks: all of them (full), when the certificate is new
// to the index (stored by this script, or by one whose record lost its
// compare-and-set, which marks the record with the field m), or the
// difference between the metadata this writer read and what it writes
// (diff), when the record has a certificate indexed with what it read.
// Every save sends both, so a writer that read the record before its
// certificate was stored keeps the index true all the same.
//
// Events go with what makes them true (events.go): the certificate's
// (certificate.issued, …) are among its ops, the record's (a change of
// disposition, or what the caller queued with Request.Emit) are the last
// group, applied after the record is written, only if it is; so is the
// retiring of the record's order (Request.RetireOrder).
// KEYS: request, then the ops' keys; ARGV: expected version, json,
// channel ("" for none), "id disposition", certificate json ("" for
// none), the number of the certificate's ops, of the full metadata's,
// of the difference's additions and removals, of the record's events
// and drops, then the ops in that order.
var saveScript = redis.NewScript(applyOpsLua + `
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
local cert = ARGV[5] ~= ''
if cert and redis.call('HEXISTS', KEYS[1], 'x') == 1 then return -2 end
local same = v == ARGV[1]
local nc, nf, na, nr = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local kf, ka, kr = 2 + nc, 2 + nc + nf, 2 + nc + nf + na
local ke = kr + nr
local function at(k) return 11 + 3 * (k - 2) end
local full = same and (cert or redis.call('HGET', KEYS[1], 'm') == '1')
local diff = same and not full and redis.call('HEXISTS', KEYS[1], 'x') == 1
if cert then apply(2, 11, nc) end
if full then apply(kf, at(kf), nf) end
if diff then apply(ka, at(ka), na) end
if cert then redis.call('HSET', KEYS[1], 'x', ARGV[5]) end
if not same then
  if cert then redis.call('HSET', KEYS[1], 'm', '1') end
  return 0
end
local nv = tonumber(v) + 1
redis.call('HSET', KEYS[1], 'v', nv, 'd', ARGV[2])
if full then redis.call('HDEL', KEYS[1], 'm') end
if diff then apply(kr, at(kr), nr) end
apply(ke, at(ke), tonumber(ARGV[10]))
if ARGV[3] ~= '' then
  local f = redis.call('HMGET', KEYS[1], 'x', 'c')
  local x, c = f[1] or '', f[2] or ''
  redis.call('PUBLISH', ARGV[3], ARGV[4] .. '\n' .. nv .. ' ' .. #ARGV[2] .. ' ' .. #x .. ' ' .. #c .. '\n' .. ARGV[2] .. x .. c)
end
return 1
`)

// Save writes r if nobody else has since it was read; otherwise it returns
// ErrConflict and r is stale. On success r's version advances; a settled
// request is announced to waiting clients in the same round trip and
// leaves the open set (a final one with the next batch, see forgetLater),
// while an unsettled one has its progress time refreshed, and one that was
// settled (a decided PENDING request, a restarted FAILED one) rejoins the
// open set at once. A request entering or leaving PENDING joins or leaves
// the pending index. All of that is derived state: a settled id left in
// the open set is dropped by the reconciler, waiters re-read once a
// second, and pending listings re-check each record.
//
// A certificate in r.Instance.Unsaved (the issue step's Result.Record) is
// stored in the same script, with its inventory index entries in the same
// round trip. If the record changed since it was read, the certificate is
// stored all the same (a re-run finds it instead of signing again: one
// signature per request, whoever checkpoints) and Save returns
// ErrConflict. If the request has a certificate already (another
// worker's, after this one's issue lock expired), nothing is written, the
// lock is released and Save returns ErrConflict.
func (s *Store) Save(ctx context.Context, r *Request) error {
	cert, err := unsavedCertificate(r)
	if err != nil {
		return err
	}
	r.Updated = time.Now().UTC()
	settled := r.Disposition.Settled()
	reopened := !settled && r.loaded.Settled()
	refresh := !settled && (reopened || r.Updated.Sub(r.Progress) >= s.ProgressEvery)
	if refresh {
		r.Progress = r.Updated
	}
	data, err := marshal(r)
	if err != nil {
		return err
	}
	if settled {
		// What stays in Redis for long is packed (pack.go).
		data = pack(make([]byte, 0, len(data)/2), data)
	}
	channel, message := "", ""
	announce := strconv.FormatInt(r.ID, 10) + " " + string(r.Disposition)
	if settled && r.Disposition != Pending {
		// A PENDING request is announced after it joined the pending
		// index (below), so whoever it wakes finds it listed.
		channel, message = s.keys.events(), announce
	}
	res, certData, err := s.runSave(ctx, r, data, channel, message, cert)
	if cert != nil && (err != nil || res == -1 || res == -2) {
		// Not stored, and never will be (a later save must not try
		// again): the next run may sign.
		cert.claim.Release(context.WithoutCancel(ctx))
		if res < 0 {
			r.Instance.Unsaved = nil
		}
	}
	switch {
	case err != nil:
		return fmt.Errorf("save request %d: %w", r.ID, err)
	case res == -1:
		return fmt.Errorf("save request %d: %w", r.ID, ErrNotFound)
	case res == 0:
		return fmt.Errorf("save request %d: %w", r.ID, ErrConflict)
	case res == -2:
		return fmt.Errorf("save request %d: a certificate is stored for it already: %w", r.ID, ErrConflict)
	}
	r.version++
	if cert != nil {
		r.cert, r.Instance.Unsaved = certData, nil
		r.issuers = nil
		if len(cert.Chain) > 1 {
			r.issuers = cert.Chain[1:]
		}
	}
	was := r.loaded
	r.loaded = r.Disposition
	// The follow-ups, best effort (see above), in one round trip.
	pipe := s.rdb.Pipeline()
	switch {
	case settled && r.Disposition.Final():
		s.forgetLater(ctx, r.ID, r.Updated)
	case settled:
		// PENDING runs again later: leave the open set now (the re-adding
		// comes with its decision).
		pipe.ZRem(ctx, s.keys.open(), r.ID)
	case refresh: // a reopened request too
		pipe.ZAdd(ctx, s.keys.open(), redis.Z{Score: float64(r.Progress.UnixMilli()), Member: r.ID})
	}
	switch {
	case r.Disposition == Pending:
		// Scored by deadline (escalation moves it), so the overdue are
		// found without reading the others; waits without a deadline
		// come last, oldest first.
		score := float64(noDeadline + r.Submitted.UnixMilli())
		if w := r.Instance.Wait; w != nil && !w.Deadline.IsZero() {
			score = float64(w.Deadline.UnixMilli())
		}
		pipe.ZAdd(ctx, s.keys.pending(), redis.Z{Score: score, Member: r.ID})
		if !r.Instance.Wait.ForAuthority() {
			// A request waiting for its CA is not announced: a client
			// waiting for it (Prefer: wait) wants the certificate, which
			// comes with the final save.
			pipe.Publish(ctx, s.keys.events(), announce)
		}
	case was == Pending:
		pipe.ZRem(ctx, s.keys.pending(), r.ID)
	}
	if pipe.Len() > 0 {
		pipe.Exec(ctx)
	}
	return nil
}

// unsavedCertificate is the certificate in r.Instance.Unsaved, if any: the
// only record of an effect a checkpoint knows how to write.
func unsavedCertificate(r *Request) (*Certificate, error) {
	var cert *Certificate
	for _, u := range r.Instance.Unsaved {
		c, ok := u.(*Certificate)
		if !ok || cert != nil {
			return nil, fmt.Errorf("save request %d: cannot record %T with a checkpoint (one *store.Certificate at most)", r.ID, u)
		}
		cert = c
	}
	return cert, nil
}

// runSave runs saveScript. With a certificate, its inventory index
// entries are written by the script that stores it; a record whose
// certificate's metadata changed has its metadata index entries changed
// by the script that saves it. A certificate stored while the record
// lost its compare-and-set leaves its metadata unindexed (m=1) until the
// record's next save, which a request's retry makes; CheckInventory
// reports and repairs one left so.
func (s *Store) runSave(ctx context.Context, r *Request, data []byte, channel, message string, cert *Certificate) (res int64, certData []byte, err error) {
	var enc *encodedCert
	if cert != nil {
		if cert.ID != r.ID || cert.RequestID != r.ID {
			return 0, nil, fmt.Errorf("its unsaved certificate is request %d's", cert.RequestID)
		}
		if enc, err = s.encodeCertificate(cert); err != nil {
			return 0, nil, err
		}
		certData = enc.data
	}
	var certOps, full, diff, recordEvents indexOps
	certEvents, recEvents := s.lifecycle(r, cert)
	if cert != nil {
		certOps.add(enc.chainOps) // the chain before the certificate that refers to it
		certOps.add(s.keys.certEntries(cert))
		certOps.add(s.certOpsOf(r, cert))
		certOps.add(s.eventEntries(certEvents))
		certOps.remove(s.certRemovesOf(r))
	}
	recordEvents.add(s.eventEntries(recEvents))
	if r.retireOrder {
		recordEvents.remove([]indexEntry{{key: s.keys.request(r.ID), member: "o", retire: true}})
	}
	md := r.Metadata()
	mdEntries := s.keys.metadataEntries(r.ID, md)
	full.add(mdEntries)
	if cert == nil && !maps.Equal(r.indexedMeta, md) {
		diff.change(s.keys.metadataEntries(r.ID, r.indexedMeta), mdEntries)
	}
	keys, args := certOps.encode([]string{s.keys.request(r.ID)}, []any{r.version, data, channel, message, certData,
		len(certOps.adds) + len(certOps.removes), len(full.adds), len(diff.adds), len(diff.removes), len(recordEvents.adds) + len(recordEvents.removes)})
	keys, args = full.encode(keys, args)
	keys, args = diff.encode(keys, args)
	keys, args = recordEvents.encode(keys, args)
	if cert == nil {
		res, err = saveScript.Run(ctx, s.rdb, keys, args...).Int64()
	} else {
		// The save that stores a certificate shares its round trip with
		// other goroutines' (execBatched): the issue path's group commit.
		res, err = s.runBatched(ctx, saveScript, keys, args...)
	}
	if err != nil {
		return 0, nil, err
	}
	if enc != nil && res >= 0 {
		s.chainStored(enc)
	}
	if res == 1 {
		r.indexedMeta = md
		r.emit, r.retireOrder = nil, false
	}
	return res, certData, nil
}

// Update loads request id, applies change and saves it, retrying when
// another writer got there first. change must be safe to run again on
// the fresh record.
func (s *Store) Update(ctx context.Context, id int64, change func(*Request) error) (*Request, error) {
	for attempt := 0; ; attempt++ {
		r, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := change(r); err != nil {
			return r, err
		}
		err = s.Save(ctx, r)
		if !errors.Is(err, ErrConflict) || attempt == 9 {
			return r, err
		}
	}
}

package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The expiry watch (docs/events.md, "Expiry watch"). Its state is one
// sorted set, the due set (keys.expiryDue): a certificate's id scored by
// when its next expiry event is due (unix seconds). Storing a certificate
// adds it at NotAfter − ExpiryLead (the largest threshold); renewing or
// revoking it, or retention deleting it, removes it. A pass reads what is
// due (ZRANGEBYSCORE -inf now: nothing else when nothing is), and for
// what is, one script per batch decides per certificate and writes the
// event with its decision: certificate.expiring for the tightest
// threshold passed, the id re-scored to the next threshold's time (or to
// NotAfter when none is left); certificate.expired once NotAfter has
// passed, the id removed. An id leaves or moves only in the script that
// writes its event, so a pass a crash cut short loses nothing and repeats
// nothing: the next pass finds what is still due.
//
// The due set also says how far each certificate has got: a score s says
// that the thresholds above NotAfter − s are behind it (warned, or passed
// over when several were passed at once). The pass warns only for a
// threshold at or below that lead, and a change of thresholds rebuilds
// the scores from it (PrepareExpiryWatch), so that no certificate is
// warned twice for one threshold.

// ExpiryThreshold is one threshold of the expiry watch.
type ExpiryThreshold struct {
	// Name is the threshold as configured ("14d"): events carry it.
	Name string
	// Lead is how long before NotAfter it is passed.
	Lead time.Duration
}

// ExpiryPassResult is what one pass did.
type ExpiryPassResult struct {
	// Due is how many due ids the pass read (a concurrent pass may have
	// taken some of them).
	Due      int
	Expiring int
	Expired  int
	// Skipped are due ids of certificates revoked, renewed or gone: they
	// left the due set without an event.
	Skipped int
	// Busy: something was due, but another process holds the watch's
	// lock; it does the pass.
	Busy bool
}

// ExpiryBatch is how many due ids a pass reads and decides at a time.
const ExpiryBatch = 256

// expiryLockTTL bounds how long a crashed pass holds the watch's lock;
// a live one extends it at every batch.
const expiryLockTTL = 30 * time.Second

// ErrExpiryBusy: another process holds the expiry watch's lock.
var ErrExpiryBusy = errors.New("another process holds the expiry watch's lock")

// expiryConfig holds the thresholds the due set was built for
// (expiryConfigValue).
func (k keys) expiryConfig() string { return k.prefix + ":expiry:config" }

// expiryLock is held (a random token, with a TTL) by the one process
// doing a pass or a rebuild.
func (k keys) expiryLock() string { return k.prefix + ":expiry:lock" }

// expiryConfigValue is how thresholds are recorded in expiryConfig: their
// leads in seconds, largest first.
func expiryConfigValue(th []ExpiryThreshold) string {
	var b strings.Builder
	b.WriteString("v1:")
	for i, t := range sortedThresholds(th) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(int64(t.Lead/time.Second), 10))
	}
	return b.String()
}

// sortedThresholds are th's positive thresholds, largest first.
func sortedThresholds(th []ExpiryThreshold) []ExpiryThreshold {
	out := make([]ExpiryThreshold, 0, len(th))
	for _, t := range th {
		if t.Lead >= time.Second {
			out = append(out, t)
		}
	}
	slices.SortStableFunc(out, func(a, b ExpiryThreshold) int { return cmp.Compare(b.Lead, a.Lead) })
	return out
}

// thresholdArgs are th as script arguments: their count, then each one's
// lead (s) and name, largest first.
func thresholdArgs(args []any, th []ExpiryThreshold) []any {
	th = sortedThresholds(th)
	args = append(args, len(th))
	for _, t := range th {
		args = append(args, int64(t.Lead/time.Second), t.Name)
	}
	return args
}

// expiryPassLua decides the due certificates of one batch. KEYS: the due
// set, the certificates' NotAfter index, the revoked set, the superseded
// set, the event log, the certificates' event depths, their NotBefore
// index. ARGV: now (unix s), now (RFC 3339), the log's min
// id, the thresholds (thresholdArgs), then 6 per certificate: id, serial,
// IssuedCN, template, NotAfter (RFC 3339), 1 if its record was read (0:
// it is gone). An id no longer due (a concurrent pass took it) is left
// alone. Returns {expiring, expired, skipped}.
var expiryPassScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local nt = tonumber(ARGV[4])
local leads, names = {}, {}
for j = 1, nt do
  leads[j] = tonumber(ARGV[3 + 2 * j])
  names[j] = ARGV[4 + 2 * j]
end
local function emit(ev)
  local js = cjson.encode(ev)
  if ARGV[3] ~= '0' then redis.call('XADD', KEYS[5], 'MINID', '~', ARGV[3], '*', 'e', js)
  else redis.call('XADD', KEYS[5], '*', 'e', js) end
end
local expiring, expired, skipped = 0, 0, 0
local i = 5 + 2 * nt
while i + 5 <= #ARGV do
  local id = ARGV[i]
  local due = redis.call('ZSCORE', KEYS[1], id)
  if due and tonumber(due) <= now then
    local na = redis.call('ZSCORE', KEYS[2], id)
    if not na or ARGV[i + 5] ~= '1' or redis.call('ZSCORE', KEYS[3], id) or redis.call('ZSCORE', KEYS[4], id) then
      redis.call('ZREM', KEYS[1], id)
      skipped = skipped + 1
    else
      na = tonumber(na)
      local cid = tonumber(id)
      local data = {SerialNumber = ARGV[i + 1], IssuedCN = ARGV[i + 2], Template = ARGV[i + 3], NotAfter = ARGV[i + 4]}
      local ev = {Time = ARGV[2], CertificateId = cid, RequestId = cid, Source = 'certflow', Data = data}
      -- A certificate automation made (it has a depth) and that was born
      -- inside the window it is warned for is announced as a consequence
      -- of that automation, with its depth, so that a definition renewing
      -- what it renewed stops at the depth limit; one that lived beyond
      -- the window is announced afresh (depth 0), and renews every year.
      local depth = redis.call('ZSCORE', KEYS[6], id)
      local nb = redis.call('ZSCORE', KEYS[7], id)
      local function inherit(lead)
        if depth and nb and tonumber(nb) >= na - lead then ev.Depth = tonumber(depth) end
      end
      if na <= now then
        ev.Name = 'certificate.expired'
        inherit(nt > 0 and leads[1] or 0)
        emit(ev)
        redis.call('ZREM', KEYS[1], id)
        expired = expired + 1
      else
        local left = na - now
        local lead = na - tonumber(due)
        local pick, nextLead = nil, 0
        for j = 1, nt do
          if leads[j] >= left then
            if leads[j] <= lead then pick = j end
          elseif nextLead == 0 then
            nextLead = leads[j]
          end
        end
        if pick then
          data.Threshold = names[pick]
          data.ThresholdSeconds = leads[pick]
          data.DaysLeft = left / 86400
          ev.Name = 'certificate.expiring'
          inherit(leads[pick])
          emit(ev)
          expiring = expiring + 1
        end
        redis.call('ZADD', KEYS[1], na - nextLead, id)
      end
    end
  end
  i = i + 6
end
return {expiring, expired, skipped}
`)

// expiryRebuildScript re-scores a chunk of certificates for thresholds
// (docs: PrepareExpiryWatch). KEYS: the due set, the NotAfter index, the
// revoked set, the superseded set. ARGV: now (unix s), 1 if the due set's
// scores were made for known thresholds (0: by a store that recorded
// none, so nothing was warned yet), the thresholds (thresholdArgs), the
// ids. A certificate revoked, renewed or gone leaves the due set; one
// expired is left as it is (its certificate.expired is pending, or was
// written); one valid and not in the due set (stored before the watch)
// joins it as a new one would. Returns how many it re-scored.
var expiryRebuildScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local known = ARGV[2] == '1'
local nt = tonumber(ARGV[3])
local leads = {}
for j = 1, nt do leads[j] = tonumber(ARGV[2 + 2 * j]) end
local n = 0
for i = 4 + 2 * nt, #ARGV do
  local id = ARGV[i]
  local na = redis.call('ZSCORE', KEYS[2], id)
  if not na or redis.call('ZSCORE', KEYS[3], id) or redis.call('ZSCORE', KEYS[4], id) then
    redis.call('ZREM', KEYS[1], id)
  else
    na = tonumber(na)
    if na > now then
      local left = na - now
      local due = redis.call('ZSCORE', KEYS[1], id)
      local lead = math.huge
      if due and known then lead = na - tonumber(due) end
      local pick = 0
      for j = 1, nt do
        if leads[j] <= lead or leads[j] < left then pick = leads[j]; break end
      end
      redis.call('ZADD', KEYS[1], na - pick, id)
      n = n + 1
    end
  end
end
return n
`)

// expiryUnlockScript releases the lock if it is still this holder's;
// with a TTL in ARGV[2], it extends it instead. 1: done, 0: lost.
var expiryUnlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('DEL', KEYS[1])
`)

// expiryLock is one holding of the watch's lock.
type expiryLock struct {
	s     *Store
	token string
}

// lockExpiry takes the watch's lock, or reports ErrExpiryBusy.
func (s *Store) lockExpiry(ctx context.Context) (*expiryLock, error) {
	var b [12]byte
	rand.Read(b[:])
	l := &expiryLock{s: s, token: hex.EncodeToString(b[:])}
	ok, err := s.rdb.SetNX(ctx, s.keys.expiryLock(), l.token, s.expiryLockTTL()).Result()
	if err != nil {
		return nil, fmt.Errorf("expiry watch lock: %w", err)
	}
	if !ok {
		return nil, ErrExpiryBusy
	}
	return l, nil
}

func (s *Store) expiryLockTTL() time.Duration {
	if s.expiryLockFor > 0 {
		return s.expiryLockFor
	}
	return expiryLockTTL
}

// extend renews the lock's TTL; false when it was lost (it expired and
// another process took it: stop, and leave the rest to it).
func (l *expiryLock) extend(ctx context.Context) (bool, error) {
	n, err := expiryUnlockScript.Run(ctx, l.s.rdb, []string{l.s.keys.expiryLock()}, l.token, l.s.expiryLockTTL().Milliseconds()).Int64()
	return n == 1, err
}

// release gives the lock up, even when ctx has ended.
func (l *expiryLock) release(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	expiryUnlockScript.Run(ctx, l.s.rdb, []string{l.s.keys.expiryLock()}, l.token)
}

// dueIDs reads up to n ids due by now.
func (s *Store) dueIDs(ctx context.Context, now int64, n int64) ([]string, error) {
	ids, err := s.rdb.ZRangeByScore(ctx, s.keys.expiryDue(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now, 10), Count: n,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("read the expiry watch's due set: %w", err)
	}
	return ids, nil
}

// ExpiryPass does one pass of the expiry watch as of now, for thresholds
// (the configured ones: those PrepareExpiryWatch made the due set for).
// When nothing is due it is one read of the due set, whatever the size
// of the inventory. Else it takes the watch's lock (Busy: another process
// has it and does the pass) and decides what is due ExpiryBatch at a
// time until nothing is; its cost is that of what is due. A pass cut
// short (ctx, a crash) leaves the rest due for the next.
func (s *Store) ExpiryPass(ctx context.Context, now time.Time, thresholds []ExpiryThreshold) (ExpiryPassResult, error) {
	var res ExpiryPassResult
	at := now.Unix()
	ids, err := s.dueIDs(ctx, at, ExpiryBatch)
	if err != nil || len(ids) == 0 {
		return res, err
	}
	lock, err := s.lockExpiry(ctx)
	if errors.Is(err, ErrExpiryBusy) {
		res.Busy = true
		return res, nil
	}
	if err != nil {
		return res, err
	}
	defer lock.release(ctx)
	for batch := 0; ; batch++ {
		if batch > 0 {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			if ok, err := lock.extend(ctx); err != nil || !ok {
				return res, err // lost: the holder now does the rest
			}
			if ids, err = s.dueIDs(ctx, at, ExpiryBatch); err != nil || len(ids) == 0 {
				return res, err
			}
		}
		res.Due += len(ids)
		n, err := s.expiryBatch(ctx, now, thresholds, ids)
		if err != nil {
			return res, err
		}
		res.Expiring, res.Expired, res.Skipped = res.Expiring+n[0], res.Expired+n[1], res.Skipped+n[2]
		if s.expiryBatchHook != nil {
			s.expiryBatchHook(batch)
		}
		if len(ids) < ExpiryBatch {
			return res, nil
		}
	}
}

// certSummary is what an expiry event says of its certificate.
type certSummary struct {
	SerialNumber string    `json:"SerialNumber"`
	IssuedCN     string    `json:"IssuedCN"`
	Template     string    `json:"Template"`
	NotAfter     time.Time `json:"NotAfter"`
}

// summarize reads a stored certificate's summary (field x) without its
// DER or chain.
func summarize(data []byte) (certSummary, error) {
	var c certSummary
	js := data
	if len(data) > 0 && data[0] == certV1 {
		if len(data) < 2 || data[1] > 1 || len(data) < 2+int(data[1])*32 {
			return c, ErrCorrupt
		}
		rest := data[2+int(data[1])*32:]
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return c, ErrCorrupt
		}
		var err error
		if js, err = unpack(nil, rest[k+int(n):]); err != nil {
			return c, fmt.Errorf("%w: %w", err, ErrCorrupt)
		}
	}
	return c, unmarshal(js, &c)
}

// expiryBatch reads the due certificates' summaries (one pipeline of
// HGETs) and runs the pass script on them.
func (s *Store) expiryBatch(ctx context.Context, now time.Time, thresholds []ExpiryThreshold, ids []string) ([3]int, error) {
	var out [3]int
	pipe := s.rdb.Pipeline()
	gets := make([]*redis.StringCmd, len(ids))
	for i, m := range ids {
		id, _ := strconv.ParseInt(m, 10, 64)
		gets[i] = pipe.HGet(ctx, s.keys.request(id), "x")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return out, fmt.Errorf("read due certificates: %w", err)
	}
	args := []any{now.Unix(), now.UTC().Format(time.RFC3339Nano), s.eventMinID()}
	args = thresholdArgs(args, thresholds)
	for i, m := range ids {
		raw, err := gets[i].Result()
		c, derr := summarize(bytesOf(raw))
		if err != nil || derr != nil {
			// Gone (retention deleted it) or undecodable: the script
			// drops it from the watch, which cannot describe it.
			args = append(args, m, "", "", "", "", 0)
			continue
		}
		args = append(args, m, c.SerialNumber, c.IssuedCN, c.Template, c.NotAfter.UTC().Format(time.RFC3339), 1)
	}
	keys := []string{s.keys.expiryDue(), s.keys.certExpiry(), s.keys.invRevoked(), s.keys.superseded(), s.keys.eventLog(), s.keys.eventDepth(), s.keys.invNotBefore()}
	res, err := expiryPassScript.Run(ctx, s.rdb, keys, args...).Int64Slice()
	if err != nil {
		return out, fmt.Errorf("expiry pass: %w", err)
	}
	for i := range min(len(res), 3) {
		out[i] = int(res[i])
	}
	return out, nil
}

// expiryRebuildChunk is how many certificates a rebuild re-scores per
// script.
const expiryRebuildChunk = 500

// PrepareExpiryWatch makes the due set right for thresholds before the
// watch's first pass in this process. The thresholds it was built for are
// recorded (keys.expiryConfig); when they are these, it does nothing (one
// read). Otherwise (thresholds changed, or a store from before the watch
// with certificates in it), under the watch's lock (ErrExpiryBusy: try
// again later), it re-scores every valid certificate in chunks:
//
//   - one the due set has from recorded thresholds keeps how far it got:
//     its next warning is for the largest new threshold at or below its
//     lead (NotAfter − score), or still ahead of it; so a certificate is
//     never warned twice for one threshold, and a threshold added above
//     a point it has passed is not warned for it;
//   - one the due set lacks (stored before the watch), or every one when
//     no thresholds were recorded (nothing was warned then), is scored as
//     a certificate stored now: its first pass warns for the tightest
//     threshold it has passed;
//   - revoked, renewed and deleted certificates leave the due set;
//     expired ones are left as they are (certificates that expired
//     before the watch existed are not reported).
//
// It then records thresholds. A rebuild cut short is done again by the
// next start, to the same result. It returns how many certificates it
// re-scored.
func (s *Store) PrepareExpiryWatch(ctx context.Context, now time.Time, thresholds []ExpiryThreshold) (int, error) {
	want := expiryConfigValue(thresholds)
	got, err := s.rdb.Get(ctx, s.keys.expiryConfig()).Result()
	if err == nil && got == want {
		return 0, nil
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("read the expiry watch's thresholds: %w", err)
	}
	if errors.Is(err, redis.Nil) {
		n, err := s.rdb.ZCard(ctx, s.keys.certificates()).Result()
		if err != nil {
			return 0, fmt.Errorf("count certificates: %w", err)
		}
		if n == 0 {
			ok, err := s.rdb.SetNX(ctx, s.keys.expiryConfig(), want, 0).Result()
			if err != nil || ok {
				return 0, err
			}
			// Another process recorded its thresholds meanwhile: compare
			// with those (they are recorded now, so this recurses once).
			return s.PrepareExpiryWatch(ctx, now, thresholds)
		}
	}
	lock, err := s.lockExpiry(ctx)
	if err != nil {
		return 0, err
	}
	defer lock.release(ctx)
	got, err = s.rdb.Get(ctx, s.keys.expiryConfig()).Result()
	known := err == nil
	if known && got == want {
		return 0, nil // another process rebuilt it meanwhile
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("read the expiry watch's thresholds: %w", err)
	}
	knownArg := 0
	if known {
		knownArg = 1
	}
	keys := []string{s.keys.expiryDue(), s.keys.certExpiry(), s.keys.invRevoked(), s.keys.superseded()}
	total := 0
	var after int64
	for {
		ids, err := s.CertificateIDs(ctx, after, expiryRebuildChunk)
		if err != nil || len(ids) == 0 {
			if err != nil {
				return total, err
			}
			break
		}
		args := thresholdArgs([]any{now.Unix(), knownArg}, thresholds)
		for _, id := range ids {
			args = append(args, id)
		}
		n, err := expiryRebuildScript.Run(ctx, s.rdb, keys, args...).Int64()
		if err != nil {
			return total, fmt.Errorf("rebuild the expiry watch's due set: %w", err)
		}
		total += int(n)
		after = ids[len(ids)-1]
		if ok, err := lock.extend(ctx); err != nil || !ok {
			if err == nil {
				err = ErrExpiryBusy
			}
			return total, err
		}
	}
	if err := s.rdb.Set(ctx, s.keys.expiryConfig(), want, 0).Err(); err != nil {
		return total, fmt.Errorf("record the expiry watch's thresholds: %w", err)
	}
	return total, nil
}

// ExpiryLeadOf is the lead a stored certificate joins the due set with
// for thresholds: the largest (0 for none: due at NotAfter).
func ExpiryLeadOf(thresholds []ExpiryThreshold) time.Duration {
	var lead time.Duration
	for _, t := range thresholds {
		lead = max(lead, t.Lead)
	}
	return lead
}

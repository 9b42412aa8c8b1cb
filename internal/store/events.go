package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/workflow"
)

// The event log. Every event is one entry of a Redis stream (eventLog),
// appended by the script that makes the change it reports, as one more of
// that script's ops (indexEntry.stream, op x): a lifecycle change and its
// event are written together or not at all. The stream's entry id is the
// event's id; its field e holds the event as JSON without its id. XADD
// trims entries older than EventRetention as it goes (MINID ~).
//
// Events are dispatched to the definitions they trigger by a consumer
// group (eventGroup): each entry is read by one worker, and stays pending
// for it until acknowledged, so an event a crashed worker was dispatching
// is claimed by another (ClaimEvents). What makes a run happen once per
// (event, definition) is not the group but eventRuns: the run is created
// by a script that first sets the definition's field in the event's runs
// hash, if absent (CreateEventRun).

// DefaultEventRetention is how long events are kept by default.
const DefaultEventRetention = 30 * 24 * time.Hour

// eventGroup is the consumer group of the dispatchers.
const eventGroup = "dispatch"

// eventLog is the stream of events.
func (k keys) eventLog() string { return k.prefix + ":eventlog" }

// eventRuns is a hash of an event's runs: definition name → request id of
// the run it started (0 when its match did not hold: the decision is made
// once), with the event id as hash tag.
func (k keys) eventRuns(eventID string) string { return k.prefix + ":event:{" + eventID + "}:runs" }

// eventOnce maps a once-only event's key (an external sender's Id, a
// schedule's slot) to the id of the event it became.
func (k keys) eventOnce(key string) string { return k.prefix + ":event-once:" + shortHash(key) }

// eventEntry is the op that appends ev to the event log.
func (s *Store) eventEntry(ev workflow.Event) indexEntry {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	if ev.Source == "" {
		ev.Source = "certflow"
	}
	ev.ID = ""
	data, _ := json.Marshal(ev) // plain values only: cannot fail
	return indexEntry{key: s.keys.eventLog(), score: s.eventMinID(), member: string(data), stream: true}
}

// eventMinID is the oldest stream id (ms) the log keeps: XADD trims
// entries before it.
func (s *Store) eventMinID() int64 {
	if s.EventRetention <= 0 {
		return 0
	}
	return time.Now().Add(-s.EventRetention).UnixMilli()
}

// eventEntries are the ops that append evs.
func (s *Store) eventEntries(evs []workflow.Event) []indexEntry {
	out := make([]indexEntry, 0, len(evs))
	for _, ev := range evs {
		out = append(out, s.eventEntry(ev))
	}
	return out
}

// AppendEvent writes an event that comes with no record change: an
// external one, a schedule's slot. With a once-key, the event is written
// only if no event was written under that key in the last onceFor; dup
// then reports it, and id is that first event's (AppendEventOnce).
func (s *Store) AppendEvent(ctx context.Context, ev workflow.Event, onceKey string, onceFor time.Duration) (id string, dup bool, err error) {
	return s.AppendEventOnce(ctx, ev, []string{onceKey}, onceFor)
}

// decodeEvent reads a log entry.
func decodeEvent(m redis.XMessage) (*workflow.Event, error) {
	raw, _ := m.Values["e"].(string)
	var ev workflow.Event
	if err := json.Unmarshal([]byte(raw), &ev); err != nil {
		return nil, fmt.Errorf("event %s: %w: %v", m.ID, ErrCorrupt, err)
	}
	ev.ID = m.ID
	return &ev, nil
}

// Event returns the event with the given id.
func (s *Store) Event(ctx context.Context, id string) (*workflow.Event, error) {
	if !ValidEventID(id) {
		return nil, fmt.Errorf("event %q: %w", id, ErrNotFound)
	}
	ms, err := s.rdb.XRange(ctx, s.keys.eventLog(), id, id).Result()
	if err != nil {
		return nil, fmt.Errorf("load event %s: %w", id, err)
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("event %s: %w", id, ErrNotFound)
	}
	return decodeEvent(ms[0])
}

// ValidEventID reports whether id has an event id's shape: a stream id,
// <ms>-<seq>.
func ValidEventID(id string) bool {
	_, _, ok := parseEventID(id)
	return ok
}

// parseEventID splits a stream id <ms>-<seq> into its numbers.
func parseEventID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return ms, seq, found && err1 == nil && err2 == nil
}

// EventRuns returns the runs event id started: definition name → request
// id (0: the definition's match did not hold).
func (s *Store) EventRuns(ctx context.Context, id string) (map[string]int64, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.eventRuns(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("load runs of event %s: %w", id, err)
	}
	out := make(map[string]int64, len(m))
	for def, v := range m {
		n, _ := strconv.ParseInt(v, 10, 64)
		out[def] = n
	}
	return out, nil
}

// EnsureEventGroup creates the dispatchers' consumer group, reading the
// log from its start, if it does not exist.
func (s *Store) EnsureEventGroup(ctx context.Context) error {
	err := s.rdb.XGroupCreateMkStream(ctx, s.keys.eventLog(), eventGroup, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return fmt.Errorf("create event consumer group: %w", err)
	}
	return nil
}

// ReadEvents returns up to n events no dispatcher has read, for consumer,
// waiting up to block for one. They stay pending for consumer until
// AckEvents.
func (s *Store) ReadEvents(ctx context.Context, consumer string, n int64, block time.Duration) ([]*workflow.Event, error) {
	res, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: eventGroup, Consumer: consumer, Streams: []string{s.keys.eventLog(), ">"}, Count: n, Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*workflow.Event
	for _, st := range res {
		for _, m := range st.Messages {
			out = append(out, s.decodeOrPlaceholder(m))
		}
	}
	return out, nil
}

// decodeOrPlaceholder decodes m; an entry that does not decode (or was
// trimmed while pending: no values) comes back with its id and no name,
// for the dispatcher to acknowledge and skip.
func (s *Store) decodeOrPlaceholder(m redis.XMessage) *workflow.Event {
	ev, err := decodeEvent(m)
	if err != nil {
		return &workflow.Event{ID: m.ID}
	}
	return ev
}

// ClaimEvents takes over up to n events other dispatchers read at least
// minIdle ago and did not acknowledge (they crashed, or hang).
func (s *Store) ClaimEvents(ctx context.Context, consumer string, minIdle time.Duration, n int64) ([]*workflow.Event, error) {
	ms, _, err := s.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: s.keys.eventLog(), Group: eventGroup, Consumer: consumer, MinIdle: minIdle, Start: "0", Count: n,
	}).Result()
	if err != nil {
		return nil, err
	}
	out := make([]*workflow.Event, 0, len(ms))
	for _, m := range ms {
		out = append(out, s.decodeOrPlaceholder(m))
	}
	return out, nil
}

// AckEvents marks events dispatched.
func (s *Store) AckEvents(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.rdb.XAck(ctx, s.keys.eventLog(), eventGroup, ids...).Err()
}

// Emit queues events for r's next Save to write in the script that saves
// it, if that save's compare-and-set succeeds (Update's change calls it
// again on a fresh record when it does not).
func (r *Request) Emit(evs ...workflow.Event) { r.emit = append(r.emit, evs...) }

// lifecycle are the events r's save makes true: those of the certificate
// it stores (certificate.issued, and certificate.renewed for a renewal),
// written with the certificate, and those of the record's change of
// disposition plus any the caller queued (Emit), written with the record
// if its compare-and-set succeeds. An event-triggered run's own record
// emits none: automation reports through what it does, and a failing
// definition must not trigger itself.
func (s *Store) lifecycle(r *Request, cert *Certificate) (withCert, withRecord []workflow.Event) {
	withRecord = r.emit
	if r.Trigger == EventRunTrigger {
		return nil, withRecord
	}
	ev := func(name string, data map[string]any) workflow.Event {
		return workflow.Event{Name: name, RequestID: r.ID, Depth: r.EventDepth, Data: data}
	}
	if cert != nil {
		data := map[string]any{
			"SerialNumber": cert.SerialNumber, "Thumbprint": cert.Thumbprint, "Template": cert.Template,
			"IssuedCN": cert.IssuedCN, "NotAfter": cert.NotAfter.UTC().Format(time.RFC3339), "Requester": cert.Requester,
			"CertificateAuthority": cert.Authority,
		}
		issued := ev(workflow.EventCertificateIssued, data)
		issued.CertificateID = cert.ID
		withCert = append(withCert, issued)
		if old := r.Input.RenewalCertificateId; old != 0 {
			renewed := ev(workflow.EventCertificateRenewed, map[string]any{
				"RenewedCertificateId": old, "SerialNumber": cert.SerialNumber, "NotAfter": data["NotAfter"],
				"IssuedCN": cert.IssuedCN, "Template": cert.Template, "Requester": cert.Requester,
			})
			renewed.CertificateID = cert.ID
			withCert = append(withCert, renewed)
		}
	}
	if r.Disposition == r.loaded {
		return withCert, withRecord
	}
	data := map[string]any{
		"Disposition": string(r.Disposition), "Template": r.Input.Template, "CommonName": r.CommonName,
		"Requester": r.Requester.Name, "Kind": r.Trigger,
	}
	switch r.Disposition {
	case Pending:
		if r.Instance.Wait.ForAuthority() {
			// Waiting for its CA: no person is asked anything (each look
			// at the order goes PENDING → RUNNING → PENDING).
			break
		}
		if w := r.Instance.Wait; w != nil {
			data["Step"], data["Roles"], data["Quorum"] = w.Step, w.Roles, w.Quorum
			if !w.Deadline.IsZero() {
				data["Deadline"] = w.Deadline.UTC().Format(time.RFC3339)
			}
		}
		withRecord = append(withRecord, ev(workflow.EventRequestPending, data))
	case Denied:
		data["Message"] = r.Message
		withRecord = append(withRecord, ev(workflow.EventRequestDenied, data))
	case Failed:
		data["Message"] = r.Message
		withRecord = append(withRecord, ev(workflow.EventRequestFailed, data))
	case Running:
		if w := r.Instance.Wait; r.loaded == Pending && w != nil && w.Verdict == workflow.VerdictApproved {
			data["Approvers"] = w.Approvers
			withRecord = append(withRecord, ev(workflow.EventRequestApproved, data))
		}
	}
	return withCert, withRecord
}

// certOpsOf are the ops that come with storing cert for request r beyond
// its index entries: its place in the expiry watch, and for a renewal the
// link to the certificate it supersedes, which leaves the watch.
func (s *Store) certOpsOf(r *Request, cert *Certificate) []indexEntry {
	id := strconv.FormatInt(cert.ID, 10)
	out := []indexEntry{{key: s.keys.expiryDue(), score: cert.NotAfter.Add(-s.ExpiryLead).Unix(), member: id}}
	if old := r.Input.RenewalCertificateId; old != 0 {
		out = append(out,
			indexEntry{key: s.keys.superseded(), score: cert.ID, member: strconv.FormatInt(old, 10)})
	}
	if r.EventDepth > 0 {
		// Its expiry events carry the depth of the automation that made
		// it, like its certificate.issued: a definition that renews what
		// it renewed stops at workflow.MaxEventDepth.
		out = append(out, indexEntry{key: s.keys.eventDepth(), score: int64(r.EventDepth), member: id})
	}
	return out
}

// eventDepth is a sorted set of the certificates requests made by
// event-triggered runs issued, scored by the requests' EventDepth.
func (k keys) eventDepth() string { return k.prefix + ":inv:depth" }

// certRemovesOf are the ops that come with storing cert for a renewal:
// the certificate it supersedes leaves the expiry watch.
func (s *Store) certRemovesOf(r *Request) []indexEntry {
	if old := r.Input.RenewalCertificateId; old != 0 {
		return []indexEntry{{key: s.keys.expiryDue(), member: strconv.FormatInt(old, 10)}}
	}
	return nil
}

// expiryDue is the expiry watch's due set: certificate ids scored by when
// their next expiry event is due (unix seconds).
func (k keys) expiryDue() string { return k.prefix + ":expiry:due" }

// superseded is a sorted set of renewed certificates' ids, scored by the
// id of the certificate that renewed them.
func (k keys) superseded() string { return k.prefix + ":inv:superseded" }

// SupersededBy returns the certificate that renewed certificate id (0:
// none).
func (s *Store) SupersededBy(ctx context.Context, id int64) (int64, error) {
	f, err := s.rdb.ZScore(ctx, s.keys.superseded(), strconv.FormatInt(id, 10)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return int64(f), err
}

// createEventRunScript records that an event's definition runs as request
// id, creating that request, unless the event's runs hash names the
// definition already (then it answers that request id, 0 if the run was
// decided against). An id 0 records "no run" (the definition's match did
// not hold). -1: the id is taken (NewID's counter was lost; ask again).
// KEYS: the event's runs hash, the request's hash, the open set; ARGV:
// definition name, id, record JSON, open-set score, the hash's TTL (ms),
// record digest.
var createEventRunScript = redis.NewScript(`
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if prev then return {tonumber(prev), 0} end
if ARGV[2] ~= '0' then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {-1, 0} end
  redis.call('HSET', KEYS[2], 'v', '1', 'd', ARGV[3], 'n', ARGV[6])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {tonumber(ARGV[2]), 1}
`)

// CreateEventRun records the run of definition def for event ev: r (with
// an id from NewID, or nil when def's match did not hold, which is
// recorded so that a re-dispatch decides nothing again). It returns the
// run's request id (0: none) and whether this call created it; a run
// recorded before (a dispatcher crashed after creating it) is returned
// with created false, and nothing is written. That is what makes a
// definition run once per event, however often the event is dispatched.
func (s *Store) CreateEventRun(ctx context.Context, ev *workflow.Event, def string, r *Request) (id int64, created bool, err error) {
	for attempt := 0; ; attempt++ {
		var data []byte
		var digest string
		var rid int64
		if r != nil {
			rid = r.ID
			r.Input.ID, r.version, r.Progress, r.loaded = r.ID, 1, r.Updated, r.Disposition
			if data, err = marshal(r); err != nil {
				return 0, false, err
			}
			digest = shortHash(string(data))
		}
		ttl := s.EventRetention
		if ttl <= 0 {
			ttl = DefaultEventRetention
		}
		res, err := createEventRunScript.Run(ctx, s.rdb,
			[]string{s.keys.eventRuns(ev.ID), s.keys.request(rid), s.keys.open()},
			def, rid, data, r.updatedMillis(), ttl.Milliseconds(), digest).Slice()
		if err != nil {
			return 0, false, fmt.Errorf("create run of %s for event %s: %w", def, ev.ID, err)
		}
		got, _ := res[0].(int64)
		made, _ := res[1].(int64)
		if got == -1 && attempt < 3 {
			s.dropIDs()
			if r.ID, err = s.NewID(ctx); err != nil {
				return 0, false, err
			}
			continue
		}
		if got == -1 {
			return 0, false, ErrIDTaken
		}
		return got, made == 1, nil
	}
}

func (r *Request) updatedMillis() int64 {
	if r == nil {
		return 0
	}
	return r.Updated.UnixMilli()
}

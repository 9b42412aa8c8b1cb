package store

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/workflow"
)

// Reading the event log (GET /Events) and appending external events
// under several once-keys (POST /Events/Sources/{name}: the delivery's
// webhook-id and the body's Id).

// EventReadBudget is how many log entries one QueryEvents reads at most
// by default: a filter that matches rarely costs a bounded read per call,
// and the caller continues from the cursor it gets back.
const EventReadBudget = 10000

// eventReadChunk is how many entries one XREVRANGE reads.
const eventReadChunk = 500

// EventQuery selects events, newest first.
type EventQuery struct {
	// Name is an exact name, or "prefix.*" for every name under prefix
	// ("" for all).
	Name string
	// CertificateID and RequestID select the events concerning them (0:
	// any).
	CertificateID, RequestID int64
	// After and Before bound the time the log wrote the event (its id's
	// milliseconds): After ≤ t < Before (zero: unbounded).
	After, Before time.Time
	// Cursor continues a listing: only events older than this id.
	Cursor string
	// Limit is the page's size (at least 1).
	Limit int
	// Budget bounds the entries read (0: EventReadBudget).
	Budget int
}

// EventPage is one page of QueryEvents.
type EventPage struct {
	Events []*workflow.Event
	// Next is the cursor to continue from ("": the listing is complete).
	Next string
	// Exhausted: the read budget ran out before the page filled (Next
	// is then set).
	Exhausted bool
}

// matches reports whether ev is one q selects (the time range is the
// read's).
func (q EventQuery) matches(ev *workflow.Event) bool {
	switch {
	case ev.Name == "": // an entry that did not decode
		return false
	case q.CertificateID != 0 && ev.CertificateID != q.CertificateID,
		q.RequestID != 0 && ev.RequestID != q.RequestID:
		return false
	case q.Name == "":
		return true
	}
	if p, ok := strings.CutSuffix(q.Name, ".*"); ok {
		return strings.HasPrefix(ev.Name, p+".")
	}
	return ev.Name == q.Name
}

// QueryEvents returns up to q.Limit events q selects, newest first,
// reading the log backwards from q.Cursor in chunks, at most q.Budget
// entries: when the budget runs out first, the page is what was found
// and Next continues after the last entry read, so a sparse filter over a
// long log costs bounded work per call and never passes a short page off
// as the whole answer.
func (s *Store) QueryEvents(ctx context.Context, q EventQuery) (EventPage, error) {
	var page EventPage
	budget := q.Budget
	if budget <= 0 {
		budget = EventReadBudget
	}
	limit := max(q.Limit, 1)
	end, start := "+", "-"
	if !q.Before.IsZero() {
		ms := q.Before.UnixMilli()
		if ms <= 0 {
			return page, nil
		}
		end = strconv.FormatInt(ms-1, 10) // its every sequence number
	}
	if q.Cursor != "" {
		if !ValidEventID(q.Cursor) {
			return page, fmt.Errorf("cursor %q: %w", q.Cursor, ErrNotFound)
		}
		prev, ok := previousEventID(q.Cursor)
		if !ok {
			return page, nil // nothing is older than 0-0
		}
		if end == "+" || compareEventIDs(prev, end+"-18446744073709551615") < 0 {
			end = prev
		}
	}
	if !q.After.IsZero() {
		start = strconv.FormatInt(max(q.After.UnixMilli(), 0), 10) // its sequence 0 on
	}
	// needle is what an entry's JSON must contain to match q.Name (event
	// names need no JSON escaping): entries without it are not decoded.
	needle := ""
	if p, ok := strings.CutSuffix(q.Name, ".*"); ok {
		needle = `"Name":"` + p + "."
	} else if q.Name != "" {
		needle = `"Name":"` + q.Name + `"`
	}
	read := 0
	for {
		n := min(eventReadChunk, budget-read)
		ms, err := s.rdb.XRevRangeN(ctx, s.keys.eventLog(), end, start, int64(n)).Result()
		if err != nil {
			return page, fmt.Errorf("read the event log: %w", err)
		}
		read += len(ms)
		for i, m := range ms {
			if raw, _ := m.Values["e"].(string); needle != "" && !strings.Contains(raw, needle) {
				continue // cannot match: not decoded
			}
			ev := s.decodeOrPlaceholder(m)
			if !q.matches(ev) {
				continue
			}
			page.Events = append(page.Events, ev)
			if len(page.Events) == limit {
				if i < len(ms)-1 || len(ms) == n {
					page.Next = ev.ID // more may follow
				}
				return page, nil
			}
		}
		if len(ms) < n {
			return page, nil // the log's start (or After) is reached
		}
		last := ms[len(ms)-1].ID
		if read >= budget {
			page.Next, page.Exhausted = last, true
			return page, nil
		}
		prev, ok := previousEventID(last)
		if !ok {
			return page, nil
		}
		end = prev
	}
}

// previousEventID is the greatest stream id below id (false: id is 0-0).
func previousEventID(id string) (string, bool) {
	ms, seq, _ := parseEventID(id)
	switch {
	case seq > 0:
		return fmt.Sprintf("%d-%d", ms, seq-1), true
	case ms > 0:
		return fmt.Sprintf("%d-%d", ms-1, uint64(1<<64-1)), true
	}
	return "", false
}

// compareEventIDs orders two full stream ids.
func compareEventIDs(a, b string) int {
	am, as, _ := parseEventID(a)
	bm, bs, _ := parseEventID(b)
	return cmp.Or(cmp.Compare(am, bm), cmp.Compare(as, bs))
}

// appendEventOnceScript appends one event unless one of its once-keys
// names one already: then it returns that event's id and 0 (the first
// key that names one decides); else the new id and 1, and every key
// names it from then on. KEYS: the log, the once-keys; ARGV: JSON, min
// id, the once-keys' TTL (ms).
var appendEventOnceScript = redis.NewScript(`
for i = 2, #KEYS do
  local prev = redis.call('GET', KEYS[i])
  if prev then return {prev, 0} end
end
local id
if ARGV[2] ~= '0' then
  id = redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[2], '*', 'e', ARGV[1])
else
  id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
end
for i = 2, #KEYS do redis.call('SET', KEYS[i], id, 'PX', ARGV[3]) end
return {id, 1}
`)

// AppendEventOnce is AppendEvent under several once-keys: the event is
// written only if none of them names an event written in the last
// onceFor; dup then reports it, and id is that event's. A signed
// delivery is deduplicated both by its webhook-id (a replay) and by its
// body's Id (the sender's retry under a new delivery).
func (s *Store) AppendEventOnce(ctx context.Context, ev workflow.Event, onceKeys []string, onceFor time.Duration) (id string, dup bool, err error) {
	e := s.eventEntry(ev)
	ks := []string{e.key}
	for _, k := range onceKeys {
		if k != "" {
			ks = append(ks, s.keys.eventOnce(k))
		}
	}
	res, err := appendEventOnceScript.Run(ctx, s.rdb, ks, e.member, e.score, max(onceFor.Milliseconds(), 1)).Slice()
	if err != nil {
		return "", false, fmt.Errorf("append event %s: %w", ev.Name, err)
	}
	id, _ = res[0].(string)
	n, _ := res[1].(int64)
	return id, n == 0, nil
}

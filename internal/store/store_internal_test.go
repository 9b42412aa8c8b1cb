package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func TestParseAnnouncement(t *testing.T) {
	t.Parallel()
	record := `{"ID":7,"Disposition":"ISSUED"}`
	n := strconv.Itoa(len(record))
	for _, tc := range []struct {
		name, payload string
		id            int64 // 0: refused outright
		vals          []any // nil: no record (read the store)
		bad           bool
	}{
		{"bare", "7 ISSUED", 7, nil, false},
		{"with record", "7 ISSUED\n3 " + n + " 2 3\n" + record + "{}\n\x00\n", 7, []any{"3", record, "{}", "\n\x00\n"}, false},
		{"empty certificate and CSR", "7 DENIED\n2 " + n + " 0 0\n" + record, 7, []any{"2", record, "", ""}, false},
		{"not a number", "seven ISSUED", 0, nil, true},
		{"empty", "", 0, nil, true},
		{"three sizes", "7 ISSUED\n3 " + n + " 2\n" + record + "{}", 7, nil, true},
		{"size past the end", "7 ISSUED\n3 999 0 0\n" + record, 7, nil, true},
		{"negative size", "7 ISSUED\n3 -1 0 0\n" + record, 7, nil, true},
		{"size not a number", "7 ISSUED\n3 x 0 0\n" + record, 7, nil, true},
	} {
		a, err := parseAnnouncement(tc.payload)
		if (err != nil) != tc.bad || a.id != tc.id {
			t.Errorf("%s: parseAnnouncement = id %d, err %v; want id %d, error %v", tc.name, a.id, err, tc.id, tc.bad)
			continue
		}
		if !tc.bad && len(a.vals) != len(tc.vals) {
			t.Errorf("%s: vals %q, want %q", tc.name, a.vals, tc.vals)
			continue
		}
		for i := range tc.vals {
			if a.vals[i] != tc.vals[i] {
				t.Errorf("%s: field %d = %q, want %q", tc.name, i, a.vals[i], tc.vals[i])
			}
		}
	}
}

// Every waiter of an announced request is woken: with its own decoded copy
// when the record came along and decodes, else with nil (read the store).
func TestWakeHandsEachWaiterItsOwnRecordOrNil(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := (&Store{}).NewWaiters()
	a, b, other := w.Register(7), w.Register(7), w.Register(8)
	w.wake(announcement{id: 7, vals: []any{"3", `{"ID":7,"Disposition":"ISSUED","Message":"m"}`, "", "\x30"}}, log)
	ra, rb := <-a.c, <-b.c
	if ra == nil || rb == nil || ra == rb || ra.Disposition != Issued || ra.version != 3 || string(ra.CSR) != "\x30" {
		t.Fatalf("woken with %+v and %+v; want two copies of the ISSUED record, version 3", ra, rb)
	}
	select {
	case r := <-other.c:
		t.Fatalf("a waiter for another request was woken with %+v", r)
	default:
	}
	w.wake(announcement{id: 7, vals: []any{"3", `{"ID":`, "", ""}}, log)
	if r := <-a.c; r != nil {
		t.Fatalf("an undecodable record woke the waiter with %+v; want nil", r)
	}
	// A record is not lost behind a bare wake-up the reader has not taken.
	offer(b.c, nil)
	offer(b.c, &Request{ID: 7})
	offer(b.c, nil)
	if r := <-b.c; r == nil || r.ID != 7 {
		t.Fatalf("after nil, record, nil the waiter holds %+v; want the record", r)
	}
	for _, wt := range []*Waiter{a, b, other} {
		wt.Close()
	}
	if len(w.waiting) != 0 {
		t.Fatalf("closed waiters are still registered: %v", w.waiting)
	}
}

// An announcement older than what the waiter read from the store (it was
// on its way while the request moved on, e.g. a FAILED request restarted)
// is no answer; a newer one is.
func TestAWaiterIgnoresAnAnnouncementOlderThanWhatItRead(t *testing.T) {
	t.Parallel()
	s, _ := quickStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	r := &Request{ID: 1, Disposition: Queued, Submitted: now, Updated: now, Trigger: "enrollment"}
	if _, _, err := s.Create(ctx, r, 0); err != nil {
		t.Fatal(err)
	}
	r.Disposition = Running
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	wt := s.NewWaiters().Register(1)
	defer wt.Close()
	wt.seen = r.version // what its last read found
	offer(wt.c, &Request{ID: 1, Disposition: Failed, version: r.version - 1})
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	got, err := wt.Wait(wctx)
	if !errors.Is(err, context.DeadlineExceeded) || got == nil || got.Disposition != Running {
		t.Fatalf("Wait = %+v, %v; want the RUNNING request as stored, at the deadline", got, err)
	}
	offer(wt.c, &Request{ID: 1, Disposition: Issued, version: r.version + 1})
	if got, err := wt.Wait(ctx); err != nil || got.Disposition != Issued {
		t.Fatalf("Wait = %+v, %v; want the newer ISSUED announcement", got, err)
	}
}

// A claim taken in advance that has grown old is not trusted: ClaimIssue
// gives it up and claims afresh.
func TestAnOldAdvanceClaimIsTakenAfresh(t *testing.T) {
	t.Parallel()
	s, rdb := quickStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	if _, _, err := s.Create(ctx, &Request{ID: 2, Disposition: Queued, Submitted: now, Updated: now}, 0); err != nil {
		t.Fatal(err)
	}
	_, pre, err := s.GetForRun(ctx, 2)
	if err != nil || pre == nil {
		t.Fatalf("GetForRun: %v, %v", pre, err)
	}
	pre.taken = time.Now().Add(-issueLockTTL)
	_, claim, err := s.ClaimIssue(ctx, 2, pre)
	if err != nil || claim == nil || claim == pre {
		t.Fatalf("ClaimIssue with an old claim = %v, %v; want a new claim", claim, err)
	}
	if held, _ := rdb.Get(ctx, s.keys.issueLock(2)).Result(); held != claim.token {
		t.Fatalf("the lock holds %q, want the new claim's %q", held, claim.token)
	}
}

// quickStore is a store on the in-process Redis, for quick unit tests of
// unexported parts.
func quickStore(t *testing.T) (*Store, *redis.Client) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return New(rdb, "t"), rdb
}

// A decoder's io.ErrUnexpectedEOF is a corrupt record, not a cut
// connection; the same error from the connection is Redis unavailable.
func TestUnavailableTellsADecoderFromTheConnection(t *testing.T) {
	decode := fmt.Errorf("decode request 1: %w", corruptError{io.ErrUnexpectedEOF})
	if Unavailable(decode) || !errors.Is(decode, ErrCorrupt) {
		t.Errorf("decoder's unexpected EOF: Unavailable %v, ErrCorrupt %v; want false, true", Unavailable(decode), errors.Is(decode, ErrCorrupt))
	}
	if err := unmarshal([]byte(`{"id":`), &Request{}); !errors.Is(err, ErrCorrupt) || Unavailable(err) {
		t.Errorf("truncated record: %v, want ErrCorrupt and not Unavailable", err)
	}
	if conn := fmt.Errorf("load request 1: %w", io.ErrUnexpectedEOF); !Unavailable(conn) {
		t.Error("a reply cut short by the connection is not counted as unavailable")
	}
}

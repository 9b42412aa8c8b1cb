package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

// TestQueryEventsPagesEveryWayToTheSameLog: whatever the page size and
// read budget, following Next lists every selected event once, newest
// first; a cursor and before together take the older bound; Exhausted is
// set exactly when the budget ended a call.
func TestQueryEventsPagesEveryWayToTheSameLog(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	s := store.New(rdb, prefix)
	ctx := context.Background()
	var ids []string // oldest first
	for i := range 25 {
		name := "x.even"
		if i%2 == 1 {
			name = "x.odd"
		}
		id, _, err := s.AppendEvent(ctx, workflow.Event{Name: name}, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	newest := slices.Clone(ids)
	slices.Reverse(newest)
	var odd []string
	for i, id := range newest {
		if i%2 == 0 { // 24 is even: newest[0] is x.even
			continue
		}
		odd = append(odd, id)
	}
	for _, limit := range []int{1, 2, 5, 50} {
		for _, budget := range []int{1, 3, 7, 10000} {
			for name, want := range map[string][]string{"": newest, "x.odd": odd, "x.*": newest} {
				var got []string
				q := store.EventQuery{Name: name, Limit: limit, Budget: budget}
				for calls := 0; ; calls++ {
					page, err := s.QueryEvents(ctx, q)
					if err != nil {
						t.Fatal(err)
					}
					if len(page.Events) > limit || (page.Exhausted && page.Next == "") {
						t.Fatalf("limit %d budget %d: page %+v", limit, budget, page)
					}
					for _, ev := range page.Events {
						got = append(got, ev.ID)
					}
					if page.Next == "" {
						break
					}
					if calls > 100 {
						t.Fatal("Next never ends")
					}
					q.Cursor = page.Next
				}
				if !slices.Equal(got, want) {
					t.Errorf("name %q limit %d budget %d: listed %d events, want %d", name, limit, budget, len(got), len(want))
				}
			}
		}
	}
	// A cursor newer than before: before wins; older: the cursor does.
	ev10, _ := s.Event(ctx, ids[10])
	page, err := s.QueryEvents(ctx, store.EventQuery{Cursor: ids[20], Before: ev10.Time.Add(-time.Hour), Limit: 50})
	if err != nil || len(page.Events) != 0 {
		t.Errorf("before an hour ago: %d events, %v", len(page.Events), err)
	}
	page, err = s.QueryEvents(ctx, store.EventQuery{Cursor: ids[3], Before: time.Now().Add(time.Hour), Limit: 50})
	if err != nil || len(page.Events) != 3 || page.Events[0].ID != ids[2] {
		t.Errorf("cursor at the 4th: %d events, %v", len(page.Events), err)
	}
	if page, err := s.QueryEvents(ctx, store.EventQuery{Cursor: "0-0", Limit: 5}); err != nil || len(page.Events) != 0 || page.Next != "" {
		t.Errorf("nothing is older than 0-0: %+v %v", page, err)
	}
	if _, err := s.QueryEvents(ctx, store.EventQuery{Cursor: "x", Limit: 5}); err == nil {
		t.Error("a malformed cursor was accepted")
	}
}

// TestAppendEventOnceDedupsByAnyKey: an event is written once per any of
// its once-keys: a second append sharing either key answers the first.
func TestAppendEventOnceDedupsByAnyKey(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	s := store.New(rdb, prefix)
	ctx := context.Background()
	first, dup, err := s.AppendEventOnce(ctx, workflow.Event{Name: "a.b"}, []string{"wh:1", "id:1"}, time.Hour)
	if err != nil || dup {
		t.Fatal(dup, err)
	}
	for _, keys := range [][]string{{"wh:1"}, {"wh:2", "id:1"}, {"wh:1", "id:2"}} {
		id, dup, err := s.AppendEventOnce(ctx, workflow.Event{Name: "a.b"}, keys, time.Hour)
		if err != nil || !dup || id != first {
			t.Errorf("keys %v: %s %v %v", keys, id, dup, err)
		}
	}
	// Dups wrote no once-keys: wh:2 and id:2 are still free.
	if _, dup, _ := s.AppendEventOnce(ctx, workflow.Event{Name: "a.b"}, []string{"wh:2", "id:2"}, time.Hour); dup {
		t.Error("a dup claimed its other keys")
	}
	page, _ := s.QueryEvents(ctx, store.EventQuery{Limit: 10})
	if len(page.Events) != 2 {
		t.Errorf("%d events logged, want 2", len(page.Events))
	}
}

// BenchmarkQueryEventsFullBudget is the cost of the most a GET /Events
// call reads: a filter that matches nothing over EventReadBudget (10,000)
// entries. Reported per call, with entries read per second.
func BenchmarkQueryEventsFullBudget(b *testing.B) {
	rdb, prefix := testutil.Redis(b)
	s := store.New(rdb, prefix)
	ctx := context.Background()
	data := map[string]any{"SerialNumber": "0a1b2c3d4e5f", "Template": "WebServer", "IssuedCN": "web.example.com"}
	for range store.EventReadBudget {
		if _, _, err := s.AppendEvent(ctx, workflow.Event{Name: "certificate.issued", CertificateID: 1, Data: data}, "", time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		page, err := s.QueryEvents(ctx, store.EventQuery{Name: "host.*", Limit: 50})
		if err != nil || !page.Exhausted || len(page.Events) != 0 {
			b.Fatalf("%+v %v", page, err)
		}
	}
	b.ReportMetric(float64(store.EventReadBudget)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

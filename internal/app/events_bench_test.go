package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/app"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

// BenchmarkEventFanOut measures the dispatcher: events already in the
// event log, each triggering fanout definitions whose match holds, handed
// to Worker.DispatchEvents in batches of 64 as Dispatch reads them; each
// (event, definition) gets its run record (Store.CreateEventRun) and its
// task enqueued. No worker runs the tasks, so the numbers are dispatch
// alone. runs/s is runs started per second; events/s events dispatched.
// Beside them, in the same run against the same Redis: append, the cost
// of writing an event (Store.AppendEvent with a once-key, as a schedule
// slot or an external event is written), and fanout=0, an event no
// definition is triggered by.
//
//	go test -run '^$' -bench EventFanOut -benchtime 2000x ./internal/app/
func BenchmarkEventFanOut(b *testing.B) {
	dir := b.TempDir()
	for _, k := range []int{1, 4} {
		for i := range k {
			def := fmt.Sprintf("name: f%d-%d\ntrigger: event:bench.f%d\nmatch: event.Data.n >= 0\nsteps:\n  - {id: note, uses: notify, with: {log: \"n ${{ event.Data.n }}\"}}\n", k, i, k)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d-%d.yaml", k, i)), []byte(def), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	_, prefix := testutil.Redis(b)
	cfg := testutil.TestConfig(b, prefix)
	cfg.Definitions = dir
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	a, err := app.Open(cfg, app.RoleWorker, testutil.AdminToken, log, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	w := a.Worker()
	if err := a.Store.EnsureEventGroup(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("append", func(b *testing.B) {
		for i := range b.N {
			ev := workflow.Event{Name: "bench.append", Time: time.Now().UTC(), Source: "bench", Data: map[string]any{"n": i}}
			if _, _, err := a.Store.AppendEvent(ctx, ev, fmt.Sprintf("bench\x00%s\x00%d", b.Name(), i), time.Hour); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	for _, k := range []int{0, 1, 4} {
		b.Run(fmt.Sprintf("fanout=%d", k), func(b *testing.B) {
			name := fmt.Sprintf("bench.f%d", k)
			evs := make([]*workflow.Event, b.N)
			for i := range evs {
				ev := workflow.Event{Name: name, Time: time.Now().UTC(), Source: "bench", Data: map[string]any{"n": float64(i)}}
				id, _, err := a.Store.AppendEvent(ctx, ev, "", 0)
				if err != nil {
					b.Fatal(err)
				}
				ev.ID = id
				evs[i] = &ev
			}
			b.ResetTimer()
			for i := 0; i < len(evs); i += 64 {
				w.DispatchEvents(ctx, evs[i:min(i+64, len(evs))], log)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(b.N*k)/b.Elapsed().Seconds(), "runs/s")
			// Every event got its runs.
			for _, i := range []int{0, len(evs) - 1} {
				runs, err := a.Store.EventRuns(ctx, evs[i].ID)
				if err != nil {
					b.Fatal(err)
				}
				started := 0
				for def, id := range runs {
					if id != 0 && strings.HasPrefix(def, fmt.Sprintf("f%d-", k)) {
						started++
					}
				}
				if started != k {
					b.Fatalf("event %d started %d runs (%v), want %d", i, started, runs, k)
				}
			}
		})
	}
}

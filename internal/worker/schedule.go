package worker

import (
	"context"
	"time"

	"github.com/certflow/certflow/workflow"
)

// Scheduler tuning.
const (
	// scheduleTick is how often schedules are looked at.
	scheduleTick = 5 * time.Second
	// scheduleGrace is how late a slot may still fire: a slot missed by
	// more (every worker was down) is skipped, not caught up.
	scheduleGrace = 10 * time.Minute
	// scheduleOnce is how long a fired slot's once-key is kept: longer
	// than scheduleGrace, so no process fires it again.
	scheduleOnce = 24 * time.Hour
)

// Schedule fires the slots of the schedule definitions (trigger:
// schedule) until ctx ends: at each slot of a definition's cron schedule
// it appends one schedule.fired event naming the definition, which the
// dispatcher turns into the definition's run. Every worker process runs
// it; the event's once-key (definition and slot) lets one of them write
// it, so a slot fires once however many processes run.
func (w *Worker) Schedule(ctx context.Context) {
	t := time.NewTicker(scheduleTick)
	defer t.Stop()
	for {
		w.ScheduleOnce(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ScheduleOnce fires the slots due at now; it reports how many events it
// wrote (a slot another process fired first is not counted).
func (w *Worker) ScheduleOnce(ctx context.Context, now time.Time) int {
	fired := 0
	for _, def := range w.Defs.Load().Scheduled() {
		slot := workflow.Slot(def.Schedule, now)
		if slot.IsZero() || now.Sub(slot) > scheduleGrace {
			continue
		}
		ev := workflow.Event{Name: workflow.EventSchedule, Time: now.UTC(), Data: map[string]any{
			"Definition": def.Name, "Slot": slot.UTC().Format(time.RFC3339), "Schedule": def.ScheduleSpec,
		}}
		id, dup, err := w.Store.AppendEvent(ctx, ev, "schedule\x00"+def.Name+"\x00"+slot.UTC().Format(time.RFC3339), scheduleOnce)
		switch {
		case err != nil:
			w.Log.Warn("schedule: cannot fire a slot; trying again", "definition", def.Name, "slot", slot, "err", err)
		case !dup:
			fired++
			w.Log.Info("schedule fired", "definition", def.Name, "slot", slot, "event", id)
		}
	}
	return fired
}

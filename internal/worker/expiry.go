package worker

import (
	"context"
	"errors"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
)

// ExpiryThresholds are the expiry watch's configured thresholds, as the
// store takes them.
func ExpiryThresholds(cfg config.ExpiryWatch) []store.ExpiryThreshold {
	var out []store.ExpiryThreshold
	for _, t := range cfg.ParsedThresholds() {
		out = append(out, store.ExpiryThreshold{Name: t.Text, Lead: t.Lead})
	}
	return out
}

// WatchExpiry runs the expiry watch until ctx ends (docs/events.md,
// "Expiry watch"): once the due set is right for the configured
// thresholds (store.PrepareExpiryWatch, retried every interval while
// another process rebuilds it), a pass every events.expiry_watch.interval.
// Every worker process runs it; the watch's lock makes one at a time do a
// pass, and a pass one of them did not finish is the next one's.
func (w *Worker) WatchExpiry(ctx context.Context) {
	cfg := w.Config.Events.ExpiryWatch
	if !cfg.Enabled {
		return
	}
	th := ExpiryThresholds(cfg)
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	prepared := false
	for {
		if !prepared {
			start := time.Now()
			n, err := w.Store.PrepareExpiryWatch(ctx, start, th)
			switch {
			case errors.Is(err, store.ErrExpiryBusy):
				w.Log.Info("expiry watch: another process is preparing the due set; waiting")
			case err != nil && ctx.Err() == nil:
				w.Log.Warn("expiry watch: preparing the due set", "err", err)
			case err == nil:
				prepared = true
				if n > 0 {
					w.Log.Info("expiry watch: due set rebuilt for the configured thresholds", "certificates", n, "took", time.Since(start).Round(time.Millisecond))
				}
			}
		}
		if prepared {
			res, err := w.Store.ExpiryPass(ctx, time.Now(), th)
			switch {
			case err != nil && ctx.Err() == nil:
				w.Log.Warn("expiry watch pass", "err", err)
			case res.Expiring+res.Expired+res.Skipped > 0:
				w.Log.Info("expiry watch pass", "expiring", res.Expiring, "expired", res.Expired, "skipped", res.Skipped)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

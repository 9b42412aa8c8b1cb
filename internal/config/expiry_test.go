package config

import (
	"strings"
	"testing"
	"time"
)

func TestExpiryWatchDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(writeConfig(t, "key_prefix: x\n"))
	if err != nil {
		t.Fatal(err)
	}
	w := c.Events.ExpiryWatch
	if !w.Enabled || w.Interval != time.Minute {
		t.Errorf("defaults: enabled %v, interval %v; want true, 1m", w.Enabled, w.Interval)
	}
	got := w.ParsedThresholds()
	want := []time.Duration{30 * 24 * time.Hour, 14 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour}
	if len(got) != len(want) {
		t.Fatalf("thresholds %v, want %v", got, want)
	}
	for i := range want {
		if got[i].Lead != want[i] {
			t.Errorf("threshold %d = %v, want %v", i, got[i].Lead, want[i])
		}
	}
	if got[1].Text != "14d" {
		t.Errorf("threshold text %q, want 14d as configured", got[1].Text)
	}
}

// Thresholds read as days or Go durations, and come back largest first
// however they are listed.
func TestExpiryWatchThresholdsAreDaysOrDurations(t *testing.T) {
	t.Parallel()
	c, err := Load(writeConfig(t, "events:\n  expiry_watch:\n    thresholds: [36h, 90m, 2d]\n    interval: 10s\n    enabled: false\n"))
	if err != nil {
		t.Fatal(err)
	}
	w := c.Events.ExpiryWatch
	got := w.ParsedThresholds()
	if len(got) != 3 || got[0].Lead != 48*time.Hour || got[0].Text != "2d" || got[1].Lead != 36*time.Hour || got[2].Lead != 90*time.Minute {
		t.Errorf("thresholds %+v, want 2d, 36h, 90m", got)
	}
	if w.Enabled || w.Interval != 10*time.Second {
		t.Errorf("enabled %v interval %v", w.Enabled, w.Interval)
	}
	// An empty list announces expiry only.
	c, err = Load(writeConfig(t, "events:\n  expiry_watch:\n    thresholds: []\n"))
	if err != nil || len(c.Events.ExpiryWatch.ParsedThresholds()) != 0 {
		t.Errorf("empty thresholds: %v, %v", c.Events.ExpiryWatch.Thresholds, err)
	}
}

func TestExpiryWatchBadValuesNameTheKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ yaml, want string }{
		{"thresholds: [14d, 2w]", `events.expiry_watch.thresholds[1]: "2w" is not a duration like 14d or 36h`},
		{"thresholds: [14d, 0d]", `events.expiry_watch.thresholds[1]: "0d" must be positive`},
		{"thresholds: [-1d]", `events.expiry_watch.thresholds[0]: "-1d" must be positive`},
		{"thresholds: [-5m]", `events.expiry_watch.thresholds[0]: "-5m" must be positive`},
		{"thresholds: [1d, 7d, 24h]", `events.expiry_watch.thresholds[2]: "24h" is the same as events.expiry_watch.thresholds[0] ("1d")`},
		{"thresholds: [500ms]", `events.expiry_watch.thresholds[0]: "500ms" is under a second`},
		{"thresholds: [d]", `events.expiry_watch.thresholds[0]: "d" is not a duration`},
		{"thresholds: [1.5d]", `events.expiry_watch.thresholds[0]: "1.5d" is not a duration`},
		{"thresholds: [99999999999999999999d]", `events.expiry_watch.thresholds[0]: "99999999999999999999d" is more than 100 years`},
		{"thresholds: [1h,2h,3h,4h,5h,6h,7h,8h,9h,10h,11h]", `events.expiry_watch.thresholds: 11 thresholds, at most 10`},
		{"thresholds: 14d", `events.expiry_watch.thresholds: want a list, got 14d`},
		{"interval: 0s", `events.expiry_watch.interval: must be positive`},
		{"interval: 5", `events.expiry_watch.interval: want a duration like 10ms, got 5`},
		{"enabled: maybe", `events.expiry_watch.enabled: want true or false, got maybe`},
		{"threshold: [1d]", `events.expiry_watch: unknown key "threshold" (did you mean "thresholds"?)`},
	} {
		_, err := Load(writeConfig(t, "events:\n  expiry_watch:\n    "+tc.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.yaml, err, tc.want)
		}
	}
}

// An empty value keeps the default, as everywhere in the file.
func TestExpiryWatchNullThresholdsKeepTheDefault(t *testing.T) {
	t.Parallel()
	c, err := Load(writeConfig(t, "events:\n  expiry_watch:\n    thresholds:\n"))
	if err != nil || len(c.Events.ExpiryWatch.ParsedThresholds()) != 4 {
		t.Errorf("thresholds %v, %v; want the default four", c.Events.ExpiryWatch.Thresholds, err)
	}
}

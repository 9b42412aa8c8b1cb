package worker_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

// expiryEventsOf reads the expiry watch's events from a certflow's log.
func expiryEventsOf(t *testing.T, cf *testutil.Certflow) []workflow.Event {
	t.Helper()
	ms, err := cf.App.Redis.XRange(context.Background(), cf.App.Config.KeyPrefix+":eventlog", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []workflow.Event
	for _, m := range ms {
		var ev workflow.Event
		if err := json.Unmarshal([]byte(m.Values["e"].(string)), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Name == workflow.EventCertificateExpiring || ev.Name == workflow.EventCertificateExpired {
			out = append(out, ev)
		}
	}
	return out
}

// A certflow's worker runs the watch: a certificate issued for less than
// its first threshold is announced at once, for the tightest threshold it
// has passed, and only once however many passes follow; one issued for
// longer is not.
func TestTheWorkerAnnouncesExpiringCertificatesOnce(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Templates[0].Validity = 30 * time.Minute
		c.Events.ExpiryWatch.Thresholds = []string{"2h", "1h", "10m"}
		c.Events.ExpiryWatch.Interval = 50 * time.Millisecond
	})
	if cf.App.Store.ExpiryLead != 2*time.Hour {
		t.Errorf("Store.ExpiryLead = %v, want the largest threshold", cf.App.Store.ExpiryLead)
	}
	csr, _ := testutil.CSR(t, "expiring.example.com")
	resp := cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, nil), "x-certificateformat", "PEM")
	var got answer
	resp.JSON(t, &got)
	if resp.Status != http.StatusOK || got.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("%d %s", resp.Status, resp.Body)
	}
	id := got.CertificateInformation.KeyfactorID
	deadline := time.Now().Add(10 * time.Second)
	var evs []workflow.Event
	for len(evs) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the worker never announced the certificate")
		}
		time.Sleep(20 * time.Millisecond)
		evs = expiryEventsOf(t, cf)
	}
	time.Sleep(300 * time.Millisecond) // several more passes
	evs = expiryEventsOf(t, cf)
	if len(evs) != 1 || evs[0].Name != workflow.EventCertificateExpiring || evs[0].CertificateID != id ||
		evs[0].Data["Threshold"] != "1h" || evs[0].Data["IssuedCN"] != "expiring.example.com" || evs[0].Data["Template"] != config.DefaultTemplate {
		t.Fatalf("events %+v, want one certificate.expiring for 1h of certificate %d", evs, id)
	}
	// The next is due at 10 minutes before NotAfter.
	c, err := cf.App.Store.Certificate(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	score, err := cf.App.Redis.ZScore(context.Background(), cf.App.Config.KeyPrefix+":expiry:due", strconv.FormatInt(id, 10)).Result()
	if err != nil || int64(score) != c.NotAfter.Add(-10*time.Minute).Unix() {
		t.Errorf("due at %v (%v), want NotAfter−10m", score, err)
	}
}

// With the watch off, the loop does nothing: no thresholds recorded, no
// events.
func TestAnExpiryWatchTurnedOffDoesNothing(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Events.ExpiryWatch.Enabled = false })
	w := newWorker(cf)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { w.WatchExpiry(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(500 * time.Millisecond):
		t.Fatal("WatchExpiry kept running with the watch off")
	}
	if n, _ := cf.App.Redis.Exists(ctx, cf.App.Config.KeyPrefix+":expiry:config").Result(); n != 0 {
		t.Error("a watch turned off recorded thresholds")
	}
}

// Two worker processes' loops, started together over certificates all
// due, announce each once.
func TestTwoWorkersWatchingAnnounceEachCertificateOnce(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Templates[0].Validity = 30 * time.Minute
		c.Events.ExpiryWatch.Thresholds = []string{"1h"}
		c.Events.ExpiryWatch.Enabled = false // the loops below are the watch
	})
	const n = 6
	ids := map[int64]bool{}
	for i := range n {
		csr, _ := testutil.CSR(t, "w"+strconv.Itoa(i)+".example.com")
		resp := cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, nil), "x-certificateformat", "PEM")
		var got answer
		resp.JSON(t, &got)
		if got.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("%d %s", resp.Status, resp.Body)
		}
		ids[got.CertificateInformation.KeyfactorID] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	on := *cf.App.Config
	on.Events.ExpiryWatch.Enabled = true
	on.Events.ExpiryWatch.Interval = 5 * time.Millisecond
	for range 2 {
		w := newWorker(cf)
		w.Config = &on
		w.Store = store.New(cf.App.Redis, cf.App.Config.KeyPrefix) // another process's
		w.Store.ExpiryLead = cf.App.Store.ExpiryLead
		go w.WatchExpiry(ctx)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(expiryEventsOf(t, cf)) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // dozens more passes each
	seen := map[int64]int{}
	for _, ev := range expiryEventsOf(t, cf) {
		seen[ev.CertificateID]++
		if ev.Name != workflow.EventCertificateExpiring || ev.Data["Threshold"] != "1h" {
			t.Errorf("event %s %v", ev.Name, ev.Data)
		}
	}
	for id := range ids {
		if seen[id] != 1 {
			t.Errorf("certificate %d announced %d times, want once", id, seen[id])
		}
	}
	if len(seen) != n {
		t.Errorf("%d certificates announced, want %d", len(seen), n)
	}
}

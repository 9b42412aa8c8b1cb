package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

const day = 24 * time.Hour

var testThresholds = []store.ExpiryThreshold{
	{Name: "30d", Lead: 30 * day}, {Name: "14d", Lead: 14 * day}, {Name: "7d", Lead: 7 * day}, {Name: "1d", Lead: day},
}

// watched is a store whose certificates join the expiry watch for
// testThresholds, its thresholds recorded.
func watched(t *testing.T) (*store.Store, *redis.Client, string) {
	t.Helper()
	s, rdb, prefix := setup(t)
	s.ExpiryLead = store.ExpiryLeadOf(testThresholds)
	if _, err := s.PrepareExpiryWatch(context.Background(), time.Now(), testThresholds); err != nil {
		t.Fatal(err)
	}
	return s, rdb, prefix
}

// issuedRenewing stores a certificate valid until notAfter for a request
// renewing certificate old (0: none), with a CN and template.
func issuedRenewing(t testing.TB, s *store.Store, notAfter time.Time, old int64) *store.Certificate {
	return issuedBy(t, s, notAfter.Add(-400*day), notAfter, old, 0)
}

// issuedBy stores a certificate valid from notBefore to notAfter, renewing
// old (0: none), by a request an event-triggered run of depth made (0:
// a person's).
func issuedBy(t testing.TB, s *store.Store, notBefore, notAfter time.Time, old int64, depth int) *store.Certificate {
	t.Helper()
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "watch.example.com"},
		NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.NewID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	r := &store.Request{
		ID: id, Disposition: store.Queued, Submitted: now, Updated: now, Trigger: "enrollment",
		Requester: workflow.Requester{Name: "alice"}, CSR: []byte{1, 2, 3, byte(id)}, Instance: workflow.Instance{ID: s.InstanceID(id)},
	}
	r.Input.RenewalCertificateId, r.EventDepth = old, depth
	if _, _, err := s.Create(ctx, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	// As the issue step stores one: with the record's save (the path
	// that adds it to the watch and links a renewal).
	_, claim, err := s.ClaimIssue(ctx, r.ID, nil)
	if err != nil || claim == nil {
		t.Fatalf("ClaimIssue = %v, %v", claim, err)
	}
	c := claim.Signed(&store.Certificate{
		Chain: [][]byte{der}, SerialNumber: fmt.Sprintf("0B%04X", r.ID), Thumbprint: fmt.Sprintf("TQ%038d", r.ID),
		Authority: `certflow\TestCA`, NotBefore: notBefore, NotAfter: notAfter,
		IssuedCN: "watch.example.com", Template: "WebServer",
	}, r.ID)
	r.Instance.Unsaved = []any{c}
	r.Disposition = store.Issued
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	return c
}

// expiryEvents are the expiry watch's events in the log, oldest first.
func expiryEvents(t *testing.T, rdb *redis.Client, prefix string) []workflow.Event {
	t.Helper()
	ms, err := rdb.XRange(context.Background(), prefix+":eventlog", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []workflow.Event
	for _, m := range ms {
		var ev workflow.Event
		if err := json.Unmarshal([]byte(m.Values["e"].(string)), &ev); err != nil {
			t.Fatalf("event %s: %v", m.ID, err)
		}
		if ev.Name == workflow.EventCertificateExpiring || ev.Name == workflow.EventCertificateExpired {
			ev.ID = m.ID
			out = append(out, ev)
		}
	}
	return out
}

// summary is an expiry event as "<name> <cert> <threshold>".
func summary(evs []workflow.Event) []string {
	var out []string
	for _, ev := range evs {
		th, _ := ev.Data["Threshold"].(string)
		out = append(out, fmt.Sprintf("%s %d %s", ev.Name, ev.CertificateID, th))
	}
	return out
}

func pass(t *testing.T, s *store.Store, at time.Time) store.ExpiryPassResult {
	t.Helper()
	res, err := s.ExpiryPass(context.Background(), at, testThresholds)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A certificate is announced once per threshold as it nears expiry, and
// once as expired, however many passes run in between.
func TestExpiryWatchWarnsOncePerThreshold(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := watched(t)
	t0 := time.Now()
	notAfter := t0.Add(40 * day).Truncate(time.Second)
	c := issuedRenewing(t, s, notAfter, 0)
	steps := []struct {
		at   time.Duration
		want string // the event this pass writes ("" none)
	}{
		{0, ""}, {9 * day, ""}, {10*day + time.Second, "30d"}, {10*day + time.Hour, ""}, {20 * day, ""},
		{26 * day, "14d"}, {26 * day, ""}, {33 * day, "7d"}, {38 * day, ""}, {39 * day, "1d"}, {39*day + time.Hour, ""},
		{40 * day, "expired"}, {41 * day, ""}, {60 * day, ""},
	}
	seen := 0
	for _, st := range steps {
		res := pass(t, s, t0.Add(st.at))
		evs := expiryEvents(t, rdb, prefix)
		if st.want == "" {
			if len(evs) != seen || res.Expiring+res.Expired != 0 {
				t.Fatalf("at +%v: events %v (pass %+v), want none new", st.at, summary(evs[seen:]), res)
			}
			continue
		}
		if len(evs) != seen+1 {
			t.Fatalf("at +%v: events %v, want one (%s)", st.at, summary(evs[seen:]), st.want)
		}
		ev := evs[seen]
		seen++
		if ev.CertificateID != c.ID || ev.RequestID != c.ID || ev.Depth != 0 || ev.Source != "certflow" {
			t.Errorf("at +%v: event %+v", st.at, ev)
		}
		if ev.Data["SerialNumber"] != c.SerialNumber || ev.Data["IssuedCN"] != "watch.example.com" || ev.Data["Template"] != "WebServer" ||
			ev.Data["NotAfter"] != notAfter.UTC().Format(time.RFC3339) {
			t.Errorf("at +%v: data %v", st.at, ev.Data)
		}
		if d := ev.Time.Sub(t0.Add(st.at)); d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("at +%v: event time %v, want the pass's", st.at, ev.Time)
		}
		if st.want == "expired" {
			if ev.Name != workflow.EventCertificateExpired || ev.Data["Threshold"] != nil {
				t.Errorf("at +%v: %s %v, want certificate.expired", st.at, ev.Name, ev.Data)
			}
			continue
		}
		lead, _ := store.ParseThresholdForTest(st.want)
		left := notAfter.Sub(t0.Add(st.at).Truncate(time.Second))
		if ev.Name != workflow.EventCertificateExpiring || ev.Data["Threshold"] != st.want ||
			ev.Data["ThresholdSeconds"] != float64(lead/time.Second) {
			t.Errorf("at +%v: %s %v, want certificate.expiring for %s", st.at, ev.Name, ev.Data, st.want)
		}
		if dl, _ := ev.Data["DaysLeft"].(float64); dl < left.Hours()/24-0.001 || dl > left.Hours()/24+0.001 {
			t.Errorf("at +%v: DaysLeft %v, want %v", st.at, ev.Data["DaysLeft"], left.Hours()/24)
		}
	}
	due, _, _ := store.ExpiryKeys(s)
	if n, _ := rdb.ZCard(context.Background(), due).Result(); n != 0 {
		t.Errorf("the due set keeps %d entries after expiry", n)
	}
}

// When a pass finds several thresholds passed at once (a certificate
// issued with a short validity, a watch that did not run for days), it
// announces only the tightest.
func TestExpiryWatchAnnouncesOnlyTheTightestOfThresholdsPassedAtOnce(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := watched(t)
	t0 := time.Now()
	short := issuedRenewing(t, s, t0.Add(3*day), 0) // 30d, 14d and 7d passed at issuance
	long := issuedRenewing(t, s, t0.Add(60*day), 0)
	pass(t, s, t0)
	pass(t, s, t0.Add(59*day+time.Hour)) // the watch stood still from 30d to 1d before expiry
	pass(t, s, t0.Add(59*day+2*time.Hour))
	got := summary(expiryEvents(t, rdb, prefix))
	want := []string{
		fmt.Sprintf("certificate.expiring %d 7d", short.ID),
		fmt.Sprintf("certificate.expired %d ", short.ID),
		fmt.Sprintf("certificate.expiring %d 1d", long.ID),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

// A certificate stored already expired is announced as expired, once,
// with no expiring before it.
func TestExpiryWatchAnnouncesExpiredOnce(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := watched(t)
	c := issuedRenewing(t, s, time.Now().Add(-time.Hour), 0)
	for range 3 {
		pass(t, s, time.Now())
	}
	if got := summary(expiryEvents(t, rdb, prefix)); fmt.Sprint(got) != fmt.Sprint([]string{fmt.Sprintf("certificate.expired %d ", c.ID)}) {
		t.Errorf("events %v, want one certificate.expired", got)
	}
}

// Revoked and renewed certificates are never announced: they leave the
// watch with their revocation or renewal, and a stale due entry of one
// (written by a process that had not seen the change) is dropped by the
// pass without an event.
func TestExpiryWatchSkipsRevokedAndSupersededCertificates(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := watched(t)
	ctx := context.Background()
	t0 := time.Now()
	revoked := issuedRenewing(t, s, t0.Add(5*day), 0)
	old := issuedRenewing(t, s, t0.Add(5*day), 0)
	renewal := issuedRenewing(t, s, t0.Add(400*day), old.ID)
	kept := issuedRenewing(t, s, t0.Add(5*day), 0)
	if _, changed, err := s.RevokeCertificate(ctx, revoked.ID, store.Revocation{Reason: 1, RequestID: 999}); err != nil || !changed {
		t.Fatalf("revoke: %v %v", changed, err)
	}
	if by, err := s.SupersededBy(ctx, old.ID); err != nil || by != renewal.ID {
		t.Fatalf("SupersededBy = %d, %v", by, err)
	}
	due, _, _ := store.ExpiryKeys(s)
	for _, c := range []*store.Certificate{revoked, old} {
		if _, err := rdb.ZScore(ctx, due, strconv.FormatInt(c.ID, 10)).Result(); !errors.Is(err, redis.Nil) {
			t.Errorf("certificate %d is still in the due set: %v", c.ID, err)
		}
		rdb.ZAdd(ctx, due, redis.Z{Score: float64(t0.Unix()), Member: c.ID}) // stale
	}
	res := pass(t, s, t0)
	if res.Skipped != 2 || res.Expiring != 1 {
		t.Errorf("pass %+v, want 2 skipped, 1 expiring", res)
	}
	pass(t, s, t0.Add(6*day))
	want := []string{fmt.Sprintf("certificate.expiring %d 7d", kept.ID), fmt.Sprintf("certificate.expired %d ", kept.ID)}
	if got := summary(expiryEvents(t, rdb, prefix)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", got, want)
	}
	if n, _ := rdb.ZCard(ctx, due).Result(); n != 1 { // the renewal's
		t.Errorf("due set holds %d, want only the renewal", n)
	}
}

// manyDue stores n certificates that are all due now (7d threshold).
func manyDue(t *testing.T, s *store.Store, n int) map[int64]bool {
	t.Helper()
	ids := map[int64]bool{}
	for range n {
		ids[issuedRenewing(t, s, time.Now().Add(3*day), 0).ID] = true
	}
	return ids
}

// checkOnce checks that each of ids has exactly one expiry event.
func checkOnce(t *testing.T, rdb *redis.Client, prefix string, ids map[int64]bool) {
	t.Helper()
	count := map[int64]int{}
	for _, ev := range expiryEvents(t, rdb, prefix) {
		count[ev.CertificateID]++
	}
	for id := range ids {
		if count[id] != 1 {
			t.Errorf("certificate %d has %d expiry events, want 1", id, count[id])
		}
	}
	if len(count) != len(ids) {
		t.Errorf("events for %d certificates, want %d", len(count), len(ids))
	}
}

// Passes of several processes at once announce each certificate once:
// one holds the lock and the others find it busy; and even passes that
// ignore the lock (one whose lock expired mid-pass) cannot both decide a
// certificate, since the script takes only what is still due.
func TestConcurrentExpiryPassesAnnounceOnce(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := watched(t)
	ids := manyDue(t, s, 2*store.ExpiryBatch+10)
	now := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	busy := 0
	for range 4 {
		other := store.New(rdb, prefix) // another process's store
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				res, err := other.ExpiryPass(context.Background(), now, testThresholds)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				if res.Busy {
					busy++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	checkOnce(t, rdb, prefix, ids)

	// Without the lock: every process decides the same ids at once.
	s2, rdb2, prefix2 := watched(t)
	ids2 := manyDue(t, s2, 100)
	var list []string
	for id := range ids2 {
		list = append(list, strconv.FormatInt(id, 10))
	}
	for range 6 {
		other := store.New(rdb2, prefix2)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := store.ExpiryBatchUnlocked(other, context.Background(), now, testThresholds, list); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	checkOnce(t, rdb2, prefix2, ids2)
}

// A pass that dies between batches, its lock left held, loses nothing:
// the due set is the watch's state, so once the lock's TTL is over the
// next pass announces exactly what the dead one had not.
func TestAnExpiryPassCutShortIsFinishedByTheNext(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := watched(t)
	ctx := context.Background()
	ids := manyDue(t, s, 2*store.ExpiryBatch+10)
	now := time.Now()
	_, _, lockKey := store.ExpiryKeys(s)

	crashing := store.New(rdb, prefix)
	pctx, cancel := context.WithCancel(ctx)
	store.SetExpiryHooks(crashing, 0, func(batch int) {
		if batch == 0 {
			cancel() // the process dies after its first batch…
		}
	})
	res, err := crashing.ExpiryPass(pctx, now, testThresholds)
	if !errors.Is(err, context.Canceled) || res.Expiring != store.ExpiryBatch {
		t.Fatalf("cut pass = %+v, %v; want %d announced, then canceled", res, err, store.ExpiryBatch)
	}
	if n := len(expiryEvents(t, rdb, prefix)); n != store.ExpiryBatch {
		t.Fatalf("%d events after the first batch, want %d", n, store.ExpiryBatch)
	}
	// …holding the lock, as a killed process would.
	if err := rdb.Set(ctx, lockKey, "dead-process", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if res := pass(t, s, now); !res.Busy || res.Expiring != 0 {
		t.Fatalf("pass while the dead process's lock lasts = %+v, want busy", res)
	}
	time.Sleep(400 * time.Millisecond)
	res = pass(t, s, now)
	if res.Busy || res.Expiring != len(ids)-store.ExpiryBatch {
		t.Errorf("the next pass = %+v, want the other %d", res, len(ids)-store.ExpiryBatch)
	}
	checkOnce(t, rdb, prefix, ids)
	if n, _ := rdb.Exists(ctx, lockKey).Result(); n != 0 {
		t.Error("the pass left its lock")
	}
}

// With nothing due a pass is one read of the due set, whatever the
// inventory holds.
func TestAnEmptyExpiryPassIsOneRead(t *testing.T) {
	t.Parallel()
	s, rdb, _ := watched(t)
	for range 5 {
		issuedRenewing(t, s, time.Now().Add(200*day), 0)
	}
	counter := &commandCounter{}
	rdb.AddHook(counter)
	if res := pass(t, s, time.Now()); res.Due != 0 {
		t.Fatalf("pass %+v", res)
	}
	if n := counter.n.Load(); n != 1 {
		t.Errorf("an empty pass sent %d Redis commands, want 1", n)
	}
}

// Retention's deletion of a certificate takes it out of the watch and of
// the renewed certificates' links, in the script that deletes it.
func TestSweptCertificatesLeaveTheExpiryWatch(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := watched(t)
	ctx := context.Background()
	old := issuedRenewing(t, s, time.Now().Add(-time.Hour), 0)
	issuedRenewing(t, s, time.Now().Add(day), old.ID)
	due, _, _ := store.ExpiryKeys(s)
	rdb.ZAdd(ctx, due, redis.Z{Score: 1, Member: old.ID}) // as if the renewal had not removed it
	time.Sleep(2100 * time.Millisecond)                   // OBJECT IDLETIME counts whole seconds
	if _, err := s.Sweep(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	m := strconv.FormatInt(old.ID, 10)
	if _, err := rdb.ZScore(ctx, due, m).Result(); !errors.Is(err, redis.Nil) {
		t.Errorf("the swept certificate is still in the due set (%v)", err)
	}
	if _, err := rdb.ZScore(ctx, prefix+":inv:superseded", m).Result(); !errors.Is(err, redis.Nil) {
		t.Errorf("the swept certificate is still in the superseded set (%v)", err)
	}
}

// commandCounter is a go-redis hook that counts the commands a client
// sends (a pipeline's each), leaving out a connection's handshake.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "hello" {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && cmds[0].Name() != "client" {
			c.n.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

// A change of thresholds rebuilds the due set from how far each
// certificate got: thresholds it was warned for (or passed over) are not
// warned again, new ones still ahead of it are.
func TestChangedThresholdsRebuildTheDueSetWithoutWarningTwice(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := watched(t)
	ctx := context.Background()
	t0 := time.Now()
	a := issuedRenewing(t, s, t0.Add(20*day), 0) // gets its 30d warning now
	b := issuedRenewing(t, s, t0.Add(100*day), 0)
	pass(t, s, t0)
	// New thresholds: 30d and 7d stay, 14d goes, 21d and 10d come.
	next := []store.ExpiryThreshold{{Name: "30d", Lead: 30 * day}, {Name: "21d", Lead: 21 * day}, {Name: "10d", Lead: 10 * day}, {Name: "7d", Lead: 7 * day}}
	n, err := s.PrepareExpiryWatch(ctx, t0, next)
	if err != nil || n != 2 {
		t.Fatalf("rebuild = %d, %v; want 2 re-scored", n, err)
	}
	if n, err := s.PrepareExpiryWatch(ctx, t0, next); err != nil || n != 0 {
		t.Fatalf("a second start rebuilt %d (%v), want nothing", n, err)
	}
	for _, at := range []time.Duration{0, time.Hour, 11 * day, 14 * day, 21 * day, 70 * day, 79 * day, 90 * day, 93 * day, 100 * day} {
		if _, err := s.ExpiryPass(ctx, t0.Add(at), next); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		fmt.Sprintf("certificate.expiring %d 30d", a.ID), // before the change
		fmt.Sprintf("certificate.expiring %d 10d", a.ID), // 21d was behind it: not warned
		fmt.Sprintf("certificate.expiring %d 7d", a.ID),
		fmt.Sprintf("certificate.expired %d ", a.ID),
		fmt.Sprintf("certificate.expiring %d 30d", b.ID),
		fmt.Sprintf("certificate.expiring %d 21d", b.ID),
		fmt.Sprintf("certificate.expiring %d 10d", b.ID),
		fmt.Sprintf("certificate.expiring %d 7d", b.ID),
		fmt.Sprintf("certificate.expired %d ", b.ID),
	}
	if got := summary(expiryEvents(t, rdb, prefix)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events\n%v\nwant\n%v", got, want)
	}
}

// Certificates stored before the watch (not in the due set, or scored
// with no lead) join it when it first starts, as if stored then; revoked
// and renewed ones do not, nor do ones already expired.
func TestTheFirstStartWatchesCertificatesStoredBefore(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := setup(t) // no lead: as stored before the watch
	ctx := context.Background()
	t0 := time.Now()
	soon := issuedRenewing(t, s, t0.Add(3*day), 0)
	later := issuedRenewing(t, s, t0.Add(50*day), 0)
	expired := issuedRenewing(t, s, t0.Add(-day), 0)
	revoked := issuedRenewing(t, s, t0.Add(3*day), 0)
	if _, _, err := s.RevokeCertificate(ctx, revoked.ID, store.Revocation{Reason: 1, RequestID: 999}); err != nil {
		t.Fatal(err)
	}
	due, config, _ := store.ExpiryKeys(s)
	rdb.ZRem(ctx, due, later.ID, expired.ID) // stored before the due set existed
	rdb.ZAdd(ctx, due, redis.Z{Score: float64(t0.Add(time.Hour).Unix()), Member: revoked.ID})
	n, err := s.PrepareExpiryWatch(ctx, t0, testThresholds)
	if err != nil || n != 2 {
		t.Fatalf("first start re-scored %d (%v), want 2", n, err)
	}
	if v, _ := rdb.Get(ctx, config).Result(); v != "v1:2592000,1209600,604800,86400" {
		t.Errorf("recorded thresholds %q", v)
	}
	pass(t, s, t0)
	pass(t, s, t0.Add(21*day))
	want := []string{
		fmt.Sprintf("certificate.expiring %d 7d", soon.ID), fmt.Sprintf("certificate.expired %d ", soon.ID),
		fmt.Sprintf("certificate.expiring %d 30d", later.ID),
	}
	if got := summary(expiryEvents(t, rdb, prefix)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

// Only one process rebuilds at a time; a store with no certificates just
// records its thresholds.
func TestPrepareExpiryWatchTakesTheLock(t *testing.T) {
	t.Parallel()
	s, rdb, _ := setup(t)
	ctx := context.Background()
	_, config, lock := store.ExpiryKeys(s)
	if n, err := s.PrepareExpiryWatch(ctx, time.Now(), testThresholds); err != nil || n != 0 {
		t.Fatalf("empty store: %d, %v", n, err)
	}
	if v, _ := rdb.Get(ctx, config).Result(); v == "" {
		t.Fatal("an empty store's thresholds are not recorded")
	}
	issuedRenewing(t, s, time.Now().Add(day), 0)
	rdb.Set(ctx, lock, "other", time.Minute)
	if _, err := s.PrepareExpiryWatch(ctx, time.Now(), testThresholds[:2]); !errors.Is(err, store.ErrExpiryBusy) {
		t.Errorf("rebuild under another's lock: %v, want ErrExpiryBusy", err)
	}
}

func TestExpiryEventsOfAutomationsCertificatesCarryItsDepthOnlyWhenBornInTheirWindow(t *testing.T) {
	t.Parallel()
	s, rdb, prefix := watched(t)
	now := time.Now().UTC()
	// Both made by a run of depth 2, both 10 days from expiry (inside the
	// 14d threshold): one lived a year, one was born 3 days ago, inside
	// the 14-day window (as a renewal shorter-lived than the threshold is).
	lived := issuedBy(t, s, now.Add(-355*day), now.Add(10*day), 0, 2)
	born := issuedBy(t, s, now.Add(-3*day), now.Add(10*day), 0, 2)
	person := issuedBy(t, s, now.Add(-3*day), now.Add(10*day), 0, 0)
	pass(t, s, now)
	depth := map[int64]int{}
	for _, ev := range expiryEvents(t, rdb, prefix) {
		depth[ev.CertificateID] = ev.Depth
		if ev.Name != workflow.EventCertificateExpiring || ev.Data["Threshold"] != "14d" {
			t.Fatalf("event %+v", ev)
		}
	}
	if len(depth) != 3 || depth[lived.ID] != 0 || depth[born.ID] != 2 || depth[person.ID] != 0 {
		t.Fatalf("depths %v: want 0 for the one that lived beyond its window, 2 for the one born in it, 0 for a person's", depth)
	}
}

package app_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

// examplesDir is a definitions folder holding the shipped definitions and
// the named examples, their placeholders replaced by repl (old, new, …).
func examplesDir(t *testing.T, repl []string, names ...string) string {
	t.Helper()
	extra := map[string]string{}
	r := strings.NewReplacer(repl...)
	found := map[string]bool{}
	for _, name := range names {
		src, err := os.ReadFile(filepath.Join(testutil.DefinitionsDir(), "examples", name))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(repl); i += 2 {
			found[repl[i]] = found[repl[i]] || strings.Contains(string(src), repl[i])
		}
		extra[name] = r.Replace(string(src))
	}
	for old, ok := range found {
		if !ok {
			t.Fatalf("no example holds %q to replace: the example changed under its test", old)
		}
	}
	return shippedDefinitionsWith(t, extra)
}

// exampleFiles are the example definitions shipped (not their tests).
func exampleFiles(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(testutil.DefinitionsDir(), "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		if !strings.HasSuffix(p, ".test.yaml") {
			out = append(out, filepath.Base(p))
		}
	}
	return out
}

// Every shipped example loads, all of them together with the shipped
// definitions, in a certflow configured as the examples say (smtp.addr
// for their e-mail).
func TestEveryShippedExampleLoads(t *testing.T) {
	t.Parallel()
	names := exampleFiles(t)
	for _, want := range []string{"auto-renew.yaml", "auto-renew-tell-owner.yaml", "expiry-digest.yaml", "pending-reminder.yaml", "decommission-revoke.yaml", "web-server.yaml"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("example %s is missing", want)
		}
	}
	dir := examplesDir(t, nil, names...)
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.SMTP = config.SMTP{Addr: "127.0.0.1:2525", From: "pki@example.com", TLS: "none", Timeout: time.Second}
	})
	set := cf.App.Defs.Load()
	for _, n := range []string{"auto-renew", "auto-renew-tell-owner", "expiry-digest", "pending-reminder", "decommission-revoke", "web-server"} {
		if _, ok := set.Named(n); !ok {
			t.Errorf("definition %s is not loaded", n)
		}
	}
}

// certPublicKey is the DER public key of a certificate id.
func certPublicKey(t *testing.T, cf *testutil.Certflow, id int64) []byte {
	t.Helper()
	c, err := cf.App.Store.Certificate(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(leaf.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// auto-renew and auto-renew-tell-owner: a certificate passing its expiry
// threshold is renewed once with the same key, in its requester's name,
// and its owner (Owner metadata) gets an e-mail and a signed webhook.
func TestExampleAutoRenewRenewsOnceAndTellsTheOwner(t *testing.T) {
	t.Parallel()
	smtpd := testutil.StartSMTPServer(t, testutil.SMTPOptions{})
	secretText, secret := testutil.NewSigningSecret(t)
	hooks := &testutil.SignedHooks{Secret: secret}
	hookSrv := httptest.NewServer(hooks)
	defer hookSrv.Close()
	dir := examplesDir(t, []string{"https://hooks.example.com", hookSrv.URL}, "auto-renew.yaml", "auto-renew-tell-owner.yaml")
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.SMTP = smtpd.Config()
		c.Callbacks.SigningSecret = secretText
		// Announced 5 s after issue (as if 14 days before expiry): a
		// renewed certificate is announced 5 s after it is issued, and
		// renewed in turn, which the assertions allow for.
		c.Templates[0].Validity = 2 * time.Minute
		c.Events.ExpiryWatch.Thresholds = []string{"115s"}
		c.Events.ExpiryWatch.Interval = 200 * time.Millisecond
	})
	ctx := context.Background()
	csr, _ := testutil.CSR(t, "renew-me.example.com", "renew-me.example.com")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{"Owner": "owner@example.com"}}), "Authorization", bearer(testutil.AliceToken))
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	old := er.CertificateInformation.KeyfactorID
	var renewed int64
	waitForLong(t, "the certificate's renewal", 60*time.Second, func() bool {
		renewed, _ = cf.App.Store.SupersededBy(ctx, old)
		return renewed != 0
	})
	rec, err := cf.App.Store.Get(ctx, renewed)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Input.RenewalCertificateId != old || rec.Requester.Name != "alice" || rec.Disposition != store.Issued || rec.EventDepth != 1 {
		t.Fatalf("renewal %d: renews %d, by %s, %s", renewed, rec.Input.RenewalCertificateId, rec.Requester.Name, rec.Disposition)
	}
	if !bytes.Equal(certPublicKey(t, cf, old), certPublicKey(t, cf, renewed)) {
		t.Fatal("the renewal certifies another key")
	}
	// The owner is told: one e-mail to the Owner address, one verified
	// webhook about the new certificate.
	var msgs []testutil.SMTPMessage
	waitForLong(t, "the owner's e-mail", 30*time.Second, func() bool {
		msgs = nil
		for _, m := range smtpd.Messages(t) {
			if msg, err := mail.ReadMessage(strings.NewReader(m.Data)); err == nil && strings.Contains(string(mailBody(t, msg)), "renewed certificate "+strconv.FormatInt(old, 10)+" ") {
				msgs = append(msgs, m)
			}
		}
		return len(msgs) > 0
	})
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "owner@example.com" {
		t.Fatalf("owner e-mails: %+v", msgs)
	}
	m, err := mail.ReadMessage(strings.NewReader(msgs[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get("Subject"); got != "certificate for renew-me.example.com renewed" {
		t.Errorf("subject %q", got)
	}
	var mine []map[string]any
	waitForLong(t, "the owner's webhook", 30*time.Second, func() bool {
		bodies, _ := hooks.Verified()
		mine = nil
		for _, b := range bodies {
			if c, _ := b["certificate"].(map[string]any); c != nil && num(c["ID"]) == renewed {
				mine = append(mine, b)
			}
		}
		return len(mine) > 0
	})
	if _, bad := hooks.Verified(); bad != 0 || len(mine) != 1 || mine[0]["type"] != "certificate.renewed" || mine[0]["common_name"] != "renew-me.example.com" {
		t.Fatalf("webhooks about %d: %+v (%d unverified)", renewed, mine, bad)
	}
	// One renewal of the original however often it was announced and
	// dispatched: every certificate but the original renews another,
	// and only one renews the original.
	all, err := cf.Redis.ZRange(ctx, cf.Prefix+":certificates", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	of := map[int64]int{}
	for _, s := range all {
		id, _ := strconv.ParseInt(s, 10, 64)
		r, err := cf.App.Store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if id != old {
			of[r.Input.RenewalCertificateId]++
		}
	}
	if of[old] != 1 || of[0] != 0 {
		t.Fatalf("renewals by the certificate they renew: %v", of)
	}
}

// mailBody is a message's body, its transfer encoding undone.
func mailBody(t *testing.T, m *mail.Message) []byte {
	t.Helper()
	var r io.Reader = m.Body
	if strings.EqualFold(m.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		r = quotedprintable.NewReader(m.Body)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitForLong is waitFor with a bound of its own.
func waitForLong(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// yearly replaces an example's schedule with one a year (at new year),
// so that the worker's own scheduler does not fire it while the test
// sets the scene: the test fires its slot (fireSlot, newYear).
func yearly(schedule string) []string {
	return []string{`schedule: "` + schedule + `"`, `schedule: "0 0 1 1 *"`}
}

// newYear is this year's slot of yearly's schedule.
func newYear() time.Time { return time.Date(time.Now().Year(), 1, 1, 0, 0, 0, 0, time.Local) }

// fireSlot makes definition name's schedule fire its slot at slot (as
// the scheduler does 30 s after it) and waits for that slot's run to
// settle. Pass a slot in the past: the worker's own scheduler fires the
// current one, perhaps before the test has set the scene.
func fireSlot(t *testing.T, cf *testutil.Certflow, name string, slot time.Time) *store.Request {
	t.Helper()
	ctx := context.Background()
	cf.App.Worker().ScheduleOnce(ctx, slot.Add(30*time.Second))
	want := slot.UTC().Format(time.RFC3339)
	var run *store.Request
	waitForLong(t, name+"'s run", 30*time.Second, func() bool {
		for _, ev := range eventsNamed(t, cf, workflow.EventSchedule) {
			if ev.Data["Definition"] != name || ev.Data["Slot"] != want {
				continue
			}
			runs, _ := cf.App.Store.EventRuns(ctx, ev.ID)
			if runs[name] == 0 {
				return false
			}
			run, _ = cf.App.Store.Get(ctx, runs[name])
			return run != nil && run.Disposition.Final()
		}
		return false
	})
	if run.Disposition != store.Completed {
		t.Fatalf("%s: %s %q", name, run.Disposition, run.Message)
	}
	return run
}

// expiry-digest: at its slot, one e-mail lists the certificates expiring
// within 30 days, soonest first.
func TestExampleExpiryDigestMailsTheCertificatesExpiringSoon(t *testing.T) {
	t.Parallel()
	smtpd := testutil.StartSMTPServer(t, testutil.SMTPOptions{})
	dir := examplesDir(t, yearly("0 7 * * *"), "expiry-digest.yaml")
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.SMTP = smtpd.Config()
		c.Templates[0].Validity = 10 * 24 * time.Hour
	})
	for _, cn := range []string{"first.digest.example.com", "second.digest.example.com"} {
		csr, _ := testutil.CSR(t, cn, cn)
		if resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{"Owner": "web@example.com"}}), "Authorization", bearer(testutil.AliceToken)); er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("enroll %s: %d %s", cn, resp.Status, resp.Body)
		}
	}
	run := fireSlot(t, cf, "expiry-digest", newYear())
	if out := run.Instance.Outputs["soon"]; num(out["count"]) != 2 {
		t.Fatalf("search outputs %+v", out)
	}
	msgs := smtpd.Messages(t)
	if len(msgs) != 1 || msgs[0].To[0] != "pki-team@example.com" {
		t.Fatalf("messages %+v", msgs)
	}
	m, _ := mail.ReadMessage(strings.NewReader(msgs[0].Data))
	body := mailBody(t, m)
	if m.Header.Get("Subject") != "2 certificates expire within 30 days" {
		t.Errorf("subject %q", m.Header.Get("Subject"))
	}
	text := string(body)
	i, j := strings.Index(text, "first.digest.example.com"), strings.Index(text, "second.digest.example.com")
	if i < 0 || j < i || !strings.Contains(text, "owner web@example.com") {
		t.Fatalf("digest body:\n%s", text)
	}
}

// pending-reminder: at its slot, approvers are reminded of the requests
// waiting for more than 24 hours, not of newer ones.
func TestExamplePendingReminderRemindsOfRequestsWaitingOverADay(t *testing.T) {
	t.Parallel()
	smtpd := testutil.StartSMTPServer(t, testutil.SMTPOptions{})
	dir := examplesDir(t, yearly("0 * * * *"), "pending-reminder.yaml")
	dir2 := filepath.Join(dir, "wait.yaml")
	os.WriteFile(dir2, []byte(waitDef), 0o644)
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.SMTP = smtpd.Config()
	})
	ctx := context.Background()
	var ids []int64
	for _, cn := range []string{"wait.old.example.com", "wait.new.example.com"} {
		csr, _ := testutil.CSR(t, cn, cn)
		_, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", bearer(testutil.AliceToken))
		if er.CertificateInformation.RequestDisposition != "PENDING" {
			t.Fatalf("enroll %s: %+v", cn, er.CertificateInformation)
		}
		ids = append(ids, er.CertificateInformation.KeyfactorRequestId)
	}
	// The first has waited for 25 hours.
	if _, err := cf.App.Store.Update(ctx, ids[0], func(r *store.Request) error {
		r.Submitted = r.Submitted.Add(-25 * time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	run := fireSlot(t, cf, "pending-reminder", newYear())
	if out := run.Instance.Outputs["waiting"]; num(out["count"]) != 1 {
		t.Fatalf("search outputs %+v", out)
	}
	msgs := smtpd.Messages(t)
	if len(msgs) != 1 || msgs[0].To[0] != "pki-approvers@example.com" {
		t.Fatalf("messages %+v", msgs)
	}
	m, _ := mail.ReadMessage(strings.NewReader(msgs[0].Data))
	body := mailBody(t, m)
	text := string(body)
	if !strings.Contains(text, "#"+strconv.FormatInt(ids[0], 10)+"  wait.old.example.com  by alice") || !strings.Contains(text, "(pki-approvers)") ||
		strings.Contains(text, "wait.new.example.com") || m.Header.Get("Subject") != "1 certificate requests wait for approval" {
		t.Fatalf("reminder %q:\n%s", m.Header.Get("Subject"), text)
	}
}

// decommission-revoke: an external host.decommissioned event revokes the
// certificates naming the host, reason cessationOfOperation, and no
// other; sent twice with one Id, it runs once.
func TestExampleDecommissionRevokesTheHostsCertificates(t *testing.T) {
	t.Parallel()
	dir := examplesDir(t, nil, "decommission-revoke.yaml")
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.Auth.Users = append(c.Auth.Users, config.User{Name: "cmdb", Token: "cmdb-token", Roles: []string{config.DefaultEventPublisherRole}})
	})
	ctx := context.Background()
	issue := func(cn string, dns ...string) int64 {
		csr, _ := testutil.CSR(t, cn, dns...)
		_, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", bearer(testutil.AliceToken))
		if er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("enroll %s: %+v", cn, er.CertificateInformation)
		}
		return er.CertificateInformation.KeyfactorID
	}
	a := issue("web1.example.com", "web1.example.com")
	b := issue("shop.example.com", "shop.example.com", "web1.example.com")
	other := issue("web10.example.com", "web10.example.com")
	ev := map[string]any{"Name": "host.decommissioned", "Id": "cmdb-change-4711", "Data": map[string]any{"host": "web1.example.com"}}
	for i := 0; i < 2; i++ {
		if r := cf.Do(t, "POST", "/Events", ev, "Authorization", "Bearer cmdb-token"); r.Status != http.StatusCreated && r.Status != http.StatusOK {
			t.Fatalf("post %d: %d %s", i, r.Status, r.Body)
		}
	}
	revoked := func(id int64) bool {
		c, err := cf.App.Store.Certificate(ctx, id)
		return err == nil && c.Revocation != nil
	}
	waitForLong(t, "the revocations", 30*time.Second, func() bool { return revoked(a) && revoked(b) })
	for _, id := range []int64{a, b} {
		c, _ := cf.App.Store.Certificate(ctx, id)
		if c.Revocation.Reason != 5 {
			t.Errorf("certificate %d revoked with reason %d, want 5 (cessationOfOperation)", id, c.Revocation.Reason)
		}
	}
	evs := eventsNamed(t, cf, "host.decommissioned")
	if len(evs) != 1 {
		t.Fatalf("%d host.decommissioned events logged, want 1", len(evs))
	}
	runs, _ := cf.App.Store.EventRuns(ctx, evs[0].ID)
	if len(runs) != 1 || runs["decommission-revoke"] == 0 {
		t.Fatalf("runs %v", runs)
	}
	waitForLong(t, "the run", 30*time.Second, func() bool {
		r, _ := cf.App.Store.Get(ctx, runs["decommission-revoke"])
		return r != nil && r.Disposition.Final()
	})
	if revoked(other) {
		t.Fatal("a certificate for another host (web10) was revoked")
	}
	if n := len(eventsNamed(t, cf, workflow.EventCertificateRevoked)); n != 2 {
		t.Fatalf("%d certificate.revoked events, want 2", n)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

// e2eHold answers webhooks (testutil.SignedHooks: verified with the
// configured secret) and the renewal workflow's /hold call, the first of
// which it holds until released (or its caller dies).
type e2eHold struct {
	testutil.SignedHooks
	mu      sync.Mutex
	holds   int
	arrived chan struct{}
	release chan struct{}
}

func (h *e2eHold) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/hold" {
		io.Copy(io.Discard, r.Body)
		h.mu.Lock()
		h.holds++
		first := h.holds == 1
		h.mu.Unlock()
		if first {
			h.arrived <- struct{}{}
			select {
			case <-h.release:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok": true}`)
		return
	}
	h.SignedHooks.ServeHTTP(w, r)
}

// e2eEvent is an event as GET /Events answers it, with its runs (GET
// /Events/{id}).
type e2eEvent struct {
	workflow.Event
	Runs []struct {
		Definition         string
		Started            bool
		RequestId          int64
		RequestDisposition string
	}
}

// TestEventDrivenAutomationEndToEnd is issue 19's "done means", against
// real Redis and real processes: an api and three workers, the shipped
// auto-renew example, a real SMTP server process and a webhook receiver
// that verifies signatures. A certificate issued for three minutes is
// announced as expiring 40 s after issue (thresholds in minutes stand
// for days) and renewed exactly once, with the same key, while the
// worker running the renewal is killed -9 in it; the owner's e-mail
// arrives and the webhook verifies; the event log links
// certificate.expiring → the auto-renew run → certificate.issued and
// certificate.renewed → the tell-owner run. An external event posted
// twice with one Id runs once, and an every-minute schedule fires once
// per slot across the three workers.
func TestEventDrivenAutomationEndToEnd(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	ctx := context.Background()
	smtpd := testutil.StartSMTPServer(t, testutil.SMTPOptions{})
	secretText, secret := testutil.NewSigningSecret(t)
	h := &e2eHold{SignedHooks: testutil.SignedHooks{Secret: secret}, arrived: make(chan struct{}, 1), release: make(chan struct{})}
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer close(h.release)

	dir := t.TempDir()
	defs := filepath.Join(dir, "defs")
	os.MkdirAll(defs, 0o755)
	shipped, _ := filepath.Abs("../../definitions")
	for _, name := range []string{"enrollment-default.yaml", "revocation-default.yaml"} {
		b, err := os.ReadFile(filepath.Join(shipped, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(defs, name), b, 0o644)
	}
	for _, name := range []string{"auto-renew.yaml", "auto-renew-tell-owner.yaml"} {
		b, err := os.ReadFile(filepath.Join(shipped, "examples", name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(defs, name), bytes.ReplaceAll(b, []byte("https://hooks.example.com"), []byte(srv.URL)), 0o644)
	}
	// The renewal workflow is renewal-default with a call to /hold before
	// the issue step: where the first renewal's worker is killed.
	renewal, err := os.ReadFile(filepath.Join(shipped, "renewal-default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	held := strings.Replace(string(renewal), "  - id: issue\n", fmt.Sprintf("  - id: hold\n    uses: http\n    with: {url: %q}\n    timeout: 5m\n  - id: issue\n", srv.URL+"/hold"), 1)
	if held == string(renewal) {
		t.Fatal("renewal-default.yaml has no issue step to hold before")
	}
	os.WriteFile(filepath.Join(defs, "renewal-default.yaml"), []byte(held), 0o644)
	os.WriteFile(filepath.Join(defs, "tick.yaml"), []byte(`name: tick
trigger: schedule
schedule: "* * * * *"
steps:
  - {id: note, uses: notify, with: {log: "tick ${{ event.Data.Slot }}"}}
`), 0o644)
	os.WriteFile(filepath.Join(defs, "ping.yaml"), []byte(`name: ping
trigger: event:e2e.ping
steps:
  - {id: note, uses: notify, with: {log: "pinged ${{ event.Data.n }} by ${{ event.Source }}"}}
`), 0o644)

	sm := smtpd.Config()
	cfg := fmt.Sprintf(`key_prefix: %[1]s
queue: %[1]s
worker:
  task_timeout: 5s
  reconcile_after: 6s
callbacks:
  allow_private: true
  signing_secret: %[2]s
  schedule: [200ms, 500ms, 1s]
smtp: {addr: %[3]q, from: %[4]q, username: %[5]q, password: %[6]q, tls: %[7]s, timeout: 5s, ca_file: %[8]q}
events:
  expiry_watch: {thresholds: [140s], interval: 1s}
templates:
  - name: WebServer
    display_name: Web Server
    certificate_authorities: [%[9]s]
    ecc_curves: [P-256]
    validity: 3m
auth:
  users:
    - {name: alice, token: alice-token, roles: [requester]}
    - {name: root, token: root-token, roles: [admin]}
    - {name: cmdb, token: cmdb-token, roles: [event-publisher]}
`, prefix, secretText, sm.Addr, sm.From, sm.Username, sm.Password, sm.TLS, sm.CAFile, config.DefaultCAName)
	os.WriteFile(filepath.Join(dir, "certflow.yaml"), []byte(cfg), 0o600)
	env, base := startAPI(t, dir)
	var workers []e2eWorker
	for i := 0; i < 3; i++ {
		cmd, logs := startProcess(t, dir, env, "worker")
		workers = append(workers, e2eWorker{cmd, logs})
	}
	for _, w := range workers {
		waitForText(t, w.logs, "certflow worker running")
	}
	allUp := time.Now()
	st := store.New(rdb, prefix)
	call := func(method, path string, body any, token string) *testutil.Response {
		t.Helper()
		return testutil.Do(t, base, method, path, body, "Authorization", "Bearer "+token, "x-certificateformat", "PEM")
	}

	// An external event twice with one Id: accepted once, run once.
	ping := map[string]any{"Name": "e2e.ping", "Id": "change-4711", "Data": map[string]any{"n": 1}}
	first := call("POST", "/Events", ping, "cmdb-token")
	second := call("POST", "/Events", ping, "cmdb-token")
	var ev1, ev2 workflow.Event
	first.JSON(t, &ev1)
	second.JSON(t, &ev2)
	if first.Status != http.StatusCreated || second.Status != http.StatusOK || ev1.ID == "" || ev2.ID != ev1.ID {
		t.Fatalf("the two posts: %d %s / %d %s, want 201 then 200 with the same event", first.Status, first.Body, second.Status, second.Body)
	}

	// The certificate, with its owner.
	csr, key := testutil.CSR(t, "renew-e2e.example.com", "renew-e2e.example.com")
	r := call("POST", "/Enrollment/CSR", testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{"Owner": "owner@example.com"}}), "alice-token")
	var er struct {
		CertificateInformation struct {
			KeyfactorID        int64
			RequestDisposition string
			Certificates       []string
		}
	}
	r.JSON(t, &er)
	if r.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll: %d %s", r.Status, r.Body)
	}
	old := er.CertificateInformation.KeyfactorID

	// 40 s later it is announced, auto-renew submits its renewal, and a
	// worker reaches /hold in the renewal workflow: kill it.
	select {
	case <-h.arrived:
	case <-time.After(150 * time.Second):
		t.Fatal("no renewal reached the held step")
	}
	// The log line was written before the step ran, but the test reads
	// each worker's output through a pipe: give the reader a moment.
	victim := -1
	started := regexp.MustCompile(`msg="workflow started".* definition=renewal-default`)
	for deadline := time.Now().Add(10 * time.Second); victim < 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for i, w := range workers {
			if started.MatchString(w.logs.String()) {
				victim = i
			}
		}
	}
	if victim < 0 {
		t.Fatal("no worker logged starting the renewal")
	}
	workers[victim].cmd.Process.Signal(syscall.SIGKILL)
	workers[victim].cmd.Wait()
	dead := workers[victim]
	// Three workers again, for the schedule.
	cmd, logs := startProcess(t, dir, env, "worker")
	workers[victim] = e2eWorker{cmd, logs}

	// Another worker finishes the renewal: one new certificate.
	var renewed int64
	deadline := time.Now().Add(120 * time.Second)
	for renewed == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the certificate was never renewed")
		}
		time.Sleep(200 * time.Millisecond)
		if renewed, err = st.SupersededBy(ctx, old); err != nil {
			t.Fatal(err)
		}
	}
	// Exactly one new certificate: the renewed one's own threshold is
	// 40 s away, so nothing else can have been issued yet.
	if n, err := rdb.ZCard(ctx, prefix+":certificates").Result(); err != nil || n != 2 {
		t.Fatalf("%d certificates (%v), want the original and its renewal", n, err)
	}
	rec, err := st.Get(ctx, renewed)
	if err != nil {
		t.Fatal(err)
	}
	// Made in the name of the certificate's requester, one deep in a
	// chain of automation.
	if rec.Disposition != store.Issued || rec.Input.RenewalCertificateId != old || rec.Requester.Name != "alice" || rec.EventDepth != 1 {
		t.Fatalf("renewal %d: %s, renews %d, by %s", renewed, rec.Disposition, rec.Input.RenewalCertificateId, rec.Requester.Name)
	}
	h.mu.Lock()
	holds := h.holds
	h.mu.Unlock()
	if holds < 2 {
		t.Errorf("the renewal's /hold step ran %d times: the killed worker's step was not run again", holds)
	}

	// The same key: crypto/x509 and openssl agree.
	oldCert, newCert := mustCert(t, st, old), mustCert(t, st, renewed)
	oldPub, _ := x509.MarshalPKIXPublicKey(oldCert.PublicKey)
	newPub, _ := x509.MarshalPKIXPublicKey(newCert.PublicKey)
	keyPub, _ := x509.MarshalPKIXPublicKey(key.Public())
	if !bytes.Equal(oldPub, newPub) || !bytes.Equal(newPub, keyPub) {
		t.Fatal("the renewed certificate certifies another key")
	}
	if a, b := opensslPubkey(t, oldCert.Raw), opensslPubkey(t, newCert.Raw); a != b || !strings.Contains(a, "BEGIN PUBLIC KEY") {
		t.Fatalf("openssl x509 -pubkey: old\n%s\nnew\n%s", a, b)
	}

	// The owner is told: the e-mail reached the SMTP server, the webhook
	// verified.
	var msgs []testutil.SMTPMessage
	deadline = time.Now().Add(60 * time.Second)
	for len(msgs) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the owner's e-mail never arrived")
		}
		time.Sleep(200 * time.Millisecond)
		for _, m := range smtpd.Messages(t) {
			if strings.Contains(mailText(m.Data), "renewed certificate "+strconv.FormatInt(old, 10)+" for renew-e2e.example.com") {
				msgs = append(msgs, m)
			}
		}
	}
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "owner@example.com" || !msgs[0].TLS {
		t.Fatalf("owner e-mails: %+v", msgs)
	}
	if m, err := mail.ReadMessage(strings.NewReader(msgs[0].Data)); err != nil || m.Header.Get("Subject") != "certificate for renew-e2e.example.com renewed" {
		t.Fatalf("e-mail: %v %v", err, m)
	}
	var hooks []map[string]any
	deadline = time.Now().Add(60 * time.Second)
	for len(hooks) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the owner's webhook never arrived")
		}
		time.Sleep(200 * time.Millisecond)
		all, _ := h.Verified()
		for _, b := range all {
			if c, _ := b["certificate"].(map[string]any); c != nil && int64(c["ID"].(float64)) == renewed {
				hooks = append(hooks, b)
			}
		}
	}
	if _, bad := h.Verified(); bad != 0 || len(hooks) != 1 || hooks[0]["type"] != "certificate.renewed" {
		t.Fatalf("webhooks about %d: %+v (%d failed verification)", renewed, hooks, bad)
	}

	// The event log shows the chain, through GET /Events.
	listEvents := func(query string) []e2eEvent {
		t.Helper()
		r := call("GET", "/Events?"+query, nil, "root-token")
		var evs []e2eEvent
		r.JSON(t, &evs)
		if r.Status != http.StatusOK {
			t.Fatalf("GET /Events?%s: %d %s", query, r.Status, r.Body)
		}
		return evs
	}
	detail := func(id string) e2eEvent {
		t.Helper()
		r := call("GET", "/Events/"+id, nil, "root-token")
		var ev e2eEvent
		r.JSON(t, &ev)
		if r.Status != http.StatusOK {
			t.Fatalf("GET /Events/%s: %d %s", id, r.Status, r.Body)
		}
		return ev
	}
	expiring := listEvents("name=certificate.expiring&certificateId=" + strconv.FormatInt(old, 10))
	if len(expiring) != 1 {
		t.Fatalf("certificate.expiring of %d: %+v", old, expiring)
	}
	exp := detail(expiring[0].ID)
	var runID int64
	for _, run := range exp.Runs {
		if run.Definition == "auto-renew" && run.Started && run.RequestDisposition == "COMPLETED" {
			runID = run.RequestId
		}
	}
	if len(exp.Runs) != 1 || runID == 0 {
		t.Fatalf("the expiring event's runs: %+v", exp.Runs)
	}
	run, err := st.Get(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	if got := run.Instance.Outputs["renew"]["request"]; fmt.Sprint(got) != strconv.FormatInt(renewed, 10) {
		t.Fatalf("the run's renew step made request %v, not the renewal %d", got, renewed)
	}
	for _, name := range []string{workflow.EventCertificateIssued, workflow.EventCertificateRenewed} {
		evs := listEvents("name=" + name + "&certificateId=" + strconv.FormatInt(renewed, 10))
		if len(evs) != 1 || evs[0].RequestID != renewed || evs[0].Depth != 1 {
			t.Fatalf("%s of %d: %+v", name, renewed, evs)
		}
		if name == workflow.EventCertificateRenewed {
			if fmt.Sprint(evs[0].Data["RenewedCertificateId"]) != strconv.FormatInt(old, 10) || evs[0].Data["Requester"] != "alice" {
				t.Fatalf("certificate.renewed does not name %d: %+v", old, evs[0].Data)
			}
			ren := detail(evs[0].ID)
			told := false
			for _, run := range ren.Runs {
				told = told || run.Definition == "auto-renew-tell-owner" && run.Started && run.RequestDisposition == "COMPLETED"
			}
			if !told {
				t.Fatalf("certificate.renewed's runs: %+v", ren.Runs)
			}
		}
	}
	// Exactly one renewal of the original, signed once.
	ids, err := rdb.ZRange(ctx, prefix+":certificates", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	renewals := 0
	for _, s := range ids {
		id, _ := strconv.ParseInt(s, 10, 64)
		if c, err := st.Get(ctx, id); err == nil && c.Input.RenewalCertificateId == old {
			renewals++
		}
	}
	if renewals != 1 {
		t.Fatalf("%d certificates renew %d, want 1", renewals, old)
	}

	// The ping ran once.
	pings := listEvents("name=e2e.ping")
	if len(pings) != 1 || len(detail(pings[0].ID).Runs) != 1 {
		t.Fatalf("e2e.ping events: %+v", pings)
	}
	if n := countAll(append(workers, dead), "pinged 1 by cmdb"); n != 1 {
		t.Fatalf("the ping's run logged %d times", n)
	}

	// The schedule: wait until a slot after all three workers were up has
	// fired (one slot boundary), then every slot fired once, and ran once.
	sched, _ := workflow.ParseSchedule("* * * * *")
	want := workflow.Slot(sched, allUp).Add(time.Minute)
	slots := map[string]int{}
	deadline = time.Now().Add(120 * time.Second)
	for slots[want.UTC().Format(time.RFC3339)] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("slot %s never fired", want)
		}
		time.Sleep(500 * time.Millisecond)
		slots = map[string]int{}
		for _, ev := range listEvents("name=schedule.fired") {
			slots[fmt.Sprint(ev.Data["Slot"])]++
		}
	}
	time.Sleep(6 * time.Second) // every worker's scheduler looks at the slot again
	slots = map[string]int{}
	for _, ev := range listEvents("name=schedule.fired") {
		slot := fmt.Sprint(ev.Data["Slot"])
		slots[slot]++
		if d := detail(ev.ID); len(d.Runs) != 1 || d.Runs[0].Definition != "tick" || !d.Runs[0].Started {
			t.Fatalf("slot %s's runs: %+v", slot, d.Runs)
		}
	}
	for slot, n := range slots {
		if n != 1 {
			t.Errorf("slot %s fired %d times", slot, n)
		}
	}
	fired := countAll(workers, `msg="schedule fired" definition=tick slot=`+want.Local().Format("2006-01-02T15:04:05"))
	if fired > 1 {
		t.Errorf("slot %s fired by %d workers", want, fired)
	}
}

// e2eWorker is a worker process and its output.
type e2eWorker struct {
	cmd  *exec.Cmd
	logs *testutil.SyncBuffer
}

// countAll counts a text in the logs of every worker.
func countAll(ws []e2eWorker, text string) int {
	n := 0
	for _, w := range ws {
		n += strings.Count(w.logs.String(), text)
	}
	return n
}

// mailText is a message's body, its quoted-printable encoding undone
// (soft line breaks may split any phrase); "" when it does not parse.
func mailText(data string) string {
	m, err := mail.ReadMessage(strings.NewReader(data))
	if err != nil {
		return ""
	}
	var r io.Reader = m.Body
	if strings.EqualFold(m.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		r = quotedprintable.NewReader(m.Body)
	}
	b, _ := io.ReadAll(r)
	return string(b)
}

func mustCert(t *testing.T, st *store.Store, id int64) *x509.Certificate {
	t.Helper()
	c, err := st.Certificate(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// opensslPubkey is `openssl x509 -pubkey -noout` of a certificate.
func opensslPubkey(t *testing.T, der []byte) string {
	t.Helper()
	cmd := exec.Command("openssl", "x509", "-pubkey", "-noout")
	cmd.Stdin = bytes.NewReader(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509 -pubkey: %v\n%s", err, out)
	}
	return string(out)
}

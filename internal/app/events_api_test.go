package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/app"
	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

// Tokens of the events tests' users.
const (
	publisherToken = "cmdb-token"    // event-publisher
	readerToken    = "auditor-token" // event-reader (events.reader_roles)
)

// withEventUsers adds a publisher (role event-publisher, the default
// events.publisher_roles) and a reader (event-reader, made a reader role).
func withEventUsers(c *config.Config) {
	c.Auth.Users = append(c.Auth.Users,
		config.User{Name: "cmdb", Token: publisherToken, Roles: []string{config.DefaultEventPublisherRole}},
		config.User{Name: "auditor", Token: readerToken, Roles: []string{"event-reader"}})
	c.Events.ReaderRoles = []string{"event-reader"}
}

func asUser(token string) []string { return []string{"Authorization", "Bearer " + token} }

// listEvents is GET /Events?query as the admin, every page followed
// through X-Next-Cursor; it returns the events and the calls made.
func listEvents(t *testing.T, cf *testutil.Certflow, query string) ([]workflow.Event, int) {
	t.Helper()
	var all []workflow.Event
	cursor, calls := "", 0
	for {
		q := query
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		resp := cf.Do(t, "GET", "/Events?"+q, nil)
		calls++
		if resp.Status != http.StatusOK {
			t.Fatalf("GET /Events?%s: %d %s", q, resp.Status, resp.Body)
		}
		var page []workflow.Event
		resp.JSON(t, &page)
		all = append(all, page...)
		if cursor = resp.Header.Get("X-Next-Cursor"); cursor == "" {
			return all, calls
		}
		if calls > 1000 {
			t.Fatalf("GET /Events?%s: the cursor never ends", query)
		}
	}
}

// TestPostEventRefusesEveryBadInputNamingTheField: each bad event is
// refused 400 with the field named, and nothing reaches the log.
func TestPostEventRefusesEveryBadInputNamingTheField(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, withEventUsers)
	nested := func(levels int) map[string]any {
		m := map[string]any{"leaf": 1}
		for i := 1; i < levels; i++ {
			m = map[string]any{"in": m}
		}
		return m
	}
	manyKeys := func(n int) map[string]any {
		m := map[string]any{}
		for i := range n {
			m["k"+strconv.Itoa(i)] = i
		}
		return m
	}
	tests := []struct {
		name  string
		body  any
		field string
		says  string
	}{
		{"an empty body", "", "request body", "empty"},
		{"not JSON", "{", "request body", "JSON"},
		{"an array", `[]`, "request body", "an object"},
		{"no Name", map[string]any{"Id": "1"}, "Name", "required"},
		{"Name a number", map[string]any{"Name": 5, "Id": "1"}, "Name", "a string"},
		{"Name upper case", map[string]any{"Name": "Host.Down", "Id": "1"}, "Name", "lower-case"},
		{"Name with a space", map[string]any{"Name": "host down", "Id": "1"}, "Name", "lower-case"},
		{"Name too long", map[string]any{"Name": strings.Repeat("a", 101), "Id": "1"}, "Name", "longer than 100"},
		{"Name certificate.expiring", map[string]any{"Name": "certificate.expiring", "Id": "1"}, "Name", "certflow's own"},
		{"Name certificate.anything", map[string]any{"Name": "certificate.issued.fake", "Id": "1"}, "Name", "certflow's own"},
		{"Name request.approved", map[string]any{"Name": "request.approved", "Id": "1"}, "Name", "certflow's own"},
		{"Name approval.escalated", map[string]any{"Name": "approval.escalated", "Id": "1"}, "Name", "certflow's own"},
		{"Name callback.failed", map[string]any{"Name": "callback.failed", "Id": "1"}, "Name", "certflow's own"},
		{"Name schedule.fired", map[string]any{"Name": "schedule.fired", "Id": "1"}, "Name", "certflow's own"},
		{"Name certflow.x", map[string]any{"Name": "certflow.x", "Id": "1"}, "Name", "certflow's own"},
		{"no Id", map[string]any{"Name": "host.down"}, "Id", "required"},
		{"Id a number", map[string]any{"Name": "host.down", "Id": 7}, "Id", "a string"},
		{"Id too long", map[string]any{"Name": "host.down", "Id": strings.Repeat("x", 129)}, "Id", "1-128"},
		{"Id with a space", map[string]any{"Name": "host.down", "Id": "a b"}, "Id", "1-128"},
		{"Id with a newline", map[string]any{"Name": "host.down", "Id": "a\nb"}, "Id", "1-128"},
		{"Id with a NUL", map[string]any{"Name": "host.down", "Id": "a\x00b"}, "Id", "1-128"},
		{"Data a string", map[string]any{"Name": "host.down", "Id": "1", "Data": "x"}, "Data", "an object"},
		{"Data an array", map[string]any{"Name": "host.down", "Id": "1", "Data": []int{1}}, "Data", "an object"},
		{"Data over 64 KiB", map[string]any{"Name": "host.down", "Id": "1", "Data": map[string]any{"x": strings.Repeat("a", 64<<10)}}, "Data", "bytes encoded"},
		{"Data 9 levels deep", map[string]any{"Name": "host.down", "Id": "1", "Data": nested(9)}, "Data", "deeper than 8"},
		{"Data 9 levels deep in arrays", map[string]any{"Name": "host.down", "Id": "1", "Data": map[string]any{"a": [][][][][][][][]int{{{{{{{{1}}}}}}}}}}, "Data", "deeper than 8"},
		{"Data with 257 keys", map[string]any{"Name": "host.down", "Id": "1", "Data": manyKeys(257)}, "Data", "more than 256 keys"},
		{"Data with 257 keys nested", map[string]any{"Name": "host.down", "Id": "1", "Data": map[string]any{"a": manyKeys(200), "b": manyKeys(55)}}, "Data", "more than 256 keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := cf.Do(t, "POST", "/Events", tt.body, asUser(publisherToken)...)
			assertError(t, resp, http.StatusBadRequest, keyfactor.CodeInvalidField, tt.field+": ")
			if !strings.Contains(string(resp.Body), tt.says) {
				t.Errorf("the message does not say %q: %s", tt.says, resp.Body)
			}
		})
	}
	t.Run("a body over api.max_body_bytes", func(t *testing.T) {
		body := `{"Name":"host.down","Id":"1","Data":{"x":"` + strings.Repeat("a", int(cf.Config.API.MaxBodyBytes)) + `"}}`
		assertError(t, cf.Do(t, "POST", "/Events", body, asUser(publisherToken)...), http.StatusRequestEntityTooLarge, keyfactor.CodeTooLarge, "request body")
	})
	if evs, _ := listEvents(t, cf, "name=host.*"); len(evs) != 0 {
		t.Errorf("refused events reached the log: %+v", evs)
	}
	// The bounds themselves are allowed.
	ok := map[string]any{"Name": "host.down", "Id": strings.Repeat("x", 128), "Data": map[string]any{"deep": nested(7), "many": manyKeys(256 - 2 - 7)}}
	if resp := cf.Do(t, "POST", "/Events", ok, asUser(publisherToken)...); resp.Status != http.StatusCreated {
		t.Fatalf("an event at every bound: %d %s", resp.Status, resp.Body)
	}
}

// TestPostEventIsAcceptedOncePerSourceAndId: the publisher's event is
// logged with its source, id and data; the same Id again answers 200 with
// the first event and Idempotent-Replayed, and the log holds it once;
// another poster's same Id is its own event. Only admin and the publisher
// roles may post; only admin and the reader roles may read.
func TestPostEventIsAcceptedOncePerSourceAndId(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, withEventUsers)
	body := map[string]any{"name": "host.decommissioned", "ID": "chg-1001", "data": map[string]any{"Host": "web1.example.com", "Ticket": 1001}}
	first := cf.Do(t, "POST", "/Events", body, asUser(publisherToken)...)
	if first.Status != http.StatusCreated || first.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first post: %d %v %s", first.Status, first.Header, first.Body)
	}
	var ev workflow.Event
	first.JSON(t, &ev)
	if !store.ValidEventID(ev.ID) || ev.Name != "host.decommissioned" || ev.Source != "cmdb" || ev.ExternalID != "chg-1001" ||
		ev.Data["Host"] != "web1.example.com" || ev.Time.IsZero() || time.Since(ev.Time) > time.Minute {
		t.Fatalf("the event: %+v", ev)
	}
	if loc := first.Header.Get("Location"); loc != "/Events/"+ev.ID {
		t.Errorf("Location %q", loc)
	}
	// The retry, even with other data, is the first event.
	body["data"] = map[string]any{"Host": "other.example.com"}
	for range 3 {
		again := cf.Do(t, "POST", "/Events", body, asUser(publisherToken)...)
		var ev2 workflow.Event
		again.JSON(t, &ev2)
		if again.Status != http.StatusOK || again.Header.Get("Idempotent-Replayed") != "true" || ev2.ID != ev.ID || ev2.Data["Host"] != "web1.example.com" {
			t.Fatalf("repeat: %d %v %+v", again.Status, again.Header, ev2)
		}
	}
	if evs, _ := listEvents(t, cf, "name=host.decommissioned"); len(evs) != 1 || evs[0].ID != ev.ID {
		t.Fatalf("the log holds %d events for one Id: %+v", len(evs), evs)
	}
	// The admin's same Id is the admin's event.
	byAdmin := cf.Do(t, "POST", "/Events", body)
	var ev3 workflow.Event
	byAdmin.JSON(t, &ev3)
	if byAdmin.Status != http.StatusCreated || ev3.ID == ev.ID || ev3.Source != config.AdminName {
		t.Fatalf("the admin's post: %d %+v", byAdmin.Status, ev3)
	}
	if evs, _ := listEvents(t, cf, "name=host.decommissioned"); len(evs) != 2 {
		t.Fatalf("want 2 events, the log holds %d", len(evs))
	}

	// Concurrent posts of one new Id: one 201, the rest 200 with its event.
	var wg sync.WaitGroup
	answers := make([]*testutil.Response, 8)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = cf.Do(t, "POST", "/Events", map[string]any{"Name": "host.decommissioned", "Id": "race-1"}, asUser(publisherToken)...)
		}()
	}
	wg.Wait()
	created, raceID := 0, ""
	for _, a := range answers {
		var e workflow.Event
		a.JSON(t, &e)
		if raceID != "" && e.ID != raceID {
			t.Errorf("concurrent posts answered events %s and %s", raceID, e.ID)
		}
		raceID = e.ID
		if a.Status == http.StatusCreated {
			created++
		} else if a.Status != http.StatusOK || a.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("a concurrent post: %d %s", a.Status, a.Body)
		}
	}
	if created != 1 {
		t.Errorf("%d of 8 concurrent posts of one Id were created", created)
	}

	// Roles.
	for _, who := range []struct{ name, token string }{{"alice (requester)", testutil.AliceToken}, {"bob (approver)", testutil.BobToken}, {"auditor (reader)", readerToken}} {
		resp := cf.Do(t, "POST", "/Events", map[string]any{"Name": "host.decommissioned", "Id": "x-" + who.token}, asUser(who.token)...)
		assertError(t, resp, http.StatusForbidden, keyfactor.CodeForbidden, "needs role admin or event-publisher")
	}
	assertError(t, cf.Do(t, "POST", "/Events", body, "Authorization", ""), http.StatusUnauthorized, keyfactor.CodeUnauthorized, "")
	for _, path := range []string{"/Events", "/Events/" + ev.ID, "/Events/0-1"} {
		for _, who := range []struct{ name, token string }{{"alice", testutil.AliceToken}, {"bob", testutil.BobToken}, {"cmdb", publisherToken}} {
			resp := cf.Do(t, "GET", path, nil, asUser(who.token)...)
			assertError(t, resp, http.StatusForbidden, keyfactor.CodeForbidden, "needs role admin or event-reader")
			if strings.Contains(string(resp.Body), "web1") || strings.Contains(string(resp.Body), "not found") {
				t.Errorf("%s learnt something from GET %s: %s", who.name, path, resp.Body)
			}
		}
		if resp := cf.Do(t, "GET", path, nil, asUser(readerToken)...); path != "/Events/0-1" && resp.Status != http.StatusOK {
			t.Errorf("the reader GET %s: %d %s", path, resp.Status, resp.Body)
		}
	}
}

// TestPostEventWithThePublisherRoleConfigured: events.publisher_roles
// replaces the default: the configured role may post, event-publisher
// no longer.
func TestPostEventWithThePublisherRoleConfigured(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		withEventUsers(c)
		c.Events.PublisherRoles = []string{"requester"}
	})
	ev := map[string]any{"Name": "deploy.done", "Id": "d1"}
	if resp := cf.Do(t, "POST", "/Events", ev, asUser(testutil.AliceToken)...); resp.Status != http.StatusCreated {
		t.Fatalf("a requester, now a publisher: %d %s", resp.Status, resp.Body)
	}
	assertError(t, cf.Do(t, "POST", "/Events", ev, asUser(publisherToken)...), http.StatusForbidden, keyfactor.CodeForbidden, "needs role admin or requester")
}

// Standard Webhooks sources.
const (
	cmdbSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	otherSecret = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
)

// signedDelivery is one signed POST /Events/Sources/{source}.
type signedDelivery struct {
	source, secret, id string
	ts                 time.Time
	body               string
	// sign, when set, signs other bytes than body are sent.
	sign *string
	// from is the client address (127.0.0.0/8), "" for the default.
	from string
	// headers override the computed ones (name, value; "" deletes).
	headers []string
}

func (d signedDelivery) send(t *testing.T, cf *testutil.Certflow) *testutil.Response {
	t.Helper()
	sec, err := callback.ParseSecret(d.secret)
	if err != nil {
		t.Fatal(err)
	}
	signed := d.body
	if d.sign != nil {
		signed = *d.sign
	}
	h := []string{
		"Authorization", "",
		"webhook-id", d.id,
		"webhook-timestamp", strconv.FormatInt(d.ts.Unix(), 10),
		"webhook-signature", sec.Sign(d.id, d.ts.Unix(), []byte(signed)),
	}
	h = append(h, d.headers...)
	client := &http.Client{Timeout: 30 * time.Second}
	if d.from != "" {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(d.from)}}
		client.Transport = &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}
	}
	return testutil.DoWith(t, client, cf.URL, "POST", "/Events/Sources/"+d.source, d.body, h...)
}

// withSources configures sources cmdb (a secret, host.* events) and
// pipeline (a secret file, deploy.finished only).
func withSources(t *testing.T) func(*config.Config) {
	file := filepath.Join(t.TempDir(), "pipeline-secret")
	if err := os.WriteFile(file, []byte(otherSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(c *config.Config) {
		withEventUsers(c)
		c.Events.Sources = map[string]config.EventSource{
			"cmdb":     {Secret: cmdbSecret, Names: []string{"host.*"}, Tolerance: 2 * time.Minute},
			"pipeline": {SecretFile: file, Names: []string{"deploy.finished"}},
		}
	}
}

// TestSignedSourcePostsEventsOnceAndNothingElse: a delivery signed with
// its source's secret is accepted; a replayed webhook-id, or the body's Id
// again under a new webhook-id, answers the first event and adds none;
// a wrong secret, a tampered body, a stale or future timestamp, an
// unknown source, missing headers are refused 401 in general terms; a
// name the source may not post 403, a reserved name 400.
func TestSignedSourcePostsEventsOnceAndNothingElse(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, withSources(t))
	now := time.Now()
	body := `{"Name":"host.decommissioned","Id":"chg-7","Data":{"Host":"db1.example.com"}}`
	good := signedDelivery{source: "cmdb", secret: cmdbSecret, id: "msg_1", ts: now, body: body}
	first := good.send(t, cf)
	if first.Status != http.StatusCreated {
		t.Fatalf("a good delivery: %d %s", first.Status, first.Body)
	}
	var ev workflow.Event
	first.JSON(t, &ev)
	if ev.Source != "webhook:cmdb" || ev.ExternalID != "chg-7" || ev.Name != "host.decommissioned" || ev.Data["Host"] != "db1.example.com" {
		t.Fatalf("the event: %+v", ev)
	}

	t.Run("a replayed delivery", func(t *testing.T) {
		again := good.send(t, cf)
		var ev2 workflow.Event
		again.JSON(t, &ev2)
		if again.Status != http.StatusOK || again.Header.Get("Idempotent-Replayed") != "true" || ev2.ID != ev.ID {
			t.Fatalf("replay: %d %v %s", again.Status, again.Header, again.Body)
		}
	})
	t.Run("the same Id in a new delivery", func(t *testing.T) {
		d := good
		d.id = "msg_2"
		again := d.send(t, cf)
		var ev2 workflow.Event
		again.JSON(t, &ev2)
		if again.Status != http.StatusOK || again.Header.Get("Idempotent-Replayed") != "true" || ev2.ID != ev.ID {
			t.Fatalf("retry: %d %v %s", again.Status, again.Header, again.Body)
		}
	})
	t.Run("a replayed webhook-id with another body Id", func(t *testing.T) {
		d := good
		d.body = strings.Replace(body, "chg-7", "chg-8", 1)
		again := d.send(t, cf)
		var ev2 workflow.Event
		again.JSON(t, &ev2)
		if again.Status != http.StatusOK || ev2.ID != ev.ID {
			t.Fatalf("a replayed webhook-id: %d %s", again.Status, again.Body)
		}
	})

	tampered := strings.Replace(body, "db1", "db2", 1)
	refused := []struct {
		name string
		d    signedDelivery
		says string
	}{
		{"a wrong secret", signedDelivery{source: "cmdb", secret: otherSecret, id: "msg_w", ts: now, body: body}, "webhook signature"},
		{"a tampered body", signedDelivery{source: "cmdb", secret: cmdbSecret, id: "msg_t", ts: now, body: tampered, sign: &body}, "webhook signature"},
		{"an unknown source", signedDelivery{source: "nobody", secret: cmdbSecret, id: "msg_u", ts: now, body: body}, "webhook signature"},
		{"an upper-case source", signedDelivery{source: "CMDB", secret: otherSecret, id: "msg_c", ts: now, body: body}, "webhook signature"},
		{"another source's secret", signedDelivery{source: "pipeline", secret: cmdbSecret, id: "msg_p", ts: now, body: body}, "webhook signature"},
		{"no signature", signedDelivery{source: "cmdb", secret: cmdbSecret, id: "msg_n", ts: now, body: body, headers: []string{"webhook-signature", ""}}, "webhook signature"},
		{"no webhook-id", signedDelivery{source: "cmdb", secret: cmdbSecret, id: "", ts: now, body: body}, "webhook signature"},
		{"a webhook-id with a space", signedDelivery{source: "cmdb", secret: cmdbSecret, id: "msg 1", ts: now, body: body}, "webhook signature"},
		{"no timestamp", signedDelivery{source: "cmdb", secret: cmdbSecret, id: "msg_s", ts: now, body: body, headers: []string{"webhook-timestamp", ""}}, "webhook signature"},
		{"a timestamp that is no number", signedDelivery{source: "cmdb", secret: cmdbSecret, id: "msg_x", ts: now, body: body, headers: []string{"webhook-timestamp", "soon"}}, "webhook signature"},
		{"a stale timestamp", signedDelivery{source: "cmdb", secret: cmdbSecret, id: "msg_old", ts: now.Add(-3 * time.Minute), body: body}, "webhook timestamp"},
		{"a future timestamp", signedDelivery{source: "cmdb", secret: cmdbSecret, id: "msg_new", ts: now.Add(3 * time.Minute), body: body}, "webhook timestamp"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.d.send(t, cf)
			assertError(t, resp, http.StatusUnauthorized, keyfactor.CodeUnauthorized, tt.says)
			msg := string(resp.Body)
			for _, leak := range []string{"unknown", "cmdb", "nobody", "secret", "header"} {
				if strings.Contains(msg, leak) {
					t.Errorf("the refusal says %q: %s", leak, msg)
				}
			}
		})
	}
	t.Run("a name the source may not post", func(t *testing.T) {
		d := signedDelivery{source: "cmdb", secret: cmdbSecret, id: "msg_d", ts: now, body: `{"Name":"deploy.finished"}`}
		assertError(t, d.send(t, cf), http.StatusForbidden, keyfactor.CodeForbidden, "may not post deploy.finished")
		d = signedDelivery{source: "cmdb", secret: cmdbSecret, id: "msg_h", ts: now, body: `{"Name":"hostx.down"}`}
		assertError(t, d.send(t, cf), http.StatusForbidden, keyfactor.CodeForbidden, "may not post hostx.down")
	})
	t.Run("a reserved name", func(t *testing.T) {
		d := signedDelivery{source: "cmdb", secret: cmdbSecret, id: "msg_r", ts: now, body: `{"Name":"certificate.expiring","Data":{"CertificateId":1}}`}
		assertError(t, d.send(t, cf), http.StatusBadRequest, keyfactor.CodeInvalidField, "Name: ")
	})
	t.Run("a bad Data", func(t *testing.T) {
		d := signedDelivery{source: "cmdb", secret: cmdbSecret, id: "msg_b", ts: now, body: `{"Name":"host.down","Data":"x"}`}
		assertError(t, d.send(t, cf), http.StatusBadRequest, keyfactor.CodeInvalidField, "Data: ")
	})
	t.Run("the secret-file source without an Id", func(t *testing.T) {
		d := signedDelivery{source: "pipeline", secret: otherSecret, id: "msg_f", ts: now, body: `{"Name":"deploy.finished"}`}
		resp := d.send(t, cf)
		var got workflow.Event
		resp.JSON(t, &got)
		if resp.Status != http.StatusCreated || got.Source != "webhook:pipeline" || got.ExternalID != "msg_f" {
			t.Fatalf("%d %s", resp.Status, resp.Body)
		}
	})

	if evs, _ := listEvents(t, cf, "name=host.*"); len(evs) != 1 || evs[0].ID != ev.ID {
		t.Fatalf("the log holds %d host events, want the one: %+v", len(evs), evs)
	}
	if evs, _ := listEvents(t, cf, "name=certificate.expiring"); len(evs) != 0 {
		t.Fatalf("a reserved event was logged: %+v", evs)
	}
}

// TestSignedSourceFailuresSpendTheLoginBudget: bad deliveries from one
// address are failed logins: once api.auth_failures_per_minute are
// spent, even a good delivery from it is refused 429; another address
// is unaffected.
func TestSignedSourceFailuresSpendTheLoginBudget(t *testing.T) {
	t.Parallel()
	sources := withSources(t)
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		sources(c)
		c.API.AuthFailuresPerMinute = 3
	})
	now := time.Now()
	bad := signedDelivery{source: "nobody", secret: cmdbSecret, id: "m", ts: now, body: `{"Name":"host.down"}`, from: "127.0.0.61"}
	for i := range 3 {
		bad.id = fmt.Sprintf("m%d", i)
		assertError(t, bad.send(t, cf), http.StatusUnauthorized, keyfactor.CodeUnauthorized, "webhook signature")
	}
	good := signedDelivery{source: "cmdb", secret: cmdbSecret, id: "g1", ts: now, body: `{"Name":"host.down"}`, from: "127.0.0.61"}
	resp := good.send(t, cf)
	assertError(t, resp, http.StatusTooManyRequests, keyfactor.CodeRateLimited, "too many failed authentications from this address")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	// The same address's token logins are locked out too: one budget.
	if r := loginFrom(t, cf, credential{from: "127.0.0.61", user: "Bearer", secret: testutil.AdminToken}); r.Status != http.StatusTooManyRequests {
		t.Errorf("a token login from the locked address: %d", r.Status)
	}
	good.from = "127.0.0.62"
	if resp := good.send(t, cf); resp.Status != http.StatusCreated {
		t.Fatalf("a good delivery from another address: %d %s", resp.Status, resp.Body)
	}
}

// TestEventLogListing: GET /Events filters by name (exact, prefix.*),
// certificate, request and time; pages newest first through
// X-Next-Cursor with nothing lost or repeated; and when a sparse filter
// runs out of the read budget (api.max_scan) it answers what it found
// with a cursor, never a short page presented as complete.
func TestEventLogListing(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		withEventUsers(c)
		c.API.MaxScan = 7
	})
	ctx := context.Background()
	st := cf.App.Store
	add := func(ev workflow.Event) string {
		id, _, err := st.AppendEvent(ctx, ev, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	var ids []string
	rare := add(workflow.Event{Name: "rare.thing"})
	for i := range 20 {
		ev := workflow.Event{Name: []string{"a.one", "a.two", "b.x"}[i%3], Source: "test"}
		if i%4 == 0 {
			ev.CertificateID = 7
		}
		if i%5 == 0 {
			ev.RequestID = 9
		}
		ids = append(ids, add(ev))
	}
	time.Sleep(20 * time.Millisecond)
	mid := time.Now().UTC()
	time.Sleep(20 * time.Millisecond)
	late := []string{add(workflow.Event{Name: "c.late"}), add(workflow.Event{Name: "c.late"})}
	total := 1 + len(ids) + len(late)

	all, calls := listEvents(t, cf, "pq.returnLimit=50")
	if len(all) != total {
		t.Fatalf("listed %d events in %d calls, want %d", len(all), calls, total)
	}
	seen := map[string]bool{}
	for i, ev := range all {
		if seen[ev.ID] {
			t.Fatalf("event %s listed twice", ev.ID)
		}
		seen[ev.ID] = true
		if i > 0 && !olderID(ev.ID, all[i-1].ID) {
			t.Fatalf("not newest first: %s after %s", ev.ID, all[i-1].ID)
		}
	}
	if all[0].ID != late[1] || all[len(all)-1].ID != rare {
		t.Errorf("first %s last %s", all[0].ID, all[len(all)-1].ID)
	}
	// One page of 3: a cursor, and the next page continues it.
	resp := cf.Do(t, "GET", "/Events?pq.returnLimit=3", nil)
	var page []workflow.Event
	resp.JSON(t, &page)
	if len(page) != 3 || resp.Header.Get("X-Next-Cursor") != page[2].ID {
		t.Fatalf("a page of 3: %d events, cursor %q", len(page), resp.Header.Get("X-Next-Cursor"))
	}

	count := func(query string, want int, check func(workflow.Event) bool) {
		t.Helper()
		evs, _ := listEvents(t, cf, query)
		if len(evs) != want {
			t.Errorf("%s: %d events, want %d", query, len(evs), want)
		}
		for _, ev := range evs {
			if !check(ev) {
				t.Errorf("%s: listed %+v", query, ev)
			}
		}
	}
	count("name=a.one", 7, func(ev workflow.Event) bool { return ev.Name == "a.one" })
	count("name=a.*", 14, func(ev workflow.Event) bool { return strings.HasPrefix(ev.Name, "a.") })
	count("name=a", 0, func(workflow.Event) bool { return false })
	count("certificateId=7", 5, func(ev workflow.Event) bool { return ev.CertificateID == 7 })
	count("requestId=9&name=a.two", 1, func(ev workflow.Event) bool { return ev.RequestID == 9 && ev.Name == "a.two" })
	count("after="+mid.Format(time.RFC3339Nano), 2, func(ev workflow.Event) bool { return ev.Name == "c.late" })
	count("before="+mid.Format(time.RFC3339Nano), total-2, func(ev workflow.Event) bool { return ev.Name != "c.late" })
	count("PQ.Name=c.late&pq.returnLimit=1", 2, func(ev workflow.Event) bool { return ev.Name == "c.late" })

	// The budget: 7 entries a call, the rare event 23 entries back.
	resp = cf.Do(t, "GET", "/Events?name=rare.thing", nil)
	resp.JSON(t, &page)
	if len(page) != 0 || resp.Header.Get("X-Next-Cursor") == "" {
		t.Fatalf("a first call that ran out of budget: %d events, cursor %q", len(page), resp.Header.Get("X-Next-Cursor"))
	}
	found, calls := listEvents(t, cf, "name=rare.thing")
	if len(found) != 1 || found[0].ID != rare || calls != (total+6)/7 {
		t.Fatalf("following the cursor: %d events in %d calls, want the rare one in %d", len(found), calls, (total+6)/7)
	}
}

// olderID reports whether stream id a is older than b.
func olderID(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	x, _ := strconv.ParseUint(am, 10, 64)
	y, _ := strconv.ParseUint(bm, 10, 64)
	if x != y {
		return x < y
	}
	x, _ = strconv.ParseUint(as, 10, 64)
	y, _ = strconv.ParseUint(bs, 10, 64)
	return x < y
}

// TestEventLogListingRefusesBadParameters: each bad parameter is refused
// 400 naming it.
func TestEventLogListingRefusesBadParameters(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, withEventUsers)
	for query, field := range map[string]string{
		"name=Host":                        "name: ",
		"name=a.*.*":                       "name: ",
		"name=" + strings.Repeat("a", 101): "name: ",
		"certificateId=x":                  "certificateId: ",
		"certificateId=0":                  "certificateId: ",
		"requestId=-1":                     "requestId: ",
		"after=yesterday":                  "after: ",
		"before=2026-13-01T00:00:00Z":      "before: ",
		"after=2026-01-02T00:00:00Z&before=2026-01-01T00:00:00Z": "before: ",
		"cursor=abc":        "cursor: ",
		"cursor=1-2-3":      "cursor: ",
		"pq.returnLimit=0":  "pq.returnLimit: ",
		"pq.pageReturned=2": "pq.pageReturned: ",
		"pq.queryString=" + url.QueryEscape(`Name -eq "x"`): "pq.queryString: ",
	} {
		assertError(t, cf.Do(t, "GET", "/Events?"+query, nil), http.StatusBadRequest, keyfactor.CodeInvalidField, field)
	}
	// A returnLimit over 500 is answered with at most 500, as elsewhere.
	if resp := cf.Do(t, "GET", "/Events?pq.returnLimit=1000", nil); resp.Status != http.StatusOK {
		t.Errorf("returnLimit=1000: %d", resp.Status)
	}
}

// TestGetEventShowsTheRunsItStarted: GET /Events/{id} lists each
// triggered definition with its run's request, instance and outcome, or
// that its match did not hold; an unknown or malformed id is 404 naming
// it.
func TestGetEventShowsTheRunsItStarted(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, withEventUsers)
	ctx := context.Background()
	st := cf.App.Store
	posted := cf.Do(t, "POST", "/Events", map[string]any{"Name": "host.decommissioned", "Id": "h1", "Data": map[string]any{"Host": "x"}}, asUser(publisherToken)...)
	var ev workflow.Event
	posted.JSON(t, &ev)
	rid, err := st.NewID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	run := &store.Request{ID: rid, Trigger: store.EventRunTrigger, Event: &ev, Disposition: store.Failed, Message: "revoke: no certificate names host x", Submitted: now, Updated: now}
	run.Instance.Definition = "revoke-decommissioned"
	run.Instance.Status = workflow.StatusFailed
	if _, created, err := st.CreateEventRun(ctx, &ev, "revoke-decommissioned", run); err != nil || !created {
		t.Fatalf("CreateEventRun: %v %v", created, err)
	}
	if _, _, err := st.CreateEventRun(ctx, &ev, "notify-owner", nil); err != nil {
		t.Fatal(err)
	}

	for _, token := range []string{testutil.AdminToken, readerToken} {
		resp := cf.Do(t, "GET", "/Events/"+ev.ID, nil, asUser(token)...)
		var got struct {
			workflow.Event
			Runs []map[string]any
		}
		resp.JSON(t, &got)
		if resp.Status != http.StatusOK || got.ID != ev.ID || got.Name != ev.Name || got.Source != "cmdb" || len(got.Runs) != 2 {
			t.Fatalf("GET /Events/%s: %d %s", ev.ID, resp.Status, resp.Body)
		}
		notify, revoke := got.Runs[0], got.Runs[1]
		if notify["Definition"] != "notify-owner" || notify["Started"] != false || notify["RequestId"] != nil {
			t.Errorf("the run whose match did not hold: %v", notify)
		}
		if revoke["Definition"] != "revoke-decommissioned" || revoke["Started"] != true || revoke["RequestId"] != float64(rid) ||
			revoke["InstanceId"] != st.InstanceID(rid) || revoke["RequestDisposition"] != "FAILED" || revoke["Status"] != string(workflow.StatusFailed) {
			t.Errorf("the run: %v", revoke)
		}
		if token == testutil.AdminToken && revoke["Message"] != "revoke: no certificate names host x" {
			t.Errorf("the admin sees the run's message: %v", revoke["Message"])
		}
	}
	// An event that started nothing lists no runs (an empty list).
	other := cf.Do(t, "POST", "/Events", map[string]any{"Name": "host.decommissioned", "Id": "h2"}, asUser(publisherToken)...)
	var ev2 workflow.Event
	other.JSON(t, &ev2)
	var detail map[string]json.RawMessage
	cf.Do(t, "GET", "/Events/"+ev2.ID, nil).JSON(t, &detail)
	if string(detail["Runs"]) != "[]" {
		t.Errorf("Runs of an event that started nothing: %s", detail["Runs"])
	}
	for _, id := range []string{"1-0", "99999999999999-0", "abc", "1-2-3", strings.Repeat("9", 30) + "-0"} {
		assertError(t, cf.Do(t, "GET", "/Events/"+id, nil), http.StatusNotFound, keyfactor.CodeNotFound, "event \""+id[:min(len(id), 20)])
	}
}

// TestASourceThatCouldPostCertflowsEventsStopsTheAPI: the API does not
// start with a source allowed certflow's own events, naming the key; a
// worker, which checks no signatures, does not read the sources.
func TestASourceThatCouldPostCertflowsEventsStopsTheAPI(t *testing.T) {
	t.Parallel()
	_, prefix := testutil.Redis(t)
	cfg := testutil.TestConfig(t, prefix)
	cfg.Events.Sources = map[string]config.EventSource{"cmdb": {Secret: cmdbSecret, Names: []string{"host.*", "certificate.*"}}}
	_, err := app.Open(cfg, app.RoleAPI, testutil.AdminToken, slog.New(slog.DiscardHandler), io.Discard)
	if err == nil || !strings.Contains(err.Error(), `events.sources.cmdb.names[1]: "certificate.*" is certflow's own`) {
		t.Fatalf("Open: %v", err)
	}
	cfg.Events.Sources = map[string]config.EventSource{"cmdb": {SecretFile: filepath.Join(t.TempDir(), "absent"), Names: []string{"host.*"}}}
	a, err := app.Open(cfg, app.RoleWorker, testutil.AdminToken, slog.New(slog.DiscardHandler), io.Discard)
	if err != nil {
		t.Fatalf("a worker with a source's secret file absent: %v", err)
	}
	a.Close()
}

const onHostDef = `name: on-host-gone
trigger: event:host.*
match: event.Data.Host endsWith ".example.com"
steps:
  - id: note
    uses: notify
    with:
      log: "host ${{ event.Data.Host }} is gone (${{ event.Name }} from ${{ event.Source }})"
`

const onlyDeploysDef = `name: only-deploys
trigger: event:host.decommissioned
match: event.Data.Kind == "deploy"
steps:
  - id: note
    uses: notify
    with: {log: "never"}
`

// TestAnExternalEventSentTwiceRunsOnce: an event posted twice with one Id,
// and a signed delivery replayed, each start the matching definition once
// through the real dispatcher; GET /Events/{id} shows the run completed
// and the definition whose match did not hold.
func TestAnExternalEventSentTwiceRunsOnce(t *testing.T) {
	t.Parallel()
	dir := shippedDefinitionsWith(t, map[string]string{"on-host-gone.yaml": onHostDef, "only-deploys.yaml": onlyDeploysDef})
	sources := withSources(t)
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		sources(c)
		c.Definitions = dir
	})
	body := map[string]any{"Name": "host.decommissioned", "Id": "chg-42", "Data": map[string]any{"Host": "web9.example.com"}}
	first := cf.Do(t, "POST", "/Events", body, asUser(publisherToken)...)
	second := cf.Do(t, "POST", "/Events", body, asUser(publisherToken)...)
	if first.Status != http.StatusCreated || second.Status != http.StatusOK {
		t.Fatalf("posts: %d, %d", first.Status, second.Status)
	}
	var ev workflow.Event
	first.JSON(t, &ev)
	signed := signedDelivery{source: "cmdb", secret: cmdbSecret, id: "msg_42", ts: time.Now(), body: `{"Name":"host.retired","Data":{"Host":"db9.example.com"}}`}
	sent, replayed := signed.send(t, cf), signed.send(t, cf)
	if sent.Status != http.StatusCreated || replayed.Status != http.StatusOK {
		t.Fatalf("signed: %d, %d", sent.Status, replayed.Status)
	}
	var sev workflow.Event
	sent.JSON(t, &sev)

	type detail struct {
		workflow.Event
		Runs []struct {
			Definition, RequestDisposition, Status, InstanceId string
			Started                                            bool
			RequestId                                          int64
		}
	}
	for _, e := range []workflow.Event{ev, sev} {
		var d detail
		waitFor(t, "the runs of "+e.Name+" to settle", func() bool {
			cf.Do(t, "GET", "/Events/"+e.ID, nil, asUser(readerToken)...).JSON(t, &d)
			for _, r := range d.Runs {
				if r.Started && r.RequestDisposition != string(store.Completed) {
					return false
				}
			}
			return len(d.Runs) == map[string]int{"host.decommissioned": 2, "host.retired": 1}[e.Name]
		})
		for _, r := range d.Runs {
			switch r.Definition {
			case "on-host-gone":
				if !r.Started || r.RequestId == 0 || r.InstanceId != cf.App.Store.InstanceID(r.RequestId) || r.Status != string(workflow.StatusComplete) {
					t.Errorf("%s: the run %+v", e.Name, r)
				}
			case "only-deploys":
				if r.Started {
					t.Errorf("%s: a definition whose match is false ran: %+v", e.Name, r)
				}
			default:
				t.Errorf("%s: an unexpected run %+v", e.Name, r)
			}
		}
	}
	logs := cf.Logs.String()
	for _, want := range []string{"host web9.example.com is gone (host.decommissioned from cmdb)", "host db9.example.com is gone (host.retired from webhook:cmdb)"} {
		if n := strings.Count(logs, want); n != 1 {
			t.Errorf("%q logged %d times, want once", want, n)
		}
	}
	if evs, _ := listEvents(t, cf, "name=host.*"); len(evs) != 2 {
		t.Errorf("the log holds %d host events, want 2", len(evs))
	}
}

// TestAReplayIsRefusedEvenWhenRetentionIsShorterThanTheTolerance: a
// delivery is remembered at least as long as its timestamp keeps it
// acceptable, whatever events.retention: a replay after the retention
// (the event itself gone from the log) still starts nothing.
func TestAReplayIsRefusedEvenWhenRetentionIsShorterThanTheTolerance(t *testing.T) {
	t.Parallel()
	sources := withSources(t)
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		sources(c)
		c.Events.Retention = 500 * time.Millisecond
	})
	d := signedDelivery{source: "cmdb", secret: cmdbSecret, id: "msg_short", ts: time.Now(), body: `{"Name":"host.down"}`}
	first := d.send(t, cf)
	if first.Status != http.StatusCreated {
		t.Fatalf("%d %s", first.Status, first.Body)
	}
	var ev workflow.Event
	first.JSON(t, &ev)
	time.Sleep(time.Second) // past the retention, within the 2m tolerance
	again := d.send(t, cf)
	var ev2 workflow.Event
	again.JSON(t, &ev2)
	if again.Status != http.StatusOK || again.Header.Get("Idempotent-Replayed") != "true" || ev2.ID != ev.ID {
		t.Fatalf("a replay after the retention: %d %s", again.Status, again.Body)
	}
}

// A failed request's reason is internal (step errors name internal hosts
// and addresses): GET /Enrollment/Requests shows it only to approvers and
// administrators. Its request.failed event carried it in Data.Message to
// every reader of the event log.
func TestTheEventLogKeepsFailureReasonsFromReaders(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, withEventUsers)
	ctx := context.Background()
	secret := "issue: dial tcp 10.1.2.3:8443: connection refused"
	id, _, err := cf.App.Store.AppendEvent(ctx, workflow.Event{
		Name: workflow.EventRequestFailed, RequestID: 77, Source: "certflow", Time: time.Now().UTC(),
		Data: map[string]any{"Disposition": "FAILED", "Template": "WebServer", "Requester": "alice", "Message": secret},
	}, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []struct {
		token string
		sees  bool
	}{{readerToken, false}, {testutil.AdminToken, true}} {
		var list []workflow.Event
		cf.Do(t, "GET", "/Events?name=request.failed", nil, asUser(who.token)...).JSON(t, &list)
		var one workflow.Event
		cf.Do(t, "GET", "/Events/"+id, nil, asUser(who.token)...).JSON(t, &one)
		if len(list) != 1 {
			t.Fatalf("GET /Events?name=request.failed: %d events", len(list))
		}
		for where, ev := range map[string]workflow.Event{"GET /Events": list[0], "GET /Events/{id}": one} {
			msg, _ := ev.Data["Message"].(string)
			if (msg == secret) != who.sees || msg == "" || ev.Data["Requester"] != "alice" {
				t.Errorf("%s as %s: Data %v (sees details: %v)", where, who.token, ev.Data, who.sees)
			}
		}
	}
}

// A publisher names an event and gives its data; what certflow decides —
// who posted it, the certificate and request it concerns, its depth in a
// chain of automation, its time — is not theirs to give: a posted
// CertificateId would hand a definition someone else's certificate, a
// Source of "certflow" would pass for certflow's own, a Depth past the
// limit would silence definitions.
func TestAPublisherCannotSetWhatCertflowDecides(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, withEventUsers)
	body := map[string]any{
		"Name": "host.decommissioned", "Id": "smuggle-1", "Data": map[string]any{"host": "a.example.com"},
		"CertificateId": 1, "RequestId": 1, "Depth": 99, "Source": "certflow", "ExternalId": "other",
		"Time": "2001-01-01T00:00:00Z",
	}
	resp := cf.Do(t, "POST", "/Events", body, asUser(publisherToken)...)
	if resp.Status != http.StatusCreated {
		t.Fatalf("post: %d %s", resp.Status, resp.Body)
	}
	evs, _ := listEvents(t, cf, "name=host.decommissioned")
	if len(evs) != 1 {
		t.Fatalf("%d events logged", len(evs))
	}
	ev := evs[0]
	if ev.Source != "cmdb" || ev.CertificateID != 0 || ev.RequestID != 0 || ev.Depth != 0 || ev.ExternalID != "smuggle-1" || time.Since(ev.Time) > time.Minute {
		t.Fatalf("the posted event took fields certflow decides: %+v", ev)
	}
}

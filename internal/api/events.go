package api

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/secretfile"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// The event log's HTTP surface (docs/events.md): other systems post
// events that start workflows, either as a user holding a publisher role
// (POST /Events) or, without a token, as a configured source signing the
// Standard Webhooks way (POST /Events/Sources/{name}); administrators and
// the reader roles list the log (GET /Events) and see what one event
// started (GET /Events/{id}).
//
// An external event is accepted once per (sender, Id): a repeat answers
// 200 with the first event and Idempotent-Replayed: true, and starts
// nothing. For a signed source the delivery's webhook-id is a once-key
// too, so a captured delivery replayed within the tolerance starts
// nothing either.

// EventRequest is the body of POST /Events and POST
// /Events/Sources/{name}.
type EventRequest struct {
	// Name is the event's name (e.g. host.decommissioned); never one of
	// certflow's own namespaces.
	Name string `json:"Name"`
	// Id is the sender's id for the event: a repeat is accepted once.
	// Required for POST /Events; a signed source may leave it out (its
	// webhook-id then stands for it).
	Id string `json:"Id"`
	// Data is the event's fields, for the definitions it triggers.
	Data map[string]any `json:"Data"`
}

// EventDetail is GET /Events/{id}'s answer: the event and the runs it
// started.
type EventDetail struct {
	workflow.Event
	// Runs are the definitions the event triggered, by name.
	Runs []EventRun `json:"Runs"`
}

// EventRun is what one definition did with an event.
type EventRun struct {
	Definition string `json:"Definition"`
	// Started is false when the definition's match did not hold.
	Started bool `json:"Started"`
	// RequestId and InstanceId name the run (the request record of an
	// event-triggered run, and its workflow instance).
	RequestId  int64  `json:"RequestId,omitempty"`
	InstanceId string `json:"InstanceId,omitempty"`
	// Status is the instance's status; RequestDisposition the run's
	// disposition (COMPLETED, FAILED, DENIED, or one still running).
	Status             string `json:"Status,omitempty"`
	RequestDisposition string `json:"RequestDisposition,omitempty"`
	Message            string `json:"Message,omitempty"`
}

// Bounds of an external event.
const (
	maxEventData     = 64 << 10 // bytes of Data, JSON-encoded
	maxEventDepth    = 8        // nesting of objects and arrays, Data itself 1
	maxEventKeys     = 256      // keys of every object in Data
	maxWebhookID     = 256      // bytes of webhook-id
	replayedHeader   = "Idempotent-Replayed"
	nextCursorHeader = "X-Next-Cursor"
)

// eventIDRE is an external event's Id.
var eventIDRE = regexp.MustCompile(`^[A-Za-z0-9._:@/+-]{1,128}$`)

// EventSource is a configured signed source, loaded.
type EventSource struct {
	name      string
	secret    callback.Secret
	names     []string
	tolerance time.Duration
}

// allows reports whether the source may post name.
func (s *EventSource) allows(name string) bool {
	return slices.ContainsFunc(s.names, func(p string) bool { return workflow.TriggerMatches("event:"+p, name) })
}

// LoadEventSources reads the events.sources: their secrets (secret, or
// secret_file read as secret files are) and the names each may post,
// refusing a name that is no event name or is certflow's own.
func LoadEventSources(sources map[string]config.EventSource) (map[string]*EventSource, error) {
	out := map[string]*EventSource{}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(sources)) {
		src, field := sources[name], "events.sources."+name
		text := src.Secret
		if src.SecretFile != "" {
			data, err := secretfile.Read(src.SecretFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.secret_file: %w", field, err))
				continue
			}
			text = string(data)
		}
		secret, err := callback.ParseSecret(text)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			continue
		}
		for i, n := range src.Names {
			p, prefix := strings.CutSuffix(n, ".*")
			if err := workflow.CheckEventName(p); err != nil {
				errs = append(errs, fmt.Errorf("%s.names[%d]: %v", field, i, err))
			} else if workflow.ReservedEvent(p) || (prefix && workflow.ReservedEvent(p+".")) {
				errs = append(errs, fmt.Errorf("%s.names[%d]: %q is certflow's own (request., certificate., approval., callback., schedule. and certflow. events are emitted by certflow only)", field, i, n))
			}
		}
		out[name] = &EventSource{name: name, secret: secret, names: slices.Clone(src.Names), tolerance: src.ToleranceOrDefault()}
	}
	return out, errors.Join(errs...)
}

// checkEventRequest validates a posted event; idRequired for POST /Events.
func checkEventRequest(in EventRequest, idRequired bool) (workflow.Event, error) {
	nameErr := workflow.CheckEventName(in.Name)
	switch {
	case in.Name == "":
		return workflow.Event{}, badField("Name", "required: the event's name, e.g. host.decommissioned")
	case nameErr != nil:
		return workflow.Event{}, badField("Name", "%v", nameErr)
	case workflow.ReservedEvent(in.Name):
		return workflow.Event{}, badField("Name", "%q is certflow's own: events under request., certificate., approval., callback., schedule. and certflow. are emitted by certflow only", in.Name)
	case in.Id == "" && idRequired:
		return workflow.Event{}, badField("Id", "required: your id for this event (1-128 of A-Z a-z 0-9 . _ : @ / + -); a repeated Id is accepted once")
	case in.Id != "" && !eventIDRE.MatchString(in.Id):
		return workflow.Event{}, badField("Id", "want 1-128 of A-Z a-z 0-9 . _ : @ / + -, got %d bytes: %.64q", len(in.Id), in.Id)
	}
	if err := checkEventData(in.Data); err != nil {
		return workflow.Event{}, err
	}
	return workflow.Event{Name: in.Name, ExternalID: in.Id, Data: in.Data, Time: time.Now().UTC()}, nil
}

// checkEventData bounds Data: its encoding, nesting and keys.
func checkEventData(data map[string]any) error {
	if data == nil {
		return nil
	}
	enc, err := json.Marshal(data)
	if err != nil {
		return badField("Data", "not encodable: %v", err)
	}
	if len(enc) > maxEventData {
		return badField("Data", "%d bytes encoded: at most %d (64 KiB)", len(enc), maxEventData)
	}
	keys := 0
	var walk func(v any, depth int) error
	walk = func(v any, depth int) error {
		switch v := v.(type) {
		case map[string]any:
			if depth > maxEventDepth {
				return badField("Data", "nested deeper than %d levels of objects and arrays", maxEventDepth)
			}
			if keys += len(v); keys > maxEventKeys {
				return badField("Data", "more than %d keys in all (nested objects' keys count)", maxEventKeys)
			}
			for _, c := range v {
				if err := walk(c, depth+1); err != nil {
					return err
				}
			}
		case []any:
			if depth > maxEventDepth {
				return badField("Data", "nested deeper than %d levels of objects and arrays", maxEventDepth)
			}
			for _, c := range v {
				if err := walk(c, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(data, 1)
}

// handlePostEvent is POST /Events.
func (s *Server) handlePostEvent(w http.ResponseWriter, r *http.Request) {
	var in EventRequest
	if err := decodeJSON(r, &in); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	ev, err := checkEventRequest(in, true)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	who := identity(r).Name
	ev.Source = who
	s.appendExternal(w, r, ev, []string{"user\x00" + who + "\x00id\x00" + in.Id}, s.cfg.Events.Retention)
}

// appendExternal writes an external event once per once-key and answers
// it: 201 the first time, 200 with the first event and
// Idempotent-Replayed: true on a repeat.
func (s *Server) appendExternal(w http.ResponseWriter, r *http.Request, ev workflow.Event, onceKeys []string, onceFor time.Duration) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	id, dup, err := s.store.AppendEventOnce(ctx, ev, onceKeys, onceFor)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if dup {
		first, err := s.store.Event(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound): // trimmed from the log meanwhile
			first = &workflow.Event{ID: id, Name: ev.Name, Time: ev.Time, Source: ev.Source, ExternalID: ev.ExternalID}
		case err != nil:
			writeError(w, r, s.log, err)
			return
		}
		w.Header().Set(replayedHeader, "true")
		writeJSON(w, http.StatusOK, first)
		return
	}
	ev.ID = id
	w.Header().Set("Location", basePath(r)+"/Events/"+id)
	writeJSON(w, http.StatusCreated, ev)
}

// webhookRefusal is the one answer to a delivery that does not
// authenticate, whatever part failed: an unknown source, a missing or
// malformed header, a signature that does not verify. Only a stale
// timestamp on an otherwise good delivery is told apart.
const webhookRefusal = "webhook signature: missing, malformed or not valid for this source"

// handleSourceEvent is POST /Events/Sources/{name}: an event a configured
// source posts without a token, signed the Standard Webhooks way. A
// failure to authenticate spends the address's failed-login budget as a
// wrong password does.
func (s *Server) handleSourceEvent(w http.ResponseWriter, r *http.Request) {
	addr := throttleAddr(r)
	if ref := s.auth.byAddr.begin(addr, s.auth.now()); ref != nil {
		res := s.auth.refused(ref, "address", addr, "")
		s.tooMany(w, r, res.wait, res.why)
		return
	}
	body, err := io.ReadAll(r.Body) // bounded by api.max_body_bytes
	if err != nil {
		s.auth.byAddr.cancel(addr)
		writeError(w, r, s.log, err)
		return
	}
	src := s.sources[r.PathValue("name")]
	secret := s.dummySource
	if src != nil {
		secret = src.secret
	}
	whID := r.Header.Get("webhook-id")
	ts, tsErr := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
	sigOK := secret.Verify(whID, ts, body, r.Header.Get("webhook-signature")) // computed whatever else failed
	verified := sigOK && src != nil && tsErr == nil && validWebhookID(whID)
	refuse := func(msg string) {
		// The operator learns what failed; the client does not.
		why := "signature does not verify"
		switch {
		case src == nil:
			why = "no such source"
		case !validWebhookID(whID) || tsErr != nil:
			why = "webhook-id or webhook-timestamp missing or malformed"
		case verified:
			why = "timestamp outside the tolerance"
		}
		s.log.Info("signed event refused: "+why, "source", truncate(r.PathValue("name"), 64), "addr", addr)
		if d := s.auth.byAddr.fail(addr, s.auth.now()); d > 0 {
			s.log.Info("login locked out: too many failed authentications from this address", "addr", addr, "for", d)
		}
		w.Header().Set("WWW-Authenticate", `Standard-Webhooks realm="certflow"`)
		writeError(w, r, s.log, newError(http.StatusUnauthorized, keyfactor.CodeUnauthorized, "%s", msg))
	}
	if !verified {
		refuse(webhookRefusal)
		return
	}
	if skew := time.Since(time.Unix(ts, 0)).Abs(); skew > src.tolerance {
		refuse(fmt.Sprintf("webhook timestamp: more than %s from certflow's clock", src.tolerance))
		return
	}
	s.auth.byAddr.release(addr)
	caller := &enroll.Caller{Name: config.EventSourceNamePrefix + src.name}
	r = r.WithContext(context.WithValue(r.Context(), identityKey{}, caller))
	if s.perIdentity != nil {
		if ok, wait := s.perIdentity.allow(caller.Name); !ok {
			s.tooMany(w, r, wait, "rate limit of "+caller.Name+" reached")
			return
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var in EventRequest
	if err := decodeJSON(r, &in); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	ev, err := checkEventRequest(in, false)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if !src.allows(ev.Name) {
		writeError(w, r, s.log, newError(http.StatusForbidden, keyfactor.CodeForbidden, "source %s may not post %s: events.sources.%s.names allows %s", src.name, ev.Name, src.name, strings.Join(src.names, ", ")))
		return
	}
	ev.Source = caller.Name
	ev.ExternalID = cmp.Or(in.Id, whID)
	keys := []string{"source\x00" + src.name + "\x00webhook-id\x00" + whID}
	if in.Id != "" {
		keys = append(keys, "source\x00"+src.name+"\x00id\x00"+in.Id)
	}
	// A delivery is refused once its timestamp is more than tolerance
	// away from now (either way), so its webhook-id is remembered for the
	// whole window it could be accepted in, plus a minute for clocks,
	// whatever events.retention says: a replay is either stale or known.
	s.appendExternal(w, r, ev, keys, max(s.cfg.Events.Retention, 2*src.tolerance+time.Minute))
}

// validWebhookID: 1-256 bytes of printable ASCII without spaces.
func validWebhookID(id string) bool {
	if id == "" || len(id) > maxWebhookID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// newDummySource is the secret an unknown source's delivery is checked
// against, so that it costs what a known one's does.
func newDummySource() callback.Secret {
	raw := make([]byte, 32)
	rand.Read(raw)
	s, _ := callback.ParseSecret(base64.StdEncoding.EncodeToString(raw))
	return s
}

// handleListEvents is GET /Events: newest first, filtered, a page of
// pq.returnLimit; X-Next-Cursor, when present, continues it (cursor=):
// more may follow, also when the page is short because the read budget
// ran out.
func (s *Server) handleListEvents(w http.ResponseWriter, r *http.Request) {
	q, err := s.eventQuery(r)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	page, err := s.store.QueryEvents(ctx, q)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if page.Next != "" {
		w.Header().Set(nextCursorHeader, page.Next)
	}
	out := make([]*workflow.Event, 0, len(page.Events))
	viewer := identity(r).RoleNames()
	for _, ev := range page.Events {
		out = append(out, eventFor(ev, viewer))
	}
	writeJSON(w, http.StatusOK, out)
}

// eventFor is ev as a viewer holding the roles viewer may see it: a
// request.failed event's Message is the failure's reason, internal (step
// errors name internal hosts and addresses), which only approvers and
// administrators see, as keyfactor.DispositionMessage has it.
func eventFor(ev *workflow.Event, viewer []string) *workflow.Event {
	if ev.Name != workflow.EventRequestFailed || keyfactor.SeesDetails(viewer) {
		return ev
	}
	if _, ok := ev.Data["Message"]; !ok {
		return ev
	}
	out := *ev
	out.Data = maps.Clone(ev.Data)
	out.Data["Message"] = fmt.Sprintf("request %d failed; an administrator can see why in certflow's log and the request's timeline", ev.RequestID)
	return &out
}

// eventQuery reads GET /Events's parameters; errors name the parameter.
func (s *Server) eventQuery(r *http.Request) (store.EventQuery, error) {
	p, err := parsePage(r)
	if err != nil {
		return store.EventQuery{}, err
	}
	if len(p.terms) > 0 {
		return store.EventQuery{}, badField("pq.queryString", "not supported by GET /Events: filter with name, certificateId, requestId, after and before")
	}
	if p.number > 1 {
		return store.EventQuery{}, badField("pq.pageReturned", "GET /Events pages by cursor: pass the %s header's value as cursor", nextCursorHeader)
	}
	q := store.EventQuery{Limit: p.limit, Budget: s.cfg.API.MaxScan}
	v := r.URL.Query()
	if q.Name = queryParam(v, "name"); q.Name != "" {
		if err := workflow.CheckEventName(strings.TrimSuffix(q.Name, ".*")); err != nil {
			return q, badField("name", "%v (or prefix.* for every name under prefix)", err)
		}
	}
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"certificateId", &q.CertificateID}, {"requestId", &q.RequestID}} {
		if raw := queryParam(v, f.name); raw != "" {
			n, err := strconv.ParseInt(raw, 10, 64)
			if err != nil || n < 1 {
				return q, badField(f.name, "want a positive integer, got %.64q", raw)
			}
			*f.dst = n
		}
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"after", &q.After}, {"before", &q.Before}} {
		if raw := queryParam(v, f.name); raw != "" {
			t, err := time.Parse(time.RFC3339, raw)
			if err != nil {
				return q, badField(f.name, "want an RFC 3339 time like 2026-12-06T19:00:00Z, got %.64q", raw)
			}
			*f.dst = t
		}
	}
	if !q.After.IsZero() && !q.Before.IsZero() && !q.Before.After(q.After) {
		return q, badField("before", "must be later than after")
	}
	if q.Cursor = queryParam(v, "cursor"); q.Cursor != "" && !store.ValidEventID(q.Cursor) {
		return q, badField("cursor", "want an event id like 1733512800000-0 (a %s header's value), got %.64q", nextCursorHeader, q.Cursor)
	}
	return q, nil
}

// handleGetEvent is GET /Events/{id}: the event and the runs it started.
func (s *Server) handleGetEvent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	ev, err := s.store.Event(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, r, s.log, newError(http.StatusNotFound, keyfactor.CodeNotFound, "event %.64q not found (it may have left the log after events.retention)", id))
		return
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	runs, err := s.store.EventRuns(ctx, ev.ID)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	var ids []int64
	for _, rid := range runs {
		if rid != 0 {
			ids = append(ids, rid)
		}
	}
	reqs, err := s.store.GetMany(ctx, ids)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	byID := map[int64]*store.Request{}
	for _, req := range reqs {
		byID[req.ID] = req
	}
	viewer := identity(r).RoleNames()
	out := EventDetail{Event: *eventFor(ev, viewer), Runs: []EventRun{}}
	for _, def := range slices.Sorted(maps.Keys(runs)) {
		run := EventRun{Definition: def, Started: runs[def] != 0}
		if rid := runs[def]; rid != 0 {
			run.RequestId, run.InstanceId = rid, s.store.InstanceID(rid)
			if req := byID[rid]; req != nil {
				run.Status = keyfactor.InstanceStatus(req)
				run.RequestDisposition = string(req.Disposition)
				run.Message = keyfactor.DispositionMessage(req, viewer)
			} else {
				run.Message = "the run's record is no longer kept (worker.retention)"
			}
		}
		out.Runs = append(out.Runs, run)
	}
	writeJSON(w, http.StatusOK, out)
}

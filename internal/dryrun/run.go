package dryrun

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing/fstest"
	"time"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// Options configure a Harness.
type Options struct {
	// Config has the templates, CAs, metadata fields and SMTP settings
	// definitions are built and checked against.
	Config *config.Config
	// CASubjects are the real CAs' subjects, which policy keeps out of
	// issued certificates (nil: none known).
	CASubjects *ca.Subjects
}

// MaxStepAttempts bounds the step attempts of one run (retries count).
const MaxStepAttempts = 1000

// Harness builds definitions with the real step types wired to
// recording services, and runs test cases on them.
type Harness struct {
	cfg     *config.Config
	opts    Options
	catalog workflow.Catalog
}

// WithTemplates is a harness whose configuration has the named templates
// changed as a test file's `templates:` says (file names it in errors).
func (h *Harness) WithTemplates(file string, changes map[string]*yaml.Node) (*Harness, error) {
	cfg := *h.cfg
	cfg.Templates = slices.Clone(cfg.Templates)
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(changes)) {
		node := changes[name]
		i := slices.IndexFunc(cfg.Templates, func(t config.Template) bool { return strings.EqualFold(t.Name, name) })
		if i < 0 {
			errs = append(errs, fmt.Errorf("%s:%d: templates.%s: the configuration has no such template", file, node.Line, name))
			continue
		}
		var kerrs []error
		checkKeys(file, node, reflect.TypeFor[config.Template](), "templates."+name, &kerrs)
		if len(kerrs) > 0 {
			errs = append(errs, kerrs...)
			continue
		}
		t := cfg.Templates[i]
		if err := node.Decode(&t); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: templates.%s: %s", file, node.Line, name, cleanYAMLError(err)))
			continue
		}
		t.Name = cfg.Templates[i].Name
		cfg.Templates[i] = t
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: templates: %w", file, err)
	}
	o := h.opts
	o.Config = &cfg
	return New(o)
}

// New builds the harness's catalogue: steps.ForLint's step types, with
// the services a dry run gives them (in-memory CAs, recorders).
func New(o Options) (*Harness, error) {
	cfg := o.Config
	var auths []ca.Authority
	for _, c := range cfg.CAs {
		a, err := newMemCA(c.Name)
		if err != nil {
			return nil, err
		}
		auths = append(auths, a)
	}
	types := steps.ForLint(cfg)
	rec := recorder{}
	types.Validate.CASubjects = o.CASubjects
	types.Issue = steps.Issue{Config: cfg, CAs: ca.NewRegistry(auths...), CASubjects: o.CASubjects, DryRun: true}
	types.Notify.Webhooks, types.Notify.Mailer = rec, rec
	types.HTTP.Client = &http.Client{Transport: rec, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	types.Approval.Notify = types.Notify
	h := &Harness{cfg: cfg, opts: o, catalog: workflow.Catalog{}}
	for uses, build := range types.Catalog() {
		h.catalog[uses] = func(spec *workflow.Spec) (workflow.Step, error) {
			st, err := build(spec)
			if err != nil {
				return nil, err
			}
			p := &probe{inner: st, id: spec.ID, uses: spec.Uses, trigger: spec.Trigger, record: !runsForReal(spec.Uses, spec.Trigger)}
			if p.record && spec.With != nil {
				p.with = compileWith(spec.File, spec.With)
			}
			return p, nil
		}
	}
	return h, nil
}

// runsForReal reports whether a step type runs in a dry run (with
// recording services) rather than being recorded as an action.
func runsForReal(uses, trigger string) bool {
	switch uses {
	case workflow.ValidateStep, workflow.SetStep, workflow.NotifyStep, workflow.HTTPStep, workflow.ApprovalStep, workflow.IssueStep:
		return true
	case workflow.MetadataStep:
		// On a request it sets the new certificate's metadata, which the
		// run reports; an event definition's acts on a stored one.
		return !workflow.EventTrigger(trigger)
	}
	return false
}

// Catalog is the harness's catalogue: the real builders, so a definition
// that does not load here does not load in certflow either.
func (h *Harness) Catalog() workflow.Catalog { return h.catalog }

// Load loads a folder of definitions as certflow does (workflow.Load),
// for dry runs.
func (h *Harness) Load(fsys fs.FS) (*workflow.Set, error) {
	set, err := workflow.Load(fsys, h.catalog)
	if err != nil {
		return nil, err
	}
	return prepare(set), nil
}

// Rebuild builds a loaded set again from its definitions' sources, with
// the harness's step types: the same definitions, versions and
// selection, wired to nothing.
func (h *Harness) Rebuild(loaded *workflow.Set) (*workflow.Set, error) {
	fsys := fstest.MapFS{}
	var files []string
	for _, d := range loaded.All() {
		fsys[d.File] = &fstest.MapFile{Data: d.Source}
		files = append(files, d.File)
	}
	set, err := workflow.LoadFiles(fsys, files, h.catalog)
	if err != nil {
		return nil, err
	}
	return prepare(set), nil
}

// prepare drops the backoff between a failing step's attempts: a dry
// run has no reason to wait (the attempts still happen, and count).
func prepare(set *workflow.Set) *workflow.Set {
	for _, d := range set.All() {
		for _, sd := range d.Steps {
			sd.Retry.Backoff = 0
			sd.Timeout = 0
		}
	}
	return set
}

// TestReport is what a dry run found: which definitions the request or
// event starts and why the others do not, and what each run did.
type TestReport struct {
	Case string `json:"case"`
	// Trigger is the request's trigger, or the event's name.
	Trigger     string          `json:"trigger"`
	Definitions []TestCandidate `json:"definitions"`
	Runs        []TestRun       `json:"runs"`
	// Problems are faults of the case (an http step with no stubbed
	// answer, a decision that could not be applied).
	Problems []string `json:"problems,omitempty"`
}

// TestCandidate is one loaded definition and whether it runs.
type TestCandidate struct {
	Name     string `json:"name"`
	File     string `json:"file"`
	Trigger  string `json:"trigger"`
	Priority int    `json:"priority"`
	Match    string `json:"match,omitempty"`
	// Matched is the match's value (null: not evaluated).
	Matched *bool `json:"matched,omitempty"`
	Runs    bool  `json:"runs"`
	// Reason says why it runs or not.
	Reason string `json:"reason"`
}

// TestRun is one definition's run.
type TestRun struct {
	Definition string `json:"definition"`
	Version    string `json:"version,omitempty"`
	// Disposition: ISSUED, DENIED, FAILED, PENDING, REVOKED or COMPLETED.
	Disposition   string              `json:"disposition"`
	Message       string              `json:"message,omitempty"`
	Steps         []TestStep          `json:"steps"`
	Metadata      map[string]string   `json:"metadata,omitempty"`
	Vars          map[string]any      `json:"vars,omitempty"`
	Certificate   *TestIssued         `json:"certificate,omitempty"`
	Notifications []TestNotification  `json:"notifications"`
	HTTP          []TestHTTPCall      `json:"http"`
	Actions       []TestAction        `json:"actions"`
	Decisions     []workflow.Decision `json:"decisions,omitempty"`
	// Refused are the case's decisions the approval refused (the
	// requester deciding their own request, say).
	Refused []string `json:"refused,omitempty"`
}

// TestStep is what became of one step.
type TestStep struct {
	ID   string `json:"id"`
	Uses string `json:"uses"`
	// If is the step's condition and what it gave.
	If       string         `json:"if,omitempty"`
	IfResult *bool          `json:"if_result,omitempty"`
	Outcome  string         `json:"outcome"`
	Message  string         `json:"message,omitempty"`
	Attempts int            `json:"attempts,omitempty"`
	Outputs  map[string]any `json:"outputs,omitempty"`
}

// TestIssued is the certificate the dry run's throwaway CA issued.
type TestIssued struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Authority string    `json:"authority"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// SANs are the names it was issued for: the CSR's and the request's,
	// merged as policy sees them.
	SANs workflow.SANs `json:"sans"`
}

// TestAction is a recorded effect of a step that acts (renew, revoke,
// enroll, metadata on a certificate, …): not done.
type TestAction struct {
	Step string `json:"step"`
	Uses string `json:"uses"`
	// Certificate is the certificate it acts on, as far as the harness
	// can tell: its with.certificate, else the run's certificate.
	Certificate int64 `json:"certificate,omitempty"`
	// With is the step's `with:`, rendered.
	With map[string]any `json:"with,omitempty"`
}

// Run runs a case against set (built by this harness: Load or Rebuild).
func (h *Harness) Run(ctx context.Context, set *workflow.Set, c *TestCase) *TestReport {
	now, _ := parseTime(c.Now)
	if now.IsZero() {
		now = time.Now().UTC().Truncate(time.Second)
	}
	rep := &TestReport{Case: c.Name, Definitions: []TestCandidate{}, Runs: []TestRun{}}
	if c.Request != nil {
		h.runRequest(ctx, set, c, now, rep)
	} else {
		h.runEvent(ctx, set, c, now, rep)
	}
	return rep
}

func (h *Harness) runRequest(ctx context.Context, set *workflow.Set, c *TestCase, now time.Time, rep *TestReport) {
	r := c.Request
	trigger := r.Kind
	if trigger == "" {
		trigger = workflow.TriggerEnrollment
	}
	rep.Trigger = trigger
	fail := func(err error) {
		rep.Problems = append(rep.Problems, err.Error())
	}
	csr, err := throwawayCSR(r.Key, r.Subject, r.SANs)
	if err != nil {
		fail(fmt.Errorf("request: %w", err))
		return
	}
	req := workflow.Request{
		ID: 1, Template: r.Template, CertificateAuthority: r.Authority, Format: "PEM",
		Metadata: r.Metadata, AdditionalEnrollmentFields: r.Fields, Timestamp: now,
	}
	requester := workflow.Requester{Name: r.Requester.Name, Roles: r.Requester.Roles}
	if requester.Name == "" {
		requester.Name = "tester"
	}
	if requester.Roles == nil {
		requester.Roles = []string{config.RoleRequester}
	}
	inst := &workflow.Instance{ID: "dry-run"}
	switch trigger {
	case workflow.TriggerRenewal:
		req.RenewalCertificateId = cmp.Or(r.Renews, 1)
	case workflow.TriggerRevocation:
		ask := TestRevocation{}
		if r.Revoke != nil {
			ask = *r.Revoke
		}
		id := cmp.Or(ask.Certificate, 1)
		req.Revocation = workflow.Revocation{CertificateId: id, Reason: ask.Reason, Comment: ask.Comment, EffectiveDate: now}
		// The certificate to revoke: the request's subject, as the
		// worker reads it from the stored certificate.
		inst.Certificate = &workflow.Certificate{
			ID: id, SerialNumber: randomSerial(), SubjectDN: pki.NameString(csr.RawSubject, csr.Subject),
			IssuerDN: "CN=" + h.defaultCA() + " (dry run)", Authority: h.defaultCA(),
			NotBefore: now.Add(-30 * 24 * time.Hour), NotAfter: now.Add(335 * 24 * time.Hour),
		}
	}
	addCN := false
	if t, ok := h.cfg.Template(r.Template); ok {
		addCN = t.RFCEnforcement && trigger != workflow.TriggerRevocation
	}
	in := workflow.NewInput(trigger, req, csr, requester, addCN)
	env := in.Env(inst, now)
	chosen, selErr := set.Select(trigger, env)
	for _, d := range set.All() {
		cand := candidate(d)
		switch {
		case d.Trigger != trigger:
			cand.Reason = fmt.Sprintf("trigger %s differs", d.Trigger)
		case chosen != nil && d == chosen:
			cand.Matched, cand.Runs = matched(d, env)
			cand.Reason = "selected: the highest-priority definition whose match holds"
			if d.Match == nil {
				cand.Reason = "selected: the highest-priority definition of the trigger; it has no match, so it takes everything"
			}
		default:
			m, err := evalMatch(d, env)
			cand.Matched = m
			switch {
			case err != nil:
				cand.Reason = "match failed: " + err.Error()
			case !*m:
				cand.Reason = "match was false"
			case chosen != nil:
				cand.Reason = fmt.Sprintf("match holds, but %s (priority %d) comes first", chosen.Name, chosen.Priority)
			}
		}
		rep.Definitions = append(rep.Definitions, cand)
	}
	if selErr != nil {
		// The worker fails a request no definition takes.
		rep.Runs = append(rep.Runs, TestRun{Disposition: "FAILED", Message: selErr.Error(),
			Steps: []TestStep{}, Notifications: []TestNotification{}, HTTP: []TestHTTPCall{}, Actions: []TestAction{}})
		return
	}
	in.Request.ID = 1
	rep.Runs = append(rep.Runs, h.execute(ctx, chosen, in, inst, c, now, rep))
}

// throwawayCSR is a CSR for subject and sans, under a throwaway key.
func throwawayCSR(keyText, subject string, sans map[string][]string) (*x509.CertificateRequest, error) {
	spec, err := keySpec(keyText)
	if err != nil {
		return nil, err
	}
	key, err := throwawayKey(spec)
	if err != nil {
		return nil, err
	}
	name, err := subjectName(subject)
	if err != nil {
		return nil, err
	}
	der, err := pki.NewCSR(key, pki.CSRRequest{Subject: name, SANs: sans})
	if err != nil {
		return nil, err
	}
	return pki.ParseCSR(der)
}

func (h *Harness) runEvent(ctx context.Context, set *workflow.Set, c *TestCase, now time.Time, rep *TestReport) {
	e := c.Event
	rep.Trigger = e.Name
	at, _ := parseTime(e.Time)
	if at.IsZero() {
		at = now
	}
	ev := workflow.Event{
		ID: strconv.FormatInt(now.UnixMilli(), 10) + "-0", Name: e.Name, Time: at, RequestID: e.Request,
		Data: e.Data, Source: cmp.Or(e.Source, "certflow"), ExternalID: e.ID,
	}
	ev.Depth = e.Depth
	var cert *workflow.Certificate
	var csr *x509.CertificateRequest
	req := workflow.Request{ID: e.Request, Timestamp: now}
	if tc := e.Certificate; tc != nil {
		nb, _ := parseTime(tc.NotBefore)
		na, _ := parseTime(tc.NotAfter)
		subject := tc.Subject
		if subject != "" {
			n, _ := subjectName(subject)
			subject = n.String()
		}
		cert = &workflow.Certificate{
			ID: tc.ID, SerialNumber: cmp.Or(tc.Serial, randomSerial()), SubjectDN: subject,
			IssuerDN: cmp.Or(tc.Issuer, "CN="+h.defaultCA()+" (dry run)"), Authority: cmp.Or(tc.Authority, h.defaultCA()),
			NotBefore: nb, NotAfter: na, Template: tc.Template, Metadata: tc.Metadata,
			Revoked: tc.Revoked, SupersededBy: tc.SupersededBy,
		}
		ev.CertificateID = tc.ID
		// As the dispatcher reads them: the request the certificate was
		// issued for (its id is the certificate's), and csr and sans
		// from the certificate.
		req.ID = cmp.Or(req.ID, tc.ID)
		req.Template, req.Metadata = tc.Template, tc.Metadata
		if tc.Subject != "" || len(tc.SANs) > 0 {
			var err error
			if csr, err = throwawayCSR("", tc.Subject, tc.SANs); err != nil {
				rep.Problems = append(rep.Problems, fmt.Sprintf("event.certificate: %v", err))
				return
			}
		}
	}
	requester := workflow.Requester{Name: e.Requester.Name, Roles: e.Requester.Roles}
	in := workflow.NewInput(store.EventRunTrigger, req, csr, requester, false)
	in.Event, in.Certificate = ev, cert
	starts := set.ForEvent(&ev)
	n := int64(0)
	for _, d := range set.All() {
		cand := candidate(d)
		if slices.Contains(starts, d) && ev.Depth > workflow.MaxEventDepth {
			cand.Reason = fmt.Sprintf("the event is %d deep in a chain of automation (more than %d): it starts no runs", ev.Depth, workflow.MaxEventDepth)
			rep.Definitions = append(rep.Definitions, cand)
			continue
		}
		if !slices.Contains(starts, d) {
			switch {
			case !workflow.EventTrigger(d.Trigger):
				cand.Reason = fmt.Sprintf("trigger %s: requests start it, events do not", d.Trigger)
			case d.Trigger == workflow.TriggerSchedule:
				cand.Reason = "a schedule definition: only its own schedule.fired slots start it"
			default:
				cand.Reason = fmt.Sprintf("trigger %s does not name event %s", d.Trigger, e.Name)
			}
			rep.Definitions = append(rep.Definitions, cand)
			continue
		}
		inst := &workflow.Instance{ID: "dry-run-" + d.Name}
		m, err := evalMatch(d, in.Env(inst, now))
		cand.Matched = m
		switch {
		case err != nil:
			cand.Reason = "match failed: " + err.Error()
		case !*m:
			cand.Reason = "match was false"
		default:
			cand.Runs, cand.Reason = true, "runs: every event definition whose trigger names the event and whose match holds runs"
			n++
			run := *in // each run its own id; the request it concerns stays
			run.RunID = 1000 + n
			rep.Runs = append(rep.Runs, h.execute(ctx, d, &run, inst, c, now, rep))
		}
		rep.Definitions = append(rep.Definitions, cand)
	}
}

// execute runs def for in, applying the case's approval decisions, and
// reports what it did.
func (h *Harness) execute(ctx context.Context, def *workflow.Definition, in *workflow.Input, inst *workflow.Instance, c *TestCase, now time.Time, rep *TestReport) TestRun {
	s := &session{c: c}
	ctx = context.WithValue(ctx, sessionKey{}, s)
	eng := &workflow.Engine{Log: slog.New(&logRecorder{s: s}), Now: func() time.Time { return now }}
	save := func(context.Context, *workflow.Instance) error { return nil }
	err := eng.Start(inst, def)
	if err == nil {
		err = eng.Run(ctx, def, in, inst, save)
	}
	used := map[string]int{}
	for round := 0; err == nil && inst.Status == workflow.StatusSuspended && round < 50; round++ {
		w := inst.Wait
		ds := c.approvals[w.Step]
		if used[w.Step] >= len(ds) {
			break // no (more) decisions: it stays pending
		}
		d := ds[used[w.Step]]
		used[w.Step]++
		h.decide(ctx, eng, def, in, inst, d, s)
		if inst.Wait != nil && inst.Wait.Verdict != "" {
			err = eng.Run(ctx, def, in, inst, save)
		}
	}
	run := TestRun{Definition: def.Name, Version: def.Version, Steps: []TestStep{}, Metadata: inst.Metadata, Vars: inst.Vars, Decisions: inst.Decisions}
	switch {
	case err != nil:
		run.Disposition, run.Message = "FAILED", err.Error()
	case inst.Status == workflow.StatusSuspended:
		run.Disposition = "PENDING"
		if w := inst.Wait; w != nil {
			run.Message = fmt.Sprintf("waiting at step %s for %d approval(s) by %s", w.Step, w.Quorum, strings.Join(w.Roles, ", "))
		}
	case inst.Status == workflow.StatusRejected:
		run.Disposition, run.Message = "DENIED", inst.Message
	case inst.Status == workflow.StatusFailed:
		run.Disposition, run.Message = "FAILED", inst.Message
	case inst.Status == workflow.StatusComplete && workflow.EventTrigger(def.Trigger):
		run.Disposition = "COMPLETED"
	case inst.Status == workflow.StatusComplete && def.Trigger == workflow.TriggerRevocation:
		if slices.ContainsFunc(inst.History, func(r workflow.StepRecord) bool {
			return r.Uses == workflow.RevokeStep && r.Outcome == workflow.OutcomeDone
		}) {
			run.Disposition, run.Message = "REVOKED", fmt.Sprintf("Certificate %d revoked", in.Request.Revocation.CertificateId)
		} else {
			run.Disposition, run.Message = "FAILED", "the workflow completed without revoking the certificate"
		}
	case inst.Status == workflow.StatusComplete && inst.Certificate != nil:
		run.Disposition, run.Message = "ISSUED", "Issued by "+inst.Certificate.Authority
	case inst.Status == workflow.StatusComplete:
		run.Disposition, run.Message = "FAILED", "the workflow completed without issuing a certificate"
	default:
		run.Disposition, run.Message = "FAILED", fmt.Sprintf("the run ended %q", inst.Status)
	}
	if inst.Certificate != nil && def.Trigger != workflow.TriggerRevocation {
		ct := inst.Certificate
		run.Certificate = &TestIssued{Subject: ct.SubjectDN, Issuer: ct.IssuerDN, Authority: ct.Authority, Serial: ct.SerialNumber,
			NotBefore: ct.NotBefore, NotAfter: ct.NotAfter, SANs: in.SANs}
	}
	byID := map[string]*workflow.StepDef{}
	for _, sd := range def.Steps {
		byID[sd.ID] = sd
	}
	for i, r := range inst.History {
		if r.Outcome == workflow.OutcomeWaiting && i+1 < len(inst.History) && inst.History[i+1].ID == r.ID {
			continue // the wait, then its decision: one step
		}
		st := TestStep{ID: r.ID, Uses: r.Uses, Outcome: string(r.Outcome), Message: r.Message, Attempts: r.Attempts, Outputs: inst.Outputs[r.ID]}
		if sd := byID[r.ID]; sd != nil && sd.If != nil {
			st.If = sd.If.Source
			taken := r.Outcome != workflow.OutcomeSkipped
			st.IfResult = &taken
		}
		run.Steps = append(run.Steps, st)
	}
	s.mu.Lock()
	run.Notifications, run.HTTP, run.Actions, run.Refused = s.notes, s.calls, s.actions, s.refused
	for _, p := range s.problems {
		rep.Problems = append(rep.Problems, def.Name+": "+p)
	}
	s.mu.Unlock()
	if run.Notifications == nil {
		run.Notifications = []TestNotification{}
	}
	if run.HTTP == nil {
		run.HTTP = []TestHTTPCall{}
	}
	if run.Actions == nil {
		run.Actions = []TestAction{}
	}
	return run
}

// decide applies one decision to the wait the instance is suspended at.
func (h *Harness) decide(ctx context.Context, eng *workflow.Engine, def *workflow.Definition, in *workflow.Input, inst *workflow.Instance, d decision, s *session) {
	w := inst.Wait
	step := w.Step
	who := func(name string) workflow.Decider {
		return workflow.Decider{Name: name, Has: func(...string) bool { return true }}
	}
	names := d.By
	switch d.Verdict {
	case "approve":
		if len(names) == 0 {
			for i := 1; i <= max(w.Quorum, 1); i++ {
				names = append(names, "approver-"+strconv.Itoa(i))
			}
		}
		for _, n := range names {
			if _, _, err := inst.Decide(step, step+workflow.SignalSuffix, who(n), in.Requester.Name, true, d.Comment, w.Since); err != nil {
				s.refuse("approval %s: approval by %s refused: %v", step, n, err)
				return
			}
		}
	case "deny":
		if len(names) == 0 {
			names = []string{"approver-1"}
		}
		comment := cmp.Or(d.Comment, "denied in a test")
		if _, _, err := inst.Decide(step, step+workflow.SignalSuffix, who(names[0]), in.Requester.Name, false, comment, w.Since); err != nil {
			s.refuse("approval %s: denial by %s refused: %v", step, names[0], err)
		}
	case "timeout":
		if w.Deadline.IsZero() {
			s.problem("approval %s has no timeout: it waits until people decide", step)
			return
		}
		escalated, _ := inst.TimeOut(step, w.Stage, w.Deadline)
		if escalated {
			eng.Escalated(context.WithValue(ctx, stepKey{}, step), def, in, inst)
		}
	}
}

func candidate(d *workflow.Definition) TestCandidate {
	c := TestCandidate{Name: d.Name, File: d.File, Trigger: d.Trigger, Priority: d.Priority}
	if d.Match != nil {
		c.Match = d.Match.Source
	}
	return c
}

// evalMatch is a definition's match in env (true when it has none).
func evalMatch(d *workflow.Definition, env *workflow.Env) (*bool, error) {
	ok, err := d.Matches(env)
	if err != nil {
		return nil, err
	}
	return &ok, nil
}

func matched(d *workflow.Definition, env *workflow.Env) (*bool, bool) {
	m, err := evalMatch(d, env)
	return m, err == nil && *m
}

func (h *Harness) defaultCA() string {
	if len(h.cfg.CAs) > 0 {
		return h.cfg.CAs[0].Name
	}
	return "dry-run-ca"
}

func randomSerial() string {
	b := make([]byte, 16)
	rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

// probe wraps every step a harness builds: it tells the recording
// services which step is speaking (through the context), bounds the
// attempts of a run, fails an http step the case gave no answer for, and
// records the steps that act instead of running them.
type probe struct {
	inner             workflow.Step
	id, uses, trigger string
	record            bool
	with              *withTemplate
}

var (
	_ workflow.Resumer        = (*probe)(nil)
	_ workflow.Escalator      = (*probe)(nil)
	_ workflow.MetadataSetter = (*probe)(nil)
	_ workflow.Pure           = (*probe)(nil)
)

// errBudget ends a run that attempted too many steps.
var errBudget = errors.New("dry run: too many step attempts")

func (p *probe) Run(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
	s := sessionOf(ctx)
	if s == nil {
		return workflow.Result{}, workflow.Permanent(errNoSession)
	}
	ctx = context.WithValue(ctx, stepKey{}, p.id)
	s.mu.Lock()
	s.steps++
	over := s.steps > MaxStepAttempts
	s.mu.Unlock()
	if over {
		return workflow.Result{}, workflow.Permanent(fmt.Errorf("%w (%d)", errBudget, MaxStepAttempts))
	}
	if p.uses == workflow.HTTPStep {
		if _, ok := s.c.HTTP[p.id]; !ok {
			s.problem("step %s: http step with no stubbed answer (add http: {%s: {status: 200, body: {…}}} to the case)", p.id, p.id)
			return workflow.Result{}, workflow.Permanent(fmt.Errorf("dry run: no stubbed answer for http step %s", p.id))
		}
	}
	if p.record {
		return p.act(run, s)
	}
	return p.inner.Run(ctx, run)
}

// act records what the step would do.
func (p *probe) act(run *workflow.Run, s *session) (workflow.Result, error) {
	a := TestAction{Step: p.id, Uses: p.uses}
	if p.with != nil {
		v, err := p.with.render(run.Env)
		if err != nil {
			return workflow.Result{}, workflow.Permanent(err)
		}
		a.With, _ = v.(map[string]any)
	}
	a.Certificate = certificateOf(a.With["certificate"])
	if a.Certificate == 0 {
		a.Certificate = run.Env.Certificate.ID
	}
	out := maps.Clone(s.c.Outputs[p.id])
	if p.uses == workflow.RevokeStep && p.trigger == workflow.TriggerRevocation {
		ask := run.Env.Request.Revocation
		a.Certificate = ask.CertificateId
		if out == nil {
			out = map[string]any{"certificate": ask.CertificateId, "serial": run.Env.Certificate.SerialNumber, "reason": ask.Reason, "effective_date": ask.EffectiveDate}
		}
	}
	s.mu.Lock()
	s.actions = append(s.actions, a)
	s.mu.Unlock()
	return workflow.Result{Outputs: out}, nil
}

func certificateOf(v any) int64 {
	switch v := v.(type) {
	case int:
		return int64(v)
	case int64:
		return v
	case float64:
		return int64(v)
	case string:
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		return n
	}
	return 0
}

func (p *probe) Pure() bool { return !p.record && workflow.IsPure(p.inner) }

func (p *probe) Resume(ctx context.Context, run *workflow.Run, w *workflow.Wait) workflow.Result {
	if r, ok := p.inner.(workflow.Resumer); ok {
		return r.Resume(context.WithValue(ctx, stepKey{}, p.id), run, w)
	}
	return workflow.Result{}
}

func (p *probe) Escalated(ctx context.Context, run *workflow.Run, w *workflow.Wait) {
	if e, ok := p.inner.(workflow.Escalator); ok {
		e.Escalated(context.WithValue(ctx, stepKey{}, p.id), run, w)
	}
}

func (p *probe) MetadataNames() []string {
	if m, ok := p.inner.(workflow.MetadataSetter); ok {
		return m.MetadataNames()
	}
	return nil
}

// withTemplate is a step's `with:` with every string compiled as a
// template, to show what a recorded step was given.
type withTemplate struct {
	tmpl *workflow.Template
	list []*withTemplate
	keys []string
	vals []*withTemplate
	lit  any
}

func compileWith(file string, n *yaml.Node) *withTemplate {
	switch n.Kind {
	case yaml.MappingNode:
		w := &withTemplate{keys: []string{}}
		for i := 0; i+1 < len(n.Content); i += 2 {
			w.keys = append(w.keys, n.Content[i].Value)
			w.vals = append(w.vals, compileWith(file, n.Content[i+1]))
		}
		return w
	case yaml.SequenceNode:
		w := &withTemplate{list: []*withTemplate{}}
		for _, c := range n.Content {
			w.list = append(w.list, compileWith(file, c))
		}
		return w
	case yaml.ScalarNode:
		if n.Tag == "!!str" {
			if t, err := workflow.CompileTemplate(n.Value, workflow.PosOf(file, n)); err == nil {
				return &withTemplate{tmpl: t}
			}
		}
		var v any
		n.Decode(&v)
		return &withTemplate{lit: v}
	case yaml.AliasNode:
		return compileWith(file, n.Alias)
	}
	return &withTemplate{}
}

func (w *withTemplate) render(env *workflow.Env) (any, error) {
	switch {
	case w.tmpl != nil:
		return w.tmpl.Value(env)
	case w.keys != nil:
		out := make(map[string]any, len(w.keys))
		for i, k := range w.keys {
			v, err := w.vals[i].render(env)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = v
		}
		return out, nil
	case w.list != nil:
		out := make([]any, 0, len(w.list))
		for _, x := range w.list {
			v, err := x.render(env)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return w.lit, nil
}

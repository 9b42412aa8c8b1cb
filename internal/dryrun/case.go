// Package dryrun tests workflow definitions before they run: it runs the
// real engine (workflow.Engine) on the real definitions, built by the
// real step types, for a request or an event a test case describes, with
// no Redis, CA or network. Pure steps (validate, set, metadata) run as
// they would; the issue step signs with a throwaway in-memory CA; notify
// and an approval's notify: record every e-mail, webhook and log line
// they would send, rendered; an http step gets the answer the case
// stubbed; an approval gets the decisions the case gives; every other
// step type (those that act on certificates: revoke, renew, enroll, …)
// is recorded as an action with its `with:` rendered, never done.
//
// Test cases live beside the definitions, in <name>.test.yaml files
// (workflow.Load never reads those as definitions); `certflow test` runs
// them, and POST /Workflow/Definitions/Test runs one case against the
// loaded set. See docs/testing-definitions.md.
package dryrun

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/certflow/certflow/workflow"
	"io"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// TestCase is one test case: a request or an event, the stubbed answers
// and decisions the run gets, and what is expected of it. Its keys are the
// same in YAML test files and in the JSON body of POST
// /Workflow/Definitions/Test.
type TestCase struct {
	Name string `yaml:"name" json:"name"`
	// Now is the time expressions see as `now` (RFC 3339; default: the
	// time the case runs).
	Now string `yaml:"now" json:"now,omitempty"`
	// Request or Event: what the workflow runs for (exactly one).
	Request *TestRequest `yaml:"request" json:"request,omitempty"`
	Event   *TestEvent   `yaml:"event" json:"event,omitempty"`
	// HTTP are the answers of http steps, by step id.
	HTTP map[string]HTTPStub `yaml:"http" json:"http,omitempty"`
	// Approvals are the decisions on approval steps, by step id: approve,
	// deny or timeout; a list of them (stage by stage: [timeout, approve]
	// after an escalation); or {decision, by, comment}.
	Approvals map[string]any `yaml:"approvals" json:"approvals,omitempty"`
	// Outputs are the outputs of recorded steps (the actions, which are
	// not run), by step id, for later steps to read.
	Outputs map[string]map[string]any `yaml:"outputs" json:"outputs,omitempty"`
	Expect  *Expectation              `yaml:"expect" json:"expect,omitempty"`

	// node is the case in its test file, for the lines failures name.
	node *yaml.Node
	file string
	// approvals is Approvals, normalised.
	approvals map[string][]decision
}

// TestRequest is an enrollment, renewal or revocation request as the
// workflow sees it. The harness makes a throwaway key and CSR for the
// subject and SANs.
type TestRequest struct {
	// Kind is enrollment (default), renewal or revocation.
	Kind      string `yaml:"kind" json:"kind,omitempty"`
	Template  string `yaml:"template" json:"template,omitempty"`
	Authority string `yaml:"authority" json:"authority,omitempty"`
	// Subject is the CSR's subject (CN=www.example.com,O=Example); for a
	// revocation, the revoked certificate's.
	Subject string `yaml:"subject" json:"subject,omitempty"`
	// Key is the CSR's key: "ECC P-256" (default), "ECC P-384", "RSA 2048",
	// "RSA 3072", "RSA 4096", "Ed25519".
	Key string `yaml:"key" json:"key,omitempty"`
	// SANs go into the CSR: {dns: [...], ip4: [...], rfc822: [...], uri: [...]}.
	SANs      map[string][]string `yaml:"sans" json:"sans,omitempty"`
	Requester TestRequester       `yaml:"requester" json:"requester,omitzero"`
	Metadata  map[string]string   `yaml:"metadata" json:"metadata,omitempty"`
	// Fields are the request's AdditionalEnrollmentFields.
	Fields map[string]any `yaml:"fields" json:"fields,omitempty"`
	// Renews is the certificate a renewal renews (default 1).
	Renews int64 `yaml:"renews" json:"renews,omitempty"`
	// Revoke is what a revocation asks.
	Revoke *TestRevocation `yaml:"revoke" json:"revoke,omitempty"`
}

// TestRequester is who submits the request.
type TestRequester struct {
	Name  string   `yaml:"name" json:"name,omitempty"`
	Roles []string `yaml:"roles" json:"roles,omitempty"`
}

// TestRevocation is a revocation request's ask.
type TestRevocation struct {
	Certificate int64  `yaml:"certificate" json:"certificate,omitempty"`
	Reason      int    `yaml:"reason" json:"reason,omitempty"`
	Comment     string `yaml:"comment" json:"comment,omitempty"`
}

// TestEvent is an event as event-triggered definitions see it.
type TestEvent struct {
	Name   string         `yaml:"name" json:"name"`
	Time   string         `yaml:"time" json:"time,omitempty"`
	Data   map[string]any `yaml:"data" json:"data,omitempty"`
	Source string         `yaml:"source" json:"source,omitempty"`
	ID     string         `yaml:"id" json:"id,omitempty"`
	// Request is the request the event concerns (default: the
	// certificate's, whose id is its request's).
	Request int64 `yaml:"request" json:"request,omitempty"`
	// Requester is who asked for that request.
	Requester   TestRequester    `yaml:"requester" json:"requester,omitzero"`
	Certificate *TestCertificate `yaml:"certificate" json:"certificate,omitempty"`
	// Depth counts the event-triggered runs that led to the event.
	Depth int `yaml:"depth" json:"depth,omitempty"`
}

// TestCertificate is the certificate an event concerns.
type TestCertificate struct {
	ID      int64  `yaml:"id" json:"id"`
	Subject string `yaml:"subject" json:"subject,omitempty"`
	// SANs are its names (dns, ip4, ip6, uri, rfc822): with the subject,
	// what csr and sans show.
	SANs         map[string][]string `yaml:"sans" json:"sans,omitempty"`
	Serial       string              `yaml:"serial" json:"serial,omitempty"`
	Issuer       string              `yaml:"issuer" json:"issuer,omitempty"`
	Authority    string              `yaml:"authority" json:"authority,omitempty"`
	NotBefore    string              `yaml:"not_before" json:"not_before,omitempty"`
	NotAfter     string              `yaml:"not_after" json:"not_after,omitempty"`
	Template     string              `yaml:"template" json:"template,omitempty"`
	Metadata     map[string]string   `yaml:"metadata" json:"metadata,omitempty"`
	Revoked      bool                `yaml:"revoked" json:"revoked,omitempty"`
	SupersededBy int64               `yaml:"superseded_by" json:"superseded_by,omitempty"`
}

// HTTPStub is the answer an http step gets.
type HTTPStub struct {
	// Status defaults to 200.
	Status int `yaml:"status" json:"status,omitempty"`
	// Body is sent as JSON, or as text when it is a string.
	Body    any               `yaml:"body" json:"body,omitempty"`
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
	// Error, when set, is a failure to connect instead of an answer.
	Error string `yaml:"error" json:"error,omitempty"`
}

// Expectation is what a test case expects. Every key is optional; lists
// are exact (in order) unless said otherwise.
type Expectation struct {
	// Definition is the definition a request selects (or, for an event,
	// the one definition that runs); "none" when none does.
	Definition string `yaml:"definition" json:"definition,omitempty"`
	// Definitions are the event definitions that run, in any order.
	Definitions []string `yaml:"definitions" json:"definitions,omitempty"`
	// Disposition: ISSUED, DENIED, FAILED, PENDING, REVOKED, COMPLETED.
	Disposition string `yaml:"disposition" json:"disposition,omitempty"`
	// MessageContains is part of the disposition's message.
	MessageContains string `yaml:"message_contains" json:"message_contains,omitempty"`
	// Steps are the steps taken (not skipped), Skipped those skipped.
	Steps   []string `yaml:"steps" json:"steps,omitempty"`
	Skipped []string `yaml:"skipped" json:"skipped,omitempty"`
	// Metadata: each field set to this value ("" : not set).
	Metadata map[string]string `yaml:"metadata" json:"metadata,omitempty"`
	// Vars: each variable with this value.
	Vars map[string]any `yaml:"vars" json:"vars,omitempty"`
	// Notifications are the e-mails and webhooks sent (log lines are
	// not: see Logs).
	Notifications []ExpectedNotification `yaml:"notifications" json:"notifications,omitempty"`
	// Logs: each a part of a line the notify steps log, in order (other
	// lines may come between).
	Logs []string `yaml:"logs" json:"logs,omitempty"`
	// Actions are the recorded effects of steps that act on certificates.
	Actions []ExpectedAction `yaml:"actions" json:"actions,omitempty"`
	// Refused: each a part of a decision the approval refused (in order);
	// without it, a refused decision fails the case.
	Refused []string `yaml:"refused" json:"refused,omitempty"`
	// Runs are expectations per definition, when an event starts several.
	Runs map[string]*Expectation `yaml:"runs" json:"runs,omitempty"`
}

// ExpectedNotification is one e-mail or webhook. Only what is given is
// compared.
type ExpectedNotification struct {
	Channel         string   `yaml:"channel" json:"channel"` // email or webhook
	Step            string   `yaml:"step" json:"step,omitempty"`
	Event           string   `yaml:"event" json:"event,omitempty"`
	To              []string `yaml:"to" json:"to,omitempty"` // e-mail recipients, in any order
	Subject         string   `yaml:"subject" json:"subject,omitempty"`
	SubjectContains string   `yaml:"subject_contains" json:"subject_contains,omitempty"`
	BodyContains    string   `yaml:"body_contains" json:"body_contains,omitempty"`
	URL             string   `yaml:"url" json:"url,omitempty"`
}

// ExpectedAction is one recorded action. Only what is given is compared;
// With compares the named keys of the rendered `with:`.
type ExpectedAction struct {
	Uses        string         `yaml:"uses" json:"uses"`
	Step        string         `yaml:"step" json:"step,omitempty"`
	Certificate int64          `yaml:"certificate" json:"certificate,omitempty"`
	With        map[string]any `yaml:"with" json:"with,omitempty"`
}

// testFile is a test file's shape.
type testFile struct {
	// Templates change templates of the configuration for this file's
	// cases, by name: {WebServer: {allow_wildcards: true}}.
	Templates map[string]yaml.Node `yaml:"templates"`
	Cases     []yaml.Node          `yaml:"cases"`
}

// TestFile is a parsed test file.
type TestFile struct {
	Path  string
	Cases []*TestCase
	// Templates are its template changes (see testFile), with the line
	// of each.
	Templates map[string]*yaml.Node
}

// Limits on what a case may ask.
const (
	maxCases     = 1000
	maxCaseBytes = 1 << 20
	maxDeciders  = 20
)

// ParseFile reads a test file's cases. Every problem found is returned,
// each as "file:line: ...".
func ParseFile(file string, data []byte) (*TestFile, error) {
	if len(data) > 16*maxCaseBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", file, 16*maxCaseBytes)
	}
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&root); errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s:1: empty test file (want cases: [...])", file)
	} else if err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	doc := root.Content[0]
	var errs []error
	checkKeys(file, doc, reflect.TypeFor[testFile](), "", &errs)
	var tf testFile
	if err := doc.Decode(&tf); err != nil {
		return nil, fmt.Errorf("%s:%d: %v", file, doc.Line, cleanYAMLError(err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(tf.Cases) == 0 {
		return nil, fmt.Errorf("%s:%d: cases: at least one case is required", file, doc.Line)
	}
	if len(tf.Cases) > maxCases {
		return nil, fmt.Errorf("%s:%d: cases: more than %d", file, doc.Line, maxCases)
	}
	var cases []*TestCase
	names := map[string]int{}
	for i := range tf.Cases {
		c, err := parseCase(file, &tf.Cases[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if line, dup := names[c.Name]; dup {
			errs = append(errs, fmt.Errorf("%s:%d: case %q: the name is also used at line %d", file, c.node.Line, c.Name, line))
		}
		names[c.Name] = c.node.Line
		cases = append(cases, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	tf2 := &TestFile{Path: file, Cases: cases}
	if len(tf.Templates) > 0 {
		tf2.Templates = map[string]*yaml.Node{}
		for name := range tf.Templates {
			tf2.Templates[name] = workflow.MapValue(workflow.MapValue(doc, "templates"), name)
		}
	}
	return tf2, nil
}

// ParseCase reads one case (YAML or JSON: JSON is YAML) with the keys of
// a test file's cases: the body of POST /Workflow/Definitions/Test.
func ParseCase(data []byte) (*TestCase, error) {
	if len(data) > maxCaseBytes {
		return nil, fmt.Errorf("the case is larger than %d bytes", maxCaseBytes)
	}
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&root); errors.Is(err, io.EOF) {
		return nil, errors.New("a test case is required: {\"name\": …, \"request\": {…}} or {\"event\": {…}}")
	} else if err != nil {
		return nil, fmt.Errorf("not JSON: %v", cleanYAMLError(err))
	}
	c, err := parseCase("", root.Content[0])
	if err != nil {
		return nil, err
	}
	return c, nil
}

// parseCase decodes and checks one case node.
func parseCase(file string, node *yaml.Node) (*TestCase, error) {
	at := func(n *yaml.Node) string {
		if file == "" {
			return ""
		}
		return fmt.Sprintf("%s:%d: ", file, n.Line)
	}
	if node.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%swant a case: a mapping with name, request or event, and expect", at(node))
	}
	var errs []error
	checkKeys(file, node, reflect.TypeFor[TestCase](), "", &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c := &TestCase{node: node, file: file}
	if err := node.Decode(c); err != nil {
		return nil, fmt.Errorf("%s%v", at(node), cleanYAMLError(err))
	}
	bad := func(path string, format string, args ...any) {
		n := nodeAt(node, path)
		errs = append(errs, fmt.Errorf("%s%s: %s", at(n), path, fmt.Sprintf(format, args...)))
	}
	name := c.Name
	if strings.TrimSpace(name) == "" {
		bad("name", "required")
	}
	switch {
	case c.Request == nil && c.Event == nil:
		bad("request", "a case needs a request or an event")
	case c.Request != nil && c.Event != nil:
		bad("event", "a case has a request or an event, not both")
	case c.Request != nil:
		r := c.Request
		switch r.Kind {
		case "", "enrollment", "renewal", "revocation":
		default:
			bad("request.kind", "%q (want enrollment, renewal or revocation)", r.Kind)
		}
		if r.Revoke != nil && r.Kind != "revocation" {
			bad("request.revoke", "only a revocation (kind: revocation) revokes")
		}
		if r.Renews != 0 && r.Kind != "renewal" {
			bad("request.renews", "only a renewal (kind: renewal) renews")
		}
		if _, err := keySpec(r.Key); err != nil {
			bad("request.key", "%v", err)
		}
		if _, err := subjectName(r.Subject); err != nil {
			bad("request.subject", "%v", err)
		}
		for kind := range r.SANs {
			if !slices.Contains([]string{"dns", "ip4", "ip6", "uri", "rfc822"}, kind) {
				bad("request.sans", "unknown kind %q (want dns, ip4, ip6, uri or rfc822)", kind)
			}
		}
	case c.Event != nil:
		if c.Event.Name == "" {
			bad("event.name", "required")
		}
		if _, err := parseTime(c.Event.Time); err != nil {
			bad("event.time", "%v", err)
		}
		if ct := c.Event.Certificate; ct != nil {
			if _, err := parseTime(ct.NotBefore); err != nil {
				bad("event.certificate.not_before", "%v", err)
			}
			if _, err := parseTime(ct.NotAfter); err != nil {
				bad("event.certificate.not_after", "%v", err)
			}
			if ct.Subject != "" {
				if _, err := subjectName(ct.Subject); err != nil {
					bad("event.certificate.subject", "%v", err)
				}
			}
			for kind := range ct.SANs {
				if !slices.Contains([]string{"dns", "ip4", "ip6", "uri", "rfc822"}, kind) {
					bad("event.certificate.sans", "unknown kind %q (want dns, ip4, ip6, uri or rfc822)", kind)
				}
			}
		}
	}
	if _, err := parseTime(c.Now); err != nil {
		bad("now", "%v", err)
	}
	for id, stub := range c.HTTP {
		if stub.Status != 0 && (stub.Status < 100 || stub.Status > 599) {
			bad("http."+id+".status", "%d is not an HTTP status", stub.Status)
		}
	}
	c.approvals = map[string][]decision{}
	for id, v := range c.Approvals {
		ds, err := decisions(v)
		if err != nil {
			bad("approvals."+id, "%v", err)
			continue
		}
		c.approvals[id] = ds
	}
	if e := c.Expect; e != nil {
		e.check("expect", bad, true)
	}
	if len(errs) > 0 {
		if name != "" {
			for i, err := range errs {
				errs[i] = fmt.Errorf("%w (case %q)", err, name)
			}
		}
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// check reports what is wrong with an expectation (path is its key path).
func (e *Expectation) check(path string, bad func(string, string, ...any), top bool) {
	switch e.Disposition {
	case "", "ISSUED", "DENIED", "FAILED", "PENDING", "REVOKED", "COMPLETED":
	default:
		bad(path+".disposition", "%q (want ISSUED, DENIED, FAILED, PENDING, REVOKED or COMPLETED)", e.Disposition)
	}
	for i, n := range e.Notifications {
		if n.Channel != "email" && n.Channel != "webhook" {
			bad(fmt.Sprintf("%s.notifications[%d].channel", path, i), "%q (want email or webhook; log lines are expected with logs:)", n.Channel)
		}
	}
	for i, a := range e.Actions {
		if a.Uses == "" {
			bad(fmt.Sprintf("%s.actions[%d].uses", path, i), "required: the step type (renew, revoke, …)")
		}
	}
	if !top && (len(e.Runs) > 0 || len(e.Definitions) > 0) {
		bad(path, "runs and definitions belong to the case's expect, not to one run's")
	}
	for name, r := range e.Runs {
		if r != nil {
			r.check(path+".runs."+name, bad, false)
		}
	}
}

// decision is one stage's decision on an approval.
type decision struct {
	Verdict string // approve, deny, timeout
	By      []string
	Comment string
}

func decisions(v any) ([]decision, error) {
	one := func(v any) (decision, error) {
		switch v := v.(type) {
		case string:
			if v != "approve" && v != "deny" && v != "timeout" {
				return decision{}, fmt.Errorf("%q (want approve, deny or timeout)", v)
			}
			return decision{Verdict: v}, nil
		case map[string]any:
			var d decision
			for k, x := range v {
				switch k {
				case "decision":
					s, _ := x.(string)
					if s != "approve" && s != "deny" && s != "timeout" {
						return decision{}, fmt.Errorf("decision: %v (want approve, deny or timeout)", x)
					}
					d.Verdict = s
				case "by":
					switch x := x.(type) {
					case string:
						d.By = []string{x}
					case []any:
						for _, e := range x {
							s, ok := e.(string)
							if !ok || s == "" {
								return decision{}, fmt.Errorf("by: want names")
							}
							d.By = append(d.By, s)
						}
					default:
						return decision{}, fmt.Errorf("by: want a name or a list of names")
					}
				case "comment":
					d.Comment = fmt.Sprint(x)
				default:
					return decision{}, fmt.Errorf("unknown key %q (known: by, comment, decision)", k)
				}
			}
			if d.Verdict == "" {
				return decision{}, fmt.Errorf("decision: required (approve, deny or timeout)")
			}
			if len(d.By) > maxDeciders {
				return decision{}, fmt.Errorf("by: at most %d names (an approval's quorum is at most 20)", maxDeciders)
			}
			return d, nil
		}
		return decision{}, fmt.Errorf("want approve, deny, timeout, a list of them, or {decision, by, comment}")
	}
	if list, ok := v.([]any); ok {
		if len(list) == 0 || len(list) > 10 {
			return nil, fmt.Errorf("want 1 to 10 decisions")
		}
		var out []decision
		for _, x := range list {
			d, err := one(x)
			if err != nil {
				return nil, err
			}
			out = append(out, d)
		}
		return out, nil
	}
	d, err := one(v)
	if err != nil {
		return nil, err
	}
	return []decision{d}, nil
}

// Line returns the line of the case, or of key path (dot-separated, with
// [i] for list items) under it when that exists, in its test file.
func (c *TestCase) Line(path string) int {
	if c.node == nil {
		return 0
	}
	return nodeAt(c.node, path).Line
}

// File is the test file the case came from ("" for one posted).
func (c *TestCase) File() string { return c.file }

// nodeAt returns the deepest node of path that exists under n: for a
// mapping key, the key's node (where a reader looks for it), for a list
// item the item's.
func nodeAt(n *yaml.Node, path string) *yaml.Node {
	cur, shown := n, n
	for _, part := range splitPath(path) {
		var next, at *yaml.Node
		if idx, ok := part.index(); ok {
			if cur.Kind == yaml.SequenceNode && idx < len(cur.Content) {
				next, at = cur.Content[idx], cur.Content[idx]
			}
		} else if cur.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(cur.Content); i += 2 {
				if cur.Content[i].Value == part.key {
					next, at = cur.Content[i+1], cur.Content[i]
				}
			}
		}
		if next == nil {
			return shown
		}
		cur, shown = next, at
	}
	return shown
}

type pathPart struct {
	key string
	idx int
}

func (p pathPart) index() (int, bool) { return p.idx, p.key == "" }

func splitPath(path string) []pathPart {
	var out []pathPart
	for _, seg := range strings.Split(path, ".") {
		if seg == "" {
			continue
		}
		key, rest, _ := strings.Cut(seg, "[")
		if key != "" {
			out = append(out, pathPart{key: key})
		}
		for rest != "" {
			var i int
			num, after, _ := strings.Cut(rest, "]")
			fmt.Sscan(num, &i)
			out = append(out, pathPart{idx: i})
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return out
}

// checkKeys reports every mapping key t's struct types do not declare
// (yaml.v3 decodes Nodes without KnownFields).
func checkKeys(file string, n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == reflect.TypeFor[yaml.Node]():
		// checked where it is decoded
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				names := make([]string, 0, len(fields))
				for n := range fields {
					names = append(names, n)
				}
				slices.Sort(names)
				where := ""
				if file != "" {
					where = fmt.Sprintf("%s:%d: ", file, k.Line)
				}
				*errs = append(*errs, fmt.Errorf("%s%sunknown key %q (known: %s)", where, dotted(path), k.Value, strings.Join(names, ", ")))
				continue
			}
			checkKeys(file, n.Content[i+1], ft, join(path, k.Value), errs)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			checkKeys(file, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkKeys(file, n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), errs)
		}
	}
}

// yamlFields are a struct's YAML keys, inline structs' included.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct:
			for k, v := range yamlFields(f.Type) {
				fields[k] = v
			}
		case f.IsExported() && name != "" && name != "-":
			fields[name] = f.Type
		}
	}
	return fields
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func dotted(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

// cleanYAMLError drops yaml.v3's "unmarshal errors" preamble.
func cleanYAMLError(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  ")
	return strings.ReplaceAll(s, "\n  ", "; ")
}

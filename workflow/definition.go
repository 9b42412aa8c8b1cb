package workflow

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"
)

// Definition is a loaded, compiled workflow definition.
type Definition struct {
	Name        string
	Description string
	Trigger     string
	// Schedule is a schedule definition's cron schedule (Trigger
	// "schedule"), ScheduleSpec its text; nil for every other trigger.
	Schedule     cron.Schedule
	ScheduleSpec string
	Match        *Program // nil: matches everything
	Priority     int
	Steps        []*StepDef
	// Version is the content hash of the file the definition came from; a
	// running instance is pinned to it.
	Version string
	File    string
	// Source is the file's content, kept so that the exact version an
	// instance is pinned to can be stored and parsed again later.
	Source []byte
	// Visible is what of an instance's vars and step outputs its
	// requester may see (top-level `visible:`); nothing by default.
	Visible Visibility
	// SetsMetadata are the metadata names its steps set (MetadataSetter):
	// names a requester may not supply.
	SetsMetadata []string
}

// StepDef is one compiled step of a definition.
type StepDef struct {
	ID   string
	Uses string
	If   *Program // nil: always runs
	Step Step
	Pos  Pos
	// Retry is how often a failing step is tried before OnError decides.
	Retry Retry
	// Timeout bounds one attempt; 0 leaves only the task's own timeout.
	Timeout time.Duration
	OnError OnError
}

// Retry is a step's retry policy: Attempts tries in all, waiting Backoff,
// then twice that, and so on, between them.
type Retry struct {
	Attempts int
	Backoff  time.Duration
}

// OnError says what a step's failure does to the request once its
// attempts are spent.
type OnError string

const (
	// OnErrorFail ends the request FAILED (the default).
	OnErrorFail OnError = "fail"
	// OnErrorDeny ends the request DENIED with the error as the message.
	OnErrorDeny OnError = "deny"
	// OnErrorContinue records the failure and goes on with the next step.
	OnErrorContinue OnError = "continue"
)

// Step policy defaults and bounds.
const (
	DefaultAttempts = 1
	DefaultBackoff  = time.Second
	maxAttempts     = 20
)

// Triggers a definition may name, besides "event:<name>".
const (
	TriggerEnrollment = "enrollment"
	TriggerRenewal    = "renewal"
	TriggerRevocation = "revocation" // POST /Certificates/Revoke
)

var triggers = []string{TriggerEnrollment, TriggerRenewal, TriggerRevocation}

// LoadError is a problem in a definition, placed at file:line:column.
type LoadError struct {
	Pos  Pos
	Step string
	Msg  string
}

func (e *LoadError) Error() string {
	if e.Step != "" {
		return fmt.Sprintf("%s: step %q: %s", e.Pos, e.Step, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Pos, e.Msg)
}

// tagStep names step id in every *LoadError inside err (joined or
// wrapped) that names no step yet.
func tagStep(err error, id string) error {
	if id == "" {
		return err
	}
	var walk func(error)
	walk = func(e error) {
		if le, ok := e.(*LoadError); ok && le.Step == "" {
			le.Step = id
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			if x := u.Unwrap(); x != nil {
				walk(x)
			}
		}
	}
	walk(err)
	return err
}

// raw shapes of the YAML, decoded strictly.
type rawDefinition struct {
	Name        string    `yaml:"name"`
	Description string    `yaml:"description"`
	Trigger     string    `yaml:"trigger"`
	Schedule    string    `yaml:"schedule"`
	Match       yaml.Node `yaml:"match"`
	Priority    int       `yaml:"priority"`
	// Visible lists the vars and step outputs requesters may see.
	Visible yaml.Node `yaml:"visible"`
	// Steps are decoded one by one so that their errors name the step.
	Steps []yaml.Node `yaml:"steps"`
}

type rawStep struct {
	ID      string    `yaml:"id"`
	Uses    string    `yaml:"uses"`
	If      yaml.Node `yaml:"if"`
	With    yaml.Node `yaml:"with"`
	Retry   *rawRetry `yaml:"retry"`
	Timeout string    `yaml:"timeout"`
	OnError string    `yaml:"on_error"`
}

type rawRetry struct {
	Attempts int    `yaml:"attempts"`
	Backoff  string `yaml:"backoff"`
}

// policy reads a step's retry, timeout and on_error.
func (rs *rawStep) policy(spec *Spec, node *yaml.Node, sd *StepDef) []error {
	var errs []error
	sd.Retry = Retry{Attempts: DefaultAttempts, Backoff: DefaultBackoff}
	sd.OnError = OnErrorFail
	if r := rs.Retry; r != nil {
		at := MapValue(node, "retry")
		if r.Attempts < 1 || r.Attempts > maxAttempts {
			errs = append(errs, spec.Errorf(at, "retry.attempts: %d is outside 1–%d", r.Attempts, maxAttempts))
		}
		sd.Retry.Attempts = r.Attempts
		if r.Backoff != "" {
			d, err := time.ParseDuration(r.Backoff)
			if err != nil || d < 0 {
				errs = append(errs, spec.Errorf(at, "retry.backoff: %q is not a duration (e.g. 2s)", r.Backoff))
			}
			sd.Retry.Backoff = d
		}
	}
	if rs.Timeout != "" {
		d, err := time.ParseDuration(rs.Timeout)
		if err != nil || d <= 0 {
			errs = append(errs, spec.Errorf(MapValue(node, "timeout"), "timeout: %q is not a positive duration (e.g. 30s)", rs.Timeout))
		}
		sd.Timeout = d
	}
	switch OnError(rs.OnError) {
	case "":
	case OnErrorFail, OnErrorDeny, OnErrorContinue:
		sd.OnError = OnError(rs.OnError)
	default:
		errs = append(errs, spec.Errorf(MapValue(node, "on_error"), "on_error: %q (want fail, deny or continue)", rs.OnError))
	}
	return errs
}

var stepIDRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// CAStep returns the `uses:` name of trigger's CA step ("" when the
// trigger has none): IssueStep for enrollment and renewal, RevokeStep for
// revocation. A definition of those triggers has exactly one CA step,
// unconditioned; one that leaves it out gets it appended (Keyfactor's
// workflow builder has the same rule).
func CAStep(trigger string) string {
	switch trigger {
	case TriggerEnrollment, TriggerRenewal:
		return IssueStep
	case TriggerRevocation:
		return RevokeStep
	}
	return ""
}

// Parse compiles one definition file. All problems found are returned
// together, each a *LoadError.
func Parse(file string, data []byte, catalog Catalog) (*Definition, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); errors.Is(err, io.EOF) {
		return nil, &LoadError{Pos: Pos{File: file, Line: 1, Column: 1}, Msg: "empty definition"}
	} else if err != nil {
		return nil, &LoadError{Pos: Pos{File: file, Line: yamlErrLine(err), Column: 1}, Msg: err.Error()}
	}
	var raw rawDefinition
	var errs []error
	// Unknown top-level keys are reported together with everything else
	// that is wrong, not alone.
	checkKeys(file, root.Content[0], reflect.TypeOf(raw), &errs)
	if err := decodeStrict(file, root.Content[0], &raw, false); err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	sum := sha256.Sum256(data)
	def := &Definition{
		Name: raw.Name, Description: raw.Description, Trigger: raw.Trigger,
		Priority: raw.Priority, Version: hex.EncodeToString(sum[:6]), File: file, Source: data,
	}
	doc := root.Content[0]
	at := func(key string) Pos {
		if n := MapValue(doc, key); n != nil {
			return PosOf(file, n)
		}
		return PosOf(file, doc)
	}
	if raw.Name == "" {
		errs = append(errs, &LoadError{Pos: at("name"), Msg: "name is required"})
	}
	switch {
	case slices.Contains(triggers, raw.Trigger):
	case raw.Trigger == TriggerSchedule:
		if raw.Schedule == "" {
			errs = append(errs, &LoadError{Pos: at("trigger"), Msg: `trigger schedule: a cron expression is required (schedule: "0 6 * * *")`})
		} else if sched, err := ParseSchedule(raw.Schedule); err != nil {
			errs = append(errs, &LoadError{Pos: at("schedule"), Msg: err.Error()})
		} else {
			def.Schedule, def.ScheduleSpec = sched, raw.Schedule
		}
	case strings.HasPrefix(raw.Trigger, eventTriggerPrefix):
		if err := checkEventTrigger(raw.Trigger); err != nil {
			errs = append(errs, &LoadError{Pos: at("trigger"), Msg: err.Error()})
		}
	default:
		errs = append(errs, &LoadError{Pos: at("trigger"), Msg: fmt.Sprintf("trigger %q: want enrollment, renewal, revocation, schedule, event:<name> or event:<prefix>.*", raw.Trigger)})
	}
	if raw.Schedule != "" && raw.Trigger != TriggerSchedule {
		errs = append(errs, &LoadError{Pos: at("schedule"), Msg: "schedule: only a definition with trigger: schedule has one"})
	}
	if raw.Match.Kind != 0 {
		if p, err := CompileBool(raw.Match.Value, PosOf(file, &raw.Match)); err != nil {
			errs = append(errs, err)
		} else if len(p.StepRefs()) > 0 {
			errs = append(errs, &LoadError{Pos: PosOf(file, &raw.Match), Msg: "match: runs before any step, so it cannot read steps." + p.StepRefs()[0]})
		} else {
			def.Match = p
		}
	}
	if len(raw.Steps) == 0 {
		errs = append(errs, &LoadError{Pos: at("steps"), Msg: "steps: at least one step is required"})
	}
	seen := map[string]bool{}
	caStep := CAStep(raw.Trigger)
	issues := 0
	for i := range raw.Steps {
		node := &raw.Steps[i]
		var rs rawStep
		id := ""
		if n := MapValue(node, "id"); n != nil {
			id = n.Value
		}
		// An unknown key is reported and the step checked on without
		// it, so that one run of lint shows every error in the step.
		var keyErrs []error
		checkKeys(file, node, reflect.TypeOf(&rs), &keyErrs)
		for _, err := range keyErrs {
			errs = append(errs, tagStep(err, id))
		}
		if err := decodeStrict(file, node, &rs, false); err != nil {
			errs = append(errs, tagStep(err, id))
			continue
		}
		spec := &Spec{ID: rs.ID, Uses: rs.Uses, Trigger: raw.Trigger, File: file, Pos: PosOf(file, node)}
		if rs.With.Kind != 0 {
			spec.With = &rs.With
		}
		switch {
		case !stepIDRE.MatchString(rs.ID):
			errs = append(errs, spec.Errorf(MapValue(node, "id"), "id %q: want lower-case letters, digits, - and _, starting with a letter", rs.ID))
		case seen[rs.ID]:
			errs = append(errs, spec.Errorf(MapValue(node, "id"), "duplicate step id"))
		}
		seen[rs.ID] = true
		sd := &StepDef{ID: rs.ID, Uses: rs.Uses, Pos: spec.Pos}
		errs = append(errs, rs.policy(spec, node, sd)...)
		if caStep != "" && rs.Uses == caStep {
			issues++
			if rs.If.Kind != 0 {
				errs = append(errs, spec.Errorf(&rs.If, "the %s step takes no condition", caStep))
			}
		}
		if rs.If.Kind != 0 {
			p, err := spec.Bool(rs.If.Value, &rs.If)
			if err != nil {
				errs = append(errs, err)
			}
			sd.If = p
		}
		build, ok := catalog[rs.Uses]
		if !ok {
			errs = append(errs, spec.Errorf(MapValue(node, "uses"), "unknown step type %q (known: %s)", rs.Uses, strings.Join(catalogNames(catalog), ", ")))
			continue
		}
		step, err := build(spec)
		if err != nil {
			errs = append(errs, spec.wrap(err))
			continue
		}
		for _, ref := range spec.refs {
			switch {
			case ref.id == rs.ID:
				errs = append(errs, &LoadError{Pos: ref.pos, Step: rs.ID, Msg: fmt.Sprintf("steps.%s: a step cannot read its own outputs", ref.id)})
			case !slices.ContainsFunc(def.Steps, func(d *StepDef) bool { return d.ID == ref.id }):
				what := "no step has that id"
				if slices.ContainsFunc(raw.Steps[i+1:], func(n yaml.Node) bool { v := MapValue(&n, "id"); return v != nil && v.Value == ref.id }) {
					what = "that step runs later"
				}
				errs = append(errs, &LoadError{Pos: ref.pos, Step: rs.ID, Msg: fmt.Sprintf("steps.%s: %s; only earlier steps' outputs can be read", ref.id, what)})
			}
		}
		sd.Step = step
		def.Steps = append(def.Steps, sd)
	}
	if caStep != "" {
		switch {
		case issues > 1:
			errs = append(errs, &LoadError{Pos: at("steps"), Msg: fmt.Sprintf("a %s workflow has exactly one %s step", raw.Trigger, caStep)})
		case issues == 0 && len(errs) == 0:
			build, ok := catalog[caStep]
			if !ok {
				errs = append(errs, &LoadError{Pos: at("steps"), Msg: fmt.Sprintf("no %s step type is registered", caStep)})
				break
			}
			spec := &Spec{ID: caStep, Uses: caStep, Trigger: raw.Trigger, File: file, Pos: at("steps")}
			if seen[caStep] {
				errs = append(errs, spec.Errorf(nil, "step id %q is taken; the appended CA step needs it", caStep))
				break
			}
			step, err := build(spec)
			if err != nil {
				errs = append(errs, err)
				break
			}
			def.Steps = append(def.Steps, &StepDef{ID: caStep, Uses: caStep, Step: step, Pos: spec.Pos,
				Retry: Retry{Attempts: DefaultAttempts, Backoff: DefaultBackoff}, OnError: OnErrorFail})
		}
	}
	vis, verrs := parseVisible(file, &raw.Visible, func(id string) bool {
		return seen[id] || slices.ContainsFunc(def.Steps, func(d *StepDef) bool { return d.ID == id })
	})
	errs = append(errs, verrs...)
	def.Visible, def.SetsMetadata = vis, metadataNames(def.Steps)
	if len(errs) > 0 {
		return nil, errors.Join(inFileOrder(errs)...)
	}
	return def, nil
}

// inFileOrder flattens joined errors and orders them by position, so
// that lint lists a file's problems top to bottom.
func inFileOrder(errs []error) []error {
	var flat []error
	var walk func(error)
	walk = func(e error) {
		if u, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range u.Unwrap() {
				walk(x)
			}
			return
		}
		flat = append(flat, e)
	}
	for _, e := range errs {
		walk(e)
	}
	pos := func(e error) Pos {
		var le *LoadError
		if errors.As(e, &le) {
			return le.Pos
		}
		return Pos{}
	}
	slices.SortStableFunc(flat, func(a, b error) int {
		pa, pb := pos(a), pos(b)
		return cmp.Or(cmp.Compare(pa.Line, pb.Line), cmp.Compare(pa.Column, pb.Column))
	})
	return flat
}

// Set is a consistent set of loaded definitions.
type Set struct {
	defs      []*Definition // by trigger, then priority descending
	byVersion map[string]*Definition
	// reserved is MetadataNames, computed once.
	reserved []string
}

// Load parses every *.yaml / *.yml file in fsys's root but test files
// (IsTestFile). Two definitions that tie on trigger and priority are an
// error: selection must never depend on file order.
func Load(fsys fs.FS, catalog Catalog) (*Set, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read definitions: %w", err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && IsDefinitionFile(e.Name()) {
			files = append(files, e.Name())
		}
	}
	return LoadFiles(fsys, files, catalog)
}

// IsTestFile reports whether name is a definition test file
// (<name>.test.yaml or .test.yml, see `certflow test`): kept beside the
// definitions, never loaded as one.
func IsTestFile(name string) bool {
	return strings.HasSuffix(name, ".test.yaml") || strings.HasSuffix(name, ".test.yml")
}

// IsDefinitionFile reports whether Load reads name as a definition: a
// *.yaml or *.yml file that is not a test file.
func IsDefinitionFile(name string) bool {
	return (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) && !IsTestFile(name)
}

// LoadFiles parses the named files of fsys as one set.
func LoadFiles(fsys fs.FS, files []string, catalog Catalog) (*Set, error) {
	var errs []error
	set := &Set{byVersion: map[string]*Definition{}}
	for _, name := range files {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("read definition %s: %w", name, err))
			continue
		}
		def, err := Parse(path.Clean(name), data, catalog)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		set.defs = append(set.defs, def)
	}
	slices.SortStableFunc(set.defs, func(a, b *Definition) int {
		if a.Trigger != b.Trigger {
			return strings.Compare(a.Trigger, b.Trigger)
		}
		return b.Priority - a.Priority
	})
	names := map[string]*Definition{}
	for i, d := range set.defs {
		if prev, ok := names[d.Name]; ok {
			errs = append(errs, &LoadError{Pos: Pos{File: d.File, Line: 1, Column: 1}, Msg: fmt.Sprintf("definition name %q is also used by %s", d.Name, prev.File)})
		}
		names[d.Name] = d
		// Every event definition that matches runs (fan-out): only the
		// request triggers select one, and must never tie.
		if i > 0 && !EventTrigger(d.Trigger) && set.defs[i-1].Trigger == d.Trigger && set.defs[i-1].Priority == d.Priority {
			errs = append(errs, &LoadError{Pos: Pos{File: d.File, Line: 1, Column: 1}, Msg: fmt.Sprintf("definitions %q (%s) and %q tie on trigger %s and priority %d", d.Name, set.defs[i-1].File, set.defs[i-1].Name, d.Trigger, d.Priority)})
		}
		set.byVersion[d.Name+"@"+d.Version] = d
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	set.reserved = reservedMetadata(set.defs)
	return set, nil
}

// ErrNoDefinition is returned by Select when no definition matches.
var ErrNoDefinition = errors.New("no workflow definition matches")

// Select returns the highest-priority definition for trigger whose match
// holds in env.
func (s *Set) Select(trigger string, env *Env) (*Definition, error) {
	for _, d := range s.defs {
		if d.Trigger != trigger {
			continue
		}
		ok, err := d.Matches(env)
		if err != nil {
			return nil, fmt.Errorf("definition %s: match: %w", d.Name, err)
		}
		if ok {
			return d, nil
		}
	}
	return nil, fmt.Errorf("%w trigger %s", ErrNoDefinition, trigger)
}

// Matches reports whether d's match holds in env (a definition without
// one matches everything).
func (d *Definition) Matches(env *Env) (bool, error) {
	if d.Match == nil {
		return true, nil
	}
	return d.Match.Bool(env)
}

// ForEvent returns the definitions an event starts, whatever their match
// says (the dispatcher evaluates it): those whose trigger names the
// event (TriggerMatches), or, for a schedule's slot, the schedule
// definition it names. They come by trigger, then priority.
func (s *Set) ForEvent(ev *Event) []*Definition {
	var out []*Definition
	for _, d := range s.defs {
		switch {
		case ev.Name == EventSchedule:
			if d.Trigger == TriggerSchedule && d.Name == ev.Data["Definition"] {
				out = append(out, d)
			}
		case TriggerMatches(d.Trigger, ev.Name):
			out = append(out, d)
		}
	}
	return out
}

// Named returns the loaded definition called name.
func (s *Set) Named(name string) (*Definition, bool) {
	for _, d := range s.defs {
		if d.Name == name {
			return d, true
		}
	}
	return nil, false
}

// Scheduled returns the schedule definitions.
func (s *Set) Scheduled() []*Definition {
	var out []*Definition
	for _, d := range s.defs {
		if d.Trigger == TriggerSchedule {
			out = append(out, d)
		}
	}
	return out
}

// Get returns the definition with the given name and version.
func (s *Set) Get(name, version string) (*Definition, bool) {
	d, ok := s.byVersion[name+"@"+version]
	return d, ok
}

// All returns the definitions, by trigger then priority.
func (s *Set) All() []*Definition { return slices.Clone(s.defs) }

func catalogNames(c Catalog) []string {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// MapValue returns the value node of key in a mapping node, or nil.
func MapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func yamlErrLine(err error) int {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		var n int
		fmt.Sscan(m[1], &n)
		return n
	}
	return 1
}

// decodeStrict decodes node into v like yaml.v3 does, then reports every
// mapping key v's struct types do not declare, at its position. (yaml.v3's
// KnownFields applies to a Decoder only, not to Node.Decode.)
func decodeStrict(file string, node *yaml.Node, v any, checkUnknown bool) error {
	if checkUnknown {
		var errs []error
		checkKeys(file, node, reflect.TypeOf(v), &errs)
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	if err := node.Decode(v); err != nil {
		pos := PosOf(file, node)
		if strings.Contains(err.Error(), "line ") {
			pos.Line, pos.Column = yamlErrLine(err), 1
		}
		return &LoadError{Pos: pos, Msg: strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  ")}
	}
	return nil
}

var nodeType = reflect.TypeOf(yaml.Node{})

func checkKeys(file string, n *yaml.Node, t reflect.Type, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nodeType {
		return
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if name != "-" {
				fields[name] = f.Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, &LoadError{Pos: PosOf(file, k), Msg: fmt.Sprintf("unknown key %q (known: %s)", k.Value, strings.Join(sortedKeys(fields), ", "))})
				continue
			}
			checkKeys(file, n.Content[i+1], ft, errs)
		}
	case (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && n.Kind == yaml.SequenceNode:
		for _, c := range n.Content {
			checkKeys(file, c, t.Elem(), errs)
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			checkKeys(file, n.Content[i], t.Elem(), errs)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

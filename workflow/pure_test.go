package workflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/certflow/certflow/workflow"
)

// pureStep is a fake pure step type: it records its id and returns
// `with.outputs`.
type pureStep struct {
	f       *fakes
	outputs map[string]any
}

func (p pureStep) Run(_ context.Context, run *workflow.Run) (workflow.Result, error) {
	p.f.record(run.StepID)
	return workflow.Result{Outputs: p.outputs}, nil
}

func (pureStep) Pure() bool { return true }

// crashStep records its id; on its first run it kills the "process" (every
// later checkpoint fails, as a dead worker writes nothing) and fails.
type crashStep struct {
	f    *fakes
	dead *bool
	runs *int
}

func (c crashStep) Run(_ context.Context, run *workflow.Run) (workflow.Result, error) {
	c.f.record(run.StepID)
	if *c.runs++; *c.runs == 1 {
		*c.dead = true
		return workflow.Result{}, workflow.RetryLater(errors.New("killed"))
	}
	return workflow.Result{}, nil
}

func pureCatalog(f *fakes, dead *bool, runs *int) workflow.Catalog {
	cat := f.Catalog()
	cat["pure"] = func(spec *workflow.Spec) (workflow.Step, error) {
		var w struct {
			Outputs map[string]any `yaml:"outputs"`
		}
		if err := spec.DecodeWith(&w); err != nil {
			return nil, err
		}
		return pureStep{f: f, outputs: w.Outputs}, nil
	}
	cat["crash"] = func(*workflow.Spec) (workflow.Step, error) { return crashStep{f: f, dead: dead, runs: runs}, nil }
	return cat
}

func TestEngineFoldsPureStepsIntoTheNextCheckpoint(t *testing.T) {
	t.Parallel()
	f := &fakes{}
	def, err := workflow.Parse("def.yaml", yamlLines(
		`name: a`, `trigger: event:x`, `steps:`,
		`  - {id: a, uses: pure, with: {outputs: {x: 1}}}`,
		`  - {id: b, uses: record}`,
		`  - {id: c, uses: pure}`,
		`  - {id: d, uses: record, if: steps.a.x == 1}`,
		`  - {id: e, uses: pure}`,
	), pureCatalog(f, new(bool), new(int)))
	if err != nil {
		t.Fatal(err)
	}
	if !workflow.IsPure(def.Steps[0].Step) || workflow.IsPure(def.Steps[1].Step) {
		t.Fatal("IsPure does not see the steps' declarations")
	}
	e := newEngine()
	inst := started(t, e, def)
	cp := &checkpoints{}
	if err := e.Run(context.Background(), def, newInput(t, "www.example.com"), inst, cp.Save); err != nil {
		t.Fatal(err)
	}
	if got := f.Ran(); !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Errorf("ran %v", got)
	}
	want := []snapshot{
		{Next: 2, Status: workflow.StatusRunning, History: 2},  // b, carrying a
		{Next: 4, Status: workflow.StatusRunning, History: 4},  // d, carrying c
		{Next: 5, Status: workflow.StatusComplete, History: 5}, // the last step is always saved
	}
	if got := cp.Saved(); !reflect.DeepEqual(got, want) {
		t.Errorf("checkpoints = %v\nwant %v", got, want)
	}
}

// A worker that dies inside a side-effecting step after pure ones resumes
// after the last checkpoint: the pure steps since run again (harmless), no
// finished side-effecting step does, and the history holds each step once.
func TestEngineCrashAfterPureStepsResumesAfterTheLastCheckpoint(t *testing.T) {
	t.Parallel()
	f := &fakes{}
	dead, runs := false, 0
	def, err := workflow.Parse("def.yaml", yamlLines(
		`name: a`, `trigger: event:x`, `steps:`,
		`  - {id: a, uses: record}`,
		`  - {id: p, uses: pure, with: {outputs: {tier: gold}}}`,
		`  - {id: side, uses: crash}`,
		`  - {id: z, uses: record}`,
	), pureCatalog(f, &dead, &runs))
	if err != nil {
		t.Fatal(err)
	}
	var stored []byte // what reached the store
	save := func(_ context.Context, inst *workflow.Instance) error {
		if dead {
			return errors.New("the worker is dead")
		}
		stored, _ = json.Marshal(inst)
		return nil
	}
	e := newEngine()
	in := newInput(t, "www.example.com")
	if err := e.Run(context.Background(), def, in, started(t, e, def), save); err == nil {
		t.Fatal("the crashed run reported success")
	}
	// The next worker starts from the store.
	dead = false
	var inst workflow.Instance
	if err := json.Unmarshal(stored, &inst); err != nil {
		t.Fatal(err)
	}
	if inst.Next != 1 {
		t.Fatalf("stored Next = %d, want 1 (after a; p was pure, side never finished)", inst.Next)
	}
	if err := e.Run(context.Background(), def, in, &inst, save); err != nil {
		t.Fatal(err)
	}
	if got, want := f.Ran(), []string{"a", "p", "side", "p", "side", "z"}; !slices.Equal(got, want) {
		t.Errorf("ran %v, want %v", got, want)
	}
	if got, want := outcomes(&inst), "a=Completed p=Completed side=Completed z=Completed"; got != want {
		t.Errorf("history %s, want %s", got, want)
	}
	if inst.Status != workflow.StatusComplete || inst.Outputs["p"]["tier"] != "gold" {
		t.Errorf("status %s, outputs %v", inst.Status, inst.Outputs)
	}
}

// recordingStep is a fake step whose effect waits for the next checkpoint
// (Result.Record): it returns its id as the record.
type recordingStep struct{ f *fakes }

func (r recordingStep) Run(_ context.Context, run *workflow.Run) (workflow.Result, error) {
	r.f.record(run.StepID)
	return workflow.Result{Record: "effect of " + run.StepID}, nil
}

// recordingCatalog is pureCatalog with "recording" (recordingStep).
func recordingCatalog(f *fakes) workflow.Catalog {
	cat := pureCatalog(f, new(bool), new(int))
	cat["recording"] = func(*workflow.Spec) (workflow.Step, error) { return recordingStep{f: f}, nil }
	return cat
}

// A step that hands back the record of its effect shares the next
// checkpoint, which carries the record (and only that one does); a step
// with effects never starts while a record is unsaved, but a pure one may.
func TestEngineWritesAStepsRecordWithTheNextCheckpoint(t *testing.T) {
	t.Parallel()
	f := &fakes{}
	def, err := workflow.Parse("def.yaml", yamlLines(
		`name: a`, `trigger: event:x`, `steps:`,
		`  - {id: issue, uses: recording}`,
		`  - {id: tag, uses: pure}`,
		`  - {id: skipped, uses: record, if: "false"}`,
		`  - {id: tell, uses: record}`,
		`  - {id: again, uses: recording}`,
		`  - {id: last, uses: pure}`,
	), recordingCatalog(f))
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine()
	type saved struct {
		Next    int
		Unsaved []any
	}
	var got []saved
	save := func(_ context.Context, inst *workflow.Instance) error {
		got = append(got, saved{inst.Next, slices.Clone(inst.Unsaved)})
		inst.Unsaved = nil // as a Checkpoint does once it wrote them
		return nil
	}
	if err := e.Run(context.Background(), def, newInput(t, "www.example.com"), started(t, e, def), save); err != nil {
		t.Fatal(err)
	}
	want := []saved{
		{3, []any{"effect of issue"}}, // before tell, carrying issue, tag and the skipped step
		{4, nil},                      // after tell
		{6, []any{"effect of again"}}, // the last: again and last
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("checkpoints = %+v\nwant %+v", got, want)
	}
	if ran := f.Ran(); !slices.Equal(ran, []string{"issue", "tag", "tell", "again", "last"}) {
		t.Errorf("ran %v", ran)
	}
}

// A checkpoint that cannot be written before a step with effects stops
// the run there: the step does not start.
func TestEngineDoesNotStartAStepWhenTheRecordBeforeItCannotBeSaved(t *testing.T) {
	t.Parallel()
	f := &fakes{}
	def, err := workflow.Parse("def.yaml", yamlLines(
		`name: a`, `trigger: event:x`, `steps:`,
		`  - {id: issue, uses: recording}`,
		`  - {id: tell, uses: record}`,
	), recordingCatalog(f))
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine()
	cp := &checkpoints{err: errors.New("redis is down")}
	if err := e.Run(context.Background(), def, newInput(t, "www.example.com"), started(t, e, def), cp.Save); err == nil {
		t.Fatal("the run succeeded with its checkpoint failing")
	}
	if ran := f.Ran(); !slices.Equal(ran, []string{"issue"}) {
		t.Errorf("ran %v; tell started with the issue's record unsaved", ran)
	}
}

// tracing returns an engine and a checkpoint that appends "save at
// <next>" to *events for each checkpoint, which writes Unsaved.
func tracing(events *[]string) (*workflow.Engine, workflow.Checkpoint) {
	return newEngine(), func(_ context.Context, inst *workflow.Instance) error {
		*events = append(*events, fmt.Sprintf("save at %d", inst.Next))
		inst.Unsaved = nil
		return nil
	}
}

// tracedStep is a fake step with effects that appends "run <id>" to
// *events, and "… with the claim" when its run has claim; with record,
// its effect waits for the next checkpoint (Result.Record).
type tracedStep struct {
	events *[]string
	claim  workflow.IssueClaim
	record bool
}

func (s tracedStep) Run(_ context.Context, run *workflow.Run) (workflow.Result, error) {
	ev := "run " + run.StepID
	if s.claim != nil && run.IssueClaim == s.claim {
		ev += " with the claim"
	}
	*s.events = append(*s.events, ev)
	if s.record {
		return workflow.Result{Record: "effect of " + run.StepID}, nil
	}
	return workflow.Result{}, nil
}

// traceClaim is an IssueClaim that appends "release" to *events each time
// it is given up.
type traceClaim struct{ events *[]string }

func (c *traceClaim) ReleaseUnused(context.Context) { *c.events = append(*c.events, "release") }

// The run's issue claim reaches the issue step, and the engine gives it up
// before each other step with effects that runs, after the checkpoint due
// before it, and never for a pure or skipped step.
func TestEngineKeepsTheIssueClaimForTheIssueStep(t *testing.T) {
	t.Parallel()
	var events []string
	claim := &traceClaim{events: &events}
	cat := recordingCatalog(&fakes{})
	cat[workflow.IssueStep] = func(*workflow.Spec) (workflow.Step, error) {
		return tracedStep{events: &events, claim: claim, record: true}, nil
	}
	cat["traced"] = func(*workflow.Spec) (workflow.Step, error) { return tracedStep{events: &events, claim: claim}, nil }
	def, err := workflow.Parse("def.yaml", yamlLines(
		`name: a`, `trigger: event:x`, `steps:`,
		`  - {id: p, uses: pure}`,
		`  - {id: issue, uses: issue}`,
		`  - {id: skipped, uses: traced, if: "false"}`,
		`  - {id: tell, uses: traced}`,
		`  - {id: again, uses: traced}`,
	), cat)
	if err != nil {
		t.Fatal(err)
	}
	e, save := tracing(&events)
	in := newInput(t, "www.example.com")
	in.IssueClaim = claim
	if err := e.Run(context.Background(), def, in, started(t, e, def), save); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"run issue with the claim", "save at 3", // the issue's record rides on the checkpoint before tell
		"release", "run tell with the claim", "save at 4", // tell is handed the claim too, but given up
		"release", "run again with the claim", "save at 5",
	}
	if !slices.Equal(events, want) {
		t.Errorf("events %q\nwant %q", events, want)
	}
}

// reportingStep is a fake pure step that only reports: its report
// (Result.AfterSave) appends "report <id>" to *events.
type reportingStep struct{ events *[]string }

func (r reportingStep) Run(_ context.Context, run *workflow.Run) (workflow.Result, error) {
	id := run.StepID
	return workflow.Result{AfterSave: func() { *r.events = append(*r.events, "report "+id) }}, nil
}

func (reportingStep) Pure() bool { return true }

// reportingDef parses steps with a catalog of reporting, traced (a step
// with effects that appends "run <id>") and recording's traced twin.
func reportingDef(t *testing.T, events *[]string, steps ...string) *workflow.Definition {
	t.Helper()
	cat := recordingCatalog(&fakes{})
	cat["reporting"] = func(*workflow.Spec) (workflow.Step, error) { return reportingStep{events: events}, nil }
	cat["traced"] = func(*workflow.Spec) (workflow.Step, error) { return tracedStep{events: events}, nil }
	cat["recording"] = func(*workflow.Spec) (workflow.Step, error) { return tracedStep{events: events, record: true}, nil }
	def, err := workflow.Parse("def.yaml", yamlLines(append([]string{`name: a`, `trigger: event:x`, `steps:`}, steps...)...), cat)
	if err != nil {
		t.Fatal(err)
	}
	return def
}

// A step's report waits for the checkpoint that carries the step, shares
// it as a pure step does, and comes out before the next step with effects
// starts (a checkpoint is written for it), so effects keep their order.
func TestEngineReportsAStepOnceItsCheckpointIsWritten(t *testing.T) {
	t.Parallel()
	var events []string
	def := reportingDef(t, &events,
		`  - {id: issue, uses: recording}`,
		`  - {id: rep, uses: reporting}`,
		`  - {id: tell, uses: traced}`,
		`  - {id: rep2, uses: reporting}`,
		`  - {id: last, uses: pure}`,
	)
	e, save := tracing(&events)
	if err := e.Run(context.Background(), def, newInput(t, "www.example.com"), started(t, e, def), save); err != nil {
		t.Fatal(err)
	}
	want := []string{"run issue", "save at 2", "report rep", "run tell", "save at 3", "save at 5", "report rep2"}
	if !slices.Equal(events, want) {
		t.Errorf("events %q\nwant %q", events, want)
	}
	// Without a record pending, a report alone also gets its checkpoint
	// before a step with effects.
	events = nil
	def = reportingDef(t, &events, `  - {id: rep, uses: reporting}`, `  - {id: tell, uses: traced}`)
	if err := e.Run(context.Background(), def, newInput(t, "www.example.com"), started(t, e, def), save); err != nil {
		t.Fatal(err)
	}
	want = []string{"save at 1", "report rep", "run tell", "save at 2"}
	if !slices.Equal(events, want) {
		t.Errorf("events %q\nwant %q", events, want)
	}
}

// A checkpoint that fails drops the reports waiting for it (the retry runs
// their steps again); one that wrote the instance but reports a later
// write's failure (wrapping ErrSaved) lets them out and returns the error.
func TestEngineReportsOnlyWhatACheckpointWrote(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		saveErr    error
		wantEvents []string
	}{
		{"the checkpoint failed", errors.New("redis is down"), nil},
		{"the checkpoint was written, a follow-up was not", fmt.Errorf("index: %w", workflow.ErrSaved), []string{"report rep"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var events []string
			def := reportingDef(t, &events, `  - {id: rep, uses: reporting}`, `  - {id: last, uses: pure}`)
			e := newEngine()
			cp := &checkpoints{err: tt.saveErr}
			err := e.Run(context.Background(), def, newInput(t, "www.example.com"), started(t, e, def), cp.Save)
			if !errors.Is(err, tt.saveErr) {
				t.Errorf("Run = %v, want the checkpoint's error %v", err, tt.saveErr)
			}
			if !slices.Equal(events, tt.wantEvents) {
				t.Errorf("events %q, want %q", events, tt.wantEvents)
			}
		})
	}
}

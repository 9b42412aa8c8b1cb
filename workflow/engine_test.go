package workflow_test

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certflow/certflow/workflow"
)

var epoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// newEngine returns an engine with a quiet log and a clock that ticks one
// second per reading.
func newEngine() *workflow.Engine {
	var ticks atomic.Int64
	return &workflow.Engine{
		Log: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return epoch.Add(time.Duration(ticks.Add(1)) * time.Second) },
	}
}

// started returns an instance started on def.
func started(t *testing.T, e *workflow.Engine, def *workflow.Definition) *workflow.Instance {
	t.Helper()
	inst := &workflow.Instance{ID: "inst-1"}
	if err := e.Start(inst, def); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return inst
}

func outcomes(inst *workflow.Instance) string {
	var s []string
	for _, r := range inst.History {
		s = append(s, r.ID+"="+string(r.Outcome))
	}
	return strings.Join(s, " ")
}

func TestEngineStartPinsTheDefinition(t *testing.T) {
	t.Parallel()
	def := mustParse(t, &fakes{}, yamlLines(`name: pinned`, `trigger: event:x`, `steps:`, `  - id: a`, `    uses: record`))
	e := newEngine()
	inst := &workflow.Instance{ID: "i", Next: 3}
	if err := e.Start(inst, def); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if inst.Status != workflow.StatusRunning || inst.Definition != "pinned" || inst.Version != def.Version || inst.Next != 0 || inst.Started.IsZero() {
		t.Errorf("after Start: %+v", inst)
	}
	done := &workflow.Instance{ID: "j", Status: workflow.StatusComplete}
	if err := e.Start(done, def); !errors.Is(err, workflow.ErrTransition) {
		t.Errorf("Start of a Complete instance = %v, want ErrTransition", err)
	}
	if done.Definition != "" || done.Status != workflow.StatusComplete {
		t.Errorf("refused Start changed the instance: %+v", done)
	}
}

func TestEngineRunsStepsInOrderAndCheckpointsAfterEach(t *testing.T) {
	t.Parallel()
	f := &fakes{}
	def := mustParse(t, f, yamlLines(
		`name: a`,
		`trigger: event:x`,
		`steps:`,
		`  - id: one`,
		`    uses: record`,
		`  - id: two`,
		`    uses: record`,
		`  - id: three`,
		`    uses: record`,
	))
	e := newEngine()
	inst := started(t, e, def)
	cp := &checkpoints{}
	if err := e.Run(context.Background(), def, newInput(t, "www.example.com"), inst, cp.Save); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := f.Ran(); !slices.Equal(got, []string{"one", "two", "three"}) {
		t.Errorf("ran %v, want one two three", got)
	}
	want := []snapshot{
		{Next: 1, Status: workflow.StatusRunning, History: 1},
		{Next: 2, Status: workflow.StatusRunning, History: 2},
		// the last step's checkpoint already carries Complete
		{Next: 3, Status: workflow.StatusComplete, History: 3},
	}
	if got := cp.Saved(); !reflect.DeepEqual(got, want) {
		t.Errorf("checkpoints = %v\nwant %v", got, want)
	}
	if got := outcomes(inst); got != "one=Completed two=Completed three=Completed" {
		t.Errorf("history = %s", got)
	}
	for _, r := range inst.History {
		if r.Uses != "record" || r.Started.IsZero() || !r.Finished.After(r.Started) {
			t.Errorf("record %+v: want Uses record and Started < Finished", r)
		}
	}
}

func TestEngineRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		steps        []string // the lines under `steps:`
		wantErr      string   // "" means Run returns nil
		wantStatus   workflow.Status
		wantNext     int
		wantRan      []string
		wantHistory  string
		wantMessage  string // substring of inst.Message
		wantSaves    int
		wantOutputs  map[string]map[string]any
		wantMetadata map[string]string
	}{
		{
			name: "a step whose if is false is skipped",
			steps: []string{
				`  - id: a`,
				`    uses: record`,
				`  - id: b`,
				`    uses: record`,
				`    if: csr.CommonName == "other.example.com"`,
				`  - id: c`,
				`    uses: record`,
				`    if: csr.CommonName == "www.example.com"`,
			},
			wantStatus:  workflow.StatusComplete,
			wantNext:    3,
			wantRan:     []string{"a", "c"},
			wantHistory: "a=Completed b=Skipped c=Completed",
			wantSaves:   2, // none after the skipped step: it ran nothing
		},
		{
			name: "earlier outputs are visible to later ifs as steps.<id>.<key>",
			steps: []string{
				`  - id: probe`,
				`    uses: record`,
				`    with:`,
				`      outputs: {color: blue, score: 7}`,
				`  - id: blue`,
				`    uses: record`,
				`    if: steps.probe.color == "blue" && steps.probe.score > 5`,
				`  - id: red`,
				`    uses: record`,
				`    if: steps.probe.color == "red"`,
				`  - id: after-skip`,
				`    uses: record`,
				`    if: steps.red?.x == nil`,
			},
			wantStatus:  workflow.StatusComplete,
			wantNext:    4,
			wantRan:     []string{"probe", "blue", "after-skip"},
			wantHistory: "probe=Completed blue=Completed red=Skipped after-skip=Completed",
			wantSaves:   3, // none after the skipped step
			wantOutputs: map[string]map[string]any{"probe": {"color": "blue", "score": 7}},
		},
		{
			name: "a deny rejects the request and stops",
			steps: []string{
				`  - id: a`,
				`    uses: record`,
				`  - id: gate`,
				`    uses: deny`,
				`    with:`,
				`      message: key too small`,
				`  - id: c`,
				`    uses: record`,
			},
			wantStatus:  workflow.StatusRejected,
			wantNext:    1,
			wantRan:     []string{"a", "gate"},
			wantHistory: "a=Completed gate=Denied",
			wantMessage: "key too small",
			wantSaves:   2,
		},
		{
			name: "a failing check step denies with its message",
			steps: []string{
				`  - id: gate`,
				`    uses: check`,
				`    with:`,
				`      rule: csr.KeyType == "RSA"`,
				`      message: RSA only`,
				`  - id: c`,
				`    uses: record`,
			},
			wantStatus:  workflow.StatusRejected,
			wantNext:    0,
			wantHistory: "gate=Denied",
			wantMessage: "RSA only",
			wantSaves:   1,
		},
		{
			name: "a RetryLater error goes back to the queue: Running, Next at the failing step",
			steps: []string{
				`  - id: a`,
				`    uses: record`,
				`  - id: flaky`,
				`    uses: boom`,
				`    with: {later: true}`,
				`  - id: c`,
				`    uses: record`,
			},
			wantErr:     "step flaky: boom: upstream unavailable",
			wantStatus:  workflow.StatusRunning,
			wantNext:    1,
			wantRan:     []string{"a", "flaky"},
			wantHistory: "a=Completed flaky=Error",
			wantSaves:   2,
		},
		{
			name: "a permanent error fails the request",
			steps: []string{
				`  - id: a`,
				`    uses: record`,
				`  - id: broken`,
				`    uses: perm`,
				`  - id: c`,
				`    uses: record`,
			},
			wantStatus:  workflow.StatusFailed,
			wantNext:    1,
			wantRan:     []string{"a", "broken"},
			wantHistory: "a=Completed broken=Failed",
			wantMessage: "step broken: malformed input",
			wantSaves:   2,
		},
		{
			name: "an if that cannot be evaluated fails the request",
			steps: []string{
				`  - id: a`,
				`    uses: record`,
				`    with:`,
				`      outputs: {n: seven}`,
				`  - id: b`,
				`    uses: record`,
				`    if: steps.a.n > 1`,
			},
			wantStatus:  workflow.StatusFailed,
			wantNext:    1,
			wantRan:     []string{"a"},
			wantHistory: "a=Completed b=Failed",
			wantMessage: "step b: if:",
			wantSaves:   2,
			wantOutputs: map[string]map[string]any{"a": {"n": "seven"}},
		},
		{
			name: "metadata of all steps is merged, later steps winning",
			steps: []string{
				`  - id: a`,
				`    uses: record`,
				`    with:`,
				`      metadata: {Owner: alice, Team: pki}`,
				`  - id: b`,
				`    uses: record`,
				`    with:`,
				`      metadata: {Team: web}`,
			},
			wantStatus:   workflow.StatusComplete,
			wantNext:     2,
			wantRan:      []string{"a", "b"},
			wantHistory:  "a=Completed b=Completed",
			wantSaves:    2,
			wantMetadata: map[string]string{"Owner": "alice", "Team": "web"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakes{}
			def := mustParse(t, f, yamlLines(append([]string{`name: t`, `trigger: event:x`, `steps:`}, tt.steps...)...))
			e := newEngine()
			inst := started(t, e, def)
			cp := &checkpoints{}
			err := e.Run(context.Background(), def, newInput(t, "www.example.com"), inst, cp.Save)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Run: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Run = %v, want an error containing %q", err, tt.wantErr)
			}
			if inst.Status != tt.wantStatus {
				t.Errorf("Status = %s, want %s", inst.Status, tt.wantStatus)
			}
			if inst.Next != tt.wantNext {
				t.Errorf("Next = %d, want %d", inst.Next, tt.wantNext)
			}
			if got := f.Ran(); !slices.Equal(got, tt.wantRan) {
				t.Errorf("ran %v, want %v", got, tt.wantRan)
			}
			if got := outcomes(inst); got != tt.wantHistory {
				t.Errorf("history = %q, want %q", got, tt.wantHistory)
			}
			if tt.wantMessage == "" && inst.Message != "" {
				t.Errorf("Message = %q, want none", inst.Message)
			}
			if !strings.Contains(inst.Message, tt.wantMessage) {
				t.Errorf("Message = %q, want it to contain %q", inst.Message, tt.wantMessage)
			}
			if last := inst.History[len(inst.History)-1]; tt.wantMessage != "" && !strings.Contains(last.Message, tt.wantMessage) {
				t.Errorf("last record's Message = %q, want it to contain %q", last.Message, tt.wantMessage)
			}
			saved := cp.Saved()
			if len(saved) != tt.wantSaves {
				t.Errorf("checkpointed %d times, want %d: %v", len(saved), tt.wantSaves, saved)
			} else if last := saved[len(saved)-1]; last.Status != inst.Status || last.Next != inst.Next || last.History != len(inst.History) {
				t.Errorf("last checkpoint %v does not match the final instance (Next %d, Status %s, History %d)", last, inst.Next, inst.Status, len(inst.History))
			}
			if tt.wantOutputs != nil && !reflect.DeepEqual(inst.Outputs, tt.wantOutputs) {
				t.Errorf("Outputs = %v, want %v", inst.Outputs, tt.wantOutputs)
			}
			if tt.wantMetadata != nil && !reflect.DeepEqual(inst.Metadata, tt.wantMetadata) {
				t.Errorf("Metadata = %v, want %v", inst.Metadata, tt.wantMetadata)
			}
		})
	}
}

func TestEngineRunResumesAtTheFailedStepWithoutRerunningEarlierOnes(t *testing.T) {
	t.Parallel()
	f := &fakes{}
	def := mustParse(t, f, yamlLines(
		`name: a`,
		`trigger: event:x`,
		`steps:`,
		`  - id: a`,
		`    uses: record`,
		`  - id: b`,
		`    uses: record`,
		`  - id: flaky`,
		`    uses: boom`,
		`    with: {times: 2, later: true}`,
		`  - id: d`,
		`    uses: record`,
	))
	e := newEngine()
	in := newInput(t, "www.example.com")
	inst := started(t, e, def)
	cp := &checkpoints{}
	ctx := context.Background()

	for attempt := 1; attempt <= 2; attempt++ {
		err := e.Run(ctx, def, in, inst, cp.Save)
		if err == nil || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("attempt %d: Run = %v, want the boom error", attempt, err)
		}
		if inst.Status != workflow.StatusRunning || inst.Next != 2 {
			t.Fatalf("attempt %d: Status %s Next %d, want Running at 2", attempt, inst.Status, inst.Next)
		}
	}
	if err := e.Run(ctx, def, in, inst, cp.Save); err != nil {
		t.Fatalf("third Run: %v", err)
	}
	if got, want := f.Ran(), []string{"a", "b", "flaky", "flaky", "flaky", "d"}; !slices.Equal(got, want) {
		t.Errorf("ran %v, want %v (a and b once)", got, want)
	}
	if got, want := outcomes(inst), "a=Completed b=Completed flaky=Error flaky=Error flaky=Completed d=Completed"; got != want {
		t.Errorf("history = %s\nwant %s", got, want)
	}
	if inst.Status != workflow.StatusComplete || inst.Next != 4 {
		t.Errorf("Status %s Next %d, want Complete at 4", inst.Status, inst.Next)
	}
	if got := inst.Outputs["flaky"]["recovered"]; got != true {
		t.Errorf("steps.flaky.recovered = %v, want true", got)
	}
	// a, b, 2 failed attempts, flaky, d
	if got := len(cp.Saved()); got != 6 {
		t.Errorf("checkpointed %d times, want 6", got)
	}
}

func TestEngineRunResumesFromACheckpointedInstance(t *testing.T) {
	t.Parallel()
	// A fresh Instance restored from the store at Next=2 must not re-run 0 and 1.
	f := &fakes{}
	def := mustParse(t, f, yamlLines(
		`name: a`, `trigger: event:x`, `steps:`,
		`  - id: a`, `    uses: record`, `    with: {outputs: {token: t1}}`,
		`  - id: b`, `    uses: record`,
		`  - id: c`, `    uses: record`, `    if: steps.a.token == "t1"`,
	))
	inst := &workflow.Instance{
		ID: "i", Status: workflow.StatusRunning, Definition: def.Name, Version: def.Version, Next: 2,
		Outputs: map[string]map[string]any{"a": {"token": "t1"}},
	}
	if err := newEngine().Run(context.Background(), def, newInput(t, "x"), inst, (&checkpoints{}).Save); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := f.Ran(); !slices.Equal(got, []string{"c"}) {
		t.Errorf("ran %v, want only c", got)
	}
}

func TestEngineRunMakesTheIssuedCertificateVisible(t *testing.T) {
	t.Parallel()
	f := &fakes{}
	def := mustParse(t, f, yamlLines(
		`name: a`,
		`trigger: enrollment`,
		`steps:`,
		`  - id: before`,
		`    uses: record`,
		`    if: certificate.ID == 0`,
		`  - id: sign`,
		`    uses: issue`,
		`  - id: after`,
		`    uses: note`,
		`    with:`,
		`      text: "issued ${{ certificate.SerialNumber }} (#${{ certificate.ID }}) for ${{ csr.CommonName }} to ${{ requester.Name }}"`,
	))
	e := newEngine()
	inst := started(t, e, def)
	if err := e.Run(context.Background(), def, newInput(t, "www.example.com"), inst, (&checkpoints{}).Save); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if inst.Certificate == nil || inst.Certificate.ID != 42 {
		t.Fatalf("Certificate = %+v, want the issued one", inst.Certificate)
	}
	if got, want := inst.Outputs["after"]["text"], "issued 0a1b2c (#42) for www.example.com to alice"; got != want {
		t.Errorf("steps.after.text = %q, want %q", got, want)
	}
	if got := f.Ran(); !slices.Equal(got, []string{"before", "sign"}) {
		t.Errorf("ran %v, want before and sign", got)
	}
}

func TestEngineRunRefusesAnInstanceThatIsNotRunning(t *testing.T) {
	t.Parallel()
	for _, status := range []workflow.Status{"", workflow.StatusComplete, workflow.StatusRejected, workflow.StatusFailed} {
		t.Run(string(status), func(t *testing.T) {
			t.Parallel()
			f := &fakes{}
			def := mustParse(t, f, yamlLines(`name: a`, `trigger: event:x`, `steps:`, `  - id: a`, `    uses: record`))
			inst := &workflow.Instance{Status: status}
			cp := &checkpoints{}
			if err := newEngine().Run(context.Background(), def, newInput(t, "x"), inst, cp.Save); !errors.Is(err, workflow.ErrTransition) {
				t.Errorf("Run = %v, want ErrTransition", err)
			}
			if len(f.Ran()) != 0 || len(cp.Saved()) != 0 || inst.Status != status {
				t.Errorf("Run changed something: ran %v, saved %v, status %s", f.Ran(), cp.Saved(), inst.Status)
			}
		})
	}
}

func TestEngineRunReportsACheckpointFailure(t *testing.T) {
	t.Parallel()
	f := &fakes{}
	def := mustParse(t, f, yamlLines(`name: a`, `trigger: event:x`, `steps:`, `  - id: a`, `    uses: record`, `  - id: b`, `    uses: record`))
	cp := &checkpoints{err: errors.New("redis down")}
	e := newEngine()
	inst := started(t, e, def)
	err := e.Run(context.Background(), def, newInput(t, "x"), inst, cp.Save)
	if err == nil || !strings.Contains(err.Error(), "checkpoint after step a") || !strings.Contains(err.Error(), "redis down") {
		t.Fatalf("Run = %v, want the checkpoint error after step a", err)
	}
	if got := f.Ran(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("ran %v, want only a: no step may start before the previous one is saved", got)
	}
}

func TestInstanceTo(t *testing.T) {
	t.Parallel()
	S := func(s workflow.Status) workflow.Status { return s }
	tests := []struct {
		from, to workflow.Status
		ok       bool
	}{
		{S(""), workflow.StatusRunning, true},
		{S(""), workflow.StatusComplete, false},
		{S(""), workflow.StatusFailed, false},
		{workflow.StatusRunning, workflow.StatusRunning, true},
		{workflow.StatusRunning, workflow.StatusSuspended, true},
		{workflow.StatusRunning, workflow.StatusComplete, true},
		{workflow.StatusRunning, workflow.StatusRejected, true},
		{workflow.StatusRunning, workflow.StatusFailed, true},
		{workflow.StatusSuspended, workflow.StatusRunning, true},
		{workflow.StatusSuspended, workflow.StatusRejected, true},
		{workflow.StatusSuspended, workflow.StatusFailed, true},
		{workflow.StatusSuspended, workflow.StatusComplete, false},
		{workflow.StatusComplete, workflow.StatusRunning, false},
		{workflow.StatusComplete, workflow.StatusFailed, false},
		{workflow.StatusComplete, workflow.StatusComplete, false},
		{workflow.StatusRejected, workflow.StatusRunning, false},
		{workflow.StatusFailed, workflow.StatusRunning, true}, // an administrator's restart
		{workflow.StatusFailed, workflow.StatusComplete, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.from)+"→"+string(tt.to), func(t *testing.T) {
			t.Parallel()
			inst := &workflow.Instance{Status: tt.from}
			err := inst.To(tt.to)
			if tt.ok {
				if err != nil || inst.Status != tt.to {
					t.Errorf("To(%s) = %v, status %s; want the move", tt.to, err, inst.Status)
				}
				return
			}
			if !errors.Is(err, workflow.ErrTransition) {
				t.Errorf("To(%s) = %v, want ErrTransition", tt.to, err)
			}
			if inst.Status != tt.from {
				t.Errorf("status changed to %s on a refused move", inst.Status)
			}
		})
	}
}

func TestStatusTerminal(t *testing.T) {
	t.Parallel()
	for s, want := range map[workflow.Status]bool{
		workflow.StatusRunning: false, workflow.StatusSuspended: false,
		workflow.StatusComplete: true, workflow.StatusRejected: true, workflow.StatusFailed: true,
	} {
		if got := s.Terminal(); got != want {
			t.Errorf("%s.Terminal() = %v, want %v", s, got, want)
		}
	}
}

func TestEngineFailRecordsFailedAtTheCurrentStep(t *testing.T) {
	t.Parallel()
	f := &fakes{}
	def := mustParse(t, f, yamlLines(
		`name: a`, `trigger: event:x`, `steps:`,
		`  - id: a`, `    uses: record`,
		`  - id: flaky`, `    uses: boom`, `    with: {later: true}`,
	))
	e := newEngine()
	inst := started(t, e, def)
	cp := &checkpoints{}
	ctx := context.Background()
	if err := e.Run(ctx, def, newInput(t, "x"), inst, cp.Save); err == nil {
		t.Fatal("Run succeeded, want the boom error")
	}
	// retries exhausted
	if err := e.Fail(ctx, inst, def, errors.New("retries exhausted"), cp.Save); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	if inst.Status != workflow.StatusFailed || inst.Message != "retries exhausted" {
		t.Errorf("Status %s Message %q, want Failed with the cause", inst.Status, inst.Message)
	}
	last := inst.History[len(inst.History)-1]
	if last.ID != "flaky" || last.Uses != "boom" || last.Outcome != workflow.OutcomeFailed || last.Message != "retries exhausted" {
		t.Errorf("last record = %+v, want flaky/boom Failed", last)
	}
	saved := cp.Saved()
	if len(saved) != 3 || saved[2].Status != workflow.StatusFailed {
		t.Errorf("checkpoints = %v, want a third with Failed", saved)
	}
	if err := e.Fail(ctx, inst, def, errors.New("again"), cp.Save); !errors.Is(err, workflow.ErrTransition) {
		t.Errorf("Fail of a Failed instance = %v, want ErrTransition", err)
	}
}

func TestEngineFailWithoutADefinition(t *testing.T) {
	t.Parallel()
	inst := &workflow.Instance{Status: workflow.StatusRunning, Next: 5}
	cp := &checkpoints{}
	if err := newEngine().Fail(context.Background(), inst, nil, errors.New("definition gone"), cp.Save); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	if inst.Status != workflow.StatusFailed || len(inst.History) != 1 || inst.History[0].ID != "" || inst.History[0].Outcome != workflow.OutcomeFailed {
		t.Errorf("instance = %+v", inst)
	}
	if len(cp.Saved()) != 1 {
		t.Errorf("checkpointed %d times, want 1", len(cp.Saved()))
	}
}

func TestDenyAndPermanentErrors(t *testing.T) {
	t.Parallel()
	err := workflow.Deny("key %d too small", 1024)
	var deny *workflow.DenyError
	if !errors.As(err, &deny) || deny.Message != "key 1024 too small" || err.Error() != "denied: key 1024 too small" {
		t.Errorf("Deny = %#v (%v)", err, err)
	}
	cause := errors.New("bad")
	perm := workflow.Permanent(cause)
	var pe *workflow.PermanentError
	if !errors.As(perm, &pe) || !errors.Is(perm, cause) || perm.Error() != "bad" {
		t.Errorf("Permanent = %#v (%v)", perm, perm)
	}
}

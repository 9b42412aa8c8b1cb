package workflow_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing/fstest"
	"time"

	"github.com/certflow/certflow/workflow"
)

// toySay is a toy step type: it renders its `with: {text: …}` template
// and hands the text back as its output "said". It has no effect outside
// its result, so it declares itself pure (workflow.Pure).
type toySay struct{ text *workflow.Template }

func (s toySay) Run(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
	text, err := s.text.String(run.Env)
	if err != nil {
		return workflow.Result{}, workflow.Permanent(err)
	}
	return workflow.Result{Outputs: map[string]any{"said": text}}, nil
}

func (toySay) Pure() bool { return true }

// toySend is a toy step with an effect: it prints what an earlier step
// said.
type toySend struct{ text *workflow.Template }

func (s toySend) Run(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
	text, err := s.text.String(run.Env)
	if err != nil {
		return workflow.Result{}, workflow.Permanent(err)
	}
	fmt.Println("send:", text)
	return workflow.Result{Outputs: map[string]any{"sent": true}}, nil
}

// toyWait is a toy approval: it suspends the request until one person
// with the approver role decides, and once they have, gives who approved
// as its output (workflow.Resumer).
type toyWait struct{}

func (toyWait) Run(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
	return workflow.Result{Suspend: &workflow.Wait{Roles: []string{"approver"}, Quorum: 1}}, nil
}

func (toyWait) Resume(ctx context.Context, run *workflow.Run, w *workflow.Wait) workflow.Result {
	return workflow.Result{Outputs: map[string]any{"approvers": w.Approvers}}
}

// toyCatalog maps the toy step types' `uses:` names to their builders.
// A builder compiles its `with:` when the definition loads, so a mistake
// in a template fails the load, not a request.
func toyCatalog() workflow.Catalog {
	text := func(spec *workflow.Spec) (*workflow.Template, error) {
		var w struct {
			Text string `yaml:"text"`
		}
		if err := spec.DecodeWith(&w); err != nil {
			return nil, err
		}
		return spec.Template(w.Text, workflow.MapValue(spec.With, "text"))
	}
	return workflow.Catalog{
		"say": func(spec *workflow.Spec) (workflow.Step, error) {
			t, err := text(spec)
			return toySay{t}, err
		},
		"send": func(spec *workflow.Spec) (workflow.Step, error) {
			t, err := text(spec)
			return toySend{t}, err
		},
		"wait": func(spec *workflow.Spec) (workflow.Step, error) { return toyWait{}, nil },
	}
}

// quietEngine is an engine that logs nothing, at a fixed time.
func quietEngine() *workflow.Engine {
	return &workflow.Engine{
		Log: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC) },
	}
}

// A definition parsed with a catalogue of two toy step types, run by the
// engine with a checkpoint function that keeps the instance in memory.
// The pure say step writes no checkpoint of its own: its output is
// carried by the checkpoint after send, the last step.
func Example() {
	def, err := workflow.Parse("hello.yaml", []byte(`
name: hello
trigger: event:hello
steps:
  - id: greet
    uses: say
    with: {text: "hello ${{ requester.Name }}"}
  - id: tell
    uses: send
    if: requester.Name != ""
    with: {text: "${{ steps.greet.said }}, your request ${{ request.ID }} is done"}
`), toyCatalog())
	if err != nil {
		fmt.Println(err)
		return
	}
	in := &workflow.Input{
		Trigger:   def.Trigger,
		Request:   workflow.Request{ID: 7},
		Requester: workflow.Requester{Name: "alice", Roles: []string{"requester"}},
	}
	var stored workflow.Instance // what a checkpoint wrote last
	save := func(ctx context.Context, inst *workflow.Instance) error {
		fmt.Printf("checkpoint: next step %d, %s\n", inst.Next, inst.Status)
		stored = *inst
		return nil
	}
	engine := quietEngine()
	inst := &workflow.Instance{ID: "7"}
	if err := engine.Start(inst, def); err != nil {
		fmt.Println(err)
		return
	}
	if err := engine.Run(context.Background(), def, in, inst, save); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("greet said:", stored.Outputs["greet"]["said"])
	for _, h := range stored.History {
		fmt.Println(h.ID, h.Uses, h.Outcome)
	}
	// Output:
	// send: hello alice, your request 7 is done
	// checkpoint: next step 2, Complete
	// greet said: hello alice
	// greet say Completed
	// tell send Completed
}

// An instance's life through a wait for people: the run suspends at the
// wait step and ends; a decision, recorded on the instance outside the
// engine (certflow's API does it by a compare-and-set of the request),
// settles the wait; the next run resumes after the step.
func ExampleEngine_Run_approval() {
	def, err := workflow.Parse("gated.yaml", []byte(`
name: gated
trigger: event:gated
steps:
  - id: gate
    uses: wait
  - id: tell
    uses: send
    with: {text: "approved by ${{ steps.gate.approvers[0] }}"}
`), toyCatalog())
	if err != nil {
		fmt.Println(err)
		return
	}
	engine := quietEngine()
	in := &workflow.Input{Trigger: def.Trigger, Request: workflow.Request{ID: 8}, Requester: workflow.Requester{Name: "alice"}}
	save := func(ctx context.Context, inst *workflow.Instance) error {
		fmt.Printf("checkpoint: %s at step %d\n", inst.Status, inst.Next)
		return nil
	}
	inst := &workflow.Instance{ID: "8"}
	_ = engine.Start(inst, def)
	if err := engine.Run(context.Background(), def, in, inst, save); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("waits for:", inst.Wait.Roles)

	bob := workflow.Decider{Name: "bob", Has: func(roles ...string) bool { return slices.Contains(roles, "approver") }}
	_, settled, err := inst.Decide("gate", "gate"+workflow.SignalSuffix, bob, "alice", true, "fine", time.Now())
	fmt.Println("settled:", settled, err)

	if err := engine.Run(context.Background(), def, in, inst, save); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(inst.History[0].Outcome, "then", inst.History[1].Outcome, "-", inst.History[1].Message)
	// Output:
	// checkpoint: Suspended at step 0
	// waits for: [approver]
	// settled: true <nil>
	// checkpoint: Running at step 1
	// send: approved by bob
	// checkpoint: Complete at step 2
	// Waiting then Completed - approved by bob
}

// An `if:` or `match:` expression is compiled once against the typed
// environment, so a misspelt field fails the load with its position, and
// evaluated against each request's Env.
func ExampleCompileBool() {
	rule, err := workflow.CompileBool(`all(sans.DNS, {# endsWith ".example.com"}) && csr.KeyBits >= 2048`, workflow.Pos{File: "def.yaml", Line: 9, Column: 9})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, env := range []*workflow.Env{
		{SANs: workflow.SANs{DNS: []string{"www.example.com"}}, CSR: workflow.CSR{KeyType: "RSA", KeyBits: 3072}},
		{SANs: workflow.SANs{DNS: []string{"www.example.org"}}, CSR: workflow.CSR{KeyType: "RSA", KeyBits: 3072}},
	} {
		ok, err := rule.Bool(env)
		fmt.Println(env.SANs.DNS, ok, err)
	}
	_, err = workflow.CompileBool(`csr.CN == "www.example.com"`, workflow.Pos{File: "def.yaml", Line: 12, Column: 9})
	fmt.Println(err)
	// Output:
	// [www.example.com] true <nil>
	// [www.example.org] false <nil>
	// def.yaml:12:13: expression "csr.CN == \"www.example.com\"": type workflow.CSR has no field CN
}

// A string that embeds ${{ }} is a Template: its expressions compile at
// load and are evaluated in the request's Env.
func ExampleCompileTemplate() {
	t, err := workflow.CompileTemplate("issued for ${{ csr.CommonName }} to ${{ requester.Name }}", workflow.Pos{File: "def.yaml", Line: 20})
	if err != nil {
		fmt.Println(err)
		return
	}
	s, err := t.String(&workflow.Env{CSR: workflow.CSR{CommonName: "www.example.com"}, Requester: workflow.Requester{Name: "alice"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s)
	// Output:
	// issued for www.example.com to alice
}

// Of the definitions for a trigger, the request runs the one of highest
// priority whose match holds; a run is then pinned to its version.
func ExampleSet_Select() {
	set, err := workflow.Load(fstest.MapFS{
		"default.yaml": {Data: []byte("name: default\ntrigger: event:x\npriority: 0\nsteps:\n  - {id: s, uses: say, with: {text: hi}}\n")},
		"web.yaml": {Data: []byte("name: web\ntrigger: event:x\npriority: 10\nmatch: request.Template == 'WebServer'\n" +
			"steps:\n  - {id: s, uses: say, with: {text: hi}}\n")},
	}, toyCatalog())
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, tmpl := range []string{"WebServer", "User"} {
		def, err := set.Select("event:x", &workflow.Env{Request: workflow.Request{Template: tmpl}})
		fmt.Println(tmpl, "→", def.Name, err)
	}
	// Output:
	// WebServer → web <nil>
	// User → default <nil>
}

package workflow_test

import (
	"context"
	"log/slog"
	"maps"
	"testing"

	"github.com/certflow/certflow/workflow"
)

// benchDefinition is a typical enrollment: a policy check with a compiled
// rule, the CA step (stubbed: no signing), a metadata-like step rendering
// a template, and a notification that does nothing.
var benchDefinition = yamlLines(
	`name: bench`,
	`trigger: enrollment`,
	`steps:`,
	`  - id: policy`,
	`    uses: check`,
	`    with:`,
	`      rule: csr.KeyType == "ECC" && all(sans.DNS, {# endsWith ".example.com"})`,
	`      message: names must be under example.com`,
	`  - id: issue`,
	`    uses: issue`,
	`  - id: tag`,
	`    uses: note`,
	`    with:`,
	`      text: "${{ requester.Name }} got ${{ certificate.SerialNumber }} for ${{ csr.CommonName }}"`,
	`  - id: tell`,
	`    uses: nop`,
)

func benchCatalog() workflow.Catalog {
	c := maps.Clone((&fakes{}).Catalog())
	cert := &workflow.Certificate{ID: 1, SerialNumber: "0a1b2c"}
	c["issue"] = func(*workflow.Spec) (workflow.Step, error) {
		return stepFunc(func(context.Context, *workflow.Run) (workflow.Result, error) {
			return workflow.Result{Certificate: cert}, nil
		}), nil
	}
	return c
}

// BenchmarkEngineRun measures the engine's own overhead for one request:
// Start, four steps, four checkpoints; no signing, no I/O.
func BenchmarkEngineRun(b *testing.B) {
	def, err := workflow.Parse("bench.yaml", benchDefinition, benchCatalog())
	if err != nil {
		b.Fatal(err)
	}
	in := newInput(b, "www.example.com")
	e := &workflow.Engine{Log: slog.New(slog.DiscardHandler)}
	save := func(context.Context, *workflow.Instance) error { return nil }
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		inst := &workflow.Instance{ID: "bench"}
		if err := e.Start(inst, def); err != nil {
			b.Fatal(err)
		}
		if err := e.Run(ctx, def, in, inst, save); err != nil {
			b.Fatal(err)
		}
		if inst.Status != workflow.StatusComplete {
			b.Fatalf("status %s (%s), want Complete", inst.Status, inst.Message)
		}
	}
}

// BenchmarkProgramEval measures one compiled boolean expression.
func BenchmarkProgramEval(b *testing.B) {
	p, err := workflow.CompileBool(`csr.KeyType == "RSA" && csr.KeyBits >= 2048 && all(sans.DNS, {# endsWith ".example.com"})`, workflow.Pos{})
	if err != nil {
		b.Fatal(err)
	}
	env := &workflow.Env{
		CSR:  workflow.CSR{KeyType: "RSA", KeyBits: 2048, CommonName: "www.example.com"},
		SANs: workflow.SANs{DNS: []string{"www.example.com", "api.example.com"}},
	}
	b.ReportAllocs()
	for b.Loop() {
		ok, err := p.Bool(env)
		if err != nil || !ok {
			b.Fatalf("Bool() = %v, %v; want true", ok, err)
		}
	}
}

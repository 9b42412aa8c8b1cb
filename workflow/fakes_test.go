package workflow_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/certflow/certflow/workflow"
)

// fakes is a test Catalog whose steps record what ran, in order.
//
//	record  appends its id; returns `with.outputs` as outputs and `with.metadata` as metadata
//	deny    denies with `with.message`
//	boom    appends its id; fails with a plain error for the first `with.times` runs (always when 0);
//	        with `later: true` the error is a RetryLater
//	perm    appends its id; fails with workflow.Permanent
//	issue   appends its id; returns a Certificate
//	check   denies with `with.message` unless the `with.rule` expression holds
//	note    renders the `with.text` template into outputs["text"]
//	nop     does nothing
type fakes struct {
	mu  sync.Mutex
	ran []string
}

func (f *fakes) record(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ran = append(f.ran, id)
}

// Ran returns the step ids that ran, in order.
func (f *fakes) Ran() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ran)
}

type stepFunc func(ctx context.Context, run *workflow.Run) (workflow.Result, error)

func (s stepFunc) Run(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
	return s(ctx, run)
}

func (f *fakes) Catalog() workflow.Catalog {
	return workflow.Catalog{
		"record": func(spec *workflow.Spec) (workflow.Step, error) {
			var w struct {
				Outputs  map[string]any    `yaml:"outputs"`
				Metadata map[string]string `yaml:"metadata"`
			}
			if err := spec.DecodeWith(&w); err != nil {
				return nil, err
			}
			return stepFunc(func(_ context.Context, run *workflow.Run) (workflow.Result, error) {
				f.record(run.StepID)
				return workflow.Result{Outputs: w.Outputs, Metadata: w.Metadata}, nil
			}), nil
		},
		"deny": func(spec *workflow.Spec) (workflow.Step, error) {
			var w struct {
				Message string `yaml:"message"`
			}
			if err := spec.DecodeWith(&w); err != nil {
				return nil, err
			}
			return stepFunc(func(_ context.Context, run *workflow.Run) (workflow.Result, error) {
				f.record(run.StepID)
				return workflow.Result{}, workflow.Deny("%s", w.Message)
			}), nil
		},
		"boom": func(spec *workflow.Spec) (workflow.Step, error) {
			var w struct {
				Times int64 `yaml:"times"`
				Later bool  `yaml:"later"` // fail with RetryLater instead
			}
			if err := spec.DecodeWith(&w); err != nil {
				return nil, err
			}
			var runs atomic.Int64
			return stepFunc(func(_ context.Context, run *workflow.Run) (workflow.Result, error) {
				f.record(run.StepID)
				if n := runs.Add(1); w.Times == 0 || n <= w.Times {
					err := errors.New("boom: upstream unavailable")
					if w.Later {
						err = workflow.RetryLater(err)
					}
					return workflow.Result{}, err
				}
				return workflow.Result{Outputs: map[string]any{"recovered": true}}, nil
			}), nil
		},
		"slow": func(spec *workflow.Spec) (workflow.Step, error) {
			// waits until its context ends
			return stepFunc(func(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
				f.record(run.StepID)
				<-ctx.Done()
				return workflow.Result{}, ctx.Err()
			}), nil
		},
		"perm": func(spec *workflow.Spec) (workflow.Step, error) {
			return stepFunc(func(_ context.Context, run *workflow.Run) (workflow.Result, error) {
				f.record(run.StepID)
				return workflow.Result{}, workflow.Permanent(errors.New("malformed input"))
			}), nil
		},
		"issue": func(spec *workflow.Spec) (workflow.Step, error) {
			return stepFunc(func(_ context.Context, run *workflow.Run) (workflow.Result, error) {
				f.record(run.StepID)
				return workflow.Result{Certificate: &workflow.Certificate{ID: 42, SerialNumber: "0a1b2c"}}, nil
			}), nil
		},
		workflow.RevokeStep: func(spec *workflow.Spec) (workflow.Step, error) {
			return stepFunc(func(_ context.Context, run *workflow.Run) (workflow.Result, error) {
				f.record(run.StepID)
				return workflow.Result{}, nil
			}), nil
		},
		"check": func(spec *workflow.Spec) (workflow.Step, error) {
			var w struct {
				Rule    string `yaml:"rule"`
				Message string `yaml:"message"`
			}
			if err := spec.DecodeWith(&w); err != nil {
				return nil, err
			}
			p, err := spec.Bool(w.Rule, spec.With)
			if err != nil {
				return nil, err
			}
			return stepFunc(func(_ context.Context, run *workflow.Run) (workflow.Result, error) {
				ok, err := p.Bool(run.Env)
				if err != nil {
					return workflow.Result{}, workflow.Permanent(err)
				}
				if !ok {
					return workflow.Result{}, workflow.Deny("%s", w.Message)
				}
				return workflow.Result{}, nil
			}), nil
		},
		"note": func(spec *workflow.Spec) (workflow.Step, error) {
			var w struct {
				Text string `yaml:"text"`
			}
			if err := spec.DecodeWith(&w); err != nil {
				return nil, err
			}
			t, err := spec.Template(w.Text, spec.With)
			if err != nil {
				return nil, err
			}
			return stepFunc(func(_ context.Context, run *workflow.Run) (workflow.Result, error) {
				s, err := t.String(run.Env)
				if err != nil {
					return workflow.Result{}, workflow.Permanent(err)
				}
				return workflow.Result{Outputs: map[string]any{"text": s}}, nil
			}), nil
		},
		"wait": func(spec *workflow.Spec) (workflow.Step, error) {
			var w struct {
				Roles  []string `yaml:"roles"`
				Quorum int      `yaml:"quorum"`
			}
			if err := spec.DecodeWith(&w); err != nil {
				return nil, err
			}
			return &waitStep{f: f, roles: w.Roles, quorum: w.Quorum}, nil
		},
		"nop": func(spec *workflow.Spec) (workflow.Step, error) {
			return stepFunc(func(context.Context, *workflow.Run) (workflow.Result, error) {
				return workflow.Result{}, nil
			}), nil
		},
	}
}

// waitStep suspends like the approval step: `with.roles`, `with.quorum`.
// It records its id when it suspends and "resume:<id>" when resumed.
type waitStep struct {
	f      *fakes
	roles  []string
	quorum int
}

func (s *waitStep) Run(_ context.Context, run *workflow.Run) (workflow.Result, error) {
	s.f.record(run.StepID)
	return workflow.Result{Suspend: &workflow.Wait{Roles: s.roles, Quorum: s.quorum}}, nil
}

func (s *waitStep) Resume(_ context.Context, run *workflow.Run, w *workflow.Wait) workflow.Result {
	s.f.record("resume:" + run.StepID)
	return workflow.Result{Outputs: map[string]any{"approvers": w.Approvers}}
}

// yamlLines joins lines with newlines, so that a case's line numbers can
// be read off its position in the slice (first line is line 1).
func yamlLines(lines ...string) []byte {
	return []byte(strings.Join(lines, "\n") + "\n")
}

// mustParse parses a definition that must load.
func mustParse(t testing.TB, f *fakes, src []byte) *workflow.Definition {
	t.Helper()
	def, err := workflow.Parse("def.yaml", src, f.Catalog())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return def
}

var testKey = func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}()

// newCSR returns a parsed P-256 CSR for cn and dns.
func newCSR(t testing.TB, cn string, dns ...string) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: cn},
		DNSNames: dns,
	}, testKey)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatalf("ParseCertificateRequest: %v", err)
	}
	return csr
}

// newInput is an enrollment input for a P-256 CSR with common name cn.
func newInput(t testing.TB, cn string) *workflow.Input {
	t.Helper()
	return workflow.NewInput("enrollment", workflow.Request{ID: 7, Template: "WebServer"},
		newCSR(t, cn), workflow.Requester{Name: "alice", Roles: []string{"requester"}}, true)
}

// checkpoints records what the engine handed to every checkpoint call.
type checkpoints struct {
	mu    sync.Mutex
	saved []snapshot
	err   error // returned by every call when set
}

type snapshot struct {
	Next    int
	Status  workflow.Status
	History int
}

func (c *checkpoints) Save(_ context.Context, inst *workflow.Instance) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saved = append(c.saved, snapshot{Next: inst.Next, Status: inst.Status, History: len(inst.History)})
	return c.err
}

func (c *checkpoints) Saved() []snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.saved)
}

func (s snapshot) String() string {
	return fmt.Sprintf("{Next:%d Status:%s History:%d}", s.Next, s.Status, s.History)
}

package steps_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

// keys are generated once per test binary: RSA generation is slow.
var keys = sync.OnceValue(func() map[string]crypto.Signer {
	m := map[string]crypto.Signer{}
	for name, gen := range map[string]func() (crypto.Signer, error){
		"RSA-2048": func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) },
		"RSA-1024": func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 1024) },
		"P-256":    func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) },
		"P-384":    func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P384(), rand.Reader) },
		"P-521":    func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P521(), rand.Reader) },
		"Ed25519": func() (crypto.Signer, error) {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			return k, err
		},
	} {
		k, err := gen()
		if err != nil {
			panic(name + ": " + err.Error())
		}
		m[name] = k
	}
	return m
})

// newCSR makes and parses a real CSR signed by the named key.
func newCSR(t *testing.T, key, cn string, dns ...string) *x509.CertificateRequest {
	t.Helper()
	signer, ok := keys()[key]
	if !ok {
		t.Fatalf("no test key %q", key)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: cn},
		DNSNames: dns,
	}, signer)
	if err != nil {
		t.Fatalf("CreateCertificateRequest(%s): %v", key, err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatalf("ParseCertificateRequest: %v", err)
	}
	return csr
}

// envFor is the environment the engine would give a step for this request
// (RFC 2818's CN-to-SAN applied as the worker does, from the template).
func envFor(t *testing.T, cfg *config.Config, req workflow.Request, csr *x509.CertificateRequest, outputs map[string]map[string]any) *workflow.Env {
	t.Helper()
	addCN := false
	if tmpl, ok := cfg.Template(req.Template); ok {
		addCN = tmpl.RFCEnforcement
	}
	in := workflow.NewInput("enrollment", req, csr, workflow.Requester{Name: "alice", Roles: []string{"requester"}}, addCN)
	return in.Env(&workflow.Instance{Outputs: outputs}, time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))
}

func defaultConfig() *config.Config {
	cfg := config.Default()
	return &cfg
}

// parse loads a definition, one YAML line per argument, with certflow's
// real step catalog.
func parse(cfg *config.Config, lines ...string) (*workflow.Definition, error) {
	src := []byte(strings.Join(lines, "\n") + "\n")
	return workflow.Parse("def.yaml", src, steps.ForLint(cfg).Catalog())
}

// oneStep wraps step lines (indented under `steps:`) into an event
// definition, so that no issue step is appended.
func oneStep(lines ...string) []string {
	return append([]string{"name: t", "trigger: event:test", "steps:"}, lines...)
}

// afterLookup is oneStep with a `lookup` step first, so that the steps
// under test may read steps.lookup (tests then inject its outputs).
func afterLookup(lines ...string) []string {
	return oneStep(append([]string{`  - id: lookup`, `    uses: set`, `    with: {source: "x"}`}, lines...)...)
}

// enrollStep wraps step lines into an enrollment definition (the issue
// step appended): where a step behaves as for a request, not an event.
func enrollStep(lines ...string) []string {
	return append([]string{"name: t", "trigger: enrollment", "steps:"}, lines...)
}

// enrollAfterLookup is afterLookup in an enrollment definition.
func enrollAfterLookup(lines ...string) []string {
	return enrollStep(append([]string{`  - id: lookup`, `    uses: set`, `    with: {source: "x"}`}, lines...)...)
}

func mustParse(t *testing.T, cfg *config.Config, lines ...string) *workflow.Definition {
	t.Helper()
	def, err := parse(cfg, lines...)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return def
}

// runStep runs the definition's step id alone in env; log receives what
// the step logs.
func runStep(t *testing.T, def *workflow.Definition, id string, env *workflow.Env, log *bytes.Buffer) (workflow.Result, error) {
	t.Helper()
	return runStepCSR(t, def, id, env, nil, log)
}

// runStepCSR is runStep for a request with a CSR (steps that apply
// policy read it).
func runStepCSR(t *testing.T, def *workflow.Definition, id string, env *workflow.Env, csr *x509.CertificateRequest, log *bytes.Buffer) (workflow.Result, error) {
	t.Helper()
	for _, sd := range def.Steps {
		if sd.ID == id {
			logger := slog.New(slog.DiscardHandler)
			if log != nil {
				logger = slog.New(slog.NewTextHandler(log, nil))
			}
			return sd.Step.Run(context.Background(), &workflow.Run{
				RequestID: 7, InstanceID: "inst", StepID: id, Env: env, CSR: csr, Log: logger,
			})
		}
	}
	t.Fatalf("definition has no step %q", id)
	return workflow.Result{}, nil
}

// wantLoadError asserts err is a load error at "def.yaml:<line>:" naming
// step id and containing every want.
func wantLoadError(t *testing.T, err error, line int, step string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Parse succeeded, want a load error containing %q", want)
	}
	msg := err.Error()
	if at := "def.yaml:" + strconv.Itoa(line) + ":"; line > 0 && !strings.HasPrefix(msg, at) {
		t.Errorf("error = %q\nwant it to start with %q", msg, at)
	}
	if step != "" && !strings.Contains(msg, `step "`+step+`"`) {
		t.Errorf("error = %q\nwant it to name step %q", msg, step)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error = %q\nwant it to contain %q", msg, w)
		}
	}
}

func nopLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

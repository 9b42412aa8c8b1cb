package steps_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/certflow/certflow/workflow"
)

func TestValidateStepRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		with    []string // lines under `with:`, or nil for no with
		key     string
		cn      string
		dns     []string
		tmpl    string
		outputs map[string]map[string]any
		deny    string // "" means the step passes
		perm    string // a *workflow.PermanentError containing this
	}{
		{
			name: "all rules hold",
			with: []string{
				`      rules:`,
				`        - check: len(csr.CommonName) <= 64`,
				`          message: CN too long`,
				`        - check: all(sans.DNS, {# endsWith ".example.com"})`,
				`          message: only example.com`,
			},
			key: "P-256", cn: "www.example.com", tmpl: "WebServer",
		},
		{
			name: "the first failing rule denies with its message",
			with: []string{
				`      rules:`,
				`        - check: len(csr.CommonName) <= 64`,
				`          message: CN too long`,
				`        - check: csr.KeyType == "RSA"`,
				`          message: RSA keys only`,
				`        - check: "false"`,
				`          message: never reached`,
			},
			key: "P-256", cn: "www.example.com", tmpl: "WebServer",
			deny: "RSA keys only",
		},
		{
			name: "rules see step outputs",
			with: []string{
				`      rules:`,
				`        - check: steps.lookup.owner == requester.Name`,
				`          message: not your name`,
			},
			key: "P-256", cn: "www.example.com", tmpl: "WebServer",
			outputs: map[string]map[string]any{"lookup": {"owner": "bob"}},
			deny:    "not your name",
		},
		{
			name: "with no with the template policy is checked",
			key:  "RSA-1024", cn: "www.example.com", tmpl: "WebServer",
			deny: "RSA 1024-bit",
		},
		{
			name: "the template policy is checked before the rules",
			with: []string{
				`      rules:`,
				`        - check: "false"`,
				`          message: rule says no`,
			},
			key: "RSA-1024", cn: "www.example.com", tmpl: "WebServer",
			deny: "RSA 1024-bit",
		},
		{
			name: "policy: false skips the template policy",
			with: []string{
				`      policy: false`,
				`      rules:`,
				`        - check: csr.KeyBits >= 1024`,
				`          message: tiny key`,
			},
			key: "RSA-1024", cn: "My Server", tmpl: "WebServer",
		},
		{
			name: "policy: true checks the template policy",
			with: []string{`      policy: true`},
			key:  "P-521", cn: "www.example.com", tmpl: "WebServer",
			deny: "ECC curve P-521",
		},
		{
			name: "the template's name is matched ignoring case",
			key:  "P-521", cn: "www.example.com", tmpl: "webserver",
			deny: "ECC curve P-521",
		},
		{
			name: "a request without a template or a standalone CA is denied",
			key:  "RSA-1024", cn: "My Server", tmpl: "",
			deny: "names neither a template nor a certificate authority",
		},
		{
			name: "a template that no longer exists denies",
			key:  "P-256", cn: "www.example.com", tmpl: "Retired",
			deny: `template "Retired" no longer exists`,
		},
		{
			name: "RFC 2818 is met by the CN the worker adds as a SAN",
			key:  "P-256", cn: "www.example.com", tmpl: "WebServer",
		},
		{
			name: "a rule that cannot be evaluated fails permanently",
			with: []string{
				`      rules:`,
				`        - check: steps.lookup.count > 3`,
				`          message: too many`,
			},
			key: "P-256", cn: "www.example.com", tmpl: "WebServer",
			outputs: map[string]map[string]any{"lookup": {"count": "three"}},
			perm:    "steps.lookup.count > 3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := defaultConfig()
			lines := []string{`  - id: check`, `    uses: validate`}
			if tt.with != nil {
				lines = append(append(lines, `    with:`), tt.with...)
			}
			def := mustParse(t, cfg, afterLookup(lines...)...)
			csr := newCSR(t, tt.key, tt.cn, tt.dns...)
			env := envFor(t, cfg, workflow.Request{ID: 7, Template: tt.tmpl}, csr, tt.outputs)
			res, err := runStepCSR(t, def, "check", env, csr, nil)
			var deny *workflow.DenyError
			var perm *workflow.PermanentError
			switch {
			case tt.deny != "":
				if !errors.As(err, &deny) {
					t.Fatalf("Run = %v, want a *workflow.DenyError", err)
				}
				if !strings.Contains(deny.Message, tt.deny) {
					t.Errorf("deny message = %q, want it to contain %q", deny.Message, tt.deny)
				}
			case tt.perm != "":
				if !errors.As(err, &perm) || errors.As(err, &deny) {
					t.Fatalf("Run = %v (%T), want a *workflow.PermanentError", err, err)
				}
				if !strings.Contains(err.Error(), tt.perm) {
					t.Errorf("error = %q, want it to contain %q", err, tt.perm)
				}
			case err != nil:
				t.Fatalf("Run = %v, want the step to pass", err)
			}
			if len(res.Outputs) != 0 || len(res.Metadata) != 0 || res.Certificate != nil {
				t.Errorf("validate returned a non-empty result: %+v", res)
			}
		})
	}
}

func TestValidateStepDenialEndsTheWorkflowRejected(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	def := mustParse(t, cfg, oneStep(
		`  - id: check`,
		`    uses: validate`,
		`    with:`,
		`      rules:`,
		`        - check: csr.CommonName endsWith ".example.com"`,
		`          message: only example.com names`,
		`  - id: tell`,
		`    uses: notify`,
		`    with:`,
		`      log: never`,
	)...)
	env := workflow.NewInput("event:test", workflow.Request{ID: 7, Template: "WebServer"}, newCSR(t, "P-256", "www.example.org", "www.example.org"), workflow.Requester{Name: "alice"}, true)
	e := &workflow.Engine{Log: nopLogger()}
	inst := &workflow.Instance{ID: "i"}
	if err := e.Start(inst, def); err != nil {
		t.Fatal(err)
	}
	if err := e.Run(t.Context(), def, env, inst, func(_ context.Context, _ *workflow.Instance) error { return nil }); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if inst.Status != workflow.StatusRejected || inst.Message != "only example.com names" {
		t.Errorf("Status %s Message %q, want Rejected with the rule's message", inst.Status, inst.Message)
	}
	if len(inst.History) != 1 || inst.History[0].Outcome != workflow.OutcomeDenied {
		t.Errorf("history = %+v, want one Denied record", inst.History)
	}
}

func TestValidateStepLoadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		with []string // lines under `with:` (the with: key is line 6)
		line int
		want []string
	}{
		{
			name: "a rule without a message",
			with: []string{
				`      rules:`,
				`        - check: csr.KeyBits >= 2048`,
				`          message: big enough`,
				`        - check: csr.KeyType == "RSA"`,
			},
			line: 10,
			want: []string{"rules[1].message: required"},
		},
		{
			name: "a rule with a blank message",
			with: []string{
				`      rules:`,
				`        - check: csr.KeyType == "RSA"`,
				`          message: "  "`,
			},
			line: 8,
			want: []string{"rules[0].message: required"},
		},
		{
			name: "a rule without a check",
			with: []string{
				`      rules:`,
				`        - message: RSA only`,
			},
			line: 7,
			want: []string{"rules[0].check: required"},
		},
		{
			name: "a check that is not a string",
			with: []string{
				`      rules:`,
				`        - check: [csr.KeyBits]`,
				`          message: m`,
			},
			line: 7,
			want: []string{"rules[0].check: required, a boolean expression"},
		},
		{
			name: "a check that is not boolean",
			with: []string{
				`      rules:`,
				`        - check: csr.KeyBits`,
				`          message: m`,
			},
			line: 8,
			want: []string{"csr.KeyBits", "bool"},
		},
		{
			name: "a check with a misspelt field",
			with: []string{
				`      rules:`,
				`        - check: csr.CommonNam == "x"`,
				`          message: m`,
			},
			line: 8,
			want: []string{"CommonNam"},
		},
		{
			name: "a misspelt key in a rule",
			with: []string{
				`      rules:`,
				`        - check: "true"`,
				`          mesage: m`,
			},
			line: 9,
			want: []string{`unknown key "mesage"`},
		},
		{
			name: "an unknown key in with",
			with: []string{
				`      polcy: false`,
			},
			line: 7,
			want: []string{`unknown key "polcy"`, "known: policy, rules"},
		},
		{
			name: "a policy that is not a boolean",
			with: []string{
				`      policy: sometimes`,
			},
			line: 7,
			want: []string{"sometimes"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lines := append([]string{`  - id: check`, `    uses: validate`, `    with:`}, tt.with...)
			_, err := parse(defaultConfig(), oneStep(lines...)...)
			wantLoadError(t, err, tt.line, "check", tt.want...)
		})
	}
}

package steps_test

import (
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

func TestTemplatePolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		key       string
		cn        string
		dns       []string
		requested map[string][]string
		addCN     bool
		template  func(*config.Template) // changes to the WebServer template
		deny      []string               // nil: allowed; else the message contains each
	}{
		{name: "RSA 2048 is allowed", key: "RSA-2048", cn: "www.example.com", dns: []string{"www.example.com"}},
		{
			name: "RSA 1024 is denied, naming the size", key: "RSA-1024", cn: "www.example.com", dns: []string{"www.example.com"},
			deny: []string{"template WebServer", "RSA 1024-bit", "allowed: 2048, 3072, 4096"},
		},
		{
			name: "RSA 2048 is denied when the template lists only larger keys", key: "RSA-2048", cn: "www.example.com", dns: []string{"www.example.com"},
			template: func(t *config.Template) { t.RSAKeySizes = []int{3072, 4096} },
			deny:     []string{"RSA 2048-bit", "allowed: 3072, 4096"},
		},
		{name: "P-256 is allowed", key: "P-256", cn: "www.example.com", dns: []string{"www.example.com"}},
		{name: "P-384 is allowed", key: "P-384", cn: "www.example.com", dns: []string{"www.example.com"}},
		{
			name: "P-521 is denied for WebServer", key: "P-521", cn: "www.example.com", dns: []string{"www.example.com"},
			deny: []string{"ECC curve P-521", "allowed: P-256, P-384"},
		},
		{
			name: "P-521 is allowed when the template lists it", key: "P-521", cn: "www.example.com", dns: []string{"www.example.com"},
			template: func(t *config.Template) { t.ECCCurves = append(t.ECCCurves, "P-521") },
		},
		{
			name: "Ed25519 is denied by default", key: "Ed25519", cn: "www.example.com", dns: []string{"www.example.com"},
			deny: []string{"does not allow Ed25519"},
		},
		{
			name: "Ed25519 is allowed with AllowEd25519", key: "Ed25519", cn: "www.example.com", dns: []string{"www.example.com"},
			template: func(t *config.Template) { t.AllowEd25519 = true },
		},
		{
			name: "a wildcard SAN is denied by default", key: "P-256", cn: "www.example.com", dns: []string{"www.example.com", "*.example.com"},
			deny: []string{"wildcard names (*.example.com)"},
		},
		{
			name: "a requested wildcard SAN is denied by default", key: "P-256", cn: "www.example.com", dns: []string{"www.example.com"},
			requested: map[string][]string{"dns": {"*.api.example.com"}},
			deny:      []string{"wildcard names (*.api.example.com)"},
		},
		{
			name: "a wildcard CN is denied by default even when it is not a SAN", key: "P-256", cn: "*.example.com", dns: []string{"www.example.com"},
			deny: []string{"wildcard names (*.example.com)"},
		},
		{
			name: "a wildcard is allowed with AllowWildcards", key: "P-256", cn: "*.example.com", dns: []string{"*.example.com"},
			template: func(t *config.Template) { t.AllowWildcards = true },
		},
		{
			name: "an invalid DNS SAN is denied", key: "P-256", cn: "www.example.com", dns: []string{"www.example.com", "bad_name.example.com"},
			deny: []string{`"bad_name.example.com" is not a valid DNS name`},
		},
		{
			name: "RFC 2818 denies no DNS or IP SAN and a CN that is not a name", key: "P-256", cn: "My Server", addCN: true,
			deny: []string{"enforces RFC 2818"},
		},
		{
			name: "RFC 2818 denies a request with only an email SAN", key: "P-256", cn: "Alice Example",
			requested: map[string][]string{"rfc822": {"alice@example.com"}}, addCN: true,
			deny: []string{"enforces RFC 2818"},
		},
		{name: "RFC 2818 accepts a DNS-name CN that MergeSANs added", key: "P-256", cn: "www.example.com", addCN: true},
		{name: "RFC 2818 accepts an IP CN that MergeSANs added", key: "P-256", cn: "192.0.2.10", addCN: true},
		{
			name: "RFC 2818 looks at SANs only: a DNS-name CN not added is not enough", key: "P-256", cn: "www.example.com",
			deny: []string{"enforces RFC 2818"},
		},
		{
			name: "RFC 2818 accepts a requested DNS SAN", key: "P-256", cn: "My Server",
			requested: map[string][]string{"dns": {"www.example.com"}}, addCN: true,
		},
		{
			name: "without RFC 2818 enforcement no SAN is needed", key: "P-256", cn: "My Server",
			template: func(t *config.Template) { t.RFCEnforcement = false },
		},
		{
			name: "the key is checked before the names", key: "RSA-1024", cn: "*.example.com", dns: []string{"*.example.com"},
			deny: []string{"RSA 1024-bit"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := defaultConfig()
			tmpl, ok := cfg.Template(config.DefaultTemplate)
			if !ok {
				t.Fatal("no default template")
			}
			if tt.template != nil {
				tt.template(tmpl)
			}
			csr := workflow.NewCSR(newCSR(t, tt.key, tt.cn, tt.dns...))
			sans := workflow.MergeSANs(csr, tt.requested, tt.addCN)
			msg := steps.TemplatePolicy(tmpl, csr, sans)
			if tt.deny == nil {
				if msg != "" {
					t.Errorf("TemplatePolicy denied: %q; want allowed", msg)
				}
				return
			}
			if msg == "" {
				t.Fatalf("TemplatePolicy allowed the request; want denied with %q", tt.deny)
			}
			for _, w := range tt.deny {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// BUG (steps/validate.go, TemplatePolicy): `append(sans.DNS, csr.CommonName)`
// writes the CN into the spare capacity of the caller's sans.DNS backing
// array, so TemplatePolicy mutates its input (and races with any other
// reader of that array).
func TestTemplatePolicyDoesNotWriteIntoTheCallersSANs(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	tmpl, _ := cfg.Template(config.DefaultTemplate)
	backing := make([]string, 1, 2)
	backing[0] = "www.example.com"
	steps.TemplatePolicy(tmpl, workflow.CSR{KeyType: "ECC", Curve: "P-256", CommonName: "cn.example.com"}, workflow.SANs{DNS: backing})
	if spare := backing[:2][1]; spare != "" {
		t.Errorf("TemplatePolicy wrote %q past the end of sans.DNS", spare)
	}
}

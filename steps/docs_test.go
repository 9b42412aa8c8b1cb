package steps_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/config"
)

// The definitions and steps in docs/events.md's section on the steps that
// act on certificates load with the real catalogue: the documentation
// shows what certflow takes.
func TestTheActingStepsDocumentedDefinitionsLoad(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(src)
	start := strings.Index(doc, "## Steps that act on certificates")
	if start < 0 {
		t.Fatal("docs/events.md has no section on the steps that act on certificates")
	}
	section := doc[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	cfg := config.Default()
	cfg.SMTP.Addr = "smtp.example.com:587" // the example emails
	n := 0
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(section, -1) {
		def := strings.TrimRight(m[1], "\n")
		if strings.HasPrefix(def, "  - id: ") {
			// A step alone, in an event definition after a renew step
			// (whose outputs the examples read).
			first := "  - id: renew\n    uses: renew\n"
			if strings.HasPrefix(def, "  - id: renew\n") {
				first = ""
			}
			def = "name: t\ntrigger: event:certificate.expiring\nsteps:\n" + first + def
		} else if !strings.HasPrefix(def, "name:") {
			continue
		}
		n++
		if _, err := parse(&cfg, def); err != nil {
			t.Errorf("documented definition does not load:\n%s\n%v", m[1], err)
		}
	}
	if n < 6 {
		t.Fatalf("%d definitions and steps found in the section, want every example", n)
	}
}

package workflow_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

// FuzzDefinitionParsing: Parse never panics; every error it returns is a
// LoadError placed on a line; what it accepts has every step built.
func FuzzDefinitionParsing(f *testing.F) {
	for _, p := range []string{"../definitions/enrollment-default.yaml", "../definitions/examples/web-server.yaml"} {
		if b, err := os.ReadFile(filepath.FromSlash(p)); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"", "name: x\ntrigger: enrollment\nsteps: []\n", "a: &a [*a]\n", "name: x\n<<: {trigger: enrollment}\n",
		"name: x\ntrigger: enrollment\nsteps:\n  - {id: a, uses: validate, if: 'csr.Nope'}\n",
		"name: x\ntrigger: event:y\nsteps:\n  - {id: a, uses: set, with: {v: '${{ 1 +'}}\n",
	} {
		f.Add([]byte(s))
	}
	cfg := config.Default()
	catalog := steps.ForLint(&cfg).Catalog()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		def, err := workflow.Parse("fuzz.yaml", data, catalog)
		if err != nil {
			var walk func(error)
			walk = func(e error) {
				if j, ok := e.(interface{ Unwrap() []error }); ok {
					for _, x := range j.Unwrap() {
						walk(x)
					}
					return
				}
				var le *workflow.LoadError
				if !errors.As(e, &le) || le.Pos.Line < 1 {
					t.Fatalf("error without a position: %v", e)
				}
			}
			walk(err)
			return
		}
		for _, s := range def.Steps {
			if s.Step == nil {
				t.Fatalf("step %s accepted without being built", s.ID)
			}
		}
	})
}

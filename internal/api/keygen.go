package api

import (
	"slices"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/pki"
)

// The key policy of server-side generation without a template (a CSR
// generated without Template, a standalone CA's PFX enrollment): the key
// sizes and curves every client handles, each generated in well under a
// few seconds. A larger RSA key costs minutes of CPU (RSA-8192 took 85 s)
// and Ed25519 is not what a client expects unless a template says so:
// both only where a template allows them.
var (
	defaultRSAKeySizes = []int{2048, 3072, 4096}
	defaultECCCurves   = []string{"P-256", "P-384"}
)

// keyPoolRetryAfter is the Retry-After of a request the key pool turned
// away: about the time an allowed key takes to generate.
const keyPoolRetryAfter = time.Second

// checkGenerationDefaults refuses, naming the field that chose it, a key
// the default generation policy does not allow. It runs before anything
// is generated.
func checkGenerationDefaults(spec pki.KeySpec) error {
	switch spec.Type {
	case "RSA":
		if !slices.Contains(defaultRSAKeySizes, spec.Bits) {
			return badField("KeyLength", "RSA %d-bit keys are generated only for a template that allows them; without a template: %s", spec.Bits, joinInts(defaultRSAKeySizes))
		}
	case "ECC":
		if !slices.Contains(defaultECCCurves, spec.Curve) {
			return badField("Curve", "ECC curve %s is generated only for a template that allows it; without a template: %s", spec.Curve, strings.Join(defaultECCCurves, ", "))
		}
	case "Ed25519":
		return badField("KeyType", "Ed25519 keys are generated only for a template that allows them")
	default:
		return badField("KeyType", "unknown key type %q", spec.Type)
	}
	return nil
}

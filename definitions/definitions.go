// Package definitions embeds the workflow definitions certflow ships, so a
// binary run outside the source tree still has them.
package definitions

import "embed"

// FS holds the shipped *.yaml definitions.
//
//go:embed *.yaml
var FS embed.FS

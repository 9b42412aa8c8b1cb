//go:build !unix

package secretfile

// Elsewhere Read relies on its Lstat check alone.
const (
	oNoFollow = 0
	oNonBlock = 0
)

//go:build !unix

package secretfile

import "io/fs"

// Elsewhere Read relies on its Lstat check alone.
const (
	oNoFollow = 0
	oNonBlock = 0
)

// foreignOwner knows no owners here.
func foreignOwner(fs.FileInfo) (int, bool) { return 0, false }

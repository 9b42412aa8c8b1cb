//go:build unix

package secretfile

import "syscall"

// Open flags: never follow a link in the last element; never block
// opening a FIFO (it is refused as not a regular file).
const (
	oNoFollow = syscall.O_NOFOLLOW
	oNonBlock = syscall.O_NONBLOCK
)

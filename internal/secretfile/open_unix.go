//go:build unix

package secretfile

import (
	"io/fs"
	"os"
	"syscall"
)

// Open flags: never follow a link in the last element; never block
// opening a FIFO (it is refused as not a regular file).
const (
	oNoFollow = syscall.O_NOFOLLOW
	oNonBlock = syscall.O_NONBLOCK
)

// foreignOwner returns the owner of a file that neither this process's
// user nor root owns (ok false when one of them does): whoever owns a
// secret file chose its content.
func foreignOwner(st fs.FileInfo) (uid int, foreign bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	uid = int(sys.Uid)
	return uid, uid != 0 && uid != os.Geteuid()
}

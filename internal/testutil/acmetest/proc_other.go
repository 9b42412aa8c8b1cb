//go:build unix && !linux

package acmetest

import "syscall"

// sysProcAttr puts the child in its own process group (killed as a
// group). There is no parent-death signal outside Linux.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

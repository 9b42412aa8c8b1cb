//go:build unix && !linux

package app

import "syscall"

// childProcAttr puts the child redis-server in a process group of its own,
// so that a Ctrl-C at the terminal reaches certflow alone, which then
// stops its workers before its Redis. There is no parent-death signal
// here: a certflow killed with SIGKILL leaves it running, and the next
// start shuts it down through its socket (stopLeftover).
func childProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// ourRedis cannot tell here whether a pid is a redis-server of dir's, so a
// silent leftover is never signalled (a pid file's pid may be reused by
// another process); one that answers on the socket is shut down through
// it.
func ourRedis(pid int, dir string) bool { return false }

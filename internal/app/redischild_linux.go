package app

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// childProcAttr puts the child redis-server in a process group of its own,
// so that a Ctrl-C at the terminal reaches certflow alone, which then
// stops its workers before its Redis; and has Linux send it SIGTERM when
// certflow dies, SIGKILL included (redis-server flushes its file and
// exits).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// ourRedis reports whether pid is a live process whose working directory
// is dir: a redis-server an earlier certflow started there (it runs in
// that folder), not another process that reuses the pid.
func ourRedis(pid int, dir string) bool {
	cwd, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "cwd"))
	if err != nil {
		return false // gone, a zombie, or not ours to read
	}
	abs, err := filepath.Abs(dir)
	return err == nil && cwd == abs
}

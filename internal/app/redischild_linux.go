package app

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// ourRedis reports whether pid is a live redis-server whose working
// directory is dir: one an earlier certflow started there (it runs in that
// folder), not another process that reuses the pid (a shell in the folder
// included).
func ourRedis(pid int, dir string) bool {
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	cwd, err := os.Readlink(filepath.Join(proc, "cwd"))
	if err != nil {
		return false // gone, a zombie, or not ours to read
	}
	cmdline, err := os.ReadFile(filepath.Join(proc, "cmdline"))
	name, _, _ := strings.Cut(string(cmdline), " ") // redis-server rewrites its title: "redis-server unixsocket:…"
	name, _, _ = strings.Cut(name, "\x00")
	abs, aerr := filepath.Abs(dir)
	return err == nil && aerr == nil && cwd == abs && filepath.Base(name) == "redis-server"
}

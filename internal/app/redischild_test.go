package app

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// startChild starts the child redis-server of the data dir dir; the test
// fails if it does not start.
func startChild(t *testing.T, dir string) *childRedis {
	t.Helper()
	c, err := startChildRedis(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

func childClient(t *testing.T, c *childRedis) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(c.options())
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// A redis-server an earlier certflow left running in the data directory
// (killed where no parent-death signal reached it), whether it answers or
// is stopped, is shut down before the next one starts on the same files,
// and what it held is kept. A pid file naming another process is stale.
func TestALeftoverChildRedisIsStoppedAndItsDataKept(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	first := startChild(t, dir)
	if err := childClient(t, first).Set(ctx, "kept", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	second := startChild(t, dir) // the first is still running: a leftover
	<-first.exited
	if v, err := childClient(t, second).Get(ctx, "kept").Result(); err != nil || v != "1" {
		t.Fatalf("the leftover's data: %q %v", v, err)
	}

	if err := childClient(t, second).Set(ctx, "kept", "2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	second.cmd.Process.Signal(syscall.SIGSTOP) // hung: it no longer answers
	third := startChild(t, dir)
	<-second.exited
	if v, err := childClient(t, third).Get(ctx, "kept").Result(); err != nil || v != "2" {
		t.Fatalf("the stopped leftover's data: %q %v", v, err)
	}

	third.Stop()
	pidFile := filepath.Join(dir, "redis", "redis.pid")
	if _, err := os.Stat(pidFile); err == nil {
		t.Fatal("the pid file outlived a clean stop")
	}
	// A reused pid: a process that is not redis-server, working in the
	// folder (a shell someone left there).
	other := exec.Command("sleep", "60")
	other.Dir = filepath.Join(dir, "redis")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	if ourRedis(other.Process.Pid, filepath.Join(dir, "redis")) {
		t.Fatal("a process working in the folder that is not redis-server would be signalled")
	}
	os.WriteFile(pidFile, []byte(strconv.Itoa(other.Process.Pid)+"\n"), 0o600)
	fourth := startChild(t, dir)
	if v, err := childClient(t, fourth).Get(ctx, "kept").Result(); err != nil || v != "2" {
		t.Fatalf("after a stale pid file: %q %v", v, err)
	}
	if runtime.GOOS == "linux" && !ourRedis(fourth.cmd.Process.Pid, fourth.dir) {
		t.Fatal("the child is not recognised as the folder's redis-server")
	}
}

// The child's files are its owner's alone, and it listens on no TCP port.
func TestTheChildRedisIsPrivate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := startChild(t, dir)
	for _, p := range []string{c.dir, filepath.Join(c.dir, "redis.sock")} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s: %v %v", p, st.Mode(), err)
		}
	}
	cfg, err := childClient(t, c).ConfigGet(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"port": "0", "appendonly": "yes", "appendfsync": "everysec", "save": "", "protected-mode": "yes"} {
		if cfg[k] != want {
			t.Errorf("%s is %q, want %q", k, cfg[k], want)
		}
	}
}

// A socket path longer than a socket name may be is refused with what to
// do, not shortened to somewhere else.
func TestASocketPathTooLongIsRefusedWithTheFix(t *testing.T) {
	t.Parallel()
	long := filepath.Join("/", strings.Repeat("a-data-directory-far-too-long-for-a-socket-name/", 3))
	if _, err := socketPath(long); err == nil || !strings.Contains(err.Error(), "use a shorter --data-dir, or set CERTFLOW_REDIS_URL") {
		t.Fatalf("%v", err)
	}
}

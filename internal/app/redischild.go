package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/secretfile"
)

// childRedis is the redis-server `certflow serve` runs as its child when
// no Redis is configured and redis-server is on the PATH, so that the
// zero-setup mode keeps its records (requests, certificates, revocations,
// the CRL) across restarts as it keeps its CA on disk.
//
// It keeps its data in <data-dir>/redis (owner-only, as the data
// directory): an append-only file and no RDB snapshots. It listens on a
// unix socket there (mode 0700) and on no TCP port, so only certflow's
// user can reach it. appendfsync is everysec: Redis writes every command
// to the file before it answers, so a crash of certflow or of redis-server
// loses nothing; only a crash of the machine itself can lose the last
// second or so. "always" would fsync every write and cost each enrollment
// a disk flush; a deployment that must survive power loss to the last
// write runs a Redis of its own (CERTFLOW_REDIS_URL).
//
// It stops with certflow: SIGTERM (redis-server flushes the file and
// exits) and a wait. When certflow is killed with SIGKILL, Linux sends the
// child SIGTERM (Pdeathsig); elsewhere, or should that be missed, the next
// start finds the earlier redis-server still answering on the socket and
// shuts it down before starting its own (stopLeftover), so two never write
// one file.
type childRedis struct {
	dir    string
	socket string // the path certflow dials
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited
}

// errNoRedisServer: redis-server is not on the PATH.
var errNoRedisServer = errors.New("redis-server is not on the PATH")

// maxSocketPath is the longest unix socket path every unix takes
// (sockaddr_un's sun_path: 108 bytes on Linux, 104 on the BSDs and macOS,
// with the terminating NUL).
const maxSocketPath = 103

// childRedisTimeout bounds each wait on the child: to answer once started
// (an append-only file is replayed first), and to exit once told to.
const childRedisTimeout = 60 * time.Second

// startChildRedis starts redis-server in <dataDir>/redis and waits until
// it answers; errNoRedisServer when there is none to start.
func startChildRedis(dataDir string, log *slog.Logger) (*childRedis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errNoRedisServer
	}
	dir := filepath.Join(dataDir, "redis")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if _, _, err := secretfile.SecureDir(dir); err != nil {
		return nil, err
	}
	c := &childRedis{dir: dir, exited: make(chan struct{})}
	if c.socket, err = socketPath(dir); err != nil {
		return nil, err
	}
	if err := c.stopLeftover(log); err != nil {
		return nil, err
	}
	// The socket, log and pid file are named relative to the folder
	// redis-server runs in: an absolute socket path may be longer than a
	// socket's name can be.
	c.cmd = exec.Command(bin,
		"--port", "0", "--unixsocket", "redis.sock", "--unixsocketperm", "700",
		"--dir", ".", "--logfile", "redis.log", "--pidfile", "redis.pid",
		"--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
		"--protected-mode", "yes", "--daemonize", "no", "--maxmemory-policy", "noeviction")
	c.cmd.Dir = dir
	c.cmd.SysProcAttr = childProcAttr()
	if err := c.start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	if err := c.waitAnswer(childRedisTimeout); err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-server in %s did not answer: %w%s", dir, err, c.logTail())
	}
	return c, nil
}

// start starts the process from a goroutine locked to its OS thread, which
// then waits for it: Linux's parent-death signal follows the thread that
// started the child, so that thread must live as long as the child does.
func (c *childRedis) start() error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := c.cmd.Start(); err != nil {
			started <- err
			close(c.exited)
			return
		}
		started <- nil
		c.cmd.Wait()
		close(c.exited)
	}()
	return <-started
}

// socketPath is the socket's path as certflow dials it: absolute, or
// relative to the working directory when only that fits in a socket name.
func socketPath(dir string) (string, error) {
	abs, err := filepath.Abs(filepath.Join(dir, "redis.sock"))
	if err != nil {
		return "", err
	}
	if len(abs) <= maxSocketPath {
		return abs, nil
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, abs); err == nil && len(rel) <= maxSocketPath {
			return rel, nil
		}
	}
	return "", fmt.Errorf("the path of redis-server's socket, %s, is longer than a unix socket name may be (%d bytes): use a shorter --data-dir, or set CERTFLOW_REDIS_URL", abs, maxSocketPath)
}

// options say where the child listens, for go-redis.
func (c *childRedis) options() *redis.Options {
	return &redis.Options{Network: "unix", Addr: c.socket}
}

// answers reports whether a redis-server answers on the socket at all (an
// error reply, such as LOADING while it replays its file, is an answer).
func (c *childRedis) answers(ctx context.Context) bool {
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: c.socket, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer rdb.Close()
	err := rdb.Ping(ctx).Err()
	var rerr redis.Error
	return err == nil || errors.As(err, &rerr)
}

// waitAnswer waits until the child answers PING with PONG.
func (c *childRedis) waitAnswer(within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: c.socket, MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	for {
		err := rdb.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("it exited (%v)", c.cmd.ProcessState)
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop asks the child to stop (SIGTERM: it flushes its file) and waits;
// SIGKILL if it has not exited within childRedisTimeout.
func (c *childRedis) Stop() {
	if c.cmd.Process == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(childRedisTimeout):
		c.cmd.Process.Kill()
		<-c.exited
	}
}

// logTail is the end of the child's log, for an error saying why it did
// not start.
func (c *childRedis) logTail() string {
	b, err := os.ReadFile(filepath.Join(c.dir, "redis.log"))
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return "; its log ends:\n" + strings.Join(lines[max(0, len(lines)-5):], "\n")
}

// stopLeftover stops a redis-server an earlier certflow left running in
// the folder (certflow killed without its child getting the signal): one
// that answers on the socket is told to SHUTDOWN (it flushes its file);
// one named by the pid file that does not answer, and is ours (Linux: its
// working directory is the folder), is sent SIGTERM, then SIGKILL. Either
// way it returns once that process is gone. A pid file naming a process
// that is not there, or not a redis-server of this folder, is stale.
func (c *childRedis) stopLeftover(log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), childRedisTimeout)
	defer cancel()
	pid := c.leftoverPID()
	if c.answers(ctx) {
		log.Warn("a redis-server left running by an earlier certflow answers in the data directory; shutting it down before starting a new one", "dir", c.dir, "pid", pid)
		rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: c.socket, MaxRetries: -1})
		rdb.Shutdown(ctx) // answers with a closed connection when it works
		rdb.Close()
		for c.answers(ctx) {
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				return fmt.Errorf("the redis-server left running in %s did not shut down; stop it (pid %d)", c.dir, pid)
			}
		}
	}
	if pid == 0 {
		return nil
	}
	if !ourRedis(pid, c.dir) {
		os.Remove(filepath.Join(c.dir, "redis.pid"))
		return nil
	}
	// Ours and alive, but silent (hung, or still exiting after SHUTDOWN).
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	for _, sig := range []os.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		p.Signal(sig)
		p.Signal(syscall.SIGCONT) // a stopped process acts on SIGTERM only once it runs
		wctx, cancel := context.WithTimeout(context.Background(), childRedisTimeout)
		for ourRedis(pid, c.dir) && sleep(wctx, 50*time.Millisecond) == nil {
		}
		cancel()
		if !ourRedis(pid, c.dir) {
			os.Remove(filepath.Join(c.dir, "redis.pid"))
			return nil
		}
		log.Warn("the redis-server left running in the data directory does not answer and did not stop", "pid", pid, "signal", sig)
	}
	return fmt.Errorf("the redis-server left running in %s (pid %d) does not stop; stop it", c.dir, pid)
}

// leftoverPID is the pid in the folder's pid file (redis-server writes it
// at start and removes it when it exits cleanly); 0 if none.
func (c *childRedis) leftoverPID() int {
	b, err := os.ReadFile(filepath.Join(c.dir, "redis.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

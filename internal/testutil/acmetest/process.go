package acmetest

import (
	"context"
	"errors"
	"fmt"
	"github.com/certflow/certflow/internal/testutil"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// readyTimeout bounds how long a server may take to answer after it is
// started (step-ca opens its database and signs a CRL first).
const readyTimeout = 30 * time.Second

// process is a server started for one test: its own process group, its
// output in a file under the test's temporary folder (logged when the test
// fails), killed when the test ends.
type process struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit, once done is closed
}

// startProcess starts bin with args and env (added to this process's
// environment; later entries win) in dir, its output going to
// <dir>/<name>.log. The process is killed in t.Cleanup, and the log is
// written to the test's output if the test failed.
func startProcess(t testing.TB, name, dir, bin string, args, env []string) *process {
	t.Helper()
	p := &process{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("%s: log file: %v", name, err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = out
	p.cmd.Stderr = out
	p.cmd.SysProcAttr = sysProcAttr()

	// The parent-death signal (Linux) is sent when the *thread* that
	// started the child exits, not the process: start and wait on a
	// locked thread so the signal means "the test binary is gone".
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			out.Close()
			close(p.done)
			return
		}
		started <- nil
		p.err = p.cmd.Wait()
		out.Close()
		close(p.done)
	}()
	if err := <-started; err != nil {
		t.Fatalf("%s: start %s: %v", name, bin, err)
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			p.dump(t)
		}
	})
	return p
}

// stop kills the process group and waits for the process.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	if p.cmd.Process != nil {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// dump writes the process's output to the test log.
func (p *process) dump(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Logf("%s: no log: %v", p.name, err)
		return
	}
	const max = 64 << 10
	if len(b) > max {
		b = append([]byte("…\n"), b[len(b)-max:]...)
	}
	t.Logf("%s output (%s):\n%s", p.name, p.log, b)
}

// waitReady polls ready until it returns nil, failing the test (with the
// process's output) if the process exits or readyTimeout passes.
func (p *process) waitReady(t testing.TB, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		err := ready()
		if err == nil {
			return
		}
		if p.exited() {
			p.dump(t)
			t.Fatalf("%s exited before it was ready (%v): %v", p.name, p.err, err)
		}
		if time.Now().After(deadline) {
			p.dump(t)
			t.Fatalf("%s not ready after %s: %v", p.name, readyTimeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// httpReady returns a readiness check: GET url answers 200.
func httpReady(client *http.Client, url string) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// freePort returns a port that was free a moment ago on 127.0.0.1 for
// TCP (and, with udp, UDP too), below the ephemeral range
// (testutil.FreePortFor).
func freePort(t testing.TB, udp bool) int {
	t.Helper()
	return testutil.FreePortFor(t, udp)
}

// errStatus is the error for an unexpected HTTP answer.
func errStatus(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return errors.New(resp.Request.Method + " " + resp.Request.URL.String() + ": " + resp.Status + ": " + string(b))
}

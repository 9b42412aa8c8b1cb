package acmetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The servers' Go packages, at the versions scripts/acme-servers installs.
var tools = map[string]struct {
	pkg     string
	noCGO   bool
	timeout time.Duration // a generous bound on go install
}{
	"pebble":              {pkg: "github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.3", timeout: 5 * time.Minute},
	"pebble-challtestsrv": {pkg: "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@v2.10.3", timeout: 5 * time.Minute},
	"step-ca":             {pkg: "github.com/smallstep/certificates/cmd/step-ca@v0.30.2", noCGO: true, timeout: 15 * time.Minute},
}

var (
	binMu    sync.Mutex
	binPaths = map[string]string{}
	binErrs  = map[string]error{}
)

// Binary returns the path of a server's executable (pebble,
// pebble-challtestsrv, step-ca): the one on $PATH, else the one in
// $(go env GOPATH)/bin, else it installs the pinned version there with
// `go install` (step-ca with CGO_ENABLED=0; a minute or two). It does
// this once per test binary, and under a lock file in os.TempDir() so
// test binaries run in parallel don't build the same tool at once. The
// test fails if the tool cannot be found or installed.
func Binary(t testing.TB, name string) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := binPaths[name]; ok {
		return p
	}
	if err, ok := binErrs[name]; ok {
		t.Fatal(err)
	}
	p, err := findOrInstall(t, name)
	if err != nil {
		binErrs[name] = err
		t.Fatal(err)
	}
	binPaths[name] = p
	return p
}

func findOrInstall(t testing.TB, name string) (string, error) {
	tool, ok := tools[name]
	if !ok {
		return "", fmt.Errorf("acmetest.Binary: unknown tool %q (pebble, pebble-challtestsrv, step-ca)", name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	goBin, err := goTool()
	if err != nil {
		return "", fmt.Errorf("%s is not on $PATH and %v to install it (scripts/acme-servers installs it)", name, err)
	}
	gopath, err := goEnv(goBin, "GOPATH")
	if err != nil {
		return "", fmt.Errorf("%s is not on $PATH: %v", name, err)
	}
	binDir := filepath.Join(filepath.SplitList(gopath)[0], "bin")
	target := filepath.Join(binDir, name)
	if isExecutable(target) {
		return target, nil
	}

	// Another test binary may be installing it: take the lock, then look again.
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", fmt.Errorf("install %s: %v", name, err)
	}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "certflow-acmetest-install.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", fmt.Errorf("install %s: lock file: %v", name, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("install %s: lock: %v", name, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if isExecutable(target) {
		return target, nil
	}

	t.Logf("acmetest: %s not found: go install %s (once; scripts/acme-servers does it ahead)", name, tool.pkg)
	ctx, cancel := context.WithTimeout(context.Background(), tool.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "install", tool.pkg)
	cmd.Dir = os.TempDir() // outside any module: pkg@version builds with its own go.mod
	cmd.Env = append(os.Environ(), "GOBIN="+binDir, "GOFLAGS=")
	if tool.noCGO {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go install %s: %v\n%s", tool.pkg, err, out)
	}
	if !isExecutable(target) {
		return "", fmt.Errorf("go install %s did not write %s", tool.pkg, target)
	}
	return target, nil
}

// goTool is the go command: on $PATH, else the one that built this test.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if isExecutable(p) {
		return p, nil
	}
	return "", fmt.Errorf("no go command")
}

func goEnv(goBin, key string) (string, error) {
	out, err := exec.Command(goBin, "env", key).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %v", key, err)
	}
	v := strings.TrimSpace(string(out))
	if v == "" {
		return "", fmt.Errorf("go env %s is empty", key)
	}
	return v, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

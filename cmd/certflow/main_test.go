package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/testutil"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "certflow-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "certflow")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build certflow: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cleanEnv is the environment without any CERTFLOW_ setting, as on a
// newcomer's machine.
func cleanEnv() []string {
	// Each process's HTTPS on a port of its own: the default 8443 would
	// be taken by the first of the processes tests run side by side.
	env := []string{"CERTFLOW_TLS_LISTEN=127.0.0.1:0"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CERTFLOW_") {
			env = append(env, kv)
		}
	}
	return env
}

type process struct {
	cmd    *exec.Cmd
	stdout *bufio.Scanner
	stderr *testutil.SyncBuffer
	seen   bytes.Buffer
}

// startServe runs `certflow serve` in dir and reads its output up to the
// ready line.
func startServe(t *testing.T, dir string, port int) *process {
	t.Helper()
	return startServeEnv(t, dir, port, nil)
}

// startServeEnv is startServe with env added to the clean environment.
func startServeEnv(t *testing.T, dir string, port int, env []string) *process {
	t.Helper()
	cmd := exec.Command(binary, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	cmd.Dir, cmd.Env = dir, append(cleanEnv(), env...)
	p := &process{cmd: cmd, stderr: &testutil.SyncBuffer{}}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p.stdout = bufio.NewScanner(out)
	deadline := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for p.stdout.Scan() {
		p.seen.WriteString(p.stdout.Text() + "\n")
		if strings.HasPrefix(p.stdout.Text(), ReadyPrefix) {
			go io.Copy(io.Discard, out)
			return p
		}
	}
	t.Fatalf("serve did not print its welcome:\nstdout:\n%s\nstderr:\n%s", p.seen.String(), p.stderr.String())
	return nil
}

func (p *process) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM\n%s", err, p.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30 s of SIGTERM")
	}
}

func TestFirstRunServesWithZeroSetupAndItsCurlExampleWorks(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required for this test")
	}
	dir := t.TempDir()
	port := testutil.FreePort(t)
	p := startServe(t, dir, port)
	if !strings.Contains(p.stderr.String(), "running redis-server with its data in the data directory") {
		t.Fatalf("no word of the redis-server certflow runs:\n%s", p.stderr.String())
	}
	if !strings.Contains(p.seen.String(), "generated an admin API token") {
		t.Fatalf("the first run did not say it generated an admin token:\n%s", p.seen.String())
	}
	// Run the printed example exactly as a newcomer would paste it.
	text := p.seen.String()
	start := strings.Index(text, "  openssl req")
	end := strings.Index(text, "\nAdd -H")
	if start < 0 || end < 0 {
		t.Fatalf("no example in:\n%s", text)
	}
	cmd := exec.Command("bash", "-c", "set -e\n"+text[start:end])
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr // openssl draws progress there
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the printed example failed: %v\n%s%s", err, out, stderr.String())
	}
	var resp struct {
		CertificateInformation struct {
			RequestDisposition string
			Certificates       []string
		}
	}
	if err := json.Unmarshal(out, &resp); err != nil || resp.CertificateInformation.RequestDisposition != "ISSUED" || len(resp.CertificateInformation.Certificates) != 3 {
		t.Fatalf("the printed example answered: %s (%v)", out, err)
	}
	rootFile := filepath.Join(dir, ".certflow", "ca", "CertflowIssuingCA", "root.crt")
	root1, err := os.ReadFile(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	p.stop(t)

	// A second start reuses the CA and the token, and prints no new token.
	p2 := startServe(t, dir, port)
	defer p2.stop(t)
	root2, _ := os.ReadFile(rootFile)
	if !bytes.Equal(root1, root2) || strings.Contains(p2.stderr.String(), "created built-in CA") {
		t.Fatal("the second start made a new CA hierarchy")
	}
	if strings.Contains(p2.seen.String(), "generated an admin API token") {
		t.Fatal("the second start generated another admin token")
	}
	token, _ := os.ReadFile(filepath.Join(dir, ".certflow", "admin-token"))
	if strings.Contains(p2.stderr.String(), strings.TrimSpace(string(token))) {
		t.Fatal("the admin token appears in the log")
	}
}

func run2(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	return runEnv(t, dir, nil, args...)
}

// runEnv is run2 with env added to the clean environment.
func runEnv(t *testing.T, dir string, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir, cmd.Env = dir, append(cleanEnv(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestLintReportsPositionsAndExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	repoDefs, _ := filepath.Abs("../../definitions")
	// Examples that e-mail load only with an SMTP server configured.
	conf := filepath.Join(dir, "certflow.yaml")
	os.WriteFile(conf, []byte("smtp:\n  addr: smtp.example.com:587\n  from: certflow@example.com\n"), 0o644)
	out, code := run2(t, dir, "lint", "--config", conf, repoDefs, filepath.Join(repoDefs, "examples"))
	if code != 0 || !strings.Contains(out, "enrollment-default") || !strings.Contains(out, "web-server") {
		t.Fatalf("lint of the shipped definitions and examples: exit %d\n%s", code, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("name: bad\ntrigger: enrollment\nsteps:\n  - id: check\n    uses: validate\n    if: csr.CommonNam == \"x\"\n  - id: check\n    uses: nosuchstep\n"), 0o644)
	out, code = run2(t, dir, "lint", bad)
	if code != 1 {
		t.Fatalf("lint of a broken definition: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"bad.yaml:6:", `step "check"`, "CommonNam", "bad.yaml:7:", "duplicate step id", "nosuchstep"} {
		if !strings.Contains(out, want) {
			t.Errorf("lint output lacks %q:\n%s", want, out)
		}
	}
	// Every error of a step is reported, in file order, not only its
	// first: an unknown key does not hide the step's bad condition, nor
	// one bad variable the next.
	os.WriteFile(bad, []byte("name: bad\ntrigger: enrollment\nsteps:\n  - id: check\n    uses: validate\n    chek: x\n    if: csr.CommonNam == \"x\"\n  - id: vars\n    uses: set\n    with:\n      a: ${{ nope }}\n      b: ${{ alsonope }}\n  - id: gate\n    uses: approval\n    with:\n      quorum: 99\n      on_timeout: later\n"), 0o644)
	out, code = run2(t, dir, "lint", bad)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{`bad.yaml:6:5: step "check": unknown key "chek"`, `bad.yaml:7:`, `bad.yaml:11:`, `bad.yaml:12:`,
		`bad.yaml:16:15: step "gate": quorum: 99`, `bad.yaml:17:19: step "gate": on_timeout: "later"`}
	if code != 1 || len(lines) != len(want) {
		t.Fatalf("lint: exit %d, want 1 and %d lines:\n%s", code, len(want), out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want it to start %q", i+1, lines[i], w)
		}
	}
	// So are an http step's: method, URL, header, body and expected
	// status, each at its own line.
	os.WriteFile(bad, []byte("name: h\ntrigger: enrollment\nsteps:\n  - id: call\n    uses: http\n    with:\n      method: FETCH\n      url: \"https://x.example.com/a?q=${{ csr.CommonName }}\"\n      headers:\n        X-A: ${{ nope }}\n      body: '{\"a\": \"${{ csr.CommonName }}\"}'\n      expect: [42]\n"), 0o644)
	out, code = run2(t, dir, "lint", bad)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	want = []string{`bad.yaml:7:15: step "call": method:`, `bad.yaml:8:12: step "call": url:`, `bad.yaml:10:14:`, `bad.yaml:11:13: step "call": body:`, `bad.yaml:12:15: step "call": expect: 42`}
	if code != 1 || len(lines) != len(want) {
		t.Fatalf("lint: exit %d, want 1 and %d lines:\n%s", code, len(want), out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want it to start %q", i+1, lines[i], w)
		}
	}
	// A file named on the command line is shown once, as given.
	good := filepath.Join(repoDefs, "enrollment-default.yaml")
	out, code = run2(t, dir, "lint", good)
	if code != 0 || !strings.HasPrefix(out, "ok  "+good+"  enrollment-default ") {
		t.Errorf("lint %s: exit %d\n%s", good, code, out)
	}
}

// TestLintRefusesValuesSplicedIntoJSONOrAQuery: lint reports, at their
// lines and naming the step, a JSON body written as a string around
// ${{ }} and a ${{ }} in a URL's query, and says what to write instead.
// certflow test runs the shipped definitions' tests (with the examples'
// folder under them), the shipped set's when no definitions folder
// exists, and reports a failing case at file:line with exit 1.
func TestTestCommandRunsTestFilesAndReportsFailuresAtTheirLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	repoDefs, _ := filepath.Abs("../../definitions")
	// Examples that e-mail are built only with an SMTP server configured.
	conf := filepath.Join(dir, "certflow.yaml")
	os.WriteFile(conf, []byte("smtp:\n  addr: smtp.example.com:587\n  from: certflow@example.com\n"), 0o644)
	out, code := run2(t, dir, "test", "--config", conf, repoDefs)
	if code != 0 || !strings.Contains(out, "ok    "+filepath.ToSlash(filepath.Join(repoDefs, "examples", "web-server.test.yaml"))) ||
		!strings.Contains(out, " passed, 0 failed") {
		t.Fatalf("test of the shipped definitions: exit %d\n%s", code, out)
	}
	// Without a mail server configured, e-mailing examples are tested all
	// the same (a test sends nothing), with a note that certflow itself
	// would not load them.
	out, code = run2(t, dir, "test", repoDefs)
	if code != 0 || !strings.Contains(out, "note: smtp.addr is not configured") || !strings.Contains(out, "auto-renew-tell-owner.test.yaml") {
		t.Fatalf("test of the shipped definitions without smtp: exit %d\n%s", code, out)
	}
	out, code = run2(t, dir, "test")
	if code != 0 || !strings.Contains(out, "(shipped definitions)/enrollment-default.test.yaml") {
		t.Fatalf("test with no definitions folder: exit %d\n%s", code, out)
	}
	defs := filepath.Join(dir, "defs")
	os.Mkdir(defs, 0o755)
	os.WriteFile(filepath.Join(defs, "mine.yaml"), []byte("name: mine\ntrigger: enrollment\nsteps:\n  - id: issue\n    uses: issue\n"), 0o644)
	os.WriteFile(filepath.Join(defs, "mine.test.yaml"), []byte("cases:\n  - name: issued\n    request: {template: WebServer}\n    expect:\n      disposition: DENIED\n"), 0o644)
	out, code = run2(t, dir, "test", filepath.Join(defs, "mine.yaml"))
	want := filepath.Join(defs, "mine.test.yaml") + `:5: case "issued": expected disposition DENIED, got ISSUED`
	if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "1 cases: 0 passed, 1 failed") {
		t.Fatalf("a failing case: exit %d, want 1 and %q:\n%s", code, want, out)
	}
	// The test file is not a definition: lint and serve never read it;
	// named on lint's command line, it is checked as a test file.
	if out, code := run2(t, dir, "lint", defs); code != 0 || strings.Contains(out, "mine.test") {
		t.Fatalf("lint of a folder with a test file: exit %d\n%s", code, out)
	}
	if out, code := run2(t, dir, "lint", filepath.Join(defs, "mine.test.yaml")); code != 0 || !strings.Contains(out, "1 test cases") {
		t.Fatalf("lint of a test file: exit %d\n%s", code, out)
	}
	os.WriteFile(filepath.Join(defs, "mine.test.yaml"), []byte("cases:\n  - name: issued\n    request: {template: WebServer}\n    expect:\n      dispositon: DENIED\n"), 0o644)
	if out, code := run2(t, dir, "lint", filepath.Join(defs, "mine.test.yaml")); code != 1 || !strings.Contains(out, `mine.test.yaml:5: expect: unknown key "dispositon"`) {
		t.Fatalf("lint of a broken test file: exit %d\n%s", code, out)
	}
}

func TestLintRefusesValuesSplicedIntoJSONOrAQuery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "spliced.yaml")
	os.WriteFile(bad, []byte(`name: spliced
trigger: enrollment
steps:
  - id: lookup
    uses: http
    with:
      method: POST
      url: https://cmdb.example.com/owners
      body: '{"host": "${{ csr.CommonName }}", "requester": "${{ requester.Name }}"}'
  - id: search
    uses: http
    with:
      url: "https://cmdb.example.com/search?host=${{ csr.CommonName }}"
`), 0o644)
	out, code := run2(t, dir, "lint", bad)
	if code != 1 {
		t.Fatalf("lint: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		`spliced.yaml:9:`, `step "lookup"`, "body:", "write the body as YAML",
		`spliced.yaml:13:`, `step "search"`, "url:", "`query:`",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lint output lacks %q:\n%s", want, out)
		}
	}
	// The fix the messages name lints clean.
	good := filepath.Join(dir, "structured.yaml")
	os.WriteFile(good, []byte(`name: structured
trigger: enrollment
steps:
  - id: lookup
    uses: http
    with:
      method: POST
      url: https://cmdb.example.com/owners
      body: {host: "${{ csr.CommonName }}", requester: "${{ requester.Name }}"}
  - id: search
    uses: http
    with:
      url: https://cmdb.example.com/search
      query: {host: "${{ csr.CommonName }}"}
`), 0o644)
	if out, code := run2(t, dir, "lint", good); code != 0 {
		t.Fatalf("lint of the structured form: exit %d\n%s", code, out)
	}
}

func TestCAInitAndSplitRoles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, code := run2(t, dir, "ca", "init", "--data-dir", "d")
	if code != 0 || !strings.Contains(out, "created") {
		t.Fatalf("ca init: exit %d\n%s", code, out)
	}
	out, code = run2(t, dir, "ca", "init", "--data-dir", "d")
	if code != 0 || !strings.Contains(out, "already exists") {
		t.Fatalf("second ca init: exit %d\n%s", code, out)
	}
	for _, role := range []string{"api", "worker"} {
		out, code = run2(t, dir, role)
		if code == 0 || !strings.Contains(out, "CERTFLOW_REDIS_URL") {
			t.Fatalf("%s without Redis: exit %d, want an error naming CERTFLOW_REDIS_URL\n%s", role, code, out)
		}
	}
	if _, code := run2(t, dir, "frobnicate"); code == 0 {
		t.Fatal("an unknown command exited 0")
	}
}

// startProcess runs the binary with args and env in dir; it is killed when
// the test ends.
// splitEnv makes the CAs of dir's certflow.yaml (ca init) and returns the
// environment of api and worker processes sharing it, its defs folder and
// the test Redis, the api listening on port.
func splitEnv(t *testing.T, dir string) (env []string, port int) {
	t.Helper()
	port = testutil.FreePort(t)
	env = []string{
		"CERTFLOW_REDIS_URL=" + testutil.RedisURL(), "CERTFLOW_CONFIG=certflow.yaml",
		"CERTFLOW_DEFINITIONS=defs", fmt.Sprintf("CERTFLOW_LISTEN=127.0.0.1:%d", port),
	}
	if out, code := run2(t, dir, "ca", "init", "--config", "certflow.yaml"); code != 0 {
		t.Fatalf("ca init: %s", out)
	}
	return env, port
}

// startAPI starts an api process of a split deployment of dir (splitEnv)
// and waits until it listens: the environment of the deployment's other
// processes, and the API's base URL. Workers start after it; they need
// not wait for it.
func startAPI(t *testing.T, dir string) (env []string, base string) {
	t.Helper()
	env, port := splitEnv(t, dir)
	_, apiLogs := startProcess(t, dir, env, "api")
	waitForText(t, apiLogs, "listening on")
	return env, fmt.Sprintf("http://127.0.0.1:%d", port)
}

func startProcess(t *testing.T, dir string, env []string, args ...string) (*exec.Cmd, *testutil.SyncBuffer) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir, cmd.Env = dir, append(cleanEnv(), env...)
	logs := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%v:\n%s", args, logs.String())
		}
	})
	return cmd, logs
}

func TestAPIAndWorkersAsSeparateProcesses(t *testing.T) {
	t.Parallel()
	_, prefix := testutil.Redis(t) // cleans the prefix's keys afterwards
	dir := t.TempDir()
	cfg := fmt.Sprintf("key_prefix: %s\nqueue: %s\nauth:\n  users:\n    - {name: alice, token: alice-token, roles: [requester]}\n", prefix, prefix)
	os.WriteFile(filepath.Join(dir, "certflow.yaml"), []byte(cfg), 0o600)
	defs, _ := filepath.Abs("../../definitions")
	port := testutil.FreePort(t)
	env := []string{
		"CERTFLOW_REDIS_URL=" + testutil.RedisURL(), "CERTFLOW_CONFIG=certflow.yaml",
		"CERTFLOW_DEFINITIONS=" + defs, fmt.Sprintf("CERTFLOW_LISTEN=127.0.0.1:%d", port),
	}
	// The CA is made once, explicitly; workers share the data dir.
	if out, code := run2(t, dir, "ca", "init", "--config", "certflow.yaml"); code != 0 {
		t.Fatalf("ca init: %s", out)
	}
	startProcess(t, dir, env, "worker")
	startProcess(t, dir, env, "worker")
	_, apiLogs := startProcess(t, dir, env, "api")
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(apiLogs.String(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("api did not start:\n%s", apiLogs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < 5; i++ {
		csr, _ := testutil.CSR(t, fmt.Sprintf("split%d.example.com", i))
		r := testutil.Do(t, base, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, nil),
			"x-certificateformat", "PEM", "Authorization", "Bearer alice-token")
		var resp struct {
			CertificateInformation struct{ RequestDisposition string }
		}
		r.JSON(t, &resp)
		if r.Status != 200 || resp.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("enrollment %d through separate processes: %d %s", i, r.Status, r.Body)
		}
	}
}

// `certflow inventory check` reports what the inventory's indexes hold
// that no certificate explains (exit 1), --repair removes it, and the
// next check finds the indexes consistent; without a Redis to read it
// says what to set.
func TestInventoryCheckFindsAndRepairs(t *testing.T) {
	t.Parallel()
	rdb, prefix := testutil.Redis(t)
	ctx := context.Background()
	// An entry naming a certificate that does not exist.
	if err := rdb.ZAdd(ctx, prefix+":inv:revoked", redis.Z{Score: 999, Member: "999"}).Err(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "certflow.yaml"), []byte("key_prefix: "+prefix+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(args ...string) (string, int) {
		t.Helper()
		return runEnv(t, dir, []string{"CERTFLOW_REDIS_URL=" + testutil.RedisURL()}, append([]string{"inventory", "check", "--config", "certflow.yaml"}, args...)...)
	}
	if out, code := check(); code != 1 || !strings.Contains(out, "stale:   "+prefix+`:inv:revoked "999"`) || !strings.Contains(out, "INCONSISTENT") {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
	if out, code := check("--repair"); code != 0 || !strings.Contains(out, "repaired") {
		t.Fatalf("check --repair: exit %d\n%s", code, out)
	}
	if out, code := check(); code != 0 || !strings.Contains(out, "0 missing index entries, 0 stale: consistent") {
		t.Fatalf("check after the repair: exit %d\n%s", code, out)
	}
	if out, code := run2(t, dir, "inventory", "check"); code == 0 || !strings.Contains(out, "CERTFLOW_REDIS_URL") {
		t.Fatalf("check without Redis: exit %d, want an error naming CERTFLOW_REDIS_URL\n%s", code, out)
	}
	if out, code := run2(t, dir, "inventory", "frob"); code == 0 || !strings.Contains(out, "usage: certflow inventory check") {
		t.Fatalf("inventory frob: exit %d\n%s", code, out)
	}
}

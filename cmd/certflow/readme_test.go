package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/testutil"
)

// walkThroughBlocks are the README's ```sh blocks from its
// "## Walk-through" heading up to "## Security", in order: the
// walk-through a newcomer pastes, continued by the revocation and
// renewal examples.
func walkThroughBlocks(t *testing.T, readme string) []string {
	t.Helper()
	start := strings.Index(readme, "\n## Walk-through\n")
	end := strings.Index(readme, "\n## Security\n")
	if start < 0 || end < start {
		t.Fatal("README.md has no \"## Walk-through\" … \"## Security\" sections")
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)\n```sh\n(.*?)\n```\n").FindAllStringSubmatch(readme[start:end], -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// buildLine is how the README builds the binary; the test runs the
// binary it built once (TestMain) instead: the same sources, without a
// second build of every package from another directory.
const buildLine = "go build -o certflow ./cmd/certflow"

// TestREADMEWalkThrough runs the README's walk-through as a script, as
// written, on a fresh copy of the repository's files (what a clone has):
// it starts the binary, waits for it, and every step must succeed with
// the answer the README describes. Three substitutions only: the build
// (buildLine), the port (localhost:8080 may be taken here; the README's
// commands all name it, and CERTFLOW_LISTEN moves the server), and the
// server's own output goes to a file rather than between the answers.
func TestREADMEWalkThrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "openssl", "git", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required for this test", tool)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := walkThroughBlocks(t, string(readme))
	if len(blocks) == 0 || !strings.HasPrefix(blocks[0], buildLine+"\n") {
		t.Fatalf("the walk-through does not start with %q", buildLine)
	}
	// What each block must answer, in order; a README that gains or
	// loses a block must say here what the new one answers.
	expect := [][]string{
		nil, // build, start, wait, key and CSR: set -e checks them
		{`"RequestDisposition":"ISSUED"`, `"KeyfactorRequestId":1`, "-----BEGIN CERTIFICATE-----"},
		{"Location: ", "/Enrollment/Requests/2", `"Id":2`},
		{`"KeyfactorRequestId":3`, `"RequestDisposition":"ISSUED"`, `"ErrorCode":"0xA0040001"`, "Idempotency-Key header: already used for a different request (3)"},
		{"Revocation", "Serial Number:", "Key Compromise"},
		nil, // the OpenAPI document, saved to a file: checked below
		{`"RenewedCertificateId":2`, `"RequestDisposition":"ISSUED"`},
		{`"Name":"certificate.renewed"`, `"RenewedCertificateId":2`, `"Name":"certificate.issued"`},
	}
	if len(blocks) != len(expect) {
		t.Fatalf("the walk-through has %d sh blocks, this test expects %d: say what each new one answers\n%q", len(blocks), len(expect), blocks)
	}
	for i, b := range blocks {
		if strings.Count(b, "localhost:8080") == 0 && i > 0 {
			t.Fatalf("block %d names no localhost:8080 (the test moves the port by that text):\n%s", i+1, b)
		}
		if regexp.MustCompile(`localhost:\d+|127\.0\.0\.1:\d+`).ReplaceAllString(b, "") != strings.ReplaceAll(b, "localhost:8080", "") {
			t.Fatalf("block %d names another address than localhost:8080:\n%s", i+1, b)
		}
	}

	dir := t.TempDir()
	copyTrackedFiles(t, "../..", dir)
	port := testutil.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for i, b := range blocks {
		b = strings.ReplaceAll(b, "localhost:8080", addr)
		b = strings.Replace(b, "./certflow serve &", "./certflow serve >serve.log 2>&1 &", 1)
		b = strings.Replace(b, buildLine, "cp "+binary+" certflow", 1)
		fmt.Fprintf(&script, "echo '@@block %d'\n%s\necho\n", i+1, b)
	}
	out, err := os.Create(filepath.Join(dir, "walkthrough.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "CERTFLOW_LISTEN="+addr)
	cmd.Stdout, cmd.Stderr = out, out // files: the background server keeps no pipe open
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopGroup := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	t.Cleanup(func() {
		stopGroup()
		time.Sleep(100 * time.Millisecond)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(4 * time.Minute): // a cold module cache makes the build slow
		stopGroup()
		err = fmt.Errorf("timed out: %v", <-done)
	}
	output, _ := os.ReadFile(out.Name())
	serveLog, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
	if err != nil {
		t.Fatalf("the walk-through failed: %v\n--- its output:\n%s\n--- certflow's:\n%s", err, output, serveLog)
	}
	parts := strings.Split(string(output), "@@block ")[1:]
	if len(parts) != len(blocks) {
		t.Fatalf("%d blocks ran, want %d:\n%s", len(parts), len(blocks), output)
	}
	for i, want := range expect {
		for _, w := range want {
			if !strings.Contains(parts[i], w) {
				t.Errorf("block %d's answer lacks %q:\n%s\n--- the block:\n%s", i+1, w, parts[i], blocks[i])
			}
		}
	}
	// Idempotency: the repeat named the same request, and the changed
	// body was refused 409 (Keyfactor's conflict code).
	if n := strings.Count(parts[3], `"KeyfactorRequestId":3`); n != 2 {
		t.Errorf("the repeated submit answered request 3 %d times, want 2:\n%s", n, parts[3])
	}
	if strings.Contains(parts[3], `"KeyfactorRequestId":4`) {
		t.Errorf("the repeated submit made a second request:\n%s", parts[3])
	}
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "certflow-openapi.json")); err != nil || json.Unmarshal(b, &doc) != nil || !strings.HasPrefix(doc.OpenAPI, "3.") || doc.Paths["/Enrollment/CSR"] == nil {
		t.Errorf("the saved OpenAPI document is not one (%v): openapi %q, %d paths", err, doc.OpenAPI, len(doc.Paths))
	}
	// Everything the walk-through wrote is ignored by git.
	gitDir := filepath.Join(t.TempDir(), "probe.git")
	git := func(args ...string) string {
		c := exec.Command("git", append([]string{"--git-dir", gitDir, "--work-tree", dir}, args...)...)
		o, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, o)
		}
		return string(o)
	}
	git("init", "-q")
	untracked := git("status", "--porcelain", "--untracked-files=all")
	tracked := trackedFiles(t, "../..")
	for _, line := range strings.Split(strings.TrimSpace(untracked), "\n") {
		f := strings.TrimPrefix(line, "?? ")
		if line == "" || tracked[f] || f == "walkthrough.out" || f == "serve.log" {
			continue
		}
		t.Errorf("the walk-through leaves %s, which .gitignore does not ignore", f)
	}
}

func trackedFiles(t *testing.T, repo string) map[string]bool {
	t.Helper()
	out, err := exec.Command("git", "-C", repo, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	files := map[string]bool{}
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		files[f] = true
	}
	return files
}

// copyTrackedFiles copies the files git tracks in repo (as they are in
// the work tree) to dir: what a fresh clone has, edits included.
func copyTrackedFiles(t *testing.T, repo, dir string) {
	t.Helper()
	for f := range trackedFiles(t, repo) {
		data, err := os.ReadFile(filepath.Join(repo, f))
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(filepath.Join(repo, f))
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, st.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatal("the copy has no go.mod")
	}
}

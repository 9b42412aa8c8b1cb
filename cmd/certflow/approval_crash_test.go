package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/testutil"
)

// approvalStatus is what these tests read of GET /Enrollment/Requests/{id}.
type approvalStatus struct {
	CertificateInformation struct {
		RequestDisposition string
		DispositionMessage string
		KeyfactorID        int64
		KeyfactorRequestId int64
		Certificates       []string
		WorkflowInstanceId string
	}
	Timeline []struct {
		StepId  string
		Outcome string
	}
}

func (s approvalStatus) count(step, outcome string) int {
	n := 0
	for _, r := range s.Timeline {
		if r.StepId == step && r.Outcome == outcome {
			n++
		}
	}
	return n
}

// approvalSetup writes a config and definition for `certflow api` and
// `certflow worker` processes (short task_timeout and reconcile_after, as
// the crash test uses), makes the CA, and starts the API. It returns the
// dir and environment to start workers with, and the API's base URL.
func approvalSetup(t *testing.T, def string) (dir string, env []string, base string) {
	t.Helper()
	_, prefix := testutil.Redis(t)
	dir = t.TempDir()
	os.MkdirAll(filepath.Join(dir, "defs"), 0o755)
	os.WriteFile(filepath.Join(dir, "defs", "gated.yaml"), []byte(def), 0o644)
	cfg := fmt.Sprintf(`key_prefix: %[1]s
queue: %[1]s
worker:
  task_timeout: 5s
  reconcile_after: 6s
callbacks: {allow_private: true}
auth:
  users:
    - {name: alice, token: alice-token, roles: [requester]}
    - {name: bob, token: bob-token, roles: [approver]}
    - {name: dave, token: dave-token, roles: [approver]}
`, prefix)
	os.WriteFile(filepath.Join(dir, "certflow.yaml"), []byte(cfg), 0o600)
	env, base = startAPI(t, dir)
	return dir, env, base
}

func getApproval(t *testing.T, base, loc string) approvalStatus {
	t.Helper()
	r := testutil.Do(t, base, "GET", loc, nil, "Authorization", "Bearer bob-token")
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", loc, r.Status, r.Body)
	}
	var st approvalStatus
	r.JSON(t, &st)
	return st
}

// pollApproval polls loc until its disposition is want; any other
// disposition but QUEUED and RUNNING on the way fails.
func pollApproval(t *testing.T, base, loc, want string, within time.Duration) approvalStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := getApproval(t, base, loc)
		d := st.CertificateInformation.RequestDisposition
		if d == want {
			return st
		}
		if d != "QUEUED" && d != "RUNNING" || time.Now().After(deadline) {
			t.Fatalf("request %s is %s (%s), want %s; timeline %+v", loc, d, st.CertificateInformation.DispositionMessage, want, st.Timeline)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func postApproval(t *testing.T, base, instance string) {
	t.Helper()
	r := testutil.Do(t, base, "POST", "/Workflow/Instances/"+instance+"/Signals",
		map[string]any{"SignalKey": "approve.ApprovalStatus", "Data": map[string]any{"Approved": true, "Comment": "ok"}},
		"Authorization", "Bearer bob-token")
	if r.Status != http.StatusNoContent {
		t.Fatalf("approval signal: %d %s", r.Status, r.Body)
	}
}

// submitAsync enrolls a fresh CSR named cn as alice (Prefer:
// respond-async) and returns the request's Location.
func submitAsync(t *testing.T, base, cn string) string {
	t.Helper()
	csr, _ := testutil.CSR(t, cn)
	return submitBodyAsync(t, base, testutil.EnrollBody(csr, nil))
}

// submitBodyAsync posts an enrollment body as alice (Prefer:
// respond-async) and returns the request's Location.
func submitBodyAsync(t *testing.T, base string, body map[string]any) string {
	t.Helper()
	r := testutil.Do(t, base, "POST", "/Enrollment/CSR", body,
		"x-certificateformat", "PEM", "Authorization", "Bearer alice-token", "Prefer", "respond-async")
	if r.Status != http.StatusAccepted {
		t.Fatalf("submit: %d %s", r.Status, r.Body)
	}
	return r.Header.Get("Location")
}

// TestApprovalStoredWhileNoWorkerRunsIsAppliedByTheNextWorker: the only
// worker is killed while the request waits; the approval is stored with
// no worker alive; a new worker issues the certificate, once.
func TestApprovalStoredWhileNoWorkerRunsIsAppliedByTheNextWorker(t *testing.T) {
	t.Parallel()
	c := &counter{calls: map[string]int{}, inSlow: make(chan struct{}, 1), release: make(chan struct{})}
	srv := httptest.NewServer(c)
	defer srv.Close()
	defer close(c.release)
	dir, env, base := approvalSetup(t, fmt.Sprintf(`name: gated
trigger: enrollment
steps:
  - {id: approve, uses: approval, if: csr.CommonName startsWith "pending", with: {roles: [approver]}}
  - {id: issue, uses: issue}
  - {id: after, uses: http, with: {url: "%s/after"}}
`, srv.URL))
	victim, victimLogs := startProcess(t, dir, env, "worker")

	loc := submitAsync(t, base, "pending.crash.example.com")
	st := pollApproval(t, base, loc, "PENDING", 20*time.Second)
	inst := st.CertificateInformation.WorkflowInstanceId
	victim.Process.Signal(syscall.SIGKILL)
	victim.Wait()

	postApproval(t, base, inst)
	// The decision is stored; nobody has applied it yet.
	var in struct {
		Status    string
		Decisions []struct{ Kind, By string }
	}
	testutil.Do(t, base, "GET", "/Workflow/Instances/"+inst, nil, "Authorization", "Bearer bob-token").JSON(t, &in)
	if len(in.Decisions) != 1 || in.Decisions[0].By != "bob" || in.Status != "Suspended" {
		t.Fatalf("after the approval with no worker alive: %+v; want bob's decision stored, not yet applied", in)
	}
	if d := getApproval(t, base, loc).CertificateInformation.RequestDisposition; d != "RUNNING" {
		t.Fatalf("a decided request with no worker alive is %s, want RUNNING", d)
	}

	_, nextLogs := startProcess(t, dir, env, "worker")
	st = pollApproval(t, base, loc, "ISSUED", 60*time.Second)
	info := st.CertificateInformation
	if len(info.Certificates) != 1 || info.KeyfactorID != info.KeyfactorRequestId {
		t.Fatalf("issued: %+v", info)
	}
	if st.count("approve", "Completed") != 1 || st.count("issue", "Completed") != 1 || st.count("after", "Completed") != 1 {
		t.Fatalf("timeline %+v: want approve, issue and after completed once each", st.Timeline)
	}
	if n := c.count("/after"); n != 1 {
		t.Errorf("the step after the issue ran %d times, want 1", n)
	}
	if signed := strings.Count(victimLogs.String()+nextLogs.String(), `msg="certificate issued"`); signed != 1 {
		t.Errorf("%d certificates signed, want 1", signed)
	}
}

// TestApprovalResumeInterruptedByAWorkerCrashCompletesOnce: the worker
// applying an approval is killed inside the step after it; the next worker
// goes on from that step, and the approval is applied once.
func TestApprovalResumeInterruptedByAWorkerCrashCompletesOnce(t *testing.T) {
	t.Parallel()
	c := &counter{calls: map[string]int{}, inSlow: make(chan struct{}, 1), release: make(chan struct{})}
	srv := httptest.NewServer(c)
	defer srv.Close()
	defer close(c.release)
	dir, env, base := approvalSetup(t, fmt.Sprintf(`name: gated
trigger: enrollment
steps:
  - {id: approve, uses: approval, with: {roles: [approver], notify: {webhook: "%[1]s/notify"}}}
  - {id: slow, uses: http, with: {url: "%[1]s/slow"}}
  - {id: issue, uses: issue}
`, srv.URL))
	victim, victimLogs := startProcess(t, dir, env, "worker")

	loc := submitAsync(t, base, "resume.crash.example.com")
	st := pollApproval(t, base, loc, "PENDING", 20*time.Second)
	postApproval(t, base, st.CertificateInformation.WorkflowInstanceId)
	select {
	case <-c.inSlow:
	case <-time.After(30 * time.Second):
		t.Fatal("the resumed workflow never reached the step after the approval")
	}
	victim.Process.Signal(syscall.SIGKILL)
	victim.Wait()

	_, nextLogs := startProcess(t, dir, env, "worker")
	st = pollApproval(t, base, loc, "ISSUED", 90*time.Second)
	if st.count("approve", "Completed") != 1 || st.count("slow", "Completed") != 1 || st.count("issue", "Completed") != 1 {
		t.Fatalf("timeline %+v: want approve, slow and issue completed once each", st.Timeline)
	}
	// approval.pending once, approval.decided once: the decision was
	// applied (and told) by one worker only.
	if n := c.count("/notify"); n != 2 {
		t.Errorf("the approval's webhook was called %d times, want 2 (pending, decided)", n)
	}
	if n := c.count("/slow"); n != 2 {
		t.Errorf("/slow was called %d times, want 2 (the killed call and the resumed one)", n)
	}
	if signed := strings.Count(victimLogs.String()+nextLogs.String(), `msg="certificate issued"`); signed != 1 {
		t.Errorf("%d certificates signed, want 1", signed)
	}
}

// TestRacingApproversAcrossWorkerProcessesIssueOnce: two approvers decide
// every request at the same moment (quorum 1) while two worker processes
// run: for each request exactly one decision is taken (the other gets
// 409), and one certificate is signed.
func TestRacingApproversAcrossWorkerProcessesIssueOnce(t *testing.T) {
	t.Parallel()
	dir, env, base := approvalSetup(t, `name: gated
trigger: enrollment
steps:
  - {id: approve, uses: approval, with: {roles: [approver]}}
  - {id: issue, uses: issue}
`)
	_, logsA := startProcess(t, dir, env, "worker")
	_, logsB := startProcess(t, dir, env, "worker")
	const n = 8
	locs := make([]string, n)
	for i := range locs {
		locs[i] = submitAsync(t, base, fmt.Sprintf("race%d.example.com", i))
	}
	for i, loc := range locs {
		st := pollApproval(t, base, loc, "PENDING", 30*time.Second)
		inst := st.CertificateInformation.WorkflowInstanceId
		start := make(chan struct{})
		codes := make([]int, 2)
		var wg sync.WaitGroup
		for j, token := range []string{"bob-token", "dave-token"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := testutil.Do(t, base, "POST", "/Workflow/Instances/"+inst+"/Signals",
					map[string]any{"SignalKey": "approve.ApprovalStatus", "Data": map[string]any{"Approved": true}},
					"Authorization", "Bearer "+token)
				codes[j] = r.Status
			}()
		}
		close(start)
		wg.Wait()
		if !(codes[0] == http.StatusNoContent && codes[1] == http.StatusConflict || codes[0] == http.StatusConflict && codes[1] == http.StatusNoContent) {
			t.Fatalf("request %d: the racing signals answered %v, want one 204 and one 409", i, codes)
		}
	}
	for _, loc := range locs {
		st := pollApproval(t, base, loc, "ISSUED", 60*time.Second)
		if st.count("approve", "Completed") != 1 || st.count("issue", "Completed") != 1 {
			t.Fatalf("%s: timeline %+v, want approve and issue completed once", loc, st.Timeline)
		}
	}
	if signed := strings.Count(logsA.String()+logsB.String(), `msg="certificate issued"`); signed != n {
		t.Errorf("%d certificates signed for %d requests", signed, n)
	}
	if resumed := strings.Count(logsA.String()+logsB.String(), `msg="approved; workflow resumes"`); resumed != n {
		t.Errorf("%d resumes for %d decisions, want one each", resumed, n)
	}
}

// TestAnApprovalTimeoutOutlivesTheWorkers: the only worker is killed while
// a request waits; the deadline passes with no worker alive; the next
// worker fires the timeout (a scheduled asynq task, kept in Redis) and the
// request ends DENIED.
func TestAnApprovalTimeoutOutlivesTheWorkers(t *testing.T) {
	t.Parallel()
	dir, env, base := approvalSetup(t, `name: gated
trigger: enrollment
steps:
  - {id: approve, uses: approval, with: {roles: [approver], timeout: 2s}}
  - {id: issue, uses: issue}
`)
	victim, _ := startProcess(t, dir, env, "worker")
	loc := submitAsync(t, base, "deadline.example.com")
	pollApproval(t, base, loc, "PENDING", 20*time.Second)
	victim.Process.Signal(syscall.SIGKILL)
	victim.Wait()
	time.Sleep(3 * time.Second) // past the deadline, no worker alive
	if d := getApproval(t, base, loc).CertificateInformation.RequestDisposition; d != "PENDING" {
		t.Fatalf("with no worker alive the request is %s, want still PENDING", d)
	}
	startProcess(t, dir, env, "worker")
	var st approvalStatus
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st = getApproval(t, base, loc)
		d := st.CertificateInformation.RequestDisposition
		if d == "DENIED" {
			break
		}
		if d == "ISSUED" || d == "FAILED" || time.Now().After(deadline) {
			t.Fatalf("after the next worker started the request is %s, want DENIED by its timeout", d)
		}
	}
	if !strings.Contains(st.CertificateInformation.DispositionMessage, "no approval decision within the timeout") {
		t.Fatalf("denied with %q, want the timeout's message", st.CertificateInformation.DispositionMessage)
	}
	if st.count("issue", "Completed") != 0 {
		t.Fatalf("a timed-out request was issued: %+v", st.Timeline)
	}
}

package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/internal/worker"
	"github.com/certflow/certflow/queue"
	"github.com/certflow/certflow/workflow"
)

// Extra users of the approval tests, beside TestConfig's alice, bob, carol.
const (
	daveToken  = "dave-token"  // approver
	erinToken  = "erin-token"  // pki-leads only
	frankToken = "frank-token" // requester and approver
)

func bearer(token string) string { return "Bearer " + token }

var carolBasic = "Basic " + base64.StdEncoding.EncodeToString([]byte("carol:"+testutil.CarolPassword))

// startApprovals starts certflow with the given definitions (each a whole
// YAML file) as its only ones, and the extra approval users.
func startApprovals(t *testing.T, defs ...string) *testutil.Certflow {
	t.Helper()
	files := map[string]string{}
	for i, d := range defs {
		files[fmt.Sprintf("def%d.yaml", i)] = d
	}
	dir := defsDir(t, files)
	return testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.Auth.Users = append(c.Auth.Users,
			config.User{Name: "dave", Token: daveToken, Roles: []string{config.RoleApprover}},
			config.User{Name: "erin", Token: erinToken, Roles: []string{"pki-leads"}},
			config.User{Name: "frank", Token: frankToken, Roles: []string{config.RoleRequester, config.RoleApprover}},
		)
	})
}

// gated is an enrollment definition for common names starting with
// "<name>.": approval step "approve" (its with: body given), the issue
// step, then a metadata step that shows whether the steps after the
// approval ran. priority 0 with match "" is the catch-all.
func gated(name string, priority int, with string) string {
	match := fmt.Sprintf("match: csr.CommonName startsWith %q\n", name+".")
	if priority == 0 {
		match = ""
	}
	return fmt.Sprintf(`name: %[1]s
trigger: enrollment
priority: %[2]d
%[3]ssteps:
  - id: approve
    uses: approval
    if: csr.CommonName startsWith %[4]q
    with: %[5]s
  - id: issue
    uses: issue
  - id: tag
    uses: metadata
    with: {set: {After: "%[1]s"}}
`, name, priority, match, name+".", with)
}

// wfInstance is GET /Workflow/Instances/{id}, decoded by the documented
// field names (not through keyfactor.Instance, so a wrong JSON tag shows).
type wfInstance struct {
	Id                    string
	Status                string
	CurrentStepUniqueName string
	Signals               []struct {
		SignalName     string
		StepSignalId   string
		SignalReceived bool
	}
	Definition struct {
		DefinitionId, DisplayName, Version, WorkflowType string
	}
	InitialData        map[string]any
	CurrentStateData   map[string]any
	ReferenceId        int64
	RequestDisposition string
	InitiatingUser     string
	Wait               *struct {
		Step      string
		Stage     int
		Roles     []string
		Quorum    int
		Approvers []string
		Verdict   string
		Deadline  time.Time
	}
	Decisions []wfDecision
}

type wfDecision struct {
	Step     string
	Stage    int
	Kind     string
	Signal   string
	By       string
	Approved bool
	Comment  string
	At       time.Time
}

func (d wfDecision) String() string {
	return fmt.Sprintf("%s/%d %s by %q approved=%v %q", d.Step, d.Stage, d.Kind, d.By, d.Approved, d.Comment)
}

func decisionKinds(ds []wfDecision, kind string) []wfDecision {
	var out []wfDecision
	for _, d := range ds {
		if d.Kind == kind {
			out = append(out, d)
		}
	}
	return out
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// submitPending enrolls cn synchronously as token's user and checks the
// answer is 200 PENDING with the instance's ids.
func submitPending(t *testing.T, cf *testutil.Certflow, cn, token string) enrollResponse {
	t.Helper()
	csr, _ := testutil.CSR(t, cn)
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"IncludeChain": true}), "Authorization", bearer(token))
	info := er.CertificateInformation
	if resp.Status != http.StatusOK || info.RequestDisposition != "PENDING" {
		t.Fatalf("submit %s: %d %s; want 200 PENDING", cn, resp.Status, resp.Body)
	}
	if !uuidRE.MatchString(info.WorkflowInstanceId) || info.KeyfactorRequestId <= 0 || info.WorkflowReferenceId != info.KeyfactorRequestId {
		t.Fatalf("submit %s: ids in the PENDING answer: %+v", cn, info)
	}
	if len(info.Certificates) != 0 || info.KeyfactorID != 0 {
		t.Fatalf("submit %s: a PENDING answer carries a certificate: %+v", cn, info)
	}
	return er
}

func signalBody(key string, data map[string]any) map[string]any {
	return map[string]any{"SignalKey": key, "Data": data}
}

func approveData(comment string) map[string]any {
	return map[string]any{"Approved": true, "Comment": comment}
}

func denyData(comment string) map[string]any {
	return map[string]any{"Approved": false, "Comment": comment}
}

// signal posts a signal to an instance as auth ("Bearer …" or "Basic …").
func signal(t *testing.T, cf *testutil.Certflow, instance, auth string, body any) *testutil.Response {
	t.Helper()
	return cf.Do(t, "POST", "/Workflow/Instances/"+instance+"/Signals", body, "Authorization", auth)
}

func mustSignal(t *testing.T, cf *testutil.Certflow, instance, token string, data map[string]any) {
	t.Helper()
	if r := signal(t, cf, instance, bearer(token), signalBody("approve.ApprovalStatus", data)); r.Status != http.StatusNoContent {
		t.Fatalf("signal %v on %s: %d %s; want 204", data, instance, r.Status, r.Body)
	}
}

func getInstance(t *testing.T, cf *testutil.Certflow, id, auth string) wfInstance {
	t.Helper()
	r := cf.Do(t, "GET", "/Workflow/Instances/"+id, nil, "Authorization", auth)
	if r.Status != http.StatusOK {
		t.Fatalf("GET instance %s: %d %s", id, r.Status, r.Body)
	}
	var in wfInstance
	r.JSON(t, &in)
	return in
}

// listInstanceIDs GETs an instance listing (path with its query) and
// returns the ids in it.
func listInstanceIDs(t *testing.T, cf *testutil.Certflow, path, auth string) []string {
	t.Helper()
	r := cf.Do(t, "GET", path, nil, "Authorization", auth)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
	}
	var list []wfInstance
	r.JSON(t, &list)
	ids := make([]string, 0, len(list))
	for _, in := range list {
		ids = append(ids, in.Id)
	}
	return ids
}

func requestPath(id int64) string { return "/Enrollment/Requests/" + strconv.FormatInt(id, 10) }

func getRequest(t *testing.T, cf *testutil.Certflow, id int64) requestStatus {
	t.Helper()
	r := cf.Do(t, "GET", requestPath(id), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET request %d: %d %s", id, r.Status, r.Body)
	}
	var st requestStatus
	r.JSON(t, &st)
	return st
}

// pollFinal polls request id (as the admin) until it is ISSUED, DENIED or
// FAILED, for at most 20 s.
func pollFinal(t *testing.T, cf *testutil.Certflow, id int64) requestStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := getRequest(t, cf, id)
		switch st.CertificateInformation.RequestDisposition {
		case "ISSUED", "DENIED", "FAILED", "CANCELLED":
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %d did not reach a final disposition within 20 s: %+v timeline %+v", id, st.CertificateInformation, st.Timeline)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// pollDisposition polls request id until it is want, for at most 20 s.
func pollDisposition(t *testing.T, cf *testutil.Certflow, id int64, want string) requestStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := getRequest(t, cf, id)
		if d := st.CertificateInformation.RequestDisposition; d == want {
			return st
		} else if d != "QUEUED" && d != "RUNNING" || time.Now().After(deadline) {
			t.Fatalf("request %d is %s (%s), want %s", id, d, st.CertificateInformation.DispositionMessage, want)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// outcomes counts the timeline records of step with outcome.
func outcomes(st requestStatus, step, outcome string) int {
	n := 0
	for _, s := range st.Timeline {
		if s.StepId == step && s.Outcome == outcome {
			n++
		}
	}
	return n
}

func timeline(st requestStatus) string {
	var out []string
	for _, s := range st.Timeline {
		out = append(out, s.StepId+":"+s.Outcome)
	}
	return strings.Join(out, " ")
}

// signedFor counts the "certificate issued" log lines of request id: one
// per fresh signature.
func signedFor(cf *testutil.Certflow, id int64) int {
	n := 0
	for _, line := range strings.Split(cf.Logs.String(), "\n") {
		if strings.Contains(line, `msg="certificate issued"`) && strings.Contains(line, " request="+strconv.FormatInt(id, 10)+" ") {
			n++
		}
	}
	return n
}

// assertIssuedOnce checks a settled request is ISSUED with one certificate,
// the approval step completed once and the issue step ran once.
func assertIssuedOnce(t *testing.T, cf *testutil.Certflow, st requestStatus) {
	t.Helper()
	info := st.CertificateInformation
	if info.RequestDisposition != "ISSUED" || info.KeyfactorID != info.KeyfactorRequestId || len(info.Certificates) == 0 {
		t.Fatalf("request %d: %+v; want ISSUED with its certificate", info.KeyfactorRequestId, info)
	}
	if outcomes(st, "approve", "Completed") != 1 || outcomes(st, "issue", "Completed") != 1 || outcomes(st, "tag", "Completed") != 1 {
		t.Fatalf("request %d timeline %s: want approve, issue and tag completed once each", info.KeyfactorRequestId, timeline(st))
	}
	if n := signedFor(cf, info.KeyfactorRequestId); n != 1 {
		t.Fatalf("request %d: %d certificates signed, want 1", info.KeyfactorRequestId, n)
	}
}

func TestApprovalHappyPath(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, gated("pending", 0, "{roles: [approver]}"))

	t.Run("the step's if decides whether a request waits", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "direct.example.com")
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", bearer(testutil.AliceToken))
		if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("a request the approval's if does not hold for: %d %s; want ISSUED at once", resp.Status, resp.Body)
		}
		if st := getRequest(t, cf, er.CertificateInformation.KeyfactorRequestId); outcomes(st, "approve", "Skipped") != 1 {
			t.Fatalf("timeline %s: want approve skipped", timeline(st))
		}
	})

	er := submitPending(t, cf, "pending.example.com", testutil.AliceToken)
	inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId

	if got := listInstanceIDs(t, cf, "/Workflow/Instances/AssignedToMe", bearer(testutil.BobToken)); !slices.Contains(got, inst) {
		t.Fatalf("AssignedToMe for bob (approver) = %v; want %s", got, inst)
	}
	if got := listInstanceIDs(t, cf, "/Workflow/Instances/AssignedToMe", bearer(testutil.AliceToken)); slices.Contains(got, inst) {
		t.Fatalf("AssignedToMe for alice (the requester) lists her own request: %v", got)
	}
	if got := listInstanceIDs(t, cf, "/Workflow/Instances/My", bearer(testutil.AliceToken)); !slices.Contains(got, inst) {
		t.Fatalf("/My for alice = %v; want %s", got, inst)
	}
	if got := listInstanceIDs(t, cf, "/Workflow/Instances/My", bearer(testutil.BobToken)); slices.Contains(got, inst) {
		t.Fatalf("/My for bob lists alice's request: %v", got)
	}
	suspended := "/Workflow/Instances?pq.queryString=" + url.QueryEscape(`Status -eq "Suspended"`) + "&pq.returnLimit=10&pq.pageReturned=1"
	if got := listInstanceIDs(t, cf, suspended, bearer(testutil.BobToken)); !slices.Contains(got, inst) {
		t.Fatalf("Status -eq Suspended = %v; want %s", got, inst)
	}
	complete := "/Workflow/Instances?pq.queryString=" + url.QueryEscape(`Status -eq "Complete"`)
	if got := listInstanceIDs(t, cf, complete, bearer(testutil.BobToken)); slices.Contains(got, inst) {
		t.Fatalf("Status -eq Complete lists the suspended instance: %v", got)
	}
	if got := listInstanceIDs(t, cf, "/Workflow/Instances?pq.returnLimit=1&pq.pageReturned=2", bearer(testutil.BobToken)); len(got) != 1 || got[0] == inst {
		t.Fatalf("page 2 of 1 of two instances (newest first) = %v; want the older, issued one", got)
	}

	t.Run("the waiting instance describes itself", func(t *testing.T) {
		in := getInstance(t, cf, inst, bearer(testutil.BobToken))
		if in.Id != inst || in.Status != "Suspended" || in.CurrentStepUniqueName != "approve" || in.ReferenceId != id ||
			in.RequestDisposition != "PENDING" || in.InitiatingUser != "alice" {
			t.Fatalf("instance: %+v", in)
		}
		if in.Definition.DefinitionId != "pending" || in.Definition.Version == "" || in.Definition.WorkflowType != "enrollment" {
			t.Fatalf("instance definition: %+v", in.Definition)
		}
		if len(in.Signals) != 1 || in.Signals[0].SignalName != "ApprovalStatus" || in.Signals[0].StepSignalId != "approve.ApprovalStatus" || in.Signals[0].SignalReceived {
			t.Fatalf("signals: %+v", in.Signals)
		}
		if in.InitialData["Template"] != config.DefaultTemplate || in.InitialData["Requester"] != "alice" || in.CurrentStateData == nil {
			t.Fatalf("InitialData %v CurrentStateData %v", in.InitialData, in.CurrentStateData)
		}
		if in.Wait == nil || in.Wait.Step != "approve" || in.Wait.Quorum != 1 || !slices.Equal(in.Wait.Roles, []string{"approver"}) || len(in.Decisions) != 0 {
			t.Fatalf("wait %+v decisions %v", in.Wait, in.Decisions)
		}
		if st := getRequest(t, cf, id); timeline(st) != "approve:Waiting" {
			t.Fatalf("timeline of the waiting request: %s", timeline(st))
		}
		// Another requester sees none of it.
		if r := cf.Do(t, "GET", "/Workflow/Instances/"+inst, nil, "Authorization", carolBasic); r.Status != http.StatusNotFound {
			t.Fatalf("carol reading alice's instance: %d", r.Status)
		}
	})

	before := time.Now().Add(-time.Second)
	mustSignal(t, cf, inst, testutil.BobToken, map[string]any{"Approved": "True", "Comment": "looks right"})
	st := pollFinal(t, cf, id)
	assertIssuedOnce(t, cf, st)
	verifyChain(t, pemChain(t, st.CertificateInformation.Certificates, true), "pending.example.com")
	if st.Metadata["After"] != "pending" {
		t.Fatalf("the step after the issue did not run: metadata %v", st.Metadata)
	}
	if got := timeline(st); got != "approve:Waiting approve:Completed issue:Completed tag:Completed" {
		t.Fatalf("timeline %s", got)
	}

	in := getInstance(t, cf, inst, bearer(testutil.AliceToken))
	if in.Status != "Complete" || in.RequestDisposition != "ISSUED" || in.Wait != nil || in.CurrentStepUniqueName != "" {
		t.Fatalf("instance after approval: %+v", in)
	}
	if len(in.Decisions) != 1 {
		t.Fatalf("decisions: %v; want bob's one", in.Decisions)
	}
	d := in.Decisions[0]
	if d.Step != "approve" || d.Stage != 0 || d.Kind != "signal" || d.Signal != "approve.ApprovalStatus" || d.By != "bob" || !d.Approved || d.Comment != "looks right" || d.At.Before(before) || d.At.After(time.Now()) {
		t.Fatalf("decision: %+v", d)
	}
	if len(in.Signals) != 1 || !in.Signals[0].SignalReceived {
		t.Fatalf("signals after the decision: %+v", in.Signals)
	}
	// The step's outputs are the approver's to read; the requester sees
	// the decisions, and outputs only where the definition says visible:.
	if steps, _ := in.CurrentStateData["Steps"].(map[string]any); len(steps) != 0 {
		t.Fatalf("alice reads step outputs the definition does not show her: %v", steps)
	}
	steps, _ := getInstance(t, cf, inst, bearer(testutil.BobToken)).CurrentStateData["Steps"].(map[string]any)
	out, _ := steps["approve"].(map[string]any)
	if out["approved"] != true || fmt.Sprint(out["approvers"]) != "[bob]" {
		t.Fatalf("approval step outputs: %v", steps["approve"])
	}
	if got := listInstanceIDs(t, cf, "/Workflow/Instances/AssignedToMe", bearer(testutil.BobToken)); slices.Contains(got, inst) {
		t.Fatalf("AssignedToMe for bob still lists the decided instance: %v", got)
	}
	if got := listInstanceIDs(t, cf, "/Workflow/Instances/My", bearer(testutil.AliceToken)); !slices.Contains(got, inst) {
		t.Fatalf("/My for alice after the decision = %v; want %s", got, inst)
	}
}

func TestSignalRefusalsChangeNothing(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, gated("refuse", 0, "{roles: [approver]}"))
	er := submitPending(t, cf, "refuse.example.com", testutil.AliceToken)
	inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId
	const key = "approve.ApprovalStatus"
	bob := bearer(testutil.BobToken)
	cases := []struct {
		name     string
		instance string
		auth     string
		body     any
		status   int
		code     string
		message  string
	}{
		{"no SignalKey", inst, bob, map[string]any{"Data": approveData("")}, 400, keyfactor.CodeInvalidField, "SignalKey"},
		{"a SignalKey of another kind", inst, bob, signalBody("approve.Status", approveData("")), 400, keyfactor.CodeInvalidField, "SignalKey"},
		{"a SignalKey without a step", inst, bob, signalBody(".ApprovalStatus", approveData("")), 400, keyfactor.CodeInvalidField, "SignalKey"},
		{"a step the workflow does not have", inst, bob, signalBody("nosuch.ApprovalStatus", approveData("")), 400, keyfactor.CodeInvalidField, "SignalKey"},
		{"a step that is no approval", inst, bob, signalBody("issue.ApprovalStatus", approveData("")), 400, keyfactor.CodeInvalidField, "SignalKey"},
		{"no Data", inst, bob, map[string]any{"SignalKey": key}, 400, keyfactor.CodeInvalidField, "Data.Approved"},
		{"Approved missing", inst, bob, signalBody(key, map[string]any{"Comment": "ok"}), 400, keyfactor.CodeInvalidField, "Data.Approved"},
		{"Approved not a boolean", inst, bob, signalBody(key, map[string]any{"Approved": "maybe"}), 400, keyfactor.CodeInvalidField, "Data.Approved"},
		{"Approved a number", inst, bob, signalBody(key, map[string]any{"Approved": 1}), 400, keyfactor.CodeInvalidField, "Data.Approved"},
		{"Comment not a string", inst, bob, signalBody(key, map[string]any{"Approved": true, "Comment": 42}), 400, keyfactor.CodeInvalidField, "Data.Comment"},
		{"Comment too long", inst, bob, signalBody(key, approveData(strings.Repeat("x", 5000))), 400, keyfactor.CodeInvalidField, "Data.Comment"},
		{"a denial without a comment", inst, bob, signalBody(key, map[string]any{"Approved": false}), 400, keyfactor.CodeInvalidField, "Data.Comment"},
		{"a denial with a blank comment", inst, bob, signalBody(key, denyData("   ")), 400, keyfactor.CodeInvalidField, "Data.Comment"},
		{`a "False" without a comment`, inst, bob, signalBody(key, map[string]any{"Approved": "False"}), 400, keyfactor.CodeInvalidField, "Data.Comment"},
		{"a body that is not JSON", inst, bob, `{"SignalKey": `, 400, keyfactor.CodeInvalidField, "request body"},
		{"the requester, who holds no approver role", inst, bearer(testutil.AliceToken), signalBody(key, approveData("")), 403, keyfactor.CodeForbidden, "not among the step's approvers"},
		// Those who may not see the request are told it does not exist.
		{"another requester", inst, carolBasic, signalBody(key, approveData("")), 404, keyfactor.CodeNotFound, "workflow instance " + inst + ": not found"},
		{"a role the step does not name", inst, bearer(erinToken), signalBody(key, approveData("")), 404, keyfactor.CodeNotFound, "workflow instance " + inst + ": not found"},
		{"a denial by an outsider", inst, bearer(erinToken), signalBody(key, denyData("no")), 404, keyfactor.CodeNotFound, "workflow instance " + inst + ": not found"},
		{"an unknown instance", "00000000-0000-4000-8000-000000000000", bob, signalBody(key, approveData("")), 404, keyfactor.CodeNotFound, "not found"},
		{"no credentials", inst, "", signalBody(key, approveData("")), 401, keyfactor.CodeUnauthorized, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertError(t, signal(t, cf, tc.instance, tc.auth, tc.body), tc.status, tc.code, tc.message)
		})
	}

	in := getInstance(t, cf, inst, bob)
	if in.Status != "Suspended" || in.RequestDisposition != "PENDING" || len(in.Decisions) != 0 || in.Wait == nil || len(in.Wait.Approvers) != 0 || in.Wait.Verdict != "" || len(in.Signals) != 1 || in.Signals[0].SignalReceived {
		t.Fatalf("refused signals changed the instance: status %s, decisions %v, wait %+v", in.Status, in.Decisions, in.Wait)
	}
	if got := listInstanceIDs(t, cf, "/Workflow/Instances/AssignedToMe", bob); !slices.Contains(got, inst) {
		t.Fatalf("after refused signals the instance left bob's queue: %v", got)
	}

	t.Run("once decided, every further signal is 409 and changes nothing", func(t *testing.T) {
		mustSignal(t, cf, inst, testutil.BobToken, approveData("fine"))
		pollFinal(t, cf, id)
		for _, tc := range []struct {
			token string
			data  map[string]any
		}{
			{testutil.BobToken, approveData("again")},
			{daveToken, approveData("me too")},
			{daveToken, denyData("too late")},
			{testutil.AdminToken, denyData("admin too late")},
		} {
			assertError(t, signal(t, cf, inst, bearer(tc.token), signalBody(key, tc.data)), http.StatusConflict, keyfactor.CodeConflict, "not waiting")
		}
		in := getInstance(t, cf, inst, bob)
		if in.Status != "Complete" || len(in.Decisions) != 1 || in.Decisions[0].By != "bob" {
			t.Fatalf("late signals changed the record: %s %v", in.Status, in.Decisions)
		}
	})
}

func TestApprovalSelfApprovalIsRefusedUnlessAllowed(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t,
		gated("foureyes", 10, "{roles: [approver]}"),
		gated("selfok", 20, "{roles: [approver], allow_self_approval: true}"))
	cases := []struct {
		name      string
		cn        string
		requester string // also the decider
		data      map[string]any
		allowed   bool
	}{
		{"a requester who is also an approver", "foureyes.frank.example.com", frankToken, approveData("mine"), false},
		{"a requester who is also an approver, denying", "foureyes.frankdeny.example.com", frankToken, denyData("mine"), false},
		{"the admin deciding its own request", "foureyes.admin.example.com", testutil.AdminToken, approveData("mine"), false},
		{"with allow_self_approval", "selfok.frank.example.com", frankToken, approveData("mine, allowed"), true},
		{"with allow_self_approval, the admin", "selfok.admin.example.com", testutil.AdminToken, approveData("mine, allowed"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			er := submitPending(t, cf, tc.cn, tc.requester)
			inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId
			assigned := slices.Contains(listInstanceIDs(t, cf, "/Workflow/Instances/AssignedToMe", bearer(tc.requester)), inst)
			if assigned != tc.allowed {
				t.Fatalf("AssignedToMe of the requester lists their own request: %v, want %v", assigned, tc.allowed)
			}
			r := signal(t, cf, inst, bearer(tc.requester), signalBody("approve.ApprovalStatus", tc.data))
			if !tc.allowed {
				assertError(t, r, http.StatusForbidden, keyfactor.CodeForbidden, "own request")
				if in := getInstance(t, cf, inst, bearer(testutil.AdminToken)); in.Status != "Suspended" || len(in.Decisions) != 0 {
					t.Fatalf("a refused self-approval changed the instance: %s %v", in.Status, in.Decisions)
				}
				// Another approver still may.
				mustSignal(t, cf, inst, testutil.BobToken, approveData("second pair of eyes"))
				assertIssuedOnce(t, cf, pollFinal(t, cf, id))
				return
			}
			if r.Status != http.StatusNoContent {
				t.Fatalf("allowed self-approval: %d %s", r.Status, r.Body)
			}
			assertIssuedOnce(t, cf, pollFinal(t, cf, id))
			if in := getInstance(t, cf, inst, bearer(testutil.AdminToken)); len(in.Decisions) != 1 || in.Decisions[0].By != in.InitiatingUser {
				t.Fatalf("decisions %v; want the requester's own", in.Decisions)
			}
		})
	}
}

func TestQuorumCountsDistinctApprovers(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, gated("quorum", 0, "{roles: [approver], quorum: 2}"))
	er := submitPending(t, cf, "quorum.example.com", testutil.AliceToken)
	inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId

	mustSignal(t, cf, inst, testutil.BobToken, approveData("one"))
	mustSignal(t, cf, inst, testutil.BobToken, approveData("one again"))
	in := getInstance(t, cf, inst, bearer(testutil.AdminToken))
	// Not decided: with no verdict on the wait no run can resume it.
	if in.Status != "Suspended" || in.RequestDisposition != "PENDING" || in.Wait == nil || in.Wait.Verdict != "" {
		t.Fatalf("after one approver (twice) of a quorum of 2: %s %s wait %+v", in.Status, in.RequestDisposition, in.Wait)
	}
	if !slices.Equal(in.Wait.Approvers, []string{"bob"}) || len(in.Decisions) != 1 || in.Decisions[0].By != "bob" || in.Decisions[0].Comment != "one" {
		t.Fatalf("approvers %v decisions %v; want bob once", in.Wait.Approvers, in.Decisions)
	}
	if st := getRequest(t, cf, id); st.CertificateInformation.RequestDisposition != "PENDING" {
		t.Fatalf("request after one of two approvals: %s", st.CertificateInformation.RequestDisposition)
	}
	if got := listInstanceIDs(t, cf, "/Workflow/Instances/AssignedToMe", bearer(testutil.BobToken)); slices.Contains(got, inst) {
		t.Fatalf("bob approved already, but AssignedToMe still lists it for him: %v", got)
	}
	if got := listInstanceIDs(t, cf, "/Workflow/Instances/AssignedToMe", bearer(daveToken)); !slices.Contains(got, inst) {
		t.Fatalf("AssignedToMe for dave = %v; want %s", got, inst)
	}

	t.Run("one denial ends it, whatever approvals came first", func(t *testing.T) {
		er := submitPending(t, cf, "quorum.deny.example.com", testutil.AliceToken)
		mustSignal(t, cf, er.CertificateInformation.WorkflowInstanceId, testutil.BobToken, approveData("one"))
		mustSignal(t, cf, er.CertificateInformation.WorkflowInstanceId, daveToken, denyData("not this one"))
		st := pollFinal(t, cf, er.CertificateInformation.KeyfactorRequestId)
		if st.CertificateInformation.RequestDisposition != "DENIED" || st.CertificateInformation.DispositionMessage != "denied by dave: not this one" || outcomes(st, "issue", "Completed") != 0 {
			t.Fatalf("an approval then a denial: %+v, timeline %s", st.CertificateInformation, timeline(st))
		}
	})

	mustSignal(t, cf, inst, daveToken, approveData("two"))
	assertIssuedOnce(t, cf, pollFinal(t, cf, id))
	in = getInstance(t, cf, inst, bearer(testutil.AdminToken))
	var by []string
	for _, d := range in.Decisions {
		by = append(by, d.By)
	}
	if !slices.Equal(by, []string{"bob", "dave"}) {
		t.Fatalf("decisions by %v; want bob, dave", by)
	}
}

// rawPost posts JSON without a *testing.T, for goroutines.
func rawPost(base, path, token string, body any) (int, []byte, error) {
	data, _ := json.Marshal(body)
	req, err := http.NewRequest("POST", base+path, bytes.NewReader(data))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// racer is one call of a race: a signal or a stop.
type racer struct {
	name, token, path string
	body              any
}

// race makes the calls at the same moment and returns their answers.
func race(t *testing.T, base string, racers []racer) []*testutil.Response {
	t.Helper()
	out := make([]*testutil.Response, len(racers))
	errs := make([]error, len(racers))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, r := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			status, body, err := rawPost(base, r.path, r.token, r.body)
			out[i], errs[i] = &testutil.Response{Status: status, Body: body}, err
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", racers[i].name, err)
		}
	}
	return out
}

func TestApprovalRaces(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t,
		gated("race", 10, "{roles: [approver]}"),
		gated("racetwo", 20, "{roles: [approver], quorum: 2}"))
	sig := func(name, token string, data map[string]any) func(inst string) racer {
		return func(inst string) racer {
			return racer{name, token, "/Workflow/Instances/" + inst + "/Signals", signalBody("approve.ApprovalStatus", data)}
		}
	}
	stop := func(inst string) racer {
		return racer{"admin", testutil.AdminToken, "/Workflow/Instances/" + inst + "/Stop", map[string]any{"Comment": "race"}}
	}
	cases := []struct {
		name    string
		prefix  string
		n       int
		racers  []func(inst string) racer
		winners int // how many calls must succeed; 0: at least one
	}{
		{"two approvers, quorum 1", "race", 5, []func(string) racer{sig("bob", testutil.BobToken, approveData("bob approves")), sig("dave", daveToken, approveData("dave approves"))}, 0},
		{"an approver and a denier, quorum 1", "race", 3, []func(string) racer{sig("bob", testutil.BobToken, approveData("bob approves")), sig("dave", daveToken, denyData("dave denies"))}, 1},
		{"an approver and an administrator's stop", "race", 3, []func(string) racer{sig("bob", testutil.BobToken, approveData("bob approves")), stop}, 1},
		{"three approvers, quorum 2", "racetwo", 3, []func(string) racer{sig("bob", testutil.BobToken, approveData("bob approves")), sig("dave", daveToken, approveData("dave approves")), sig("frank", frankToken, approveData("frank approves"))}, 2},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.n {
				er := submitPending(t, cf, fmt.Sprintf("%s.%d.%d.example.com", tc.prefix, ci, i), testutil.AliceToken)
				inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId
				racers := make([]racer, len(tc.racers))
				for j, mk := range tc.racers {
					racers[j] = mk(inst)
				}
				answers := race(t, cf.URL, racers)
				var won []string
				var statuses []int
				for j, r := range answers {
					statuses = append(statuses, r.Status)
					switch r.Status {
					case http.StatusNoContent:
						won = append(won, racers[j].name)
					case http.StatusConflict:
						assertError(t, r, http.StatusConflict, keyfactor.CodeConflict, inst)
					default:
						t.Fatalf("request %d, %s: %d %s; want 204 or 409", i, racers[j].name, r.Status, r.Body)
					}
				}
				if len(won) == 0 || tc.winners > 0 && len(won) != tc.winners {
					t.Fatalf("request %d: %v succeeded (answers %v); want %d", i, won, statuses, max(tc.winners, 1))
				}
				st := pollFinal(t, cf, id)
				in := getInstance(t, cf, inst, bearer(testutil.AdminToken))
				var by []string
				for _, d := range in.Decisions {
					by = append(by, d.By)
				}
				// The record holds exactly the calls that succeeded.
				if len(by) != len(won) || !sameSet(by, won) {
					t.Fatalf("request %d: decisions %v, but %v succeeded", i, in.Decisions, won)
				}
				last := in.Decisions[len(in.Decisions)-1]
				switch {
				case last.Kind == "signal" && last.Approved:
					assertIssuedOnce(t, cf, st)
				case last.Kind == "signal":
					if st.CertificateInformation.RequestDisposition != "DENIED" || st.CertificateInformation.DispositionMessage != "denied by "+last.By+": "+last.Comment {
						t.Fatalf("request %d decided by %v ended %+v", i, last, st.CertificateInformation)
					}
				case last.Kind == "stop":
					if st.CertificateInformation.RequestDisposition != "DENIED" || st.CertificateInformation.DispositionMessage != "stopped by admin: race" {
						t.Fatalf("request %d stopped ended %+v", i, st.CertificateInformation)
					}
				default:
					t.Fatalf("request %d: decisions %v", i, in.Decisions)
				}
				if d := st.CertificateInformation.RequestDisposition; d != "ISSUED" && (signedFor(cf, id) != 0 || outcomes(st, "issue", "Completed") != 0) {
					t.Fatalf("request %d ended %s but was signed: %s", i, d, timeline(st))
				}
				t.Logf("request %d: answers %v; %v won; %s", i, statuses, won, st.CertificateInformation.RequestDisposition)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestApprovalDenialEndsTheRequest(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, gated("deny", 0, "{roles: [approver]}"))
	for i, tc := range []struct {
		approved any
		comment  string
	}{
		{false, "not our domain"},
		{"False", "wrong team"},
	} {
		t.Run(fmt.Sprint(tc.approved), func(t *testing.T) {
			t.Parallel()
			er := submitPending(t, cf, fmt.Sprintf("deny.%d.example.com", i), testutil.AliceToken)
			inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId
			mustSignal(t, cf, inst, testutil.BobToken, map[string]any{"Approved": tc.approved, "Comment": tc.comment})
			st := pollFinal(t, cf, id)
			info := st.CertificateInformation
			if info.RequestDisposition != "DENIED" || info.DispositionMessage != "denied by bob: "+tc.comment || len(info.Certificates) != 0 || info.KeyfactorID != 0 {
				t.Fatalf("denied request: %+v", info)
			}
			if got := timeline(st); got != "approve:Waiting approve:Denied" {
				t.Fatalf("timeline %s: the steps after a denial ran", got)
			}
			if signedFor(cf, id) != 0 || st.Metadata["After"] != "" {
				t.Fatalf("a denied request was signed or tagged: metadata %v", st.Metadata)
			}
			// The requester reads why.
			r := cf.Do(t, "GET", requestPath(id), nil, "Authorization", bearer(testutil.AliceToken))
			var mine requestStatus
			r.JSON(t, &mine)
			if mine.CertificateInformation.DispositionMessage != "denied by bob: "+tc.comment {
				t.Fatalf("the requester reads %q", mine.CertificateInformation.DispositionMessage)
			}
			in := getInstance(t, cf, inst, bearer(testutil.AliceToken))
			if in.Status != "Rejected" || len(in.Decisions) != 1 || in.Decisions[0].Approved || in.Decisions[0].Comment != tc.comment || in.Decisions[0].By != "bob" {
				t.Fatalf("instance %s decisions %v", in.Status, in.Decisions)
			}
			assertError(t, signal(t, cf, inst, bearer(daveToken), signalBody("approve.ApprovalStatus", approveData("overrule"))), http.StatusConflict, keyfactor.CodeConflict, "not waiting")
		})
	}
}

func TestSignalWhileTheStepsBeforeTheApprovalRun(t *testing.T) {
	t.Parallel()
	// The slow step is the first (nothing checkpointed yet) or comes after
	// a step that finished (the pinned definition is stored).
	first := &gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	second := &gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv1, srv2 := httptest.NewServer(first), httptest.NewServer(second)
	t.Cleanup(srv1.Close) // after the parallel subtests
	t.Cleanup(srv2.Close)
	def := func(name string, priority int, pre string) string {
		return fmt.Sprintf(`name: %[1]s
trigger: enrollment
priority: %[2]d
match: csr.CommonName startsWith "%[1]s."
steps:
%[3]s  - id: approve
    uses: approval
    with: {roles: [approver]}
  - id: issue
    uses: issue
  - id: tag
    uses: metadata
    with: {set: {After: "%[1]s"}}
`, name, priority, pre)
	}
	cf := startApprovals(t,
		def("slowfirst", 10, "  - {id: slow, uses: http, timeout: 30s, with: {url: \""+srv1.URL+"\"}}\n"),
		def("slowsecond", 20, "  - {id: mark, uses: metadata, with: {set: {Before: \"yes\"}}}\n  - {id: slow, uses: http, timeout: 30s, with: {url: \""+srv2.URL+"\"}}\n"))
	for _, tc := range []struct {
		name string
		cn   string
		g    *gate
	}{
		{"during the first step", "slowfirst.example.com", first},
		{"during a later step", "slowsecond.example.com", second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			csr, _ := testutil.CSR(t, tc.cn)
			resp, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Prefer", "respond-async", "Authorization", bearer(testutil.AliceToken))
			if resp.Status != http.StatusAccepted {
				t.Fatalf("async submit: %d %s", resp.Status, resp.Body)
			}
			inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId
			released := false
			defer func() {
				if !released {
					close(tc.g.release)
				}
			}()
			select {
			case <-tc.g.entered:
			case <-time.After(20 * time.Second):
				t.Fatal("the workflow never reached its slow step")
			}
			// Not yet waiting: 409, as for a wait that is over; the signal
			// key is right, so it must not be refused as unknown (400).
			r := signal(t, cf, inst, bearer(testutil.BobToken), signalBody("approve.ApprovalStatus", approveData("early")))
			var e keyfactor.Error
			json.Unmarshal(r.Body, &e)
			if r.Status != http.StatusConflict || e.ErrorCode != keyfactor.CodeConflict || !strings.Contains(e.Message, "not waiting") {
				t.Errorf("a signal before the instance reached its approval step: %d %s %q; want 409 %s naming it not waiting", r.Status, e.ErrorCode, e.Message, keyfactor.CodeConflict)
			}
			// Nor can a running instance be stopped: its step may act.
			assertError(t, cf.Do(t, "POST", "/Workflow/Instances/"+inst+"/Stop", map[string]any{"Comment": "too early"}), http.StatusConflict, keyfactor.CodeConflict, inst)
			in := getInstance(t, cf, inst, bearer(testutil.AdminToken))
			if in.Status != "Running" || len(in.Decisions) != 0 {
				t.Fatalf("an early signal or stop changed the instance: %s %v", in.Status, in.Decisions)
			}
			close(tc.g.release)
			released = true
			pollDisposition(t, cf, id, "PENDING")
			mustSignal(t, cf, inst, testutil.BobToken, approveData("now"))
			assertIssuedOnce(t, cf, pollFinal(t, cf, id))
			if in := getInstance(t, cf, inst, bearer(testutil.AdminToken)); len(in.Decisions) != 1 || in.Decisions[0].Comment != "now" {
				t.Fatalf("decisions %v; want only the signal sent once the instance waited", in.Decisions)
			}
		})
	}
}

func TestApprovalTimeoutDeniesOrEscalates(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t,
		gated("expire", 10, "{roles: [approver], timeout: 2s, on_timeout: deny}"),
		gated("escalate", 20, "{roles: [approver], timeout: 2s, on_timeout: escalate, escalate: {roles: [pki-leads], timeout: 30s}}"))

	t.Run("deny", func(t *testing.T) {
		t.Parallel()
		er := submitPending(t, cf, "expire.example.com", testutil.AliceToken)
		inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId
		if in := getInstance(t, cf, inst, bearer(testutil.AdminToken)); in.Wait == nil || in.Wait.Deadline.IsZero() {
			t.Fatalf("a wait with a timeout has no deadline: %+v", in.Wait)
		}
		st := pollFinal(t, cf, id)
		info := st.CertificateInformation
		if info.RequestDisposition != "DENIED" || !strings.Contains(info.DispositionMessage, "no approval decision within the timeout") {
			t.Fatalf("timed out request: %+v", info)
		}
		if got := timeline(st); got != "approve:Waiting approve:Denied" || signedFor(cf, id) != 0 {
			t.Fatalf("timeline %s", got)
		}
		in := getInstance(t, cf, inst, bearer(testutil.AdminToken))
		if to := decisionKinds(in.Decisions, "timeout"); len(in.Decisions) != 1 || len(to) != 1 || to[0].Step != "approve" || to[0].Stage != 0 || to[0].Approved {
			t.Fatalf("decisions %v; want one timeout", in.Decisions)
		}
		if in.Status != "Rejected" {
			t.Fatalf("instance %s", in.Status)
		}
		assertError(t, signal(t, cf, inst, bearer(testutil.BobToken), signalBody("approve.ApprovalStatus", approveData("late"))), http.StatusConflict, keyfactor.CodeConflict, "not waiting")
	})

	t.Run("escalate", func(t *testing.T) {
		t.Parallel()
		er := submitPending(t, cf, "escalate.example.com", testutil.AliceToken)
		inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId
		if got := listInstanceIDs(t, cf, "/Workflow/Instances/AssignedToMe", bearer(erinToken)); slices.Contains(got, inst) {
			t.Fatalf("pki-leads are assigned before the escalation: %v", got)
		}
		if r := cf.Do(t, "GET", requestPath(id), nil, "Authorization", bearer(erinToken)); r.Status != http.StatusNotFound {
			t.Fatalf("erin (no decider yet) reads the request: %d", r.Status)
		}
		var in wfInstance
		waitFor(t, "the escalation", func() bool {
			in = getInstance(t, cf, inst, bearer(testutil.AdminToken))
			return in.Wait != nil && in.Wait.Stage == 1 || in.Status != "Suspended"
		})
		if in.Status != "Suspended" || in.RequestDisposition != "PENDING" || !slices.Equal(in.Wait.Roles, []string{"pki-leads"}) || time.Until(in.Wait.Deadline) < 20*time.Second {
			t.Fatalf("after the escalation: %s %s wait %+v", in.Status, in.RequestDisposition, in.Wait)
		}
		if esc := decisionKinds(in.Decisions, "escalation"); len(esc) != 1 || esc[0].Stage != 0 || !strings.Contains(esc[0].Comment, "pki-leads") {
			t.Fatalf("decisions %v; want one escalation naming pki-leads", in.Decisions)
		}
		var esc []workflow.Event
		for _, ev := range eventsNamed(t, cf, workflow.EventApprovalEscalated) {
			if ev.RequestID == id {
				esc = append(esc, ev)
			}
		}
		if len(esc) != 1 || esc[0].Data["Stage"] != float64(1) || !slices.Equal(esc[0].Data["Roles"].([]any), []any{"pki-leads"}) {
			t.Fatalf("approval.escalated events: %+v", esc)
		}
		if got := listInstanceIDs(t, cf, "/Workflow/Instances/AssignedToMe", bearer(erinToken)); !slices.Contains(got, inst) {
			t.Fatalf("AssignedToMe for erin (pki-leads) after the escalation = %v", got)
		}
		if r := cf.Do(t, "GET", requestPath(id), nil, "Authorization", bearer(erinToken)); r.Status != http.StatusOK {
			t.Fatalf("erin, now a decider, cannot read the request: %d %s", r.Status, r.Body)
		}
		if got := listInstanceIDs(t, cf, "/Workflow/Instances/AssignedToMe", bearer(testutil.BobToken)); slices.Contains(got, inst) {
			t.Fatalf("AssignedToMe for bob still lists the escalated request: %v", got)
		}
		assertError(t, signal(t, cf, inst, bearer(testutil.BobToken), signalBody("approve.ApprovalStatus", approveData("too late for me"))), http.StatusForbidden, keyfactor.CodeForbidden, "pki-leads")
		mustSignal(t, cf, inst, erinToken, approveData("escalated and approved"))
		assertIssuedOnce(t, cf, pollFinal(t, cf, id))
		in = getInstance(t, cf, inst, bearer(testutil.AdminToken))
		sig := decisionKinds(in.Decisions, "signal")
		if len(sig) != 1 || sig[0].By != "erin" || sig[0].Stage != 1 || len(decisionKinds(in.Decisions, "timeout")) != 0 {
			t.Fatalf("decisions %v; want the escalation and erin's stage-1 approval", in.Decisions)
		}
	})
}

func TestApprovalAndTimeoutAtTheSameInstantHaveOneOutcome(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, gated("photo", 0, "{roles: [approver], timeout: 1s, on_timeout: deny}"))
	// The deadline is 1 s after the wait began, but the timeout task is
	// only handed to a worker when asynq next moves due scheduled tasks
	// (every 5 s by default): it fires between 1 and 6 s. The approvals are
	// spread over that window, so that some land before it, some after,
	// and one close to it.
	const n = 10
	type result struct {
		status int
		body   []byte
		err    error
	}
	ers := make([]enrollResponse, n)
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range ers {
		ers[i] = submitPending(t, cf, fmt.Sprintf("photo.%d.example.com", i), testutil.AliceToken)
	}
	for i, er := range ers {
		in := getInstance(t, cf, er.CertificateInformation.WorkflowInstanceId, bearer(testutil.AdminToken))
		if in.Wait == nil || in.Wait.Deadline.IsZero() {
			t.Fatalf("request %d has no deadline: %+v", i, in.Wait)
		}
		at := in.Wait.Deadline.Add(time.Duration(i)*550*time.Millisecond - 100*time.Millisecond)
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(at))
			r := &results[i]
			r.status, r.body, r.err = rawPost(cf.URL, "/Workflow/Instances/"+er.CertificateInformation.WorkflowInstanceId+"/Signals", testutil.BobToken,
				signalBody("approve.ApprovalStatus", approveData("just in time?")))
		}()
	}
	wg.Wait()
	issued := 0
	for i, er := range ers {
		inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId
		res := results[i]
		if res.err != nil {
			t.Fatalf("request %d: signal: %v", i, res.err)
		}
		st := pollFinal(t, cf, id)
		in := getInstance(t, cf, inst, bearer(testutil.AdminToken))
		signals, timeouts := decisionKinds(in.Decisions, "signal"), decisionKinds(in.Decisions, "timeout")
		switch st.CertificateInformation.RequestDisposition {
		case "ISSUED":
			issued++
			if res.status != http.StatusNoContent {
				t.Errorf("request %d ISSUED, but its approval was answered %d %s", i, res.status, res.body)
			}
			if len(signals) != 1 || !signals[0].Approved || len(timeouts) != 0 {
				t.Errorf("request %d ISSUED with decisions %v; want bob's approval and no timeout", i, in.Decisions)
			}
			assertIssuedOnce(t, cf, st)
		case "DENIED":
			if !strings.Contains(st.CertificateInformation.DispositionMessage, "no approval decision within the timeout") {
				t.Errorf("request %d DENIED with %q; want the timeout", i, st.CertificateInformation.DispositionMessage)
			}
			if res.status != http.StatusConflict {
				t.Errorf("request %d timed out, but its approval was answered %d %s; want 409", i, res.status, res.body)
			}
			if len(timeouts) != 1 || len(signals) != 0 {
				t.Errorf("request %d timed out with decisions %v; want the timeout alone", i, in.Decisions)
			}
			if signedFor(cf, id) != 0 || outcomes(st, "issue", "Completed") != 0 {
				t.Errorf("request %d timed out but was signed: timeline %s", i, timeline(st))
			}
		default:
			t.Errorf("request %d ended %s (%s)", i, st.CertificateInformation.RequestDisposition, st.CertificateInformation.DispositionMessage)
		}
	}
	t.Logf("%d of %d approved before the timeout fired", issued, n)
}

// certRequest is a row of GET /Workflow/Certificates/Pending and /Denied.
type certRequest struct {
	Id                                                 int64
	CommonName, DistinguishedName, Requester, Template string
	State                                              int
	StateString                                        string
}

type processed struct {
	KeyfactorRequestId int64
	Comment            string
}

type approveDenyResult struct {
	Successes, Failures, Denials []processed
}

func listCertRequests(t *testing.T, cf *testutil.Certflow, which, auth string) map[int64]certRequest {
	t.Helper()
	r := cf.Do(t, "GET", "/Workflow/Certificates/"+which, nil, "Authorization", auth)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", which, r.Status, r.Body)
	}
	var rows []certRequest
	r.JSON(t, &rows)
	out := map[int64]certRequest{}
	for _, c := range rows {
		out[c.Id] = c
	}
	return out
}

func approveDeny(t *testing.T, cf *testutil.Certflow, path, token string, body any) approveDenyResult {
	t.Helper()
	r := cf.Do(t, "POST", path, body, "Authorization", bearer(token))
	if r.Status != http.StatusOK {
		t.Fatalf("POST %s: %d %s", path, r.Status, r.Body)
	}
	var res approveDenyResult
	r.JSON(t, &res)
	if res.Successes == nil || res.Failures == nil || res.Denials == nil {
		t.Fatalf("POST %s: an array is null: %s", path, r.Body)
	}
	return res
}

func entry(list []processed, id int64) (processed, bool) {
	for _, p := range list {
		if p.KeyfactorRequestId == id {
			return p, true
		}
	}
	return processed{}, false
}

func TestKeyfactorPendingQueueApproveAndDeny(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, gated("queue", 0, "{roles: [approver]}"))
	var ids []int64
	for _, cn := range []string{"queue.a.example.com", "queue.b.example.com", "queue.c.example.com"} {
		ids = append(ids, submitPending(t, cf, cn, testutil.AliceToken).CertificateInformation.KeyfactorRequestId)
	}
	a, b, c := ids[0], ids[1], ids[2]
	csr, _ := testutil.CSR(t, "direct.example.com")
	_, direct := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", bearer(testutil.AliceToken))
	issuedID := direct.CertificateInformation.KeyfactorRequestId
	if direct.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("ungated request: %+v", direct.CertificateInformation)
	}

	pending := listCertRequests(t, cf, "Pending", bearer(testutil.BobToken))
	for i, id := range ids {
		row, ok := pending[id]
		cn := []string{"queue.a.example.com", "queue.b.example.com", "queue.c.example.com"}[i]
		if !ok || row.State != 5 || row.StateString != "Pending" || row.CommonName != cn || row.DistinguishedName != "CN="+cn ||
			row.Requester != "alice" || row.Template != config.DefaultTemplate {
			t.Fatalf("Pending row of %d: %+v (present %v)", id, row, ok)
		}
	}
	if _, ok := pending[issuedID]; ok {
		t.Fatal("an issued request is listed as pending")
	}
	if mine := listCertRequests(t, cf, "Pending", bearer(testutil.AliceToken)); len(mine) != 3 {
		t.Fatalf("alice's pending list has %d rows, want her 3", len(mine))
	}
	if other := listCertRequests(t, cf, "Pending", carolBasic); len(other) != 0 {
		t.Fatalf("carol sees alice's pending requests: %v", other)
	}

	t.Run("the requester cannot approve through the queue", func(t *testing.T) {
		res := approveDeny(t, cf, "/Workflow/Certificates/Approve", testutil.AliceToken, []int64{c})
		if f, ok := entry(res.Failures, c); !ok || len(res.Successes) != 0 || !strings.Contains(f.Comment, "may not decide") {
			t.Fatalf("alice approving her own: %+v", res)
		}
	})

	t.Run("approve", func(t *testing.T) {
		const unknown = 987654
		res := approveDeny(t, cf, "/Workflow/Certificates/Approve", testutil.BobToken, []int64{a, unknown, a, issuedID})
		if _, ok := entry(res.Successes, a); !ok || len(res.Successes) != 1 || len(res.Denials) != 0 {
			t.Fatalf("approve: %+v", res)
		}
		if f, ok := entry(res.Failures, unknown); !ok || !strings.Contains(f.Comment, "not found") {
			t.Fatalf("an unknown id: %+v", res.Failures)
		}
		if f, ok := entry(res.Failures, issuedID); !ok || !strings.Contains(f.Comment, "not waiting") {
			t.Fatalf("an issued request: %+v", res.Failures)
		}
		assertIssuedOnce(t, cf, pollFinal(t, cf, a))
		in := getInstance(t, cf, getRequest(t, cf, a).CertificateInformation.WorkflowInstanceId, bearer(testutil.AdminToken))
		if len(in.Decisions) != 1 || in.Decisions[0].By != "bob" || in.Decisions[0].Signal != "approve.ApprovalStatus" || !in.Decisions[0].Approved {
			t.Fatalf("decisions of the queue approval: %v", in.Decisions)
		}
	})

	t.Run("deny", func(t *testing.T) {
		for _, body := range []any{
			map[string]any{"CertificateRequestIds": []int64{b}},
			map[string]any{"Comment": "  ", "CertificateRequestIds": []int64{b}},
		} {
			assertError(t, cf.Do(t, "POST", "/Workflow/Certificates/Deny", body, "Authorization", bearer(testutil.BobToken)), http.StatusBadRequest, keyfactor.CodeInvalidField, "Comment")
		}
		if st := getRequest(t, cf, b); st.CertificateInformation.RequestDisposition != "PENDING" {
			t.Fatalf("a refused deny changed the request: %s", st.CertificateInformation.RequestDisposition)
		}
		res := approveDeny(t, cf, "/Workflow/Certificates/Deny", testutil.BobToken, map[string]any{"Comment": "no such project", "CertificateRequestIds": []int64{b}})
		if d, ok := entry(res.Denials, b); !ok || d.Comment != "no such project" || len(res.Successes) != 0 || len(res.Failures) != 0 {
			t.Fatalf("deny: %+v", res)
		}
		st := pollFinal(t, cf, b)
		if st.CertificateInformation.RequestDisposition != "DENIED" || st.CertificateInformation.DispositionMessage != "denied by bob: no such project" {
			t.Fatalf("denied through the queue: %+v", st.CertificateInformation)
		}
		denied := listCertRequests(t, cf, "Denied", bearer(testutil.BobToken))
		if row, ok := denied[b]; !ok || row.State != 3 || row.StateString != "Denied" {
			t.Fatalf("Denied list: %v", denied)
		}
		if _, ok := denied[a]; ok {
			t.Fatal("the approved request is listed as denied")
		}
	})

	t.Run("the queue no longer lists decided requests", func(t *testing.T) {
		pending := listCertRequests(t, cf, "Pending", bearer(testutil.BobToken))
		if _, ok := pending[a]; ok {
			t.Fatal("approved request still pending")
		}
		if _, ok := pending[b]; ok {
			t.Fatal("denied request still pending")
		}
		if _, ok := pending[c]; !ok {
			t.Fatal("the undecided request left the queue")
		}
	})

	t.Run("malformed batches", func(t *testing.T) {
		assertError(t, cf.Do(t, "POST", "/Workflow/Certificates/Approve", []int64{}, "Authorization", bearer(testutil.BobToken)), http.StatusBadRequest, keyfactor.CodeInvalidField, "")
		assertError(t, cf.Do(t, "POST", "/Workflow/Certificates/Approve", []int64{-1}, "Authorization", bearer(testutil.BobToken)), http.StatusBadRequest, keyfactor.CodeInvalidField, "")
		assertError(t, cf.Do(t, "POST", "/Workflow/Certificates/Deny", map[string]any{"Comment": "x"}, "Authorization", bearer(testutil.BobToken)), http.StatusBadRequest, keyfactor.CodeInvalidField, "CertificateRequestIds")
	})
}

func TestStopAndRestartOfInstances(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, gated("stop", 0, "{roles: [approver]}"))
	er := submitPending(t, cf, "stop.example.com", testutil.AliceToken)
	inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId
	stop := "/Workflow/Instances/" + inst + "/Stop"
	restart := "/Workflow/Instances/" + inst + "/Restart"

	for _, token := range []string{testutil.AliceToken, testutil.BobToken} {
		assertError(t, cf.Do(t, "POST", stop, map[string]any{"Comment": "x"}, "Authorization", bearer(token)), http.StatusForbidden, keyfactor.CodeForbidden, "admin")
		assertError(t, cf.Do(t, "POST", restart, nil, "Authorization", bearer(token)), http.StatusForbidden, keyfactor.CodeForbidden, "admin")
	}
	assertError(t, cf.Do(t, "POST", restart, nil), http.StatusConflict, keyfactor.CodeConflict, "only a failed instance")
	if in := getInstance(t, cf, inst, bearer(testutil.AdminToken)); in.Status != "Suspended" || len(in.Decisions) != 0 {
		t.Fatalf("refused stops and restarts changed the instance: %s %v", in.Status, in.Decisions)
	}

	if r := cf.Do(t, "POST", stop, map[string]any{"Comment": "project cancelled"}); r.Status != http.StatusNoContent {
		t.Fatalf("admin stop: %d %s", r.Status, r.Body)
	}
	st := pollFinal(t, cf, id)
	if info := st.CertificateInformation; info.RequestDisposition != "DENIED" || info.DispositionMessage != "stopped by admin: project cancelled" {
		t.Fatalf("stopped request: %+v", info)
	}
	if got := timeline(st); got != "approve:Waiting approve:Denied" || signedFor(cf, id) != 0 {
		t.Fatalf("timeline of the stopped request: %s", got)
	}
	in := getInstance(t, cf, inst, bearer(testutil.AdminToken))
	if in.Status != "Rejected" || len(in.Decisions) != 1 || in.Decisions[0].Kind != "stop" || in.Decisions[0].By != "admin" || in.Decisions[0].Step != "approve" {
		t.Fatalf("stopped instance %s decisions %v", in.Status, in.Decisions)
	}
	assertError(t, cf.Do(t, "POST", stop, nil), http.StatusConflict, keyfactor.CodeConflict, inst)
	assertError(t, cf.Do(t, "POST", restart, nil), http.StatusConflict, keyfactor.CodeConflict, "only a failed instance")
	assertError(t, signal(t, cf, inst, bearer(testutil.BobToken), signalBody("approve.ApprovalStatus", approveData("after the stop"))), http.StatusConflict, keyfactor.CodeConflict, "not waiting")

	t.Run("a stop without a body", func(t *testing.T) {
		er := submitPending(t, cf, "stop.bare.example.com", testutil.AliceToken)
		r := cf.Do(t, "POST", "/Workflow/Instances/"+er.CertificateInformation.WorkflowInstanceId+"/Stop", nil)
		if r.Status != http.StatusNoContent {
			t.Fatalf("stop without a body: %d %s", r.Status, r.Body)
		}
		st := pollFinal(t, cf, er.CertificateInformation.KeyfactorRequestId)
		if st.CertificateInformation.RequestDisposition != "DENIED" || st.CertificateInformation.DispositionMessage != "stopped by admin" {
			t.Fatalf("stopped without a comment: %+v", st.CertificateInformation)
		}
	})
	t.Run("restart of a complete instance", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "done.example.com")
		_, done := enroll(t, cf, testutil.EnrollBody(csr, nil))
		assertError(t, cf.Do(t, "POST", "/Workflow/Instances/"+done.CertificateInformation.WorkflowInstanceId+"/Restart", nil), http.StatusConflict, keyfactor.CodeConflict, "only a failed instance")
	})
	t.Run("unknown instance", func(t *testing.T) {
		assertError(t, cf.Do(t, "POST", "/Workflow/Instances/00000000-0000-4000-8000-000000000000/Stop", nil), http.StatusNotFound, keyfactor.CodeNotFound, "")
	})
}

// TestEscalationTimeoutIsScheduledWhenTheFirstTryCouldNotEnqueueIt fires
// an escalating timeout by hand through a worker whose queue is down: the
// escalation is stored, the next stage's timeout cannot be enqueued and
// the task fails. asynq then runs the task again (here: by hand, with the
// queue back); that run should schedule the next stage's timeout. Failing
// that, the reconciler's overdue sweep must still time the wait out.
func TestEscalationTimeoutIsScheduledWhenTheFirstTryCouldNotEnqueueIt(t *testing.T) {
	t.Parallel()
	dir := defsDir(t, map[string]string{"lost.yaml": gated("lost", 0, "{roles: [approver], timeout: 1h, on_timeout: escalate, escalate: {roles: [pki-leads], timeout: 1s}}")})
	// The first stage's 1h timeout never fires by itself here; a short
	// reconcile_after lets the overdue sweep act within the test.
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.Worker.TaskTimeout, c.Worker.ReconcileAfter = time.Second, 2*time.Second
	})
	er := submitPending(t, cf, "lost.example.com", testutil.AliceToken)
	inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId
	ctx := context.Background()
	stored, err := cf.App.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	gen := stored.Generation
	inspector := asynq.NewInspectorFromRedisClient(cf.Redis)
	stage0 := fmt.Sprintf("timeout:%s:approve.0:%d", inst, gen)
	stage1 := fmt.Sprintf("timeout:%s:approve.1:%d", inst, gen)
	if _, err := testutil.ScheduledTask(t, cf.Redis, cf.Config.Queue, stage0); err != nil {
		t.Fatalf("the first stage's timeout task %s: %v", stage0, err)
	}

	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer down.Close()
	newWorker := func(q *queue.Client) *worker.Worker { return handWorker(cf, q) }
	broken := newWorker(queue.NewClient(down, cf.Config.Queue, cf.Config.Worker.MaxRetry, cf.Config.Worker.TaskTimeout, 1, queue.Options{}))
	if err := broken.Timeout(ctx, id, gen, "approve", 0); err == nil {
		t.Fatal("the timeout reported success though the next stage's timeout could not be enqueued")
	}
	in := getInstance(t, cf, inst, bearer(testutil.AdminToken))
	if in.Wait == nil || in.Wait.Stage != 1 || in.RequestDisposition != "PENDING" {
		t.Fatalf("after the first try: %s wait %+v", in.RequestDisposition, in.Wait)
	}
	// Control: with the queue up on the first try, the next stage's
	// timeout is scheduled (so the lookup below can find one).
	ok := submitPending(t, cf, "lost.control.example.com", testutil.AliceToken).CertificateInformation
	if err := newWorker(cf.App.Queue).Timeout(ctx, ok.KeyfactorRequestId, gen, "approve", 0); err != nil {
		t.Fatalf("control timeout: %v", err)
	}
	if _, err := inspector.GetTaskInfo(cf.Config.Queue, fmt.Sprintf("timeout:%s:approve.1:%d", ok.WorkflowInstanceId, gen)); err != nil {
		t.Fatalf("control: an escalation with the queue up scheduled no next timeout: %v", err)
	}
	// asynq's retry of the same task.
	if err := newWorker(cf.App.Queue).Timeout(ctx, id, gen, "approve", 0); err != nil {
		t.Fatalf("the retried timeout: %v", err)
	}
	if _, err := inspector.GetTaskInfo(cf.Config.Queue, stage1); err != nil {
		t.Errorf("the escalated wait (deadline %s) has no timeout task %s after the retry: %v; only the reconciler's overdue sweep, reconcile_after past the deadline, can still fire it", in.Wait.Deadline, stage1, err)
	}
	// Whatever the retry did, the wait must not outlive its deadline by
	// much more than reconcile_after.
	st := pollFinal(t, cf, id)
	if st.CertificateInformation.RequestDisposition != "DENIED" || !strings.Contains(st.CertificateInformation.DispositionMessage, "no approval decision within the timeout") {
		t.Fatalf("the escalated wait ended %+v; want DENIED by its timeout", st.CertificateInformation)
	}
}

// switchable answers 400 on a path until it is switched on, then 200.
type switchable struct {
	mu    sync.Mutex
	on    map[string]bool
	calls map[string]int
}

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.calls[r.URL.Path]++
	on := s.on[r.URL.Path]
	s.mu.Unlock()
	if !on {
		http.Error(w, "not yet", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"ok": true}`))
}

func (s *switchable) set(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on[path] = true
}

func (s *switchable) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[path]
}

func TestRestartOfAFailedInstanceAroundAnApproval(t *testing.T) {
	t.Parallel()
	sw := &switchable{on: map[string]bool{}, calls: map[string]int{}}
	srv := httptest.NewServer(sw)
	t.Cleanup(srv.Close)
	def := func(name string, priority int, steps string) string {
		return fmt.Sprintf("name: %[1]s\ntrigger: enrollment\npriority: %[2]d\nmatch: csr.CommonName startsWith \"%[1]s.\"\nsteps:\n%[3]s  - {id: issue, uses: issue}\n", name, priority, steps)
	}
	approve := "  - {id: approve, uses: approval, with: {roles: [approver]}}\n"
	check := func(path string) string {
		return "  - {id: check, uses: http, retry: {attempts: 1}, with: {url: \"" + srv.URL + path + "\"}}\n"
	}
	cf := startApprovals(t, def("after", 10, approve+check("/after")), def("before", 20, check("/before")+approve))

	t.Run("a failure after the approval resumes at the failed step and asks no one again", func(t *testing.T) {
		t.Parallel()
		er := submitPending(t, cf, "after.example.com", testutil.AliceToken)
		inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId
		mustSignal(t, cf, inst, testutil.BobToken, approveData("ok"))
		if st := pollFinal(t, cf, id); st.CertificateInformation.RequestDisposition != "FAILED" || outcomes(st, "check", "Failed") != 1 {
			t.Fatalf("with the check failing: %s, timeline %s", st.CertificateInformation.RequestDisposition, timeline(st))
		}
		restart := "/Workflow/Instances/" + inst + "/Restart"
		assertError(t, cf.Do(t, "POST", restart, nil, "Authorization", bearer(testutil.BobToken)), http.StatusForbidden, keyfactor.CodeForbidden, "admin")
		sw.set("/after")
		if r := cf.Do(t, "POST", restart, nil); r.Status != http.StatusNoContent {
			t.Fatalf("restart of a failed instance: %d %s", r.Status, r.Body)
		}
		st := pollFinal(t, cf, id)
		if st.CertificateInformation.RequestDisposition != "ISSUED" || outcomes(st, "approve", "Completed") != 1 || outcomes(st, "approve", "Waiting") != 1 ||
			outcomes(st, "check", "Completed") != 1 || outcomes(st, "issue", "Completed") != 1 || signedFor(cf, id) != 1 {
			t.Fatalf("after the restart: %s, timeline %s", st.CertificateInformation.RequestDisposition, timeline(st))
		}
		if in := getInstance(t, cf, inst, bearer(testutil.AdminToken)); len(in.Decisions) != 1 || in.Status != "Complete" {
			t.Fatalf("after the restart: %s decisions %v", in.Status, in.Decisions)
		}
		if n := sw.count("/after"); n != 2 {
			t.Fatalf("the check ran %d times, want 2", n)
		}
		assertError(t, cf.Do(t, "POST", restart, nil), http.StatusConflict, keyfactor.CodeConflict, "only a failed instance")
	})

	t.Run("a failure before the approval waits for approval after the restart", func(t *testing.T) {
		t.Parallel()
		csr, _ := testutil.CSR(t, "before.example.com")
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", bearer(testutil.AliceToken))
		if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "FAILED" {
			t.Fatalf("with the check failing: %d %s", resp.Status, resp.Body)
		}
		inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId
		assertError(t, signal(t, cf, inst, bearer(testutil.BobToken), signalBody("approve.ApprovalStatus", approveData("failed already"))), http.StatusConflict, keyfactor.CodeConflict, "not waiting")
		sw.set("/before")
		if r := cf.Do(t, "POST", "/Workflow/Instances/"+inst+"/Restart", nil); r.Status != http.StatusNoContent {
			t.Fatalf("restart: %d %s", r.Status, r.Body)
		}
		pollDisposition(t, cf, id, "PENDING")
		if in := getInstance(t, cf, inst, bearer(testutil.AdminToken)); in.Status != "Suspended" || in.CurrentStepUniqueName != "approve" || len(in.Decisions) != 0 {
			t.Fatalf("after the restart: %+v", in)
		}
		mustSignal(t, cf, inst, testutil.BobToken, approveData("now it passed its check"))
		st := pollFinal(t, cf, id)
		if st.CertificateInformation.RequestDisposition != "ISSUED" || outcomes(st, "approve", "Completed") != 1 || signedFor(cf, id) != 1 {
			t.Fatalf("restarted and approved: %s, timeline %s", st.CertificateInformation.RequestDisposition, timeline(st))
		}
	})
}

func TestApprovalCallbackIsSentOnceWithTheFinalDisposition(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, gated("hook", 0, "{roles: [approver]}"))
	for i, tc := range []struct {
		data map[string]any
		want string
	}{
		{approveData("ok"), "ISSUED"},
		{denyData("no"), "DENIED"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			h := &hook{statuses: []int{204}}
			srv := httptest.NewServer(h)
			defer srv.Close()
			csr, _ := testutil.CSR(t, fmt.Sprintf("hook.%d.example.com", i))
			resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"CallbackUrl": srv.URL + "/hook"}), "Authorization", bearer(testutil.AliceToken))
			if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "PENDING" {
				t.Fatalf("submit: %d %s", resp.Status, resp.Body)
			}
			id := er.CertificateInformation.KeyfactorRequestId
			mustSignal(t, cf, er.CertificateInformation.WorkflowInstanceId, testutil.BobToken, tc.data)
			if st := pollFinal(t, cf, id); st.CertificateInformation.RequestDisposition != tc.want {
				t.Fatalf("ended %s, want %s", st.CertificateInformation.RequestDisposition, tc.want)
			}
			var st requestStatus
			waitFor(t, "the delivery recorded on the request", func() bool {
				st = getRequest(t, cf, id)
				return len(st.Callbacks) > 0
			})
			got := h.deliveries()
			if len(got) != 1 || len(st.Callbacks) != 1 || st.Callbacks[0].MessageId != fmt.Sprintf("certflow-%d-%s", id, tc.want) {
				t.Fatalf("%d deliveries, attempts %+v; want one, for %s (none for PENDING)", len(got), st.Callbacks, tc.want)
			}
			var body enrollResponse
			if err := json.Unmarshal(got[0].body, &body); err != nil || body.CertificateInformation.RequestDisposition != tc.want {
				t.Fatalf("callback body (%v): %s", err, got[0].body)
			}
		})
	}
}

// handWorker is a worker over cf's store with queue q, for running a
// handler by hand.
func handWorker(cf *testutil.Certflow, q *queue.Client) *worker.Worker {
	return &worker.Worker{Config: cf.Config, Store: cf.App.Store, Queue: q, Defs: &cf.App.Defs,
		Catalog: cf.App.Catalog(), Engine: &workflow.Engine{Log: cf.App.Log}, Callbacks: cf.App.Sender, Log: cf.App.Log}
}

// TestApprovalTimeoutAfterTheDecisionSendsNoSecondCallback: a wait decided
// early leaves its timeout task scheduled for the deadline, maybe days
// later. When it fires it must do nothing — in particular not enqueue the
// request's callback again: by then the first callback task's retention
// (24 h) may have lapsed, and the receiver would get the result twice.
func TestApprovalTimeoutAfterTheDecisionSendsNoSecondCallback(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, gated("late", 0, "{roles: [approver], timeout: 1h, on_timeout: deny}"))
	h := &hook{statuses: []int{204}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	csr, _ := testutil.CSR(t, "late.example.com")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"CallbackUrl": srv.URL + "/hook"}), "Authorization", bearer(testutil.AliceToken))
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "PENDING" {
		t.Fatalf("submit: %d %s", resp.Status, resp.Body)
	}
	id := er.CertificateInformation.KeyfactorRequestId
	mustSignal(t, cf, er.CertificateInformation.WorkflowInstanceId, testutil.BobToken, approveData("early"))
	assertIssuedOnce(t, cf, pollFinal(t, cf, id))
	waitFor(t, "the callback recorded on the request", func() bool { return len(getRequest(t, cf, id).Callbacks) == 1 })

	ctx := context.Background()
	stored, err := cf.App.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	inspector := asynq.NewInspectorFromRedisClient(cf.Redis)
	cbTask := fmt.Sprintf("callback:%d:ISSUED", id)
	waitFor(t, "the callback task to complete", func() bool {
		info, err := inspector.GetTaskInfo(cf.Config.Queue, cbTask)
		return err == nil && info.State == asynq.TaskStateCompleted
	})
	// Its retention lapses (24 h in production).
	if err := inspector.DeleteTask(cf.Config.Queue, cbTask); err != nil {
		t.Fatalf("delete the completed callback task: %v", err)
	}
	// The deadline comes: the timeout task fires.
	if err := handWorker(cf, cf.App.Queue).Timeout(ctx, id, stored.Generation, "approve", 0); err != nil {
		t.Fatalf("timeout of a decided wait: %v", err)
	}
	if info, err := inspector.GetTaskInfo(cf.Config.Queue, cbTask); err == nil {
		waitFor(t, "the second delivery", func() bool { return len(h.deliveries()) > 1 })
		t.Fatalf("the timeout of a wait decided long before enqueued the request's callback again (task %s, %s): the receiver got %d deliveries", cbTask, info.State, len(h.deliveries()))
	}
	if in := getInstance(t, cf, er.CertificateInformation.WorkflowInstanceId, bearer(testutil.AdminToken)); len(decisionKinds(in.Decisions, "timeout")) != 0 || in.Status != "Complete" {
		t.Fatalf("the late timeout changed the decided instance: %s %v", in.Status, in.Decisions)
	}
}

func TestApprovalWaitKeepsItsRulesAcrossAReload(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, gated("reload", 0, "{roles: [approver]}"))
	old := submitPending(t, cf, "reload.old.example.com", testutil.AliceToken).CertificateInformation
	v2 := strings.Replace(gated("reload", 0, "{roles: [pki-leads]}"), `After: "reload"`, `After: "v2"`, 1)
	if err := os.WriteFile(filepath.Join(cf.Config.Definitions, "def0.yaml"), []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := cf.Do(t, "POST", "/Workflow/Definitions/Reload", nil); r.Status != http.StatusOK {
		t.Fatalf("reload: %d %s", r.Status, r.Body)
	}
	in := getInstance(t, cf, old.WorkflowInstanceId, bearer(testutil.BobToken))
	if in.Status != "Suspended" || in.CurrentStepUniqueName != "approve" || len(in.Signals) != 1 || in.Signals[0].StepSignalId != "approve.ApprovalStatus" {
		t.Fatalf("a request waiting on the replaced version: %+v", in)
	}
	// The waiting request keeps the roles it was suspended with.
	// (To erin, who may not decide it, the request does not exist.)
	assertError(t, signal(t, cf, old.WorkflowInstanceId, bearer(erinToken), signalBody("approve.ApprovalStatus", approveData("new rules"))), http.StatusNotFound, keyfactor.CodeNotFound, "not found")
	mustSignal(t, cf, old.WorkflowInstanceId, testutil.BobToken, approveData("old rules"))
	st := pollFinal(t, cf, old.KeyfactorRequestId)
	assertIssuedOnce(t, cf, st)
	if st.Metadata["After"] != "reload" {
		t.Fatalf("the old request resumed on the new version: metadata %v", st.Metadata)
	}
	// A new request waits under the new rules.
	fresh := submitPending(t, cf, "reload.new.example.com", testutil.AliceToken).CertificateInformation
	assertError(t, signal(t, cf, fresh.WorkflowInstanceId, bearer(testutil.BobToken), signalBody("approve.ApprovalStatus", approveData("old rules"))), http.StatusForbidden, keyfactor.CodeForbidden, "bob may not decide")
	mustSignal(t, cf, fresh.WorkflowInstanceId, erinToken, approveData("new rules"))
	if st := pollFinal(t, cf, fresh.KeyfactorRequestId); st.CertificateInformation.RequestDisposition != "ISSUED" || st.Metadata["After"] != "v2" {
		t.Fatalf("the new request: %s %v", st.CertificateInformation.RequestDisposition, st.Metadata)
	}
}

func TestApprovalTwoStepsInSequence(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t, `name: twostep
trigger: enrollment
steps:
  - {id: approve, uses: approval, with: {roles: [approver]}}
  - {id: second, uses: approval, with: {roles: [pki-leads], timeout: 1h}}
  - {id: issue, uses: issue}
`)
	er := submitPending(t, cf, "twostep.example.com", testutil.AliceToken)
	inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId
	second := func(token string, data map[string]any) *testutil.Response {
		return signal(t, cf, inst, bearer(token), signalBody("second.ApprovalStatus", data))
	}
	// erin may not see the request before it waits for her; the admin
	// may, and is told it does not wait there yet.
	assertError(t, second(erinToken, approveData("too soon")), http.StatusNotFound, keyfactor.CodeNotFound, "not found")
	assertError(t, second(testutil.AdminToken, approveData("too soon")), http.StatusConflict, keyfactor.CodeConflict, "not waiting")
	mustSignal(t, cf, inst, testutil.BobToken, approveData("first"))
	var in wfInstance
	waitFor(t, "the second approval step", func() bool {
		in = getInstance(t, cf, inst, bearer(testutil.AdminToken))
		return in.Wait != nil && in.Wait.Step == "second" || in.Status != "Suspended" && in.Status != "Running"
	})
	if in.Status != "Suspended" || in.CurrentStepUniqueName != "second" || in.RequestDisposition != "PENDING" || len(in.Signals) != 2 || !in.Signals[0].SignalReceived || in.Signals[1].SignalReceived {
		t.Fatalf("waiting at the second step: %+v", in)
	}
	if _, err := testutil.ScheduledTask(t, cf.Redis, cf.Config.Queue, fmt.Sprintf("timeout:%s:second.0:0", inst)); err != nil {
		t.Fatalf("the second step's timeout was not scheduled: %v", err)
	}
	if got := listInstanceIDs(t, cf, "/Workflow/Instances/AssignedToMe", bearer(erinToken)); !slices.Contains(got, inst) {
		t.Fatalf("AssignedToMe for erin: %v", got)
	}
	assertError(t, signal(t, cf, inst, bearer(testutil.BobToken), signalBody("approve.ApprovalStatus", approveData("again"))), http.StatusConflict, keyfactor.CodeConflict, "not waiting")
	assertError(t, second(testutil.BobToken, approveData("not mine")), http.StatusForbidden, keyfactor.CodeForbidden, "pki-leads")
	if r := second(erinToken, approveData("second")); r.Status != http.StatusNoContent {
		t.Fatalf("erin's approval: %d %s", r.Status, r.Body)
	}
	st := pollFinal(t, cf, id)
	if st.CertificateInformation.RequestDisposition != "ISSUED" || timeline(st) != "approve:Waiting approve:Completed second:Waiting second:Completed issue:Completed" || signedFor(cf, id) != 1 {
		t.Fatalf("after both approvals: %s, timeline %s", st.CertificateInformation.RequestDisposition, timeline(st))
	}
	in = getInstance(t, cf, inst, bearer(testutil.AdminToken))
	var got []string
	for _, d := range in.Decisions {
		got = append(got, d.Step+":"+d.By)
	}
	if !slices.Equal(got, []string{"approve:bob", "second:erin"}) {
		t.Fatalf("decisions %v", in.Decisions)
	}
}

func TestPendingQueuesListTheEarliestDeadlineFirst(t *testing.T) {
	t.Parallel()
	cf := startApprovals(t,
		gated("never", 10, "{roles: [approver]}"),
		gated("later", 20, "{roles: [approver], timeout: 2h}"),
		gated("soon", 30, "{roles: [approver], timeout: 1h}"))
	var want []int64
	for _, cn := range []string{"never.example.com", "later.example.com", "soon.example.com"} {
		want = append([]int64{submitPending(t, cf, cn, testutil.AliceToken).CertificateInformation.KeyfactorRequestId}, want...)
	}
	r := cf.Do(t, "GET", "/Workflow/Certificates/Pending", nil, "Authorization", bearer(testutil.BobToken))
	var rows []certRequest
	r.JSON(t, &rows)
	var got []int64
	for _, c := range rows {
		got = append(got, c.Id)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Pending lists %v; want %v (soon, later, never)", got, want)
	}
	var ids []int64
	r = cf.Do(t, "GET", "/Workflow/Instances/AssignedToMe", nil, "Authorization", bearer(testutil.BobToken))
	var list []wfInstance
	r.JSON(t, &list)
	for _, in := range list {
		ids = append(ids, in.ReferenceId)
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("AssignedToMe lists %v; want %v", ids, want)
	}
	if page := listInstanceIDs(t, cf, "/Workflow/Instances/AssignedToMe?pq.returnLimit=1&pq.pageReturned=2", bearer(testutil.BobToken)); len(page) != 1 || page[0] != list[1].Id {
		t.Fatalf("page 2 of 1: %v; want %s", page, list[1].Id)
	}
}

// TestApprovalAndTimeoutRacedByHand fires the timeout handler by hand at
// the same moment as an approval (or a stop), so the two really meet in
// the record's compare-and-set: exactly one of them takes effect.
func TestApprovalAndTimeoutRacedByHand(t *testing.T) {
	t.Parallel()
	// A long timeout: only the hand-fired handler times the waits out.
	cf := startApprovals(t, gated("hand", 0, "{roles: [approver], timeout: 1h, on_timeout: deny}"))
	ctx := context.Background()
	hand := handWorker(cf, cf.App.Queue)
	for _, other := range []string{"signal", "stop"} {
		t.Run(other, func(t *testing.T) {
			counts := map[string]int{}
			for i := range 6 {
				er := submitPending(t, cf, fmt.Sprintf("hand.%s.%d.example.com", other, i), testutil.AliceToken)
				inst, id := er.CertificateInformation.WorkflowInstanceId, er.CertificateInformation.KeyfactorRequestId
				path, token, body := "/Workflow/Instances/"+inst+"/Signals", testutil.BobToken, any(signalBody("approve.ApprovalStatus", approveData("racing the clock")))
				if other == "stop" {
					path, token, body = "/Workflow/Instances/"+inst+"/Stop", testutil.AdminToken, map[string]any{"Comment": "racing the clock"}
				}
				var status int
				var answer []byte
				var postErr, timeoutErr error
				start := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(2)
				go func() {
					defer wg.Done()
					<-start
					status, answer, postErr = rawPost(cf.URL, path, token, body)
				}()
				go func() {
					defer wg.Done()
					<-start
					timeoutErr = hand.Timeout(ctx, id, 0, "approve", 0)
				}()
				close(start)
				wg.Wait()
				if postErr != nil || timeoutErr != nil {
					t.Fatalf("request %d: %s: %v; timeout: %v", i, other, postErr, timeoutErr)
				}
				st := pollFinal(t, cf, id)
				in := getInstance(t, cf, inst, bearer(testutil.AdminToken))
				timeouts, mine := decisionKinds(in.Decisions, "timeout"), decisionKinds(in.Decisions, other)
				msg := st.CertificateInformation.DispositionMessage
				switch status {
				case http.StatusNoContent:
					counts[other]++
					if len(timeouts) != 0 || len(mine) != 1 {
						t.Fatalf("request %d: the %s won (204) but the decisions are %v", i, other, in.Decisions)
					}
					if other == "signal" {
						assertIssuedOnce(t, cf, st)
					} else if st.CertificateInformation.RequestDisposition != "DENIED" || msg != "stopped by admin: racing the clock" {
						t.Fatalf("request %d stopped: %+v", i, st.CertificateInformation)
					}
				case http.StatusConflict:
					counts["timeout"]++
					if len(timeouts) != 1 || len(mine) != 0 {
						t.Fatalf("request %d: the timeout won (%s answered 409: %s) but the decisions are %v", i, other, answer, in.Decisions)
					}
					if st.CertificateInformation.RequestDisposition != "DENIED" || !strings.Contains(msg, "no approval decision within the timeout") || signedFor(cf, id) != 0 {
						t.Fatalf("request %d timed out: %+v", i, st.CertificateInformation)
					}
				default:
					t.Fatalf("request %d: %s answered %d %s", i, other, status, answer)
				}
			}
			t.Logf("wins: %v", counts)
		})
	}
}

package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/internal/worker"
	"github.com/certflow/certflow/queue"
	"github.com/certflow/certflow/workflow"
)

type answer struct {
	CertificateInformation struct {
		KeyfactorID        int64
		KeyfactorRequestId int64
		RequestDisposition string
		SerialNumber       string
	}
}

func newWorker(cf *testutil.Certflow) *worker.Worker {
	a := cf.App
	return &worker.Worker{
		Config: a.Config, Store: a.Store, Queue: a.Queue, Defs: &a.Defs,
		Engine: &workflow.Engine{Log: a.Log}, Callbacks: a.Sender, Log: a.Log,
	}
}

func TestARedeliveredTaskResumesWithoutSigningAgain(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	csr, _ := testutil.CSR(t, "redeliver.example.com")
	resp := cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, nil), "x-certificateformat", "PEM")
	var first answer
	resp.JSON(t, &first)
	if resp.Status != http.StatusOK || first.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("%d %s", resp.Status, resp.Body)
	}
	id := first.CertificateInformation.KeyfactorRequestId
	ctx := context.Background()

	// Rewind the checkpoint to "about to run the issue step", as if the
	// worker had died after signing but before its checkpoint landed.
	if _, err := cf.App.Store.Update(ctx, id, func(r *store.Request) error {
		r.Disposition = store.Running
		r.Instance.Status = workflow.StatusRunning
		r.Instance.Next = 1
		r.Instance.History = r.Instance.History[:1]
		r.Instance.Certificate = nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w := newWorker(cf)
	if err := w.Run(ctx, id, 0); err != nil {
		t.Fatalf("re-run: %v", err)
	}
	r, err := cf.App.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Disposition != store.Issued || r.Instance.Certificate == nil || r.Instance.Certificate.ID != first.CertificateInformation.KeyfactorID {
		t.Fatalf("after re-delivery: %s, certificate %+v; want ISSUED with certificate %d", r.Disposition, r.Instance.Certificate, first.CertificateInformation.KeyfactorID)
	}
	if n := strings.Count(cf.Logs.String(), `msg="certificate issued"`); n != 1 {
		t.Fatalf("%d signatures logged, want 1 (the re-run signed again)", n)
	}
	// Steps before the checkpoint did not run again: one policy entry.
	n := 0
	for _, h := range r.Instance.History {
		if h.ID == "policy" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("the policy step ran %d times", n)
	}
	// A task for a request that already settled changes nothing.
	before := r.Updated
	if err := w.Run(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if again, _ := cf.App.Store.Get(ctx, id); !again.Updated.Equal(before) {
		t.Fatal("a re-delivered task rewrote a settled request")
	}
}

func TestTheReconcilerRunsARequestWhoseTaskWasLost(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Worker.ReconcileAfter, c.Worker.TaskTimeout = 300*time.Millisecond, 250*time.Millisecond
	})
	csr, _ := testutil.CSR(t, "lost.example.com")
	ctx := context.Background()
	id, err := cf.App.Store.NewID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	r := &store.Request{
		ID: id, Disposition: store.Queued, Submitted: now, Updated: now, Trigger: "enrollment",
		Requester: workflow.Requester{Name: "alice", Roles: []string{config.RoleRequester}}, CSR: csr,
		Input:    workflow.Request{Template: config.DefaultTemplate, Format: "PEM"},
		Instance: workflow.Instance{ID: "lost-task-instance"},
	}
	// Stored, never enqueued: the state a lost asynq task leaves behind.
	if _, _, err := cf.App.Store.Create(ctx, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	waitIssued(t, cf.App.Store, id, 20*time.Second, "the reconciler did not pick the request up")
}

// waitIssued polls request id until it is ISSUED, failing with what and
// its disposition if it is not within d.
func waitIssued(t *testing.T, st *store.Store, id int64, d time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, err := st.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Disposition == store.Issued {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s", what, got.Disposition)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestARequestNoDefinitionMatchesFailsWithTheReason(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	ctx := context.Background()
	csr, _ := testutil.CSR(t, "nomatch.example.com")
	id, _ := cf.App.Store.NewID(ctx)
	r := &store.Request{
		ID: id, Disposition: store.Queued, Trigger: "event:certificate.expiring", CSR: csr, Requester: workflow.Requester{Name: "alice"},
		Input: workflow.Request{Template: config.DefaultTemplate, Format: "PEM"}, Instance: workflow.Instance{ID: "nomatch"},
	}
	if _, _, err := cf.App.Store.Create(ctx, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := newWorker(cf).Run(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	got, _ := cf.App.Store.Get(ctx, id)
	if got.Disposition != store.Failed || got.Instance.Status != workflow.StatusFailed || got.Message == "" {
		t.Fatalf("got %s / %s %q; want FAILED with a reason", got.Disposition, got.Instance.Status, got.Message)
	}
	// The reason is internal: the requester is told it failed, an
	// administrator is told why.
	path := fmt.Sprintf("/Enrollment/Requests/%d", id)
	var asAlice, asAdmin struct {
		CertificateInformation struct{ DispositionMessage string }
		Timeline               []struct{ Message string }
	}
	cf.Do(t, "GET", path, nil, "Authorization", "Bearer "+testutil.AliceToken).JSON(t, &asAlice)
	cf.Do(t, "GET", path, nil).JSON(t, &asAdmin)
	if strings.Contains(asAlice.CertificateInformation.DispositionMessage, "definition") || asAlice.Timeline[len(asAlice.Timeline)-1].Message != "" {
		t.Fatalf("the requester sees the internal reason: %+v", asAlice)
	}
	if !strings.Contains(asAdmin.CertificateInformation.DispositionMessage, "no workflow definition") {
		t.Fatalf("the administrator does not see the reason: %+v", asAdmin)
	}
}

func TestTheReconcilerRecoversARequestWhoseTaskWasArchived(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Worker.ReconcileAfter, c.Worker.TaskTimeout = 300*time.Millisecond, 250*time.Millisecond
	})
	ctx := context.Background()
	csr, _ := testutil.CSR(t, "archived.example.com")
	id, _ := cf.App.Store.NewID(ctx)
	r := &store.Request{
		ID: id, Disposition: store.Running, Trigger: "enrollment", CSR: csr, Updated: time.Now(),
		Requester: workflow.Requester{Name: "alice"},
		Input:     workflow.Request{Template: config.DefaultTemplate, Format: "PEM"}, Instance: workflow.Instance{ID: "archived-1"},
	}
	if _, _, err := cf.App.Store.Create(ctx, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The state asynq leaves after a crash on the last attempt: the task
	// of generation 0 sits in the archive.
	insp := asynq.NewInspectorFromRedisClient(cf.Redis)
	payload, _ := json.Marshal(queue.Payload{RequestID: id})
	if _, err := asynq.NewClientFromRedisClient(cf.Redis).Enqueue(asynq.NewTask(queue.TypeRun, payload),
		asynq.Queue(cf.Prefix), asynq.TaskID(fmt.Sprintf("run:%d:0", id)), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := insp.ArchiveTask(cf.Prefix, fmt.Sprintf("run:%d:0", id)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, _ := cf.App.Store.Get(ctx, id)
		if got.Disposition == store.Issued {
			if got.Generation < 1 {
				t.Fatalf("issued at generation %d: not by the reconciler", got.Generation)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %s: the archived task blocked recovery", got.Disposition)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The old generation's task, run late, does nothing.
	before, _ := cf.App.Store.Get(ctx, id)
	if err := newWorker(cf).Run(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	after, _ := cf.App.Store.Get(ctx, id)
	if !after.Updated.Equal(before.Updated) {
		t.Fatal("a stale generation's task touched the request")
	}
}

// A settled request left in the open set (its batched removal was lost
// with its process) is dropped by the reconciler, not run again.
func TestTheReconcilerDropsASettledRequestLeftInTheOpenSet(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	csr, _ := testutil.CSR(t, "left-open.example.com")
	var a answer
	if resp := cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, nil), "x-certificateformat", "PEM"); resp.Status != http.StatusOK {
		t.Fatalf("%d %s", resp.Status, resp.Body)
	} else {
		resp.JSON(t, &a)
	}
	id := a.CertificateInformation.KeyfactorRequestId
	ctx := context.Background()
	open := cf.Prefix + ":open"
	if err := cf.Redis.ZAdd(ctx, open, redis.Z{Score: 0, Member: id}).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := newWorker(cf).ReconcileOnce(ctx)
	if err != nil || n != 0 {
		t.Fatalf("ReconcileOnce = %d, %v; want nothing enqueued", n, err)
	}
	if err := cf.Redis.ZScore(ctx, open, fmt.Sprint(id)).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("the settled request is still in the open set (%v)", err)
	}
	if r, err := cf.App.Store.Get(ctx, id); err != nil || r.Generation != 0 || r.Disposition != store.Issued {
		t.Fatalf("request after reconcile: %+v, %v", r, err)
	}
}

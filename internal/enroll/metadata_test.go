package enroll_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
)

// holdFirstEval is a go-redis hook holding the client's first EVALSHA (a
// record's compare-and-set) until release is closed, after telling held.
type holdFirstEval struct {
	evals   atomic.Int64
	held    chan struct{}
	release chan struct{}
}

func (h *holdFirstEval) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *holdFirstEval) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "evalsha" && h.evals.Add(1) == 1 {
			close(h.held)
			<-h.release
		}
		return next(ctx, cmd)
	}
}

func (h *holdFirstEval) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// An edit whose compare-and-set finds a checkpoint written since it read
// the record reads it again and writes both: the checkpoint is not lost.
func TestMetadataEditLosingToACheckpointTriesAgain(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	csr, _ := testutil.CSR(t, "cas.example.com")
	r := cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{"Team": "web", "Notes": "x"}}), "x-certificateformat", "PEM")
	var er struct{ CertificateInformation struct{ KeyfactorID int64 } }
	if r.JSON(t, &er); r.Status != http.StatusOK || er.CertificateInformation.KeyfactorID == 0 {
		t.Fatalf("enroll: %d %s", r.Status, r.Body)
	}
	id := er.CertificateInformation.KeyfactorID

	opts, err := redis.ParseURL(testutil.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	hook := &holdFirstEval{held: make(chan struct{}), release: make(chan struct{})}
	rdb.AddHook(hook)
	a := cf.App
	svc := enroll.New(enroll.Options{Config: a.Config, Store: store.New(rdb, cf.Prefix), Queue: a.Queue, KEK: a.KEK, Log: a.Log, Definitions: &a.Defs})
	admin := &enroll.Caller{Name: "admin", Roles: []string{config.RoleAdmin}}

	done := make(chan error, 1)
	go func() {
		done <- svc.UpdateMetadata(context.Background(), admin, &keyfactor.MetadataUpdateRequest{
			Id: &id, Metadata: map[string]any{"Team": "ops", "Notes": nil},
		})
	}()
	<-hook.held // the edit read the record and is about to write it
	ctx := context.Background()
	if _, err := a.Store.Update(ctx, id, func(r *store.Request) error {
		r.Instance.Metadata["Checkpoint"] = "kept" // as a workflow's metadata step would
		r.Instance.Vars = map[string]any{"step": "done"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	close(hook.release)
	if err := <-done; err != nil {
		t.Fatalf("UpdateMetadata: %v", err)
	}
	got, err := a.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	md := got.Metadata()
	if md["Team"] != "ops" || md["Checkpoint"] != "kept" || got.Instance.Vars["step"] != "done" {
		t.Fatalf("Metadata %v, Vars %v; want the edit's Team and the checkpoint's field and vars", md, got.Instance.Vars)
	}
	if _, ok := md["Notes"]; ok {
		t.Fatalf("Metadata %v: Notes was to be cleared", md)
	}
	if n := hook.evals.Load(); n != 2 {
		t.Fatalf("%d compare-and-sets; want 2 (the one that lost, and the one on the fresh record)", n)
	}
}

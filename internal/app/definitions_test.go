package app_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/internal/worker"
	"github.com/certflow/certflow/workflow"
)

// defsDir writes definitions (file name → YAML) into a fresh folder.
func defsDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const taggedDef = `name: tagged
trigger: enrollment
match: request.Template == "WebServer"
steps:
  - id: tag
    uses: metadata
    with: {set: {Generation: "%s"}}
`

func listDefinitions(t *testing.T, cf *testutil.Certflow, auth string) []keyfactor.Definition {
	t.Helper()
	r := cf.Do(t, "GET", "/Workflow/Definitions", nil, "Authorization", auth)
	if r.Status != 200 {
		t.Fatalf("GET /Workflow/Definitions: %d %s", r.Status, r.Body)
	}
	var defs []keyfactor.Definition
	r.JSON(t, &defs)
	return defs
}

func TestARequestNoDefinitionTakesIsRefusedAtSubmit(t *testing.T) {
	t.Parallel()
	dir := defsDir(t, map[string]string{"only-other.yaml": strings.Replace(taggedDef, "WebServer", "Other", 1)})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	csr, _ := testutil.CSR(t, "nomatch.example.com")
	r := cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, nil), "x-certificateformat", "PEM")
	assertError(t, r, http.StatusBadRequest, keyfactor.CodeNoWorkflow, "no enrollment workflow definition matches")
	assertNothingStored(t, cf)
}

// A template tightened while a request waits for approval binds it: the
// issue step applies the policy of the day, even in a definition with no
// validate step. The first process (wildcards allowed) accepts the
// request and suspends it; it goes away, and a second one on the same
// Redis (wildcards no longer allowed) takes the approval and denies
// instead of issuing.
func TestATemplateTightenedDuringApprovalBindsTheIssue(t *testing.T) {
	t.Parallel()
	dir := defsDir(t, map[string]string{"gated.yaml": `name: gated
trigger: enrollment
steps:
  - id: approve
    uses: approval
    with: {roles: [approver]}
  - id: issue
    uses: issue
`})
	first := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.Templates[0].AllowWildcards = true
	})
	csr, _ := testutil.CSR(t, "*.wild.example.com")
	resp, er := enroll(t, first, testutil.EnrollBody(csr, nil))
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "PENDING" {
		t.Fatalf("a wildcard where wildcards are allowed: %d %s; want PENDING", resp.Status, resp.Body)
	}
	first.Stop()
	second := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions, c.KeyPrefix, c.Queue, c.DataDir, c.KEKFile = dir, first.Prefix, first.Prefix, first.Config.DataDir, first.Config.KEKFile
	})
	mustSignal(t, second, er.CertificateInformation.WorkflowInstanceId, testutil.BobToken, approveData("ok"))
	st := pollDisposition(t, second, er.CertificateInformation.KeyfactorRequestId, "DENIED")
	if msg := st.CertificateInformation.DispositionMessage; !strings.Contains(msg, "wildcard names are not allowed") {
		t.Errorf("denied with %q; want the wildcard rule", msg)
	}
	if st.CertificateInformation.KeyfactorID != 0 {
		t.Errorf("a certificate was issued: %+v", st.CertificateInformation)
	}
}

func TestDefinitionsAreListedAndReloadedEverywhere(t *testing.T) {
	t.Parallel()
	dir := defsDir(t, map[string]string{"tagged.yaml": strings.Replace(taggedDef, "%s", "one", 1)})
	first := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	// A second process on the same Redis and prefix, as a separate worker
	// or API would be.
	second := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions, c.KeyPrefix, c.Queue = dir, first.Prefix, first.Prefix
	})
	defs := listDefinitions(t, first, "Bearer "+testutil.AliceToken)
	if len(defs) != 1 || defs[0].Id != "tagged" || defs[0].WorkflowType != "enrollment" || defs[0].Version == "" {
		t.Fatalf("definitions: %+v", defs)
	}
	if got := defs[0].Steps; len(got) != 2 || got[0].UniqueName != "tag" || got[1].ExtensionName != "issue" || got[0].OnError != "fail" {
		t.Fatalf("steps: %+v", got)
	}
	v1 := defs[0].Version
	if r := first.Do(t, "GET", "/Workflow/Definitions", nil, "Authorization", ""); r.Status != 401 {
		t.Fatalf("unauthenticated list: %d", r.Status)
	}

	t.Run("only an admin may reload", func(t *testing.T) {
		r := first.Do(t, "POST", "/Workflow/Definitions/Reload", nil, "Authorization", "Bearer "+testutil.AliceToken)
		assertError(t, r, http.StatusForbidden, keyfactor.CodeForbidden, "")
	})
	t.Run("a set that does not lint changes nothing", func(t *testing.T) {
		os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte("name: broken\ntrigger: enrollment\npriority: 5\nsteps:\n  - id: x\n    uses: validate\n    if: csr.Nope\n"), 0o644)
		defer os.Remove(filepath.Join(dir, "broken.yaml"))
		r := first.Do(t, "POST", "/Workflow/Definitions/Reload", nil)
		assertError(t, r, http.StatusBadRequest, keyfactor.CodeInvalidDefinition, "broken.yaml:7:")
		if defs := listDefinitions(t, first, "Bearer "+testutil.AdminToken); len(defs) != 1 || defs[0].Version != v1 {
			t.Fatalf("a refused reload changed the set: %+v", defs)
		}
	})
	t.Run("a good reload reaches every process", func(t *testing.T) {
		os.WriteFile(filepath.Join(dir, "tagged.yaml"), []byte(strings.Replace(taggedDef, "%s", "two", 1)), 0o644)
		r := first.Do(t, "POST", "/Workflow/Definitions/Reload", nil)
		if r.Status != 200 {
			t.Fatalf("reload: %d %s", r.Status, r.Body)
		}
		waitFor(t, "the second process to reload", func() bool {
			d := listDefinitions(t, second, "Bearer "+testutil.AdminToken)
			return len(d) == 1 && d[0].Version != v1
		})
		csr, _ := testutil.CSR(t, "gen2.example.com")
		_, er := enroll(t, second, testutil.EnrollBody(csr, nil))
		if er.Metadata["Generation"] != "two" {
			t.Fatalf("a new request after the reload ran %v", er.Metadata)
		}
	})
}

// gate is an HTTP endpoint that holds each call until released.
type gate struct {
	entered chan struct{}
	release chan struct{}
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.entered <- struct{}{}
	<-g.release
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"ok": true}`))
}

func TestARunningInstanceFinishesOnItsPinnedVersion(t *testing.T) {
	t.Parallel()
	g := &gate{entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv := httptest.NewServer(g)
	defer srv.Close()
	gated := `name: gated
trigger: enrollment
steps:
  - id: wait
    uses: http
    with: {url: "` + srv.URL + `"}
    timeout: 30s
  - id: tag
    uses: metadata
    with: {set: {Generation: "%s"}}
`
	dir := defsDir(t, map[string]string{"gated.yaml": strings.Replace(gated, "%s", "one", 1)})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	csr, _ := testutil.CSR(t, "pinned.example.com")
	resp, _ := enroll(t, cf, testutil.EnrollBody(csr, nil), "Prefer", "respond-async")
	select {
	case <-g.entered: // the instance is running on version one
	case <-time.After(20 * time.Second):
		t.Fatal("the workflow never reached its http step")
	}
	os.WriteFile(filepath.Join(dir, "gated.yaml"), []byte(strings.Replace(gated, "%s", "two", 1)), 0o644)
	if r := cf.Do(t, "POST", "/Workflow/Definitions/Reload", nil); r.Status != 200 {
		t.Fatalf("reload: %d %s", r.Status, r.Body)
	}
	close(g.release)
	st := pollSettled(t, cf, resp.Header.Get("Location"), "Bearer "+testutil.AdminToken)
	if st.CertificateInformation.RequestDisposition != "ISSUED" || st.Metadata["Generation"] != "one" {
		t.Fatalf("the running instance did not finish on its pinned version: %s %v", st.CertificateInformation.RequestDisposition, st.Metadata)
	}
}

func TestAWorkerResumesAVersionItNeverLoadedFromTheStoredSource(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, nil)
	ctx := context.Background()
	old := []byte("name: retired\ntrigger: enrollment\npriority: 7\nsteps:\n  - id: tag\n    uses: metadata\n    with: {set: {Generation: retired}}\n")
	def, err := workflow.Parse("retired.yaml", old, cf.App.Catalog())
	if err != nil {
		t.Fatal(err)
	}
	// Another process ran this version once and kept its source.
	if err := cf.App.Store.SaveDefinition(ctx, def.Name, def.Version, old); err != nil {
		t.Fatal(err)
	}
	csr, _ := testutil.CSR(t, "retired.example.com")
	id, _ := cf.App.Store.NewID(ctx)
	r := &store.Request{
		ID: id, Disposition: store.Running, Trigger: "enrollment", CSR: csr,
		Requester: workflow.Requester{Name: "alice"},
		Input:     workflow.Request{Template: config.DefaultTemplate, Format: "PEM"},
		Instance:  workflow.Instance{ID: "retired-1", Status: workflow.StatusRunning, Definition: def.Name, Version: def.Version},
	}
	if _, _, err := cf.App.Store.Create(ctx, r, time.Hour); err != nil {
		t.Fatal(err)
	}
	w := &worker.Worker{Config: cf.Config, Store: cf.App.Store, Queue: cf.App.Queue, Defs: &cf.App.Defs,
		Catalog: cf.App.Catalog(), Engine: &workflow.Engine{Log: cf.App.Log}, Callbacks: cf.App.Sender, Log: cf.App.Log}
	if err := w.Run(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	got, _ := cf.App.Store.Get(ctx, id)
	if got.Disposition != store.Issued || got.Instance.Metadata["Generation"] != "retired" {
		t.Fatalf("got %s %v; want ISSUED by the stored version", got.Disposition, got.Instance.Metadata)
	}
}

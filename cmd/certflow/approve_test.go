package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/internal/testutil"
)

// TestTheApproverCommands lists, approves and denies through `certflow
// pending`, `approve` and `deny` against a running certflow.
func TestTheApproverCommands(t *testing.T) {
	dir := t.TempDir()
	def := "name: gated\ntrigger: enrollment\nsteps:\n  - {id: approval, uses: approval}\n  - {id: issue, uses: issue}\n"
	if err := os.WriteFile(filepath.Join(dir, "gated.yaml"), []byte(def), 0o644); err != nil {
		t.Fatal(err)
	}
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	submit := func(cn string) (int64, string) {
		csr, _ := testutil.CSR(t, cn)
		r := cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, nil), "x-certificateformat", "PEM", "Authorization", "Bearer "+testutil.AliceToken)
		var a struct {
			CertificateInformation struct {
				KeyfactorRequestId int64
				RequestDisposition string
				WorkflowInstanceId string
			}
		}
		r.JSON(t, &a)
		if a.CertificateInformation.RequestDisposition != "PENDING" {
			t.Fatalf("submit: %d %s", r.Status, r.Body)
		}
		return a.CertificateInformation.KeyfactorRequestId, a.CertificateInformation.WorkflowInstanceId
	}
	first, _ := submit("one.example.com")
	second, secondInstance := submit("two.example.com")
	t.Setenv("CERTFLOW_URL", cf.URL)
	t.Setenv("CERTFLOW_TOKEN", testutil.BobToken)
	t.Setenv("CERTFLOW_ADMIN_TOKEN", "")
	cli := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(args, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	out, err := cli("pending")
	if err != nil || !strings.Contains(out, "REQUESTER") || !strings.Contains(out, "alice") ||
		!strings.Contains(out, strconv.FormatInt(first, 10)) || !strings.Contains(out, secondInstance) {
		t.Fatalf("pending = %q, %v; want both requests", out, err)
	}
	if out, err := cli("deny", strconv.FormatInt(second, 10)); err == nil || !strings.Contains(err.Error()+out, "--comment") {
		t.Errorf("deny without a comment = %q, %v; want a refusal asking for --comment", out, err)
	}
	// The flag may follow the id, as people type it.
	if out, err := cli("approve", strconv.FormatInt(first, 10), "--comment", "looks right"); err != nil || !strings.Contains(out, "approved") {
		t.Fatalf("approve = %q, %v", out, err)
	}
	if out, err := cli("deny", "--comment", "not ours", secondInstance); err != nil || !strings.Contains(out, "denied") {
		t.Fatalf("deny by instance id = %q, %v", out, err)
	}
	if out, err := cli("approve", strconv.FormatInt(second, 10)); err == nil || !strings.Contains(out, "refused") {
		t.Errorf("approving a denied request = %q, %v; want it refused and exit 1", out, err)
	}
	for id, want := range map[int64]store.Disposition{first: store.Issued, second: store.Denied} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			r, err := cf.App.Store.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if r.Disposition == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("request %d is %s, want %s", id, r.Disposition, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Setenv("CERTFLOW_TOKEN", testutil.AliceToken)
	if out, err := cli("pending"); err != nil || !strings.Contains(out, "nothing waits") {
		t.Errorf("pending for a requester = %q, %v", out, err)
	}
}

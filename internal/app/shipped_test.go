package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/testutil"
)

// TestShippedWebServerExample runs definitions/examples/web-server.yaml
// with its CMDB and hook addresses pointed at local fakes.
func TestShippedWebServerExample(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var hooks []map[string]any
	cmdb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("host") == "orphan.example.com" {
			w.WriteHeader(404)
			return
		}
		io.WriteString(w, `{"email": "web-team@example.com"}`)
	}))
	defer cmdb.Close()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev map[string]any
		json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		hooks = append(hooks, ev)
		mu.Unlock()
	}))
	defer hook.Close()
	src, err := os.ReadFile(filepath.Join(testutil.DefinitionsDir(), "examples", "web-server.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("https://cmdb.example.com", cmdb.URL, "https://hooks.example.com", hook.URL).Replace(string(src))
	dir := defsDir(t, map[string]string{"web-server.yaml": text})
	shipped, _ := os.ReadFile(filepath.Join(testutil.DefinitionsDir(), "enrollment-default.yaml"))
	os.WriteFile(filepath.Join(dir, "enrollment-default.yaml"), shipped, 0o644)
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.Templates[0].AllowWildcards = true
		c.Auth.Users = append(c.Auth.Users,
			config.User{Name: "pat", Token: "pat-token", Roles: []string{"pki-approvers"}},
			config.User{Name: "quinn", Token: "quinn-token", Roles: []string{"pki-approvers"}})
	})

	t.Run("a name under example.com is issued, tagged with its owner, and the owner told", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "shop.example.com")
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, nil))
		if resp.Status != 200 || er.CertificateInformation.RequestDisposition != "ISSUED" {
			t.Fatalf("%d %s", resp.Status, resp.Body)
		}
		if er.Metadata["Owner"] != "web-team@example.com" {
			t.Fatalf("metadata %v", er.Metadata)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(hooks) != 1 || hooks[0]["type"] != "certificate.issued" || hooks[0]["common_name"] != "shop.example.com" {
			t.Fatalf("owner notifications: %v", hooks)
		}
	})
	t.Run("no owner found is not a refusal", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "orphan.example.com")
		_, er := enroll(t, cf, testutil.EnrollBody(csr, nil))
		if er.CertificateInformation.RequestDisposition != "ISSUED" || er.Metadata["Owner"] != "unknown" {
			t.Fatalf("%+v %v", er.CertificateInformation, er.Metadata)
		}
	})
	t.Run("a wildcard waits for two approvers", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "*.shop.example.com")
		resp, er := enroll(t, cf, testutil.EnrollBody(csr, nil), "Authorization", "Bearer "+testutil.AliceToken)
		if resp.Status != 200 || er.CertificateInformation.RequestDisposition != "PENDING" || er.CertificateInformation.WorkflowInstanceId == "" {
			t.Fatalf("%d %s, want 200 PENDING with the instance", resp.Status, resp.Body)
		}
		signal := map[string]any{"SignalKey": "wildcards.ApprovalStatus", "Data": map[string]any{"Approved": "True"}}
		path := "/Workflow/Instances/" + er.CertificateInformation.WorkflowInstanceId + "/Signals"
		for _, token := range []string{"pat-token", "quinn-token"} {
			if r := cf.Do(t, "POST", path, signal, "Authorization", "Bearer "+token); r.Status != http.StatusNoContent {
				t.Fatalf("signal by %s: %d %s", token, r.Status, r.Body)
			}
		}
		st := pollSettled(t, cf, "/Enrollment/Requests/"+strconv.FormatInt(er.CertificateInformation.KeyfactorRequestId, 10), "Bearer "+testutil.AliceToken)
		if st.CertificateInformation.RequestDisposition != "ISSUED" || st.Metadata["ApprovedBy"] != "pat,quinn" {
			t.Fatalf("%+v %v, want ISSUED, tagged ApprovedBy pat,quinn", st.CertificateInformation, st.Metadata)
		}
		mu.Lock()
		defer mu.Unlock()
		var types []string
		for _, h := range hooks {
			if h["common_name"] == "*.shop.example.com" {
				types = append(types, h["type"].(string))
			}
		}
		if strings.Join(types, " ") != "approval.pending approval.decided certificate.issued" {
			t.Fatalf("hooks for the wildcard: %v", types)
		}
	})
	t.Run("names outside the allow-list are denied", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "evil.example.org")
		_, er := enroll(t, cf, testutil.EnrollBody(csr, nil))
		if er.CertificateInformation.RequestDisposition != "DENIED" || !strings.Contains(er.CertificateInformation.DispositionMessage, "only names under example.com") {
			t.Fatalf("%+v", er.CertificateInformation)
		}
	})
}

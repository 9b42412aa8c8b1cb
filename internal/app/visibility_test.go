package app_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

// visibilityToken is a secret the visibility definition keeps in a
// variable and in an http step's URL: no requester may ever read it.
const visibilityToken = "tok-s3cret-Vq7"

// visibilityDef is an enrollment definition whose state holds a secret: an
// http lookup that fails (its error names the URL), a set step keeping a
// CMDB token beside a harmless tier, an approval for "pending." names,
// the issue, and a metadata step. Its visible: shows requesters the tier,
// the lookup (but not its error) and the issued serial.
var visibilityDef = `name: visibility
trigger: enrollment
priority: 10
visible: [vars.tier, steps.lookup, steps.issue.serial]
steps:
  - id: lookup
    uses: http
    on_error: continue
    with: {url: "http://127.0.0.1:1/cmdb?token=` + visibilityToken + `"}
  - id: compute
    uses: set
    with: {tier: high, cmdb_token: ` + visibilityToken + `}
  - id: approve
    uses: approval
    if: csr.CommonName startsWith "pending."
    with: {roles: [approver]}
  - id: issue
    uses: issue
  - id: tag
    uses: metadata
    with: {set: {Owner: "${{ vars.tier }}", RequestedBy: "${{ requester.Name }}"}}
`

// startVisibility starts certflow with visibilityDef beside the shipped
// renewal and revocation definitions, and a template that retains keys.
func startVisibility(t *testing.T, mutate func(*config.Config)) *testutil.Certflow {
	t.Helper()
	files := map[string]string{"visibility.yaml": visibilityDef}
	for _, name := range []string{"renewal-default.yaml", "revocation-default.yaml"} {
		src, err := os.ReadFile(filepath.Join(testutil.DefinitionsDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(src)
	}
	dir := defsDir(t, files)
	return testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		tmpl := c.Templates[0]
		tmpl.Name, tmpl.KeyRetention = "Retained", true
		c.Templates = append(c.Templates, tmpl)
		if mutate != nil {
			mutate(c)
		}
	})
}

// target is what names one request on the paths that take an id: its
// request (= certificate) id, instance id, thumbprint and serial number.
type target struct {
	id                      int64
	instance, thumb, serial string
	issuer                  string
}

// normalize replaces t's names in body by placeholders, so that answers
// about two requests compare equal when they differ only in the id named.
func (t target) normalize(body []byte) string {
	s := string(body)
	for _, r := range []struct{ value, as string }{{t.instance, "<INSTANCE>"}, {t.thumb, "<THUMBPRINT>"}, {t.serial, "<SERIAL>"}} {
		if r.value != "" {
			s = strings.ReplaceAll(s, r.value, r.as)
		}
	}
	return regexp.MustCompile(`\b`+strconv.FormatInt(t.id, 10)+`\b`).ReplaceAllString(s, "<ID>")
}

// snapshot is the Redis state of the requests and pending CSR a hostile
// caller aims at, with the id counters: equal snapshots mean nothing was
// changed, created or deleted.
func snapshot(t *testing.T, cf *testutil.Certflow, ids []int64, csrID int64) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, id := range ids {
		key := fmt.Sprintf("%s:request:{%d}", cf.Prefix, id)
		h, err := cf.Redis.HGetAll(ctx, key).Result()
		if err != nil || len(h) == 0 {
			t.Fatalf("request %d: %v %v", id, h, err)
		}
		cert, _ := cf.Redis.Get(ctx, key+":certificate").Result()
		fmt.Fprintf(&b, "%d %v %s\n", id, h, cert)
	}
	for _, k := range []string{":seq:request", ":seq:csr"} {
		v, _ := cf.Redis.Get(ctx, cf.Prefix+k).Result()
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	n, _ := cf.Redis.Exists(ctx, fmt.Sprintf("%s:csr:{%d}", cf.Prefix, csrID)).Result()
	revoked, _ := cf.Redis.Keys(ctx, cf.Prefix+":ca:*:revoked").Result()
	fmt.Fprintf(&b, "csr %d exists=%d revoked-lists=%v\n", csrID, n, revoked)
	return b.String()
}

// TestPolicyVisibilityOfOthersRequests: alice, a requester, aims every
// path that takes a request, instance or certificate id (the routes of
// internal/api/server.go) at carol's requests — one waiting for
// approval, one issued with a retained key — and at carol's generated
// CSR. Each answers exactly as it does for an id that does not exist
// (status and body, but for the id named), and nothing of carol's
// changes.
func TestPolicyVisibilityOfOthersRequests(t *testing.T) {
	t.Parallel()
	cf := startVisibility(t, nil)
	carol := carolBasic
	alice := bearer(testutil.AliceToken)

	// carol's requests.
	pendingCSR, _ := testutil.CSR(t, "pending.carol.example.com")
	_, pendingER := enroll(t, cf, testutil.EnrollBody(pendingCSR, map[string]any{"CertificateAuthority": config.DefaultCAName}), "Authorization", carol)
	if pendingER.CertificateInformation.RequestDisposition != "PENDING" {
		t.Fatalf("carol's gated request: %+v", pendingER.CertificateInformation)
	}
	issuedCSR, issuedKey := testutil.CSR(t, "issued.carol.example.com")
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(issuedKey)
	_, issuedER := enroll(t, cf, testutil.EnrollBody(issuedCSR, map[string]any{
		"Template": "Retained", "CertificateAuthority": config.DefaultCAName, "PrivateKey": base64.StdEncoding.EncodeToString(pkcs8),
	}), "Authorization", carol)
	ci := issuedER.CertificateInformation
	if ci.RequestDisposition != "ISSUED" {
		t.Fatalf("carol's issued request: %+v", ci)
	}
	r, gen := generateCSR(t, cf, map[string]any{"Subject": "CN=gen.carol.example.com", "KeyType": "ECC", "Curve": "P-256"}, "Authorization", carol)
	if r.Status != http.StatusOK {
		t.Fatalf("carol's generated CSR: %d %s", r.Status, r.Body)
	}

	pending := target{id: pendingER.CertificateInformation.KeyfactorRequestId, instance: pendingER.CertificateInformation.WorkflowInstanceId}
	issued := target{id: ci.KeyfactorRequestId, instance: ci.WorkflowInstanceId, thumb: ci.Thumbprint, serial: ci.SerialNumber, issuer: ci.IssuerDN}
	csr := target{id: gen.Id}
	ghost := func(of target) target {
		id := of.id + 1_000_000
		g := target{id: id, instance: cf.App.Store.InstanceID(id), issuer: of.issuer}
		if of.thumb != "" {
			g.thumb, g.serial = strings.Repeat("AB", 20), "0123456789ABCDEF0123"
		}
		return g
	}
	before := snapshot(t, cf, []int64{pending.id, issued.id}, csr.id)

	idPath := func(format string) func(target) (string, any) {
		return func(x target) (string, any) { return fmt.Sprintf(format, x.id), nil }
	}
	instPath := func(format string, body any) func(target) (string, any) {
		return func(x target) (string, any) { return fmt.Sprintf(format, x.instance), body }
	}
	recoverBody := func(extra func(target) map[string]any) func(target) (string, any) {
		return func(x target) (string, any) {
			b := extra(x)
			b["Password"] = pfxPassword
			return "/Certificates/Recover", b
		}
	}
	q := func(s string) string { return url.QueryEscape(s) }
	tests := []struct {
		name    string
		method  string
		of      target
		request func(target) (path string, body any)
		headers []string
		// status and code of the answer, and how its Message starts
		// (for 200, a text the body must hold).
		status int
		code   string
		starts string
	}{
		{"GET the request", "GET", pending, idPath("/Enrollment/Requests/%d"), nil, 404, keyfactor.CodeNotFound, "request "},
		{"GET the issued request", "GET", issued, idPath("/Enrollment/Requests/%d"), nil, 404, keyfactor.CodeNotFound, "request "},
		{"GET the instance", "GET", pending, instPath("/Workflow/Instances/%s", nil), nil, 404, keyfactor.CodeNotFound, "workflow instance "},
		{"GET the issued request's instance", "GET", issued, instPath("/Workflow/Instances/%s", nil), nil, 404, keyfactor.CodeNotFound, "workflow instance "},
		{"approve by signal", "POST", pending, instPath("/Workflow/Instances/%s/Signals", signalBody("approve.ApprovalStatus", approveData("mine now"))), nil, 404, keyfactor.CodeNotFound, "workflow instance "},
		{"deny by signal", "POST", pending, instPath("/Workflow/Instances/%s/Signals", signalBody("approve.ApprovalStatus", denyData("spite"))), nil, 404, keyfactor.CodeNotFound, "workflow instance "},
		{"signal a step the workflow lacks (it told the workflow exists)", "POST", pending, instPath("/Workflow/Instances/%s/Signals", signalBody("nope.ApprovalStatus", approveData(""))), nil, 404, keyfactor.CodeNotFound, "workflow instance "},
		{"signal a settled instance (it told its state)", "POST", issued, instPath("/Workflow/Instances/%s/Signals", signalBody("approve.ApprovalStatus", approveData(""))), nil, 404, keyfactor.CodeNotFound, "workflow instance "},
		{"stop", "POST", pending, instPath("/Workflow/Instances/%s/Stop", map[string]any{"Comment": "x"}), nil, 403, keyfactor.CodeForbidden, "alice may not"},
		{"restart", "POST", issued, instPath("/Workflow/Instances/%s/Restart", nil), nil, 403, keyfactor.CodeForbidden, "alice may not"},
		{"legacy approve (it told the CA)", "POST", pending, func(x target) (string, any) { return "/Workflow/Certificates/Approve", []int64{x.id} }, nil, 200, "", `"Comment":"request <ID>: not found"`},
		{"legacy deny (it told the CA)", "POST", pending, func(x target) (string, any) {
			return "/Workflow/Certificates/Deny", map[string]any{"Comment": "spite", "CertificateRequestIds": []int64{x.id}}
		}, nil, 200, "", `"Comment":"request <ID>: not found"`},
		{"legacy approve of an issued request", "POST", issued, func(x target) (string, any) { return "/Workflow/Certificates/Approve", []int64{x.id} }, nil, 200, "", `"CAHost":""`},
		{"GET the certificate", "GET", issued, idPath("/Certificates/%d"), nil, 404, keyfactor.CodeNotFound, "certificate "},
		{"GET the pending request as a certificate", "GET", pending, idPath("/Certificates/%d"), nil, 404, keyfactor.CodeNotFound, "certificate "},
		{"download by CertID", "POST", issued, func(x target) (string, any) { return "/Certificates/Download", map[string]any{"CertID": x.id} }, nil, 404, keyfactor.CodeNotFound, "certificate "},
		{"download by Thumbprint", "POST", issued, func(x target) (string, any) { return "/Certificates/Download", map[string]any{"Thumbprint": x.thumb} }, nil, 404, keyfactor.CodeNotFound, "certificate with thumbprint"},
		{"download by SerialNumber", "POST", issued, func(x target) (string, any) {
			return "/Certificates/Download", map[string]any{"SerialNumber": x.serial, "IssuerDN": x.issuer}
		}, nil, 404, keyfactor.CodeNotFound, "certificate with serial number"},
		{"recover by CertID", "POST", issued, recoverBody(func(x target) map[string]any { return map[string]any{"CertID": x.id} }), []string{"x-certificateformat", "PFX"}, 404, keyfactor.CodeNotFound, "CertID:"},
		{"recover by Thumbprint", "POST", issued, recoverBody(func(x target) map[string]any { return map[string]any{"Thumbprint": x.thumb} }), []string{"x-certificateformat", "PFX"}, 404, keyfactor.CodeNotFound, "Thumbprint:"},
		{"recover by SerialNumber", "POST", issued, recoverBody(func(x target) map[string]any { return map[string]any{"SerialNumber": x.serial, "IssuerDN": x.issuer} }), []string{"x-certificateformat", "PFX"}, 404, keyfactor.CodeNotFound, "SerialNumber:"},
		{"revoke", "POST", issued, func(x target) (string, any) {
			return "/Certificates/Revoke", map[string]any{"CertificateIds": []int64{x.id}, "Reason": 1, "Comment": "spite"}
		}, nil, 404, keyfactor.CodeNotFound, "CertificateIds[0]:"},
		{"change the certificate's metadata", "PUT", issued, func(x target) (string, any) {
			return "/Certificates/Metadata", map[string]any{"Id": x.id, "Metadata": map[string]any{"Team": "spite"}}
		}, nil, 404, keyfactor.CodeNotFound, "Id: certificate "},
		{"change the pending request's metadata", "PUT", pending, func(x target) (string, any) {
			return "/Certificates/Metadata", map[string]any{"Id": x.id, "Metadata": map[string]any{"Team": "spite"}}
		}, nil, 404, keyfactor.CodeNotFound, "Id: certificate "},
		{"change the certificate's metadata in a batch", "PUT", issued, func(x target) (string, any) {
			return "/Certificates/Metadata/All", map[string]any{"CertificateIds": []int64{x.id}, "Metadata": map[string]any{"Team": "spite"}}
		}, nil, 404, keyfactor.CodeNotFound, "CertificateIds[0]: certificate "},
		{"renew by CertificateId", "POST", issued, func(x target) (string, any) {
			return "/Enrollment/Renew", map[string]any{"CertificateId": x.id}
		}, []string{"x-certificateformat", "PEM"}, 404, keyfactor.CodeNotFound, "CertificateId:"},
		{"renew by Thumbprint", "POST", issued, func(x target) (string, any) {
			return "/Enrollment/Renew", map[string]any{"Thumbprint": x.thumb}
		}, []string{"x-certificateformat", "PEM"}, 404, keyfactor.CodeNotFound, "Thumbprint:"},
		{"GET the generated CSR", "GET", csr, idPath("/CSRGeneration/Pending/%d"), nil, 404, keyfactor.CodeNotFound, "pending CSR "},
		{"DELETE the generated CSR", "DELETE", csr, idPath("/CSRGeneration/Pending/%d"), nil, 404, keyfactor.CodeNotFound, "pending CSR "},
		{"DELETE the generated CSR in a batch", "DELETE", csr, func(x target) (string, any) { return "/CSRGeneration/Pending", []int64{x.id} }, nil, 404, keyfactor.CodeNotFound, "[0]: pending CSR "},
		{"find the instance by ReferenceId", "GET", pending, func(x target) (string, any) {
			return "/Workflow/Instances?pq.queryString=" + q(fmt.Sprintf(`ReferenceId -eq "%d"`, x.id)), nil
		}, nil, 200, "", "[]"},
		{"find the request in the pending queue", "GET", pending, func(x target) (string, any) {
			return "/Workflow/Certificates/Pending?pq.queryString=" + q(fmt.Sprintf(`Id -eq "%d"`, x.id)), nil
		}, nil, 200, "", "[]"},
		{"find the certificate by Id", "GET", issued, func(x target) (string, any) {
			return "/Certificates?pq.queryString=" + q(fmt.Sprintf(`Id -eq %d`, x.id)), nil
		}, nil, 200, "", "[]"},
		{"find the certificate by Thumbprint", "GET", issued, func(x target) (string, any) {
			return "/Certificates?pq.queryString=" + q(fmt.Sprintf(`Thumbprint -eq "%s"`, x.thumb)), nil
		}, nil, 200, "", "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			send := func(x target) (*testutil.Response, string) {
				path, body := tt.request(x)
				r := cf.Do(t, tt.method, path, body, append([]string{"Authorization", alice}, tt.headers...)...)
				return r, x.normalize(r.Body)
			}
			got, gotBody := send(tt.of)
			none, noneBody := send(ghost(tt.of))
			if got.Status != none.Status || gotBody != noneBody {
				t.Fatalf("carol's request and a missing one answer differently:\n carol's: %d %s\n missing: %d %s", got.Status, gotBody, none.Status, noneBody)
			}
			if tt.status == http.StatusOK {
				if got.Status != http.StatusOK || !strings.Contains(gotBody, tt.starts) {
					t.Fatalf("%d %s; want 200 with %s", got.Status, gotBody, tt.starts)
				}
				return
			}
			var e keyfactor.Error
			got.JSON(t, &e)
			if got.Status != tt.status || e.ErrorCode != tt.code || !strings.HasPrefix(e.Message, tt.starts) {
				t.Fatalf("%d %s %q; want %d %s starting %q", got.Status, e.ErrorCode, e.Message, tt.status, tt.code, tt.starts)
			}
		})
	}
	if after := snapshot(t, cf, []int64{pending.id, issued.id}, csr.id); after != before {
		t.Fatalf("carol's requests changed:\nbefore %s\nafter  %s", before, after)
	}
	// The same paths still serve carol and her approver.
	if r := cf.Do(t, "GET", "/Workflow/Instances/"+pending.instance, nil, "Authorization", carol); r.Status != http.StatusOK {
		t.Fatalf("carol reading her own instance: %d %s", r.Status, r.Body)
	}
	res := approveDeny(t, cf, "/Workflow/Certificates/Approve", testutil.BobToken, []int64{pending.id})
	if len(res.Successes) != 1 || res.Successes[0].KeyfactorRequestId != pending.id {
		t.Fatalf("bob approving carol's request: %+v", res)
	}
}

// instanceState is the CurrentStateData of an instance as viewer reads it,
// with the whole answer's text.
func instanceState(t *testing.T, cf *testutil.Certflow, instance, viewer string) (state struct {
	Vars     map[string]any
	Steps    map[string]map[string]any
	Metadata map[string]string
}, body string) {
	t.Helper()
	r := cf.Do(t, "GET", "/Workflow/Instances/"+instance, nil, "Authorization", viewer)
	if r.Status != http.StatusOK {
		t.Fatalf("GET instance %s: %d %s", instance, r.Status, r.Body)
	}
	var in struct{ CurrentStateData json.RawMessage }
	r.JSON(t, &in)
	if err := json.Unmarshal(in.CurrentStateData, &state); err != nil {
		t.Fatal(err)
	}
	return state, string(r.Body)
}

// TestPolicyVisibilityOfOwnRequest: a requester reads her own instance,
// request, listings and callback, and sees step ids, states and decisions,
// the certificate's metadata, and of vars and step outputs only what the
// definition's visible: names — never the token a step keeps, nor a failed
// step's error. Her approver sees all of it.
func TestPolicyVisibilityOfOwnRequest(t *testing.T) {
	t.Parallel()
	cf := startVisibility(t, nil)
	hook := &hook{statuses: []int{200}}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	alice, bob := bearer(testutil.AliceToken), bearer(testutil.BobToken)
	csr, _ := testutil.CSR(t, "mine.example.com")
	_, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"CallbackUrl": srv.URL}), "Authorization", alice)
	info := er.CertificateInformation
	if info.RequestDisposition != "ISSUED" {
		t.Fatalf("alice's request: %+v", info)
	}

	t.Run("an approver sees every variable and output", func(t *testing.T) {
		state, body := instanceState(t, cf, info.WorkflowInstanceId, bob)
		if state.Vars["cmdb_token"] != visibilityToken || state.Steps["compute"]["cmdb_token"] != visibilityToken {
			t.Fatalf("bob's view lacks the token (the test would prove nothing): %s", body)
		}
		if _, ok := state.Steps["lookup"]["error"]; !ok {
			t.Fatalf("bob's view lacks the failed lookup's error: %s", body)
		}
	})

	t.Run("the requester sees only what visible: names", func(t *testing.T) {
		state, body := instanceState(t, cf, info.WorkflowInstanceId, alice)
		if strings.Contains(body, visibilityToken) || strings.Contains(body, "127.0.0.1:1") {
			t.Fatalf("alice's view of her instance holds the token or the lookup's URL: %s", body)
		}
		if len(state.Vars) != 1 || state.Vars["tier"] != "high" {
			t.Errorf("Vars %v; want only tier", state.Vars)
		}
		if len(state.Steps) != 1 || len(state.Steps["issue"]) != 1 || state.Steps["issue"]["serial"] != info.SerialNumber {
			t.Errorf("Steps %v; want only issue.serial (the lookup's only output is its error)", state.Steps)
		}
		if state.Metadata["Owner"] != "high" || state.Metadata["RequestedBy"] != "alice" {
			t.Errorf("Metadata %v; the certificate's metadata is hers to see", state.Metadata)
		}
		in := getInstance(t, cf, info.WorkflowInstanceId, alice)
		if in.Status != "Complete" || in.RequestDisposition != "ISSUED" || in.Definition.DefinitionId != "visibility" {
			t.Errorf("instance %+v: the states are hers to see", in)
		}
	})

	t.Run("no other rendering of her request holds the token", func(t *testing.T) {
		for _, path := range []string{
			"/Workflow/Instances/My", "/Workflow/Instances", "/Workflow/Instances/AssignedToMe",
			requestPath(info.KeyfactorRequestId), "/Certificates/" + strconv.FormatInt(info.KeyfactorID, 10), "/Certificates",
		} {
			r := cf.Do(t, "GET", path, nil, "Authorization", alice)
			if r.Status != http.StatusOK || strings.Contains(string(r.Body), visibilityToken) || strings.Contains(string(r.Body), "cmdb") {
				t.Errorf("GET %s as alice: %d, and the token or the lookup's URL in %s", path, r.Status, r.Body)
			}
		}
		var st requestStatus
		getJSON(t, cf, requestPath(info.KeyfactorRequestId), testutil.AliceToken, &st)
		if got := timeline(st); got != "lookup:Failed compute:Completed approve:Skipped issue:Completed tag:Completed" {
			t.Errorf("timeline %s: step ids and states are hers to see", got)
		}
		for _, s := range st.Timeline {
			if s.Message != "" {
				t.Errorf("step %s's message %q reaches the requester", s.StepId, s.Message)
			}
		}
	})

	t.Run("the definitions listing says what requesters see", func(t *testing.T) {
		var defs []struct {
			Id      string
			Visible []string
		}
		getJSON(t, cf, "/Workflow/Definitions", testutil.AliceToken, &defs)
		i := slices.IndexFunc(defs, func(d struct {
			Id      string
			Visible []string
		}) bool {
			return d.Id == "visibility"
		})
		if i < 0 || !slices.Equal(defs[i].Visible, []string{"vars.tier", "steps.lookup", "steps.issue.serial"}) {
			t.Fatalf("definitions %+v", defs)
		}
	})

	t.Run("the callback to her URL carries what she may see", func(t *testing.T) {
		waitFor(t, "the callback", func() bool { return len(hook.deliveries()) > 0 })
		body := hook.deliveries()[0].body
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(body, &keys); err != nil {
			t.Fatal(err)
		}
		if len(keys) != 2 || keys["CertificateInformation"] == nil || keys["Metadata"] == nil {
			t.Errorf("callback body fields %v; want CertificateInformation and Metadata", slices.Sorted(func(yield func(string) bool) {
				for k := range keys {
					if !yield(k) {
						return
					}
				}
			}))
		}
		if strings.Contains(string(body), visibilityToken) || strings.Contains(string(body), "cmdb") {
			t.Errorf("the callback holds the token or the lookup's URL: %s", body)
		}
	})
}

// TestPolicyVisibilityReservedMetadata: the metadata names workflows set
// (RequestedBy, ApprovedBy, Workflow, and whatever a loaded definition's
// metadata step sets) are refused in a request's Metadata, in any case,
// configured fields or not, on every enrollment path; nothing is stored.
func TestPolicyVisibilityReservedMetadata(t *testing.T) {
	t.Parallel()
	rows := []struct {
		name  string
		md    map[string]any
		field string
	}{
		{"RequestedBy, as the shipped definitions set it", map[string]any{"RequestedBy": "mallory"}, "Metadata.RequestedBy"},
		{"ApprovedBy in lower case", map[string]any{"approvedby": "carol,bob"}, "Metadata.ApprovedBy"},
		{"Workflow in upper case", map[string]any{"WORKFLOW": "enrollment-default"}, "Metadata.Workflow"},
		{"a name the loaded definition's metadata step sets", map[string]any{"owner": "mallory"}, "Metadata.Owner"},
		{"a reserved name padded with spaces", map[string]any{" RequestedBy ": "mallory"}, "Metadata.RequestedBy"},
		{"a reserved name as a number", map[string]any{"ApprovedBy": 7}, "Metadata.ApprovedBy"},
	}
	run := func(t *testing.T, cf *testutil.Certflow) {
		seq := func() string { v, _ := cf.Redis.Get(context.Background(), cf.Prefix+":seq:request").Result(); return v }
		before := seq()
		for _, row := range rows {
			t.Run(row.name, func(t *testing.T) {
				csr, _ := testutil.CSR(t, "md.example.com")
				r, _ := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Metadata": row.md}), "Authorization", bearer(testutil.AliceToken))
				assertError(t, r, http.StatusBadRequest, keyfactor.CodeInvalidField, row.field+": set by the workflow")
				r, _ = enrollPFX(t, cf, pfxBody(map[string]any{"Metadata": row.md}), "Authorization", bearer(testutil.AliceToken))
				assertError(t, r, http.StatusBadRequest, keyfactor.CodeInvalidField, row.field+": set by the workflow")
			})
		}
		if after := seq(); after != before {
			t.Fatalf("refused submits allocated request ids: %s → %s", before, after)
		}
		// Not given (null or empty) is not supplying it.
		csr, _ := testutil.CSR(t, "md.example.com")
		r, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{"RequestedBy": nil, "Workflow": ""}}), "Authorization", bearer(testutil.AliceToken))
		if r.Status != http.StatusOK || er.Metadata["RequestedBy"] != "alice" {
			t.Fatalf("null and empty reserved fields: %d %s", r.Status, r.Body)
		}
	}
	t.Run("without configured metadata fields", func(t *testing.T) {
		t.Parallel()
		run(t, startVisibility(t, nil))
	})
	t.Run("with the names configured as ordinary fields", func(t *testing.T) {
		t.Parallel()
		// RequestedBy Required: required of the certificate, which the
		// workflow sets, not of the request.
		run(t, startVisibility(t, func(c *config.Config) {
			c.Metadata = []config.MetaField{{Name: "RequestedBy", Enrollment: "Required"}, {Name: "ApprovedBy"}, {Name: "Workflow"}, {Name: "Owner"}}
		}))
	})
}

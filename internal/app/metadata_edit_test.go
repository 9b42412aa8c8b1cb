package app_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

var adminAuth = bearer(testutil.AdminToken)

// editableMetadata is typedMetadata with a Hidden field no workflow sets:
// never given at enrollment, an administrator's to edit.
func editableMetadata(c *config.Config) {
	typedMetadata(c)
	c.Metadata = append(c.Metadata, config.MetaField{Name: "Ticket", Type: "String", Enrollment: "Hidden"})
}

// certMetadata is certificate id's Metadata as GET /Certificates/{id}
// answers it to the admin.
func certMetadata(t *testing.T, cf *testutil.Certflow, id int64) map[string]string {
	t.Helper()
	resp, rec := getCert(t, cf, adminAuth, id, "")
	if resp.Status != http.StatusOK {
		t.Fatalf("GET certificate %d: %d %s", id, resp.Status, resp.Body)
	}
	return rec.Metadata
}

// putMetadata sends PUT path (/Certificates/Metadata or its /All) as auth.
func putMetadata(t *testing.T, cf *testutil.Certflow, auth, path string, body any) *testutil.Response {
	t.Helper()
	return cf.Do(t, "PUT", path, body, "Authorization", auth)
}

func mustPutMetadata(t *testing.T, cf *testutil.Certflow, path string, body any) {
	t.Helper()
	if r := putMetadata(t, cf, adminAuth, path, body); r.Status != http.StatusNoContent || len(r.Body) != 0 {
		t.Fatalf("PUT %s %v: %d %s; want 204 and no body", path, body, r.Status, r.Body)
	}
}

func TestMetadataEditSetsAndClearsFields(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, editableMetadata)
	a, _ := issueAs(t, cf, alice, "edit-a.example.com", map[string]any{"Metadata": map[string]any{
		"CostCenter": "100", "Team": "web", "Notes": "first notes", "Owner": "pki@example.com",
	}})
	b, _ := issueAs(t, cf, alice, "edit-b.example.com", map[string]any{"Metadata": map[string]any{"CostCenter": "200"}})
	want := func(id int64, md map[string]string) {
		t.Helper()
		if got := certMetadata(t, cf, id); !reflect.DeepEqual(got, md) {
			t.Fatalf("certificate %d Metadata = %v\nwant %v", id, got, md)
		}
	}
	wantA := map[string]string{
		"CostCenter": "100", "Team": "web", "Notes": "first notes", "Owner": "pki@example.com",
		"Reviewed": "true", "Env": "Test", "RequestedBy": "alice", "Workflow": "enrollment-default",
	}
	wantB := map[string]string{"CostCenter": "200", "Reviewed": "true", "Env": "Test", "RequestedBy": "alice", "Workflow": "enrollment-default"}
	want(a, wantA)
	want(b, wantB)

	t.Run("one certificate: set, normalized, cleared, a Hidden field", func(t *testing.T) {
		mustPutMetadata(t, cf, "/Certificates/Metadata", map[string]any{"Id": a, "Metadata": map[string]any{
			"team":       "ops",  // the configured spelling is stored
			"CostCenter": "+042", // normalized as at submit
			"Internal":   true,
			"Notes":      "", // cleared
			"Reviewed":   nil,
			"Ticket":     "CHG-1",
		}})
		wantA["Team"], wantA["CostCenter"], wantA["Internal"], wantA["Ticket"] = "ops", "42", "true", "CHG-1"
		delete(wantA, "Notes")
		delete(wantA, "Reviewed")
		want(a, wantA)
		want(b, wantB)
		// Its requester reads the same on her certificate, and in the
		// enrollment request's answer.
		if _, rec := getCert(t, cf, alice, a, ""); !reflect.DeepEqual(rec.Metadata, wantA) {
			t.Fatalf("alice reads %v", rec.Metadata)
		}
		if st := getRequest(t, cf, a); !reflect.DeepEqual(st.Metadata, wantA) {
			t.Fatalf("GET /Enrollment/Requests/%d Metadata = %v", a, st.Metadata)
		}
	})
	t.Run("many certificates, an id named twice, Keyfactor's paths", func(t *testing.T) {
		mustPutMetadata(t, cf, "/KeyfactorAPI/certificates/metadata/all", map[string]any{
			"CertificateIds": []int64{a, b, a}, "Query": "", "CollectionId": 0,
			"Metadata": map[string]any{"Env": "Prod", "Expires": "2027-01-31"},
		})
		wantA["Env"], wantA["Expires"] = "Prod", "2027-01-31"
		wantB["Env"], wantB["Expires"] = "Prod", "2027-01-31"
		want(a, wantA)
		want(b, wantB)
	})
	t.Run("Keyfactor's list form: OverwriteExisting false keeps a value", func(t *testing.T) {
		mustPutMetadata(t, cf, "/Certificates/Metadata/All", map[string]any{
			"CertificateIds": []int64{a, b},
			"Metadata": []map[string]any{
				{"MetadataName": "Owner", "Value": "ops@example.com", "OverwriteExisting": false},
				{"MetadataName": "Team", "Value": "infra", "OverwriteExisting": true},
			},
		})
		wantA["Team"] = "infra" // Owner kept
		wantB["Owner"], wantB["Team"] = "ops@example.com", "infra"
		want(a, wantA)
		want(b, wantB)
	})
	t.Run("an edit that changes nothing writes nothing", func(t *testing.T) {
		before := snapshot(t, cf, []int64{a, b}, 0)
		mustPutMetadata(t, cf, "/Certificates/Metadata", map[string]any{"Id": a, "Metadata": map[string]any{"Team": "infra", "Notes": ""}})
		if after := snapshot(t, cf, []int64{a, b}, 0); after != before {
			t.Fatalf("the record was written:\nbefore %s\nafter  %s", before, after)
		}
	})
	t.Run("clearing every field the request set", func(t *testing.T) {
		mustPutMetadata(t, cf, "/Certificates/Metadata", map[string]any{"Id": b, "Metadata": map[string]any{
			"CostCenter": "", "Reviewed": "", "Env": "", "Owner": "", "Team": "", "Expires": "",
		}})
		want(b, map[string]string{"RequestedBy": "alice", "Workflow": "enrollment-default"})
	})
}

func TestMetadataEditRefusalsWriteNothing(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, editableMetadata)
	md := map[string]any{"Metadata": map[string]any{"CostCenter": "1"}}
	a, _ := issueAs(t, cf, alice, "refuse-a.example.com", md)
	b, _ := issueAs(t, cf, alice, "refuse-b.example.com", md)
	c, _ := issueAs(t, cf, carolBasic, "refuse-c.example.com", md)
	ghost := c + 1_000_000
	tooMany := make([]int64, 501)
	for i := range tooMany {
		tooMany[i] = a
	}
	one := func(id any, fields map[string]any) map[string]any {
		return map[string]any{"Id": id, "Metadata": fields}
	}
	all := func(ids []int64, fields any) map[string]any {
		return map[string]any{"CertificateIds": ids, "Metadata": fields}
	}
	team := map[string]any{"Team": "ops"}
	const (
		single = "/Certificates/Metadata"
		bulk   = "/Certificates/Metadata/All"
		E, U   = keyfactor.CodeInvalidField, keyfactor.CodeUnknownName
		NF, F  = keyfactor.CodeNotFound, keyfactor.CodeForbidden
	)
	before := snapshot(t, cf, []int64{a, b, c}, 0)
	cases := []struct {
		name   string
		auth   string
		path   string
		body   any
		status int
		code   string
		starts string
	}{
		{"no Id", adminAuth, single, map[string]any{"Metadata": team}, 400, E, "Id: required"},
		{"Id zero", adminAuth, single, one(0, team), 400, E, "Id: want a positive certificate id, got 0"},
		{"Id not a number", adminAuth, single, one("seven", team), 400, E, "Id: want an integer"},
		{"no Metadata", adminAuth, single, map[string]any{"Id": a}, 400, E, "Metadata: required"},
		{"empty Metadata", adminAuth, single, one(a, map[string]any{}), 400, E, "Metadata: required"},
		{"Metadata not an object", adminAuth, single, map[string]any{"Id": a, "Metadata": "Team=ops"}, 400, E, "Metadata: want an object"},
		{"an unknown field", adminAuth, single, one(a, map[string]any{"Colour": "blue"}), 400, U, "Metadata.Colour: no such metadata field"},
		{"an unknown field cleared", adminAuth, single, one(a, map[string]any{"Colour": nil}), 400, U, "Metadata.Colour: no such metadata field"},
		{"an Integer with letters", adminAuth, single, one(a, map[string]any{"CostCenter": "12a"}), 400, E, `Metadata.CostCenter: "12a" is not a whole number`},
		{"a Boolean as yes", adminAuth, single, one(a, map[string]any{"Internal": "yes"}), 400, E, `Metadata.Internal: "yes" is not a boolean`},
		{"a value not a scalar", adminAuth, single, one(a, map[string]any{"Team": []string{"ops"}}), 400, E, "Metadata.Team: want a string, number or boolean"},
		{"a String failing its pattern", adminAuth, single, one(a, map[string]any{"Team": "Ops Team"}), 400, E, "Metadata.Team: lower-case letters"},
		{"a MultipleChoice not an option", adminAuth, single, one(a, map[string]any{"Env": "prod"}), 400, E, `Metadata.Env: "prod" is not one of the options`},
		{"one field twice", adminAuth, single, one(a, map[string]any{"team": "a", "TEAM": "b"}), 400, E, "Metadata.Team: given twice"},
		{"a field the workflow sets", adminAuth, single, one(a, map[string]any{"RequestedBy": "mallory"}), 400, E, "Metadata.RequestedBy: set by the workflow"},
		{"a field the workflow sets, cleared", adminAuth, single, one(a, map[string]any{"Workflow": ""}), 400, E, "Metadata.Workflow: set by the workflow"},
		{"a reserved field in another case", adminAuth, single, one(a, map[string]any{"approvedby": "mallory"}), 400, E, "Metadata.ApprovedBy: set by the workflow"},
		{"a good field beside a bad one", adminAuth, single, one(a, map[string]any{"Team": "ops", "Owner": "not-an-address"}), 400, E, `Metadata.Owner: "not-an-address" is not an email address`},
		{"no such certificate", adminAuth, single, one(ghost, team), 404, NF, fmt.Sprintf("Id: certificate %d: not found", ghost)},
		{"a requester, her own certificate", alice, single, one(a, team), 403, F, fmt.Sprintf("Id: alice may not change the metadata of certificate %d: only an administrator may", a)},
		{"an approver, who sees every certificate", bearer(testutil.BobToken), single, one(a, team), 403, F, "Id: bob may not change the metadata"},
		{"a requester, another's certificate", carolBasic, single, one(a, team), 404, NF, fmt.Sprintf("Id: certificate %d: not found", a)},
		{"no CertificateIds", adminAuth, bulk, map[string]any{"Metadata": team}, 400, E, "CertificateIds: required"},
		{"more than 500 ids", adminAuth, bulk, all(tooMany, team), 400, E, "CertificateIds: more than 500 ids"},
		{"a non-positive id", adminAuth, bulk, all([]int64{a, -3}, team), 400, E, "CertificateIds[1]: want a positive certificate id, got -3"},
		{"a Query", adminAuth, bulk, map[string]any{"Query": `IssuedCN -contains "refuse"`, "Metadata": team}, 400, E, "Query: not supported yet: name the certificates in CertificateIds"},
		{"a Query beside ids", adminAuth, bulk, map[string]any{"Query": "CertState -eq 1", "CertificateIds": []int64{a}, "Metadata": team}, 400, E, "Query: not supported yet"},
		{"Metadata neither object nor list", adminAuth, bulk, all([]int64{a}, 7), 400, E, "Metadata: want an object of field names to values, or a list"},
		{"no Metadata, many", adminAuth, bulk, map[string]any{"CertificateIds": []int64{a}}, 400, E, "Metadata: required"},
		{"a list entry without a name", adminAuth, bulk, all([]int64{a}, []map[string]any{{"Value": "x"}}), 400, E, "Metadata[0].MetadataName: required"},
		{"a list entry with a bad value", adminAuth, bulk, all([]int64{a}, []map[string]any{{"MetadataName": "CostCenter", "Value": "many", "OverwriteExisting": true}}), 400, E, `Metadata.CostCenter: "many" is not a whole number`},
		{"a list naming a reserved field", adminAuth, bulk, all([]int64{a}, []map[string]any{{"MetadataName": "RequestedBy", "Value": "x", "OverwriteExisting": true}}), 400, E, "Metadata.RequestedBy: set by the workflow"},
		{"one unknown id among good ones", adminAuth, bulk, all([]int64{a, ghost, b}, team), 404, NF, fmt.Sprintf("CertificateIds[1]: certificate %d: not found", ghost)},
		{"one bad value for many", adminAuth, bulk, all([]int64{a, b}, map[string]any{"Team": "ops", "Expires": "soon"}), 400, E, `Metadata.Expires: "soon" is not a date`},
		{"a requester, her own certificates", alice, bulk, all([]int64{a, b}, team), 403, F, "CertificateIds[0]: alice may not change the metadata"},
		{"a requester, another's among hers", alice, bulk, all([]int64{c, a}, team), 404, NF, fmt.Sprintf("CertificateIds[0]: certificate %d: not found", c)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, putMetadata(t, cf, tc.auth, tc.path, tc.body), tc.status, tc.code, tc.starts)
		})
	}
	t.Run("another's certificate answers as one that does not exist", func(t *testing.T) {
		mine := putMetadata(t, cf, carolBasic, single, one(a, team))
		none := putMetadata(t, cf, carolBasic, single, one(ghost, team))
		if mine.Status != none.Status || (target{id: a}).normalize(mine.Body) != (target{id: ghost}).normalize(none.Body) {
			t.Fatalf("alice's certificate: %d %s\nno certificate: %d %s", mine.Status, mine.Body, none.Status, none.Body)
		}
	})
	if after := snapshot(t, cf, []int64{a, b, c}, 0); after != before {
		t.Fatalf("a refused edit wrote:\nbefore %s\nafter  %s", before, after)
	}
}

// holdGate holds each call until one is let through (pass), or all are
// (free closed), and tells when a call arrives (entered).
type holdGate struct {
	calls   atomic.Int64
	entered chan struct{}
	pass    chan struct{}
	free    chan struct{}
	freed   sync.Once
}

func (g *holdGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.calls.Add(1)
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-g.pass:
	case <-g.free:
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"ok": true}`))
}

func (g *holdGate) open() { g.freed.Do(func() { close(g.free) }) }

// waitEntered waits for the workflow to call the gate.
func (g *holdGate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the workflow never reached its http step")
	}
}

// TestMetadataEditRacingAWorkflowLosesNeither: a workflow issues, then
// waits in an http step; administrators' edits land on the certificate
// while it waits, and more race the checkpoint that follows. Every edit
// and everything the workflow records end up in the record: the
// checkpoint that finds the record edited since it was read is refused
// (the worker runs the step again from its last checkpoint, on the edited
// record), and an edit that finds a checkpoint written since it read
// tries again on the new record.
func TestMetadataEditRacingAWorkflowLosesNeither(t *testing.T) {
	t.Parallel()
	g := &holdGate{entered: make(chan struct{}, 8), pass: make(chan struct{}), free: make(chan struct{})}
	srv := httptest.NewServer(g)
	defer srv.Close()
	defer g.open()
	dir := defsDir(t, map[string]string{"slow.yaml": `name: slow
trigger: enrollment
steps:
  - id: issue
    uses: issue
  - id: wait
    uses: http
    with: {url: "` + srv.URL + `"}
    timeout: 30s
  - id: tag
    uses: metadata
    with: {set: {After: "${{ steps.wait.status }}", RequestedBy: "${{ requester.Name }}"}}
`})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })
	csr, _ := testutil.CSR(t, "race-edit.example.com")
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"Metadata": map[string]any{"Team": "web"}}), "Prefer", "respond-async")
	if resp.Status != http.StatusAccepted {
		t.Fatalf("enroll: %d %s; want 202", resp.Status, resp.Body)
	}
	id := er.CertificateInformation.KeyfactorRequestId
	g.waitEntered(t) // issued and checkpointed; waiting in the http step
	if st := getRequest(t, cf, id); st.CertificateInformation.RequestDisposition != "RUNNING" {
		t.Fatalf("request %d is %s; want RUNNING in its http step", id, st.CertificateInformation.RequestDisposition)
	}
	// What the workflow sets is not an administrator's to set.
	wantError(t, putMetadata(t, cf, adminAuth, "/Certificates/Metadata", map[string]any{"Id": id, "Metadata": map[string]any{"After": "x"}}),
		400, keyfactor.CodeInvalidField, "Metadata.After: set by the workflow")

	// edits sends n edits at once, edit i setting field prefix+i (and all
	// of them Team), and fails on any answer but 204.
	edits := func(prefix string, n int, during func()) {
		t.Helper()
		var wg sync.WaitGroup
		answers := make([]*testutil.Response, n)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				fields := map[string]any{fmt.Sprintf("%s%d", prefix, i): fmt.Sprintf("v%d", i), "Team": fmt.Sprintf("%s%d", prefix, i)}
				path, body := "/Certificates/Metadata", map[string]any{"Id": id, "Metadata": fields}
				if i%2 == 1 { // half through the batch endpoint
					path, body = "/Certificates/Metadata/All", map[string]any{"CertificateIds": []int64{id}, "Metadata": fields}
				}
				answers[i] = putMetadata(t, cf, adminAuth, path, body)
			})
		}
		close(start)
		if during != nil {
			during()
		}
		wg.Wait()
		for i, r := range answers {
			if r.Status != http.StatusNoContent {
				t.Fatalf("edit %s%d: %d %s", prefix, i, r.Status, r.Body)
			}
		}
	}
	// While the worker waits in the step, holding the record it read: the
	// checkpoint after the step must find it changed, and the worker runs
	// the step again (from the checkpoint before it) on the edited record.
	edits("Held", 8, nil)
	g.pass <- struct{}{}
	g.waitEntered(t)
	// Now the step returns while edits land: whichever writes first, the
	// other finds the record changed and goes again on the new one.
	edits("Racing", 8, g.open)
	// A refused checkpoint's run is retried by the queue (asynq moves
	// retries to the queue every 5 s): up to three runs, more than
	// pollFinal waits for.
	var st requestStatus
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if st = getRequest(t, cf, id); st.CertificateInformation.RequestDisposition != "RUNNING" || time.Now().After(deadline) {
			break
		}
	}
	if st.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("request %d ended %s: %s", id, st.CertificateInformation.RequestDisposition, st.CertificateInformation.DispositionMessage)
	}
	md := certMetadata(t, cf, id)
	for _, prefix := range []string{"Held", "Racing"} {
		for i := range 8 {
			if k := fmt.Sprintf("%s%d", prefix, i); md[k] != fmt.Sprintf("v%d", i) {
				t.Errorf("edit %s lost: Metadata %v", k, md)
			}
		}
	}
	if md["After"] != "200" || md["RequestedBy"] != "admin" || !strings.HasPrefix(md["Team"], "Racing") {
		t.Errorf("Metadata %v; want the workflow's After 200 and RequestedBy admin, and a racing edit's Team", md)
	}
	if outcomes(st, "wait", "Completed") != 1 || outcomes(st, "tag", "Completed") != 1 || outcomes(st, "issue", "Completed") != 1 {
		t.Errorf("timeline %s; want each step completed once", timeline(st))
	}
	// The checkpoint after the held edits was refused: the step ran again.
	if n := g.calls.Load(); n < 2 {
		t.Errorf("the http step ran %d times; the checkpoint that followed the edits must have been refused and the step run again", n)
	}
	t.Logf("the http step ran %d times", g.calls.Load())
	if n := signedFor(cf, id); n != 1 {
		t.Errorf("signed %d times; want once", n)
	}
}

// A search by metadata finds what an edit set and no longer what it
// replaced or cleared: the edit changes the metadata index in the script
// that writes the record. A workflow's own metadata is searchable too.
func TestMetadataSearchFollowsEdits(t *testing.T) {
	t.Parallel()
	cf := testutil.StartCertflow(t, editableMetadata)
	a, _ := issueAs(t, cf, alice, "msearch-a.example.com", map[string]any{"Metadata": map[string]any{"Team": "web", "CostCenter": "100"}})
	b, _ := issueAs(t, cf, alice, "msearch-b.example.com", map[string]any{"Metadata": map[string]any{"Team": "web", "CostCenter": "200"}})
	find := func(q string) []int64 {
		t.Helper()
		return certIDs(t, cf.Do(t, "GET", "/Certificates?"+queryString(q), nil, "Authorization", "Bearer "+testutil.AdminToken))
	}
	if got := find(`Team -eq "WEB"`); !slices.Equal(got, []int64{a, b}) {
		t.Fatalf("Team web: %v, want %v", got, []int64{a, b})
	}
	mustPutMetadata(t, cf, "/Certificates/Metadata", map[string]any{"Id": a, "Metadata": map[string]any{"Team": "ops", "CostCenter": ""}})
	for _, tc := range []struct {
		q    string
		want []int64
	}{
		{`Team -eq "web"`, []int64{b}},
		{`Metadata.Team -eq "ops"`, []int64{a}},
		{`CostCenter -eq "100"`, nil},
		{`CostCenter -eq ""`, []int64{a}},
		{`CostCenter -eq "200"`, []int64{b}},
		{`Metadata.Workflow -eq "enrollment-default" AND Team -eq "ops"`, []int64{a}},
	} {
		if got := find(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.q, got, tc.want)
		}
	}
}

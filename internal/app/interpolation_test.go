package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/testutil"
)

// cmdbCall is what the fake CMDB received.
type cmdbCall struct {
	escapedPath string
	query       url.Values
	body        []byte
}

// interpolationDef sends the requester's free-text enrollment field Note
// to a CMDB in the three places a value can go: a path segment, a query
// parameter and a JSON body.
const interpolationDef = `name: interpolation
trigger: enrollment
match: request.Template == "WebServer"
steps:
  - id: owner
    uses: http
    with:
      method: POST
      url: "%s/owners/${{ request.AdditionalEnrollmentFields['Note'] }}"
      query: {note: "${{ request.AdditionalEnrollmentFields['Note'] }}"}
      body: {note: "${{ request.AdditionalEnrollmentFields['Note'] }}", requester: "${{ requester.Name }}"}
  - id: issue
    uses: issue
`

// TestPolicyInterpolationEndToEnd: a requester's text, however built,
// reaches the CMDB as a value: the JSON body decodes to the definition's
// keys, the query to its parameters, the path to its segments.
func TestPolicyInterpolationEndToEnd(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var calls []cmdbCall
	cmdb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, cmdbCall{r.URL.EscapedPath(), r.URL.Query(), b})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
	}))
	defer cmdb.Close()
	dir := defsDir(t, map[string]string{"interpolation.yaml": fmt.Sprintf(interpolationDef, cmdb.URL)})
	cf := testutil.StartCertflow(t, func(c *config.Config) {
		c.Definitions = dir
		c.Templates[0].EnrollmentFields = []config.EnrollmentField{{Name: "Note"}}
	})
	for i, hostile := range []string{
		`a","requester":"root","x":"`,
		`x&token=attacker#`,
		`../../admin`,
		"\r\nBcc: evil@x",
		"Jörg ☃ 東京",
	} {
		t.Run(fmt.Sprintf("%q", hostile), func(t *testing.T) {
			csr, _ := testutil.CSR(t, fmt.Sprintf("interp%d.example.com", i))
			resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"AdditionalEnrollmentFields": map[string]any{"Note": hostile}}),
				"Authorization", bearer(testutil.AliceToken))
			if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
				t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
			}
			mu.Lock()
			c := calls[len(calls)-1]
			mu.Unlock()
			var body map[string]any
			if err := json.Unmarshal(c.body, &body); err != nil {
				t.Fatalf("body is not JSON (%v): %s", err, c.body)
			}
			if keys := slices.Sorted(maps.Keys(body)); !slices.Equal(keys, []string{"note", "requester"}) || body["note"] != hostile || body["requester"] != "alice" {
				t.Fatalf("body %s: want exactly note=%q and requester=alice", c.body, hostile)
			}
			if keys := slices.Sorted(maps.Keys(c.query)); !slices.Equal(keys, []string{"note"}) || !slices.Equal(c.query["note"], []string{hostile}) {
				t.Fatalf("query %v: want exactly note=%q", c.query, hostile)
			}
			segs := strings.Split(c.escapedPath, "/")
			if len(segs) != 3 || segs[1] != "owners" {
				t.Fatalf("path %q: want /owners/<one segment>", c.escapedPath)
			}
			if seg, _ := url.PathUnescape(segs[2]); seg != hostile {
				t.Fatalf("path segment %q decodes to %q, want %q", segs[2], seg, hostile)
			}
		})
	}
}

// secretsDef calls two URLs whose query holds a token: one where nothing
// listens (the client's error quotes the URL) and one answering 500; and
// sends a webhook to the request's own CallbackUrl.
const secretsDef = `name: secrets
trigger: enrollment
match: request.Template == "WebServer"
steps:
  - id: refused
    uses: http
    with: {url: "%[1]s/x?token=s3cr3t-tok-query"}
    on_error: continue
  - id: failing
    uses: http
    with: {url: "%[2]s/y?token=s3cr3t-tok-query"}
    on_error: continue
  - id: issue
    uses: issue
  - id: tell
    uses: notify
    with: {webhook: "${{ request.CallbackUrl }}"}
`

// TestPolicyInterpolationURLsAreShownWithoutQueryOrUserInfo: a URL's query
// (where tokens travel) reaches neither certflow's log nor what the API
// shows of the request and its instance; a URL with user-info is refused
// before it is stored.
func TestPolicyInterpolationURLsAreShownWithoutQueryOrUserInfo(t *testing.T) {
	t.Parallel()
	closed := closedAddr(t)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer failing.Close()
	dir := defsDir(t, map[string]string{"secrets.yaml": fmt.Sprintf(secretsDef, "http://"+closed, failing.URL)})
	cf := testutil.StartCertflow(t, func(c *config.Config) { c.Definitions = dir })

	t.Run("user-info in a CallbackUrl is refused, and not echoed", func(t *testing.T) {
		csr, _ := testutil.CSR(t, "userinfo.example.com")
		u, _ := url.Parse(failing.URL)
		u.User = url.UserPassword("user", "s3cr3t-tok-password")
		r := cf.Do(t, "POST", "/Enrollment/CSR", testutil.EnrollBody(csr, map[string]any{"CallbackUrl": u.String() + "/cb"}), "x-certificateformat", "PEM")
		assertError(t, r, http.StatusBadRequest, keyfactor.CodeInvalidField, "CallbackUrl")
		if strings.Contains(string(r.Body), "s3cr3t") {
			t.Fatalf("the refusal echoes the password: %s", r.Body)
		}
		assertNothingStored(t, cf)
	})

	csr, _ := testutil.CSR(t, "secrets.example.com")
	callbackURL := "http://" + closed + "/cb?token=s3cr3t-tok-callback"
	resp, er := enroll(t, cf, testutil.EnrollBody(csr, map[string]any{"CallbackUrl": callbackURL}))
	if resp.Status != http.StatusOK || er.CertificateInformation.RequestDisposition != "ISSUED" {
		t.Fatalf("enroll: %d %s", resp.Status, resp.Body)
	}
	id := er.CertificateInformation.KeyfactorRequestId
	// The callback is retried on a 0.1/0.2/0.4 s schedule: wait for its
	// attempts to be recorded and logged.
	waitFor(t, "two failed callback attempts", func() bool { return len(getRequest(t, cf, id).Callbacks) >= 2 })
	waitFor(t, "the callback failure logged", func() bool { return strings.Contains(cf.Logs.String(), "callback failed") })

	req := cf.Do(t, "GET", requestPath(id), nil)
	inst := cf.Do(t, "GET", "/Workflow/Instances/"+er.CertificateInformation.WorkflowInstanceId, nil)
	for what, text := range map[string]string{
		"the log":      cf.Logs.String(),
		"the request":  string(req.Body),
		"the instance": string(inst.Body),
	} {
		if strings.Contains(text, "s3cr3t") {
			t.Errorf("%s shows a URL's query:\n%s", what, text)
		}
	}
	var in wfInstance
	inst.JSON(t, &in)
	steps, _ := in.CurrentStateData["Steps"].(map[string]any)
	for step, want := range map[string]string{
		"refused": "GET http://" + closed + "/x?…",
		"failing": "GET " + failing.URL + "/y?… answered 500",
	} {
		out, _ := steps[step].(map[string]any)
		if msg, _ := out["error"].(string); !strings.Contains(msg, want) {
			t.Errorf("steps.%s.error = %q, want it to name %q", step, msg, want)
		}
	}
	tell, _ := steps["tell"].(map[string]any)
	if msg, _ := tell["error"].(string); !strings.Contains(msg, "http://"+closed+"/cb?…") {
		t.Errorf("steps.tell.error = %q, want the webhook's URL without its query", msg)
	}
	var st struct {
		Request   struct{ CallbackUrl string }
		Callbacks []struct{ Error string }
	}
	req.JSON(t, &st)
	if st.Request.CallbackUrl != "http://"+closed+"/cb?…" {
		t.Errorf("Request.CallbackUrl = %q, want it without its query", st.Request.CallbackUrl)
	}
	if len(st.Callbacks) == 0 || !strings.Contains(st.Callbacks[0].Error, "http://"+closed+"/cb?…") {
		t.Errorf("recorded callback attempts %+v, want errors naming the URL without its query", st.Callbacks)
	}
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

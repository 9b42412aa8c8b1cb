package steps_test

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/certflow/certflow/internal/testutil"
	"github.com/certflow/certflow/workflow"
)

// hostileValues are names a requester controls (here the CSR's CN) built
// to change the shape of what a step sends when spliced as text.
var hostileValues = []struct {
	name, value string
	// headerBreak: the value holds a line break, so an email carrying it
	// in a header must fail the step and send nothing.
	headerBreak bool
}{
	{name: "a quote that closes the JSON string and adds keys", value: `a","requester":"root","x":"`},
	{name: "an ampersand and hash that add query parameters", value: `x&token=attacker#`},
	{name: "dot segments that climb the path", value: `../../admin`},
	{name: "a line break that adds a mail header", value: "\r\nBcc: evil@x", headerBreak: true},
	{name: "a bare LF that adds a mail header", value: "x\nBcc: evil@x", headerBreak: true},
	{name: "non-ASCII text", value: "Jörg ☃ 東京"},
	{name: "a query and fragment in the path value", value: "a?admin=1#b"},
}

// capture is one request an httptest server received.
type capture struct {
	escapedPath, path, contentType string
	query                          url.Values
	body                           []byte
}

func capturingServer(t *testing.T) (*httptest.Server, func() []capture) {
	t.Helper()
	var mu sync.Mutex
	var got []capture
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, capture{r.URL.EscapedPath(), r.URL.Path, r.Header.Get("Content-Type"), r.URL.Query(), b})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []capture { mu.Lock(); defer mu.Unlock(); return slices.Clone(got) }
}

// TestPolicyInterpolationHTTP: whatever the CN holds, the http step sends
// exactly the body keys, query parameters and path segments the
// definition wrote, with the CN as a value.
func TestPolicyInterpolationHTTP(t *testing.T) {
	t.Parallel()
	srv, got := capturingServer(t)
	def := parseWithHTTP(t, true,
		`  - id: owner`,
		`    uses: http`,
		`    with:`,
		`      method: POST`,
		`      url: "`+srv.URL+`/lookup/${{ csr.CommonName }}/owner"`,
		`      query: {host: "${{ csr.CommonName }}", zone: internal}`,
		`      body:`,
		`        host: "${{ csr.CommonName }}"`,
		`        requester: "${{ requester.Name }}"`,
		`        note: "cn=${{ csr.CommonName }}"`,
		`        names: ["${{ csr.CommonName }}"]`,
	)
	for _, hv := range hostileValues {
		t.Run(hv.name, func(t *testing.T) {
			before := len(got())
			env := envFor(t, defaultConfig(), workflow.Request{ID: 7}, newCSR(t, "P-256", hv.value), nil)
			if _, err := runStep(t, def, "owner", env, nil); err != nil {
				t.Fatalf("Run: %v", err)
			}
			calls := got()[before:]
			if len(calls) != 1 {
				t.Fatalf("%d calls, want 1", len(calls))
			}
			c := calls[0]
			var body map[string]any
			if err := json.Unmarshal(c.body, &body); err != nil {
				t.Fatalf("the body is not JSON (%v): %s", err, c.body)
			}
			if keys := slices.Sorted(maps.Keys(body)); !slices.Equal(keys, []string{"host", "names", "note", "requester"}) {
				t.Fatalf("body keys %q, want host, names, note, requester: %s", keys, c.body)
			}
			if body["host"] != hv.value || body["requester"] != "alice" || body["note"] != "cn="+hv.value {
				t.Fatalf("body %s: want host %q, requester alice", c.body, hv.value)
			}
			if names, _ := body["names"].([]any); len(names) != 1 || names[0] != hv.value {
				t.Fatalf("body names %v, want [%q]", body["names"], hv.value)
			}
			if c.contentType != "application/json" {
				t.Errorf("Content-Type %q, want application/json", c.contentType)
			}
			if keys := slices.Sorted(maps.Keys(c.query)); !slices.Equal(keys, []string{"host", "zone"}) {
				t.Fatalf("query parameters %q, want host and zone", keys)
			}
			if h, z := c.query["host"], c.query["zone"]; !slices.Equal(h, []string{hv.value}) || !slices.Equal(z, []string{"internal"}) {
				t.Fatalf("query host=%q zone=%q, want host=[%q] zone=[internal]", h, z, hv.value)
			}
			segs := strings.Split(strings.TrimPrefix(c.escapedPath, "/"), "/")
			if len(segs) != 3 || segs[0] != "lookup" || segs[2] != "owner" {
				t.Fatalf("path %q, want /lookup/<one segment>/owner", c.escapedPath)
			}
			if seg, err := url.PathUnescape(segs[1]); err != nil || seg != hv.value {
				t.Fatalf("path segment %q decodes to %q, want %q", segs[1], seg, hv.value)
			}
		})
	}
	t.Run("a value that is a dot segment fails the step and calls nothing", func(t *testing.T) {
		for _, v := range []string{".", ".."} {
			refusesURL(t, def, "owner", got, v)
		}
	})
}

// refusesURL runs step with the CN cn and asserts a permanent url error
// and no call made.
func refusesURL(t *testing.T, def *workflow.Definition, step string, got func() []capture, cn string) {
	t.Helper()
	before := len(got())
	env := envFor(t, defaultConfig(), workflow.Request{ID: 7}, newCSR(t, "P-256", cn), nil)
	_, err := runStep(t, def, step, env, nil)
	var perm *workflow.PermanentError
	if !errors.As(err, &perm) || !strings.Contains(err.Error(), "url") {
		t.Fatalf("CN %q: err = %v, want a permanent url error", cn, err)
	}
	if n := len(got()) - before; n != 0 {
		t.Fatalf("CN %q: %d calls, want none", cn, n)
	}
}

// TestPolicyInterpolationAssembledPathsAndTextBodies: values side by side
// in one path segment are checked as the segment they make, an empty
// value is refused, and a text body whose value reads as JSON is still
// sent as text (the content type follows the body as written).
func TestPolicyInterpolationAssembledPathsAndTextBodies(t *testing.T) {
	t.Parallel()
	srv, got := capturingServer(t)
	def := parseWithHTTP(t, true,
		`  - id: call`,
		`    uses: http`,
		`    with:`,
		`      method: POST`,
		`      url: "`+srv.URL+`/a/${{ csr.CommonName }}${{ csr.CommonName }}/b"`,
		`      body: "${{ csr.CommonName }}"`,
	)
	for _, cn := range []string{".", ""} {
		refusesURL(t, def, "call", got, cn)
	}
	env := envFor(t, defaultConfig(), workflow.Request{ID: 7}, newCSR(t, "P-256", `{"requester":"root"}`), nil)
	if _, err := runStep(t, def, "call", env, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if c := got()[len(got())-1]; c.contentType == "application/json" {
		t.Errorf("a value that reads as JSON was sent as application/json: %s", c.body)
	}
}

// TestPolicyInterpolationEmail: a subject made from the CN is sent encoded
// on one header line, or, when the CN holds a line break, the step fails
// and nothing is sent.
func TestPolicyInterpolationEmail(t *testing.T) {
	t.Parallel()
	server := testutil.StartSMTPServer(t, testutil.SMTPOptions{})
	def := parseWithMailer(t, server.Config(), oneStep(
		`  - id: tell`,
		`    uses: notify`,
		`    with:`,
		`      email: {to: [owner@example.com], subject: "certificate for ${{ csr.CommonName }}", body: "issued ${{ csr.CommonName }}"}`,
	)...)
	wantHeaders := []string{"Content-Transfer-Encoding", "Content-Type", "Date", "From", "Message-Id", "Mime-Version", "Subject", "To"}
	sent := 0
	for _, hv := range hostileValues {
		t.Run(hv.name, func(t *testing.T) {
			env := envFor(t, defaultConfig(), workflow.Request{ID: 7}, newCSR(t, "P-256", hv.value), nil)
			res, err := runStep(t, def, "tell", env, nil)
			msgs := server.Messages(t)
			if hv.headerBreak {
				var perm *workflow.PermanentError
				if !errors.As(err, &perm) || !strings.Contains(err.Error(), "subject") || !strings.Contains(err.Error(), "line break") {
					t.Fatalf("err = %v, want a permanent error naming the subject's line break", err)
				}
				if len(msgs) != sent {
					t.Fatalf("%d messages sent, want none more", len(msgs)-sent)
				}
				return
			}
			if err != nil || res.Outputs["email_sent"] != true {
				t.Fatalf("Run: %v, outputs %v", err, res.Outputs)
			}
			sent++
			if len(msgs) != sent {
				t.Fatalf("%d messages, want %d", len(msgs), sent)
			}
			m := msgs[len(msgs)-1]
			if !slices.Equal(m.To, []string{"owner@example.com"}) {
				t.Fatalf("envelope recipients %q", m.To)
			}
			head, _, _ := strings.Cut(m.Data, "\r\n\r\n")
			for i := 0; i < len(head); i++ {
				if head[i] >= 0x80 {
					t.Fatalf("the header holds a raw non-ASCII byte:\n%s", head)
				}
			}
			msg, err := mail.ReadMessage(strings.NewReader(m.Data))
			if err != nil {
				t.Fatalf("message does not parse: %v", err)
			}
			if keys := slices.Sorted(maps.Keys(msg.Header)); !slices.Equal(keys, wantHeaders) {
				t.Fatalf("headers %q, want %q", keys, wantHeaders)
			}
			subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
			if err != nil || subject != "certificate for "+hv.value {
				t.Fatalf("Subject decodes to %q (%v), want %q", subject, err, "certificate for "+hv.value)
			}
		})
	}
}

// TestPolicyInterpolationEmailRecipients: a recipient rendered from the
// CN cannot add a header or a recipient; a non-ASCII display name is
// encoded.
func TestPolicyInterpolationEmailRecipients(t *testing.T) {
	t.Parallel()
	server := testutil.StartSMTPServer(t, testutil.SMTPOptions{})
	def := parseWithMailer(t, server.Config(), oneStep(
		`  - id: tell`,
		`    uses: notify`,
		`    with:`,
		`      email: {to: ["${{ csr.CommonName }} <owner@example.com>"], subject: hi, body: hello}`,
	)...)
	for _, tc := range []struct {
		name, cn string
		refused  string // a permanent step error containing this; "" sends
	}{
		{name: "CR LF and a Bcc header", cn: "x\r\nBcc: evil@x", refused: "line break"},
		{name: "a NUL", cn: "x\x00y", refused: "control character"},
		{name: "a non-ASCII display name", cn: "Jörg Müller"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(server.Messages(t))
			env := envFor(t, defaultConfig(), workflow.Request{ID: 7}, newCSR(t, "P-256", tc.cn), nil)
			_, err := runStep(t, def, "tell", env, nil)
			msgs := server.Messages(t)[before:]
			if tc.refused != "" {
				var perm *workflow.PermanentError
				if !errors.As(err, &perm) || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("err = %v, want a permanent error containing %q", err, tc.refused)
				}
				if len(msgs) != 0 {
					t.Fatalf("%d messages sent, want none", len(msgs))
				}
				return
			}
			if err != nil || len(msgs) != 1 || !slices.Equal(msgs[0].To, []string{"owner@example.com"}) {
				t.Fatalf("Run: %v; messages %+v", err, msgs)
			}
			msg, err := mail.ReadMessage(strings.NewReader(msgs[0].Data))
			if err != nil {
				t.Fatal(err)
			}
			raw := msg.Header.Get("To")
			if !strings.HasPrefix(raw, "=?utf-8?") {
				t.Errorf("To %q: want the display name encoded (RFC 2047)", raw)
			}
			to, err := msg.Header.AddressList("To")
			if err != nil || len(to) != 1 || to[0].Name != tc.cn || to[0].Address != "owner@example.com" {
				t.Fatalf("To parses as %v (%v), want %q <owner@example.com>", to, err, tc.cn)
			}
		})
	}
}

// TestPolicyInterpolationLoadRefusals: what `certflow lint` and loading
// refuse, each at the place and naming the step and field, and what they
// still take.
func TestPolicyInterpolationLoadRefusals(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	for _, tc := range []struct {
		name string
		with []string // lines under `with:`
		want []string // "" : it loads
	}{
		{name: "a JSON object body spliced from a value", with: []string{`url: https://cmdb.example.com/x`, `body: '{"host": "${{ csr.CommonName }}"}'`},
			want: []string{"def.yaml:8:", "body:", "write the body as YAML"}},
		{name: "a JSON array body spliced from a value", with: []string{`url: https://cmdb.example.com/x`, `body: "  [\"${{ csr.CommonName }}\"]"`},
			want: []string{"def.yaml:8:", "body:"}},
		{name: "a value in the URL's query", with: []string{`url: "https://cmdb.example.com/owners?host=${{ csr.CommonName }}"`},
			want: []string{"def.yaml:7:", "url:", "query", "`query:`"}},
		{name: "a value in the URL's fragment", with: []string{`url: "https://cmdb.example.com/owners#${{ csr.CommonName }}"`},
			want: []string{"url:", "fragment"}},
		{name: "a value in the host", with: []string{`url: "https://${{ csr.CommonName }}/owners"`},
			want: []string{"url:", "host", "where the request goes"}},
		{name: "a value after the host, before any path", with: []string{`url: "https://cmdb.example.com${{ csr.CommonName }}/x"`},
			want: []string{"url:", "host"}},
		{name: "a value in the port", with: []string{`url: "https://cmdb.example.com:${{ request.ID }}/x"`},
			want: []string{"url:", "port"}},
		{name: "a whole URL from a value", with: []string{`url: "${{ request.CallbackUrl }}"`},
			want: []string{"url:", "host"}},
		{name: "a body key from a value", with: []string{`url: https://cmdb.example.com/x`, `body: {"${{ csr.CommonName }}": 1}`},
			want: []string{"body:", "key"}},
		{name: "a query name from a value", with: []string{`url: https://cmdb.example.com/x`, `query: {"${{ csr.CommonName }}": 1}`},
			want: []string{"query:", "parameter name"}},
		{name: "a query that is not a map", with: []string{`url: https://cmdb.example.com/x`, `query: "host=${{ csr.CommonName }}"`},
			want: []string{"query:", "map"}},
		{name: "user info around a path value", with: []string{`url: "https://u:p@cmdb.example.com/${{ csr.CommonName }}"`},
			want: []string{"url:", "user info"}},
		{name: "a body alias", with: []string{`url: https://cmdb.example.com/x`, `body: {a: &v "x", b: *v}`},
			want: []string{"body.b:", "alias"}},
		{name: "a misspelt field in a body leaf", with: []string{`url: https://cmdb.example.com/x`, `body: {host: "${{ csr.CN }}"}`},
			want: []string{"CN"}},

		{name: "a value in a path segment", with: []string{`url: "https://cmdb.example.com/owners/${{ csr.CommonName }}"`}},
		{name: "a literal JSON string body", with: []string{`url: https://cmdb.example.com/x`, `body: '{"fixed": true}'`}},
		{name: "a structured body and query", with: []string{`url: "https://cmdb.example.com/x?v=1"`, `query: {host: "${{ csr.CommonName }}"}`, `body: [{host: "${{ csr.CommonName }}", n: 1.5}]`}},
		{name: "a text body with a value", with: []string{`url: https://cmdb.example.com/x`, `body: "host ${{ csr.CommonName }}"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lines := []string{`  - id: call`, `    uses: http`, `    with:`}
			for _, l := range tc.with {
				lines = append(lines, `      `+l)
			}
			_, err := parse(cfg, oneStep(lines...)...)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			wantLoadError(t, err, 0, "call", tc.want...)
		})
	}
}

// TestPolicyInterpolationWebhookURL: a notify webhook follows the http
// step's URL rule, except that one expression may give the whole URL (the
// request's own CallbackUrl).
func TestPolicyInterpolationWebhookURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		webhook, want string
	}{
		{`"https://hooks.example.com/pki?to=${{ csr.CommonName }}"`, "query"},
		{`"https://${{ csr.CommonName }}.example.com/pki"`, "host"},
		{`"https://hooks.example.com/pki/${{ csr.CommonName }}"`, ""},
		{`"${{ request.CallbackUrl }}"`, ""},
	} {
		_, err := parse(defaultConfig(), oneStep(`  - id: tell`, `    uses: notify`, `    with:`, `      webhook: `+tc.webhook)...)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("webhook %s: %v, want it to load", tc.webhook, err)
		case tc.want != "":
			wantLoadError(t, err, 7, "tell", "webhook:", tc.want)
		}
	}
}

// TestPolicyInterpolationHeaders: a header value that would hold a line
// break fails the step for good, and nothing is sent.
func TestPolicyInterpolationHeaders(t *testing.T) {
	t.Parallel()
	srv, got := capturingServer(t)
	def := parseWithHTTP(t, true,
		`  - id: call`,
		`    uses: http`,
		`    with:`,
		`      url: "`+srv.URL+`/x"`,
		`      headers: {X-Host: "${{ csr.CommonName }}"}`,
	)
	for _, cn := range []string{"a\r\nX-Admin: yes", "a\nX-Admin: yes", "a\x00b"} {
		_, err := runStep(t, def, "call", envFor(t, defaultConfig(), workflow.Request{ID: 7}, newCSR(t, "P-256", cn), nil), nil)
		var perm *workflow.PermanentError
		if !errors.As(err, &perm) || !strings.Contains(err.Error(), "headers.X-Host") {
			t.Errorf("CN %q: err = %v, want a permanent error naming headers.X-Host", cn, err)
		}
	}
	if n := len(got()); n != 0 {
		t.Fatalf("%d calls, want none", n)
	}
}

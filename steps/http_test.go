package steps_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

func parseWithHTTP(t *testing.T, allowPrivate bool, lines ...string) *workflow.Definition {
	t.Helper()
	cfg := defaultConfig()
	cfg.Callbacks.AllowPrivate = allowPrivate
	types := steps.ForLint(cfg)
	types.HTTP.Client = callback.NewClient(allowPrivate, 5*time.Second)
	def, err := workflow.Parse("def.yaml", []byte(strings.Join(oneStep(lines...), "\n")+"\n"), types.Catalog())
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return def
}

type recorded struct {
	method, path, auth, contentType, body string
}

func server(t *testing.T, status int, contentType, answer string) (*httptest.Server, func() []recorded) {
	var mu sync.Mutex
	var got []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, recorded{r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b)})
		mu.Unlock()
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []recorded { mu.Lock(); defer mu.Unlock(); return append([]recorded(nil), got...) }
}

func TestHTTPStepSendsTemplatesAndReturnsTheJSONAnswer(t *testing.T) {
	t.Parallel()
	srv, got := server(t, 200, "application/json", `{"owner": {"email": "web@example.com"}, "count": 2}`)
	def := parseWithHTTP(t, true,
		`  - id: owner`,
		`    uses: http`,
		`    with:`,
		`      method: post`,
		`      url: "`+srv.URL+`/lookup/${{ csr.CommonName }}"`,
		`      headers: {Authorization: "Bearer ${{ request.Template }}-token"}`,
		`      body: {cn: "${{ csr.CommonName }}", bits: "${{ csr.KeyBits }}", label: "cn=${{ csr.CommonName }}", fixed: [1, true, null, "x"]}`,
	)
	env := envFor(t, defaultConfig(), workflow.Request{ID: 7, Template: "WebServer"}, newCSR(t, "P-256", "www.example.com"), nil)
	res, err := runStep(t, def, "owner", env, nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := got()
	if len(calls) != 1 {
		t.Fatalf("%d calls", len(calls))
	}
	c := calls[0]
	if c.method != "POST" || c.path != "/lookup/www.example.com" || c.auth != "Bearer WebServer-token" ||
		c.body != `{"cn":"www.example.com","bits":256,"label":"cn=www.example.com","fixed":[1,true,null,"x"]}` || c.contentType != "application/json" {
		t.Fatalf("request sent: %+v", c)
	}
	if res.Outputs["status"] != 200 {
		t.Fatalf("status output %v", res.Outputs["status"])
	}
	body, _ := res.Outputs["body"].(map[string]any)
	owner, _ := body["owner"].(map[string]any)
	if owner["email"] != "web@example.com" {
		t.Fatalf("body output %#v", res.Outputs["body"])
	}
}

func TestHTTPStepFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		status    int
		expect    string
		permanent bool
	}{
		{"5xx is retryable", 503, "", false},
		{"429 is retryable", 429, "", false},
		{"4xx is not", 404, "", true},
		{"a 2xx outside expect is not", 201, "      expect: [200]", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := server(t, tc.status, "text/plain", "nope")
			lines := []string{`  - id: call`, `    uses: http`, `    with:`, `      url: ` + srv.URL + `/x?token=secret`}
			if tc.expect != "" {
				lines = append(lines, tc.expect)
			}
			def := parseWithHTTP(t, true, lines...)
			_, err := runStep(t, def, "call", envFor(t, defaultConfig(), workflow.Request{ID: 7}, newCSR(t, "P-256", "a.example.com"), nil), nil)
			var perm *workflow.PermanentError
			if err == nil || errors.As(err, &perm) != tc.permanent {
				t.Fatalf("err = %v; permanent = %v, want %v", err, errors.As(err, &perm), tc.permanent)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("the query string (a token) reached the error: %v", err)
			}
		})
	}
}

func TestHTTPStepRefusesPrivateAddressesUnlessAllowed(t *testing.T) {
	t.Parallel()
	srv, got := server(t, 200, "application/json", `{}`)
	def := parseWithHTTP(t, false, `  - id: call`, `    uses: http`, `    with: {url: "`+srv.URL+`"}`)
	_, err := runStep(t, def, "call", envFor(t, defaultConfig(), workflow.Request{ID: 7}, newCSR(t, "P-256", "a.example.com"), nil), nil)
	if err == nil || !errors.Is(err, callback.ErrForbiddenAddress) {
		t.Fatalf("err = %v, want ErrForbiddenAddress", err)
	}
	if len(got()) != 0 {
		t.Fatal("the private address was called")
	}
}

func TestHTTPAndSetLoadErrors(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"http without url", []string{`  - id: c`, `    uses: http`, `    with: {method: GET}`}, "url: required"},
		{"http with an unknown method", []string{`  - id: c`, `    uses: http`, `    with: {url: "https://x.example.com", method: TRACE}`}, `method: "TRACE"`},
		{"http with a literal non-http url", []string{`  - id: c`, `    uses: http`, `    with: {url: "file:///etc/passwd"}`}, `scheme "file"`},
		{"http with a misspelt field in the url", []string{`  - id: c`, `    uses: http`, `    with: {url: "https://x/${{ csr.CN }}"}`}, `CN`},
		{"http with an unknown key", []string{`  - id: c`, `    uses: http`, `    with: {url: "https://x.example.com", verb: GET}`}, `unknown key "verb"`},
		{"http with a bad expect", []string{`  - id: c`, `    uses: http`, `    with: {url: "https://x.example.com", expect: [999]}`}, `expect: 999`},
		{"set without variables", []string{`  - id: s`, `    uses: set`}, "at least one variable"},
		{"set with a bad name", []string{`  - id: s`, `    uses: set`, `    with: {"my-var": "1"}`}, `variable name "my-var"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(cfg, oneStep(tc.lines...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestSetStepComputesTypedVars(t *testing.T) {
	t.Parallel()
	def := mustParse(t, defaultConfig(), oneStep(
		`  - id: s`, `    uses: set`, `    with:`,
		`      bits: "${{ csr.KeyBits }}"`,
		`      label: "${{ csr.CommonName }}-${{ csr.KeyType }}"`,
		`      high: "${{ csr.KeyBits >= 384 }}"`,
	)...)
	res, err := runStep(t, def, "s", envFor(t, defaultConfig(), workflow.Request{ID: 7}, newCSR(t, "P-256", "w.example.com"), nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Vars["bits"] != 256 || res.Vars["label"] != "w.example.com-ECC" || res.Vars["high"] != false {
		t.Fatalf("vars = %#v", res.Vars)
	}
}

func TestHTTPStepQueryEncodesAndRepeatsListValues(t *testing.T) {
	t.Parallel()
	srv, got := server(t, 200, "application/json", `{}`)
	def := parseWithHTTP(t, true,
		`  - id: q`,
		`    uses: http`,
		`    with:`,
		`      url: "`+srv.URL+`/search?fixed=1"`,
		`      query: {san: "${{ sans.DNS }}", cn: "${{ csr.CommonName }}", empty: "${{ nil }}"}`,
	)
	env := envFor(t, defaultConfig(), workflow.Request{ID: 7}, newCSR(t, "P-256", "a b.example.com", "x.example.com", "y.example.com"), nil)
	if _, err := runStep(t, def, "q", env, nil); err != nil {
		t.Fatal(err)
	}
	calls := got()
	if len(calls) != 1 {
		t.Fatalf("%d calls", len(calls))
	}
	if want := "/search?fixed=1&san=x.example.com&san=y.example.com&cn=a+b.example.com&empty="; calls[0].path != want {
		t.Fatalf("request URI %q, want %q", calls[0].path, want)
	}
}

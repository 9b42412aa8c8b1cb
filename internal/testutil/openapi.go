package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/certflow/certflow/internal/api"
)

// The contract check: every request Do makes and every answer it gets are
// validated against certflow's OpenAPI document (GET /openapi.json), so
// the document cannot drift from what the end-to-end suite exercises.
//
// Answers are always validated: an undocumented status, a body or header
// the document does not describe fails the test that made the call.
// Requests are validated only when certflow accepted them (2xx): a
// refused request may be deliberately bad (the bad-input tests), and its
// refusal is validated like any answer; an accepted request the document
// would call invalid means the document is wrong (or the server too lax).
// Benchmarks are not checked: the check would count in their timings.

// Contract is certflow's OpenAPI document, loaded and validated once.
var Contract = sync.OnceValues(func() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI())
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	openapi3filter.RegisterBodyDecoder("application/pkix-crl", openapi3filter.FileBodyDecoder)
	return doc, nil
})

// CheckContract validates one exchange (Do makes it for each of its own;
// a test with a client of its own calls it) against the document.
func CheckContract(t testing.TB, req *http.Request, reqBody []byte, resp *Response) {
	t.Helper()
	if _, bench := t.(*testing.B); bench {
		return
	}
	doc, err := Contract()
	if err != nil {
		t.Fatalf("the OpenAPI document: %v", err)
	}
	call := req.Method + " " + req.URL.Path
	route, params, methods := findRoute(doc, req.Method, req.URL.Path)
	if route == nil {
		checkUnrouted(t, doc, call, methods, resp)
		return
	}
	op := route.Method + " " + route.Path + " (" + route.Operation.OperationID + ")"
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	in := &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{
			MultiError:         true,
			AuthenticationFunc: func(context.Context, *openapi3filter.AuthenticationInput) error { return nil },
		},
	}
	if resp.Status/100 == 2 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s: certflow accepted (%d) a request the OpenAPI document's operation %s calls invalid: %v\nbody: %.500s", call, resp.Status, op, err, reqBody)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.Status, Header: resp.Header,
		Body:    io.NopCloser(bytes.NewReader(resp.Body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s: answer %d does not match the OpenAPI document's operation %s: %v\nbody: %.500s", call, resp.Status, op, err, resp.Body)
		return
	}
	if doc := route.Operation.Responses.Status(resp.Status); doc != nil && len(doc.Value.Content) == 0 && len(resp.Body) > 0 {
		t.Errorf("%s: answer %d has a body the OpenAPI document's operation %s does not describe: %.500s", call, resp.Status, op, resp.Body)
	}
}

// checkUnrouted validates an answer to a path or method the document does
// not describe: certflow serves neither, so it must answer 404 (no such
// path) or 405 (no such method on it) in Keyfactor's error shape.
func checkUnrouted(t testing.TB, doc *openapi3.T, call string, methods bool, resp *Response) {
	t.Helper()
	want := http.StatusNotFound
	if methods {
		want = http.StatusMethodNotAllowed
	}
	if resp.Status != want {
		t.Errorf("%s: not in the OpenAPI document, yet answered %d (want %d): %.500s", call, resp.Status, want, resp.Body)
		return
	}
	if resp.Header.Get(api.RequestIDHeader) == "" {
		t.Errorf("%s: answer %d without %s", call, resp.Status, api.RequestIDHeader)
	}
	var v any
	if err := json.Unmarshal(resp.Body, &v); err != nil {
		t.Errorf("%s: answer %d is not JSON: %.500s", call, resp.Status, resp.Body)
		return
	}
	if err := doc.Components.Schemas["Error"].Value.VisitJSON(v); err != nil {
		t.Errorf("%s: answer %d is not in Keyfactor's error shape: %v", call, resp.Status, err)
	}
}

// findRoute finds the document's operation for method and path as
// certflow routes them: under /KeyfactorAPI too, without regard to case,
// a literal segment before a parameter. Without one, methods says whether
// the path is documented for other methods.
func findRoute(doc *openapi3.T, method, path string) (route *routers.Route, params map[string]string, methods bool) {
	if rest, ok := cutPrefixFold(path, "/KeyfactorAPI"); ok && (rest == "" || rest[0] == '/') {
		path = rest
	}
	if method == http.MethodHead {
		method = http.MethodGet
	}
	segs := strings.Split(path, "/")
	best := -1
	for tmpl, item := range doc.Paths.Map() {
		p, literals := match(strings.Split(tmpl, "/"), segs)
		if p == nil {
			continue
		}
		op := item.GetOperation(method)
		if op == nil {
			methods = true
			continue
		}
		if literals > best {
			best, params = literals, p
			route = &routers.Route{Spec: doc, Path: tmpl, PathItem: item, Method: method, Operation: op}
		}
	}
	return route, params, methods
}

// match matches a path's segments to a template's, returning the
// parameters (nil: no match) and how many segments matched literally.
func match(tmpl, segs []string) (map[string]string, int) {
	if len(tmpl) != len(segs) {
		return nil, 0
	}
	params, literals := map[string]string{}, 0
	for i, s := range tmpl {
		switch {
		case strings.HasPrefix(s, "{") && segs[i] != "":
			params[strings.Trim(s, "{}")] = segs[i]
		case strings.EqualFold(s, segs[i]):
			literals++
		default:
			return nil, 0
		}
	}
	return params, literals
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

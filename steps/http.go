package steps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/redact"
	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// HTTP is the http step type: it calls an external REST endpoint. The answer
// becomes the step's outputs: steps.<id>.status, and steps.<id>.body — the
// decoded JSON when the answer is JSON, else the text. An answer outside
// `expect` (default: any 2xx) is a failure: 5xx, 408 and 429 are retried per
// the step's retry policy, other statuses are not. Addresses in private
// ranges are refused unless callbacks.allow_private.
//
// Values never change the shape of what is sent. In url, ${{ }} may fill
// path segments only, each value escaped as one segment (url.PathEscape),
// never the scheme, host, port, query or fragment. query maps parameter
// names to templates; certflow URL-encodes each value and appends it to
// the URL's own query. A body written as a YAML map or list is sent as
// JSON that certflow encodes: a leaf that is one ${{ expr }} keeps the
// expression's type, a leaf that mixes text and ${{ }} is a string. A
// string body is a template sent as text, but one that looks like JSON may
// not embed ${{ }}: a value could close its string and add keys. A header
// whose value holds a line break fails the step.
//
//	uses: http
//	with:
//	  method: POST
//	  url: https://cmdb.example.com/owners/lookup
//	  query: {zone: "${{ request.AdditionalEnrollmentFields['Zone'] }}"}
//	  headers: {Authorization: "Bearer ${{ vars.cmdb_token }}"}
//	  body: {host: "${{ csr.CommonName }}", bits: "${{ csr.KeyBits }}"}
//	  expect: [200]
//	timeout: 10s
//	retry: {attempts: 3, backoff: 2s}
type HTTP struct {
	// Client makes the calls (callback.NewClient: it refuses private
	// addresses as it dials, unless allowed).
	Client *http.Client
	// AllowPrivate is callbacks.allow_private: the URL may name a private
	// address.
	AllowPrivate bool
}

type httpWith struct {
	Method  string               `yaml:"method"`
	URL     yaml.Node            `yaml:"url"`
	Query   yaml.Node            `yaml:"query"`
	Headers map[string]yaml.Node `yaml:"headers"`
	Body    yaml.Node            `yaml:"body"`
	Expect  []int                `yaml:"expect"`
}

// maxHTTPAnswer bounds what the http step reads of an answer.
const maxHTTPAnswer = 1 << 20

var httpMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}

// queryParam is one compiled `query:` entry.
type queryParam struct {
	name  string
	value *workflow.Template
}

// Build implements workflow.Builder.
func (h HTTP) Build(spec *workflow.Spec) (workflow.Step, error) {
	var w httpWith
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	// Every problem is reported, not only the first: lint shows them all.
	var errs []error
	at := func(key string) *yaml.Node {
		if n := workflow.MapValue(spec.With, key); n != nil {
			return n
		}
		return spec.With
	}
	method := strings.ToUpper(w.Method)
	if method == "" {
		method = "GET"
	}
	if !slices.Contains(httpMethods, method) {
		errs = append(errs, spec.Errorf(at("method"), "method: %q (want one of %s)", w.Method, strings.Join(httpMethods, ", ")))
	}
	var target *urlTemplate
	var err error
	if w.URL.Kind != yaml.ScalarNode || w.URL.Value == "" {
		errs = append(errs, spec.Errorf(spec.With, "url: required"))
	} else if target, err = compileURL(spec, &w.URL, "url", false); err != nil {
		errs = append(errs, err)
	}
	query, err := compileQuery(spec, &w.Query)
	if err != nil {
		errs = append(errs, err)
	}
	headers := make(map[string]*workflow.Template, len(w.Headers))
	for _, name := range sortedNames(w.Headers) {
		node := w.Headers[name]
		t, err := spec.Template(node.Value, &node)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		headers[http.CanonicalHeaderKey(name)] = t
	}
	var text *workflow.Template // a string body
	jsonText := false           // …written as a JSON literal
	var data bodyValue          // a structured body
	switch w.Body.Kind {
	case 0:
	case yaml.ScalarNode:
		if w.Body.Tag == "!!null" {
			break
		}
		if text, err = spec.Template(w.Body.Value, &w.Body); err != nil {
			errs = append(errs, err)
			break
		}
		// The content type follows the body as written, never a value:
		// a value that reads as JSON is still text.
		jsonText = looksJSON(w.Body.Value)
		if jsonText && !text.IsLiteral() {
			errs = append(errs, spec.Errorf(&w.Body, "body: a JSON body written as a string may not embed ${{ }} (a value holding a quote would close its string and add keys); write the body as YAML, e.g. body: {host: \"${{ csr.CommonName }}\"}, and certflow encodes the JSON"))
		}
	default:
		if data, err = compileBody(spec, &w.Body, "body"); err != nil {
			errs = append(errs, err)
		}
	}
	for _, code := range w.Expect {
		if code < 100 || code > 599 {
			errs = append(errs, spec.Errorf(at("expect"), "expect: %d is not an HTTP status", code))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return stepFunc(func(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
		dest, err := target.render(run.Env)
		if err != nil {
			return workflow.Result{}, workflow.Permanent(fmt.Errorf("url: %w", err))
		}
		pairs, err := query.render(run.Env)
		if err != nil {
			return workflow.Result{}, workflow.Permanent(err)
		}
		if dest, err = appendQuery(dest, pairs); err != nil {
			return workflow.Result{}, workflow.Permanent(fmt.Errorf("url: %w", err))
		}
		// What logs, errors and steps.<id>.error may show of the target.
		shown := method + " " + redact.URL(dest)
		if err := callback.CheckURL(dest, h.AllowPrivate); err != nil {
			return workflow.Result{}, workflow.Permanent(fmt.Errorf("%s: %w", shown, err))
		}
		var rd io.Reader
		contentType := ""
		switch {
		case text != nil:
			s, err := text.String(run.Env)
			if err != nil {
				return workflow.Result{}, workflow.Permanent(fmt.Errorf("body: %w", err))
			}
			if jsonText {
				contentType = "application/json"
			}
			rd = strings.NewReader(s)
		case data != nil:
			v, err := data.eval(run.Env)
			if err != nil {
				return workflow.Result{}, workflow.Permanent(fmt.Errorf("body: %w", err))
			}
			b, err := json.Marshal(v)
			if err != nil {
				return workflow.Result{}, workflow.Permanent(fmt.Errorf("body: %w", err))
			}
			contentType = "application/json"
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, dest, rd)
		if err != nil {
			return workflow.Result{}, workflow.Permanent(fmt.Errorf("%s: %w", shown, redact.Error(err)))
		}
		req.Header.Set("User-Agent", "certflow")
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for name, t := range headers {
			v, err := t.String(run.Env)
			if err != nil {
				return workflow.Result{}, workflow.Permanent(fmt.Errorf("headers.%s: %w", name, err))
			}
			if strings.ContainsAny(v, "\r\n\x00") {
				return workflow.Result{}, workflow.Permanent(fmt.Errorf("headers.%s: the value holds a line break or NUL", name))
			}
			req.Header.Set(name, v)
		}
		resp, err := h.Client.Do(req)
		if err != nil {
			// The client's *url.Error repeats the URL, query and all: keep
			// only its cause, after shown.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return workflow.Result{}, fmt.Errorf("%s: %w", shown, redact.Error(err))
		}
		defer resp.Body.Close()
		answer, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPAnswer+1))
		if err != nil {
			return workflow.Result{}, fmt.Errorf("%s: read answer: %w", shown, redact.Error(err))
		}
		if len(answer) > maxHTTPAnswer {
			return workflow.Result{}, workflow.Permanent(fmt.Errorf("%s: answer larger than %d bytes", shown, maxHTTPAnswer))
		}
		out := map[string]any{"status": resp.StatusCode, "body": decodeAnswer(resp.Header.Get("Content-Type"), answer)}
		ok := resp.StatusCode >= 200 && resp.StatusCode < 300
		if len(w.Expect) > 0 {
			ok = slices.Contains(w.Expect, resp.StatusCode)
		}
		if !ok {
			err := fmt.Errorf("%s answered %d", shown, resp.StatusCode)
			if resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
				err = workflow.Permanent(err)
			}
			return workflow.Result{}, err
		}
		return workflow.Result{Outputs: out}, nil
	}), nil
}

// looksJSON reports whether a string body reads as a JSON object or array.
func looksJSON(s string) bool {
	s = strings.TrimSpace(s)
	return strings.HasPrefix(s, "{") || strings.HasPrefix(s, "[")
}

// decodeAnswer returns JSON answers decoded, anything else as text.
func decodeAnswer(contentType string, data []byte) any {
	if strings.Contains(contentType, "json") || json.Valid(bytes.TrimSpace(data)) && len(bytes.TrimSpace(data)) > 0 {
		var v any
		if err := json.Unmarshal(data, &v); err == nil {
			return v
		}
	}
	return string(data)
}

package steps

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// http calls an external REST endpoint. url, headers and body may embed
// ${{ }}. The answer becomes the step's outputs: steps.<id>.status, and
// steps.<id>.body — the decoded JSON when the answer is JSON, else the text.
// An answer outside `expect` (default: any 2xx) is a failure: 5xx, 408 and
// 429 are retried per the step's retry policy, other statuses are not.
// Addresses in private ranges are refused unless callbacks.allow_private.
//
//	uses: http
//	with:
//	  method: POST
//	  url: https://cmdb.example.com/owners/lookup
//	  headers: {Authorization: "Bearer ${{ vars.cmdb_token }}"}
//	  body: '{"host": "${{ csr.CommonName }}"}'
//	  expect: [200]
//	timeout: 10s
//	retry: {attempts: 3, backoff: 2s}
type httpWith struct {
	Method  string               `yaml:"method"`
	URL     yaml.Node            `yaml:"url"`
	Headers map[string]yaml.Node `yaml:"headers"`
	Body    yaml.Node            `yaml:"body"`
	Expect  []int                `yaml:"expect"`
}

// maxHTTPAnswer bounds what the http step reads of an answer.
const maxHTTPAnswer = 1 << 20

var httpMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}

func (d *Deps) buildHTTP(spec *workflow.Spec) (workflow.Step, error) {
	var w httpWith
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	method := strings.ToUpper(w.Method)
	if method == "" {
		method = "GET"
	}
	if !slices.Contains(httpMethods, method) {
		return nil, spec.Errorf(spec.With, "method: %q (want one of %s)", w.Method, strings.Join(httpMethods, ", "))
	}
	if w.URL.Kind != yaml.ScalarNode || w.URL.Value == "" {
		return nil, spec.Errorf(spec.With, "url: required")
	}
	url, err := spec.Template(w.URL.Value, &w.URL)
	if err != nil {
		return nil, err
	}
	if url.IsLiteral() {
		if err := callback.CheckURL(url.Source, true); err != nil {
			return nil, spec.Errorf(&w.URL, "url: %v", err)
		}
	}
	headers := make(map[string]*workflow.Template, len(w.Headers))
	for _, name := range sortedNames(w.Headers) {
		node := w.Headers[name]
		t, err := spec.Template(node.Value, &node)
		if err != nil {
			return nil, err
		}
		headers[http.CanonicalHeaderKey(name)] = t
	}
	var body *workflow.Template
	if w.Body.Kind != 0 {
		if w.Body.Kind != yaml.ScalarNode {
			return nil, spec.Errorf(&w.Body, "body: want a string (may embed ${{ }})")
		}
		if body, err = spec.Template(w.Body.Value, &w.Body); err != nil {
			return nil, err
		}
	}
	for _, code := range w.Expect {
		if code < 100 || code > 599 {
			return nil, spec.Errorf(spec.With, "expect: %d is not an HTTP status", code)
		}
	}
	return stepFunc(func(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
		target, err := url.String(run.Env)
		if err != nil {
			return workflow.Result{}, workflow.Permanent(fmt.Errorf("url: %w", err))
		}
		if err := callback.CheckURL(target, d.Config.Callbacks.AllowPrivate); err != nil {
			return workflow.Result{}, workflow.Permanent(fmt.Errorf("url: %w", err))
		}
		var rd io.Reader
		var text string
		if body != nil {
			if text, err = body.String(run.Env); err != nil {
				return workflow.Result{}, workflow.Permanent(fmt.Errorf("body: %w", err))
			}
			rd = strings.NewReader(text)
		}
		req, err := http.NewRequestWithContext(ctx, method, target, rd)
		if err != nil {
			return workflow.Result{}, workflow.Permanent(err)
		}
		req.Header.Set("User-Agent", "certflow")
		if t := strings.TrimSpace(text); strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
			req.Header.Set("Content-Type", "application/json")
		}
		for name, t := range headers {
			v, err := t.String(run.Env)
			if err != nil {
				return workflow.Result{}, workflow.Permanent(fmt.Errorf("headers.%s: %w", name, err))
			}
			req.Header.Set(name, v)
		}
		resp, err := d.HTTP.Do(req)
		if err != nil {
			return workflow.Result{}, fmt.Errorf("%s %s: %w", method, redactQuery(target), err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPAnswer+1))
		if err != nil {
			return workflow.Result{}, fmt.Errorf("%s %s: read answer: %w", method, redactQuery(target), err)
		}
		if len(data) > maxHTTPAnswer {
			return workflow.Result{}, workflow.Permanent(fmt.Errorf("%s %s: answer larger than %d bytes", method, redactQuery(target), maxHTTPAnswer))
		}
		out := map[string]any{"status": resp.StatusCode, "body": decodeAnswer(resp.Header.Get("Content-Type"), data)}
		ok := resp.StatusCode >= 200 && resp.StatusCode < 300
		if len(w.Expect) > 0 {
			ok = slices.Contains(w.Expect, resp.StatusCode)
		}
		if !ok {
			err := fmt.Errorf("%s %s answered %d", method, redactQuery(target), resp.StatusCode)
			if resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
				err = workflow.Permanent(err)
			}
			return workflow.Result{}, err
		}
		return workflow.Result{Outputs: out}, nil
	}), nil
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

// redactQuery keeps query strings (which may carry tokens) out of errors
// and logs.
func redactQuery(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}

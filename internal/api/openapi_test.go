package api_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/certflow/certflow/internal/testutil"
)

// TestOpenAPIDocumentIsValidOpenAPI: the document loads and validates as
// OpenAPI 3 (every $ref resolves, every schema is well-formed).
func TestOpenAPIDocumentIsValidOpenAPI(t *testing.T) {
	doc, err := testutil.Contract()
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("OpenAPI %s: %v", doc.OpenAPI, err)
	}
}

// TestOpenAPIDocumentsEveryRouteServed: the operations of GET
// /openapi.json (public: it describes no data) are exactly the endpoints
// the server lists in /Status/Endpoints, and each needs credentials
// exactly when the document says it does (an anonymous call answers 401).
func TestOpenAPIDocumentsEveryRouteServed(t *testing.T) {
	cf := testutil.StartCertflow(t, nil)
	resp := cf.Do(t, "GET", "/openapi.json", nil, "Authorization", "")
	if resp.Status != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json without credentials: %d %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Security *[]any `json:"security"`
		} `json:"paths"`
	}
	resp.JSON(t, &doc)
	documented := map[string]bool{} // operation → public
	for path, item := range doc.Paths {
		for method, op := range item {
			documented[strings.ToUpper(method)+" "+path] = op.Security != nil && len(*op.Security) == 0
		}
	}
	var served []string
	cf.Do(t, "GET", "/Status/Endpoints", nil).JSON(t, &served)
	var pending []string // documented operations not served yet
	for _, e := range served {
		public, ok := documented[e]
		if !ok {
			t.Errorf("%s is served but not in the OpenAPI document", e)
			continue
		}
		if slices.Contains(pending, e) {
			t.Errorf("%s is served now: remove it from this test's pending list", e)
		}
		method, path, _ := strings.Cut(e, " ")
		path = strings.NewReplacer("{id}", "1", "{ca}", "x", "{name}", "x").Replace(path)
		got := cf.Do(t, method, path, nil, "Authorization", "").Status
		if (got == http.StatusUnauthorized) == public {
			t.Errorf("%s: anonymous call answered %d, yet the document says public=%v", e, got, public)
		}
	}
	for e := range documented {
		if !slices.Contains(served, e) && !slices.Contains(pending, e) {
			t.Errorf("%s is in the OpenAPI document but not served", e)
		}
	}
	if len(served) < 40 {
		t.Errorf("only %d endpoints served?", len(served))
	}
}

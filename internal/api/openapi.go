package api

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/dryrun"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/workflow"
)

// The contract: GET /openapi.json is an OpenAPI 3.0 document of every
// endpoint certflow serves, built here from the operations table below and
// the Go types the handlers read and write (openapi_schema.go), so the
// shapes cannot drift from the code; a test holds the table to the
// server's routes both ways, and the end-to-end suite validates every
// request and answer it makes against the document
// (internal/testutil/openapi.go).

// operation documents one route, keyed by its pattern in New.
type operation struct {
	summary string
	public  bool // no credentials (New registers it with s.public)
	// signed: no credentials but a Standard Webhooks signature (New
	// registers it with s.public; the handler checks the signature).
	signed bool
	roles  []string // a role the caller needs beyond authentication (admin holds all)
	params []string // names in components.parameters, beyond X-Request-Id
	// pathSchema is the path parameter's schema (nil: a positive integer).
	pathSchema map[string]any
	body       any  // a value of the request body's Go type; nil: none
	optional   bool // the body may be left out
	answers    []answer
	refusals   []int // statuses beyond those derived in refusalsOf
}

// answer is one successful answer of an operation.
type answer struct {
	status  int
	body    any    // a value of its Go type; nil: no body
	media   string // "" is JSON
	headers []string
	desc    string
}

// Common answers.
func ok(body any) []answer { return []answer{{status: http.StatusOK, body: body}} }

var noContent = []answer{{status: http.StatusNoContent, desc: "Done; no body."}}

// submitted answers a submit: 200 once the workflow settled within the
// wait (ISSUED, PENDING, DENIED, FAILED), else 202 with Location to poll.
func submitted(body any) []answer {
	return []answer{
		{status: http.StatusOK, body: body, desc: "The request settled within the wait (ISSUED, PENDING, DENIED or FAILED)."},
		{status: http.StatusAccepted, body: body, headers: []string{"Location", "Retry-After"}, desc: "Accepted and still running (QUEUED or RUNNING): poll Location (GET /Enrollment/Requests/{id}). (certflow)"},
	}
}

// Parameter lists.
var (
	paging      = []string{"pageReturned", "returnLimit", "queryString"}
	renderQuery = []string{"includeMetadata", "includeHasPrivateKey", "includeLocations", "verbose", "collectionId"}
	submitHdrs  = []string{"Prefer", "IdempotencyKey"}
	anyString   = map[string]any{"type": "string"}
)

// operations is every route of New, documented.
var operations = map[string]operation{
	"GET /healthz": {summary: "Liveness: the process answers. (certflow)", public: true, answers: ok(map[string]string{})},
	"GET /readyz":  {summary: "Readiness: Redis answers. Public: orchestrators probe it; it says ready or not, nothing else. (certflow)", public: true, answers: []answer{{status: http.StatusOK, body: map[string]string{}}, {status: http.StatusServiceUnavailable, body: map[string]string{}, desc: "Not ready: Redis does not answer."}}},
	"GET /openapi.json": {summary: "This document. Public: it describes the API, no data. (certflow)", public: true,
		answers: []answer{{status: http.StatusOK, body: map[string]any{}}}},
	"GET /Status": {summary: "Where records are kept (a Redis configured, the redis-server certflow runs, or in-memory) and what a restart loses. (certflow)",
		answers: ok(StatusResponse{})},
	"GET /Status/Endpoints": {summary: "The endpoints served, as \"METHOD /path\"; Keyfactor's clients call it as their login check.",
		answers: []answer{{status: http.StatusOK, body: []string{}, headers: []string{"ProductVersion"}}}},
	"POST /Enrollment/CSR": {summary: "Enroll a CSR; a workflow decides, approvals may hold it.", roles: []string{config.RoleRequester},
		params: append([]string{"forceEnroll", "CertificateFormatRequired"}, submitHdrs...), body: keyfactor.EnrollmentCSRRequest{},
		answers: submitted(keyfactor.EnrollmentResponse{}), refusals: []int{http.StatusNotFound, http.StatusConflict}},
	"POST /Enrollment/CSR/Parse": {summary: "The subject's Name=Value parts and the SANs of a CSR.", body: CSRParseRequest{}, answers: ok([]string{})},
	"POST /Enrollment/Renew": {summary: "Renew a certificate (its retained key, or a new CSR) through the renewal workflow.", roles: []string{config.RoleRequester},
		params: append([]string{"CertificateFormat"}, submitHdrs...), body: keyfactor.RenewalRequest{},
		answers: submitted(keyfactor.RenewalResponse{}), refusals: []int{http.StatusNotFound, http.StatusConflict}},
	"GET /Enrollment/Requests/{id}": {summary: "One request: disposition, step timeline, decisions, callbacks, certificate. (certflow)",
		params: []string{"CertificateFormat"}, answers: ok(keyfactor.RequestStatus{})},
	"GET /Enrollment/CSR/Context/My": {summary: "The templates this caller may enroll with, their CAs and policy.", answers: ok(keyfactor.CSRContext{})},
	"GET /Enrollment/PFX/Context/My": {summary: "As /Enrollment/CSR/Context/My: every template allows both.", answers: ok(keyfactor.CSRContext{})},
	"GET /Templates":                 {summary: "The configured templates and their policy.", answers: ok([]keyfactor.Template{})},
	"GET /Templates/{id}":            {summary: "One template, by its position from 1.", answers: ok(keyfactor.Template{})},
	"GET /CertificateAuthority":      {summary: "The CAs, with their chain (certflow).", answers: ok([]keyfactor.CertificateAuthority{})},
	"GET /CertificateAuthority/{id}": {summary: "One CA, by its position from 1.", answers: ok(keyfactor.CertificateAuthority{})},
	"GET /MetadataFields":            {summary: "The metadata field definitions.", answers: ok([]keyfactor.MetadataField{})},
	"GET /MetadataFields/{id}": {summary: "One metadata field, by its position from 1 or by its name.", pathSchema: anyString,
		answers: ok(keyfactor.MetadataField{})},
	"GET /Security/Roles": {summary: "The security roles an owner (OwnerRoleId, OwnerRoleName) can name; queryString on Id and Name.", params: paging,
		answers: ok([]keyfactor.SecurityRole{})},
	"GET /Security/Roles/{id}": {summary: "One security role.", answers: ok(keyfactor.SecurityRole{})},
	"POST /Enrollment/PFX": {summary: "Enroll with a key generated inside the workflow; answers a password-protected PKCS#12.", roles: []string{config.RoleRequester},
		params: append([]string{"CertificateFormatPFX"}, submitHdrs...), body: keyfactor.EnrollmentPFXRequest{},
		answers: submitted(keyfactor.PFXEnrollmentResponse{}), refusals: []int{http.StatusNotFound, http.StatusConflict}},
	"POST /CSRGeneration/Generate": {summary: "Generate a key and CSR here; the key is kept sealed as a pending CSR.", roles: []string{config.RoleRequester},
		body: keyfactor.CSRGenerationRequest{}, answers: ok(keyfactor.CSRContents{}), refusals: []int{http.StatusConflict}},
	"GET /CSRGeneration/Pending":         {summary: "The caller's pending CSRs (an administrator's: all).", params: paging, answers: ok([]keyfactor.PendingCSRResponse{})},
	"DELETE /CSRGeneration/Pending":      {summary: "Delete pending CSRs by id: all of them, or none.", body: []int64{}, answers: noContent, refusals: []int{http.StatusNotFound}},
	"GET /CSRGeneration/Pending/{id}":    {summary: "One pending CSR.", answers: ok(keyfactor.CSRGenerationResponseModel{})},
	"DELETE /CSRGeneration/Pending/{id}": {summary: "Delete one pending CSR.", answers: noContent},
	"POST /Certificates/Recover": {summary: "A retained key and its certificate as PKCS#12 (owner, administrator).",
		params: []string{"CertificateFormatRecover"}, body: keyfactor.CertificateRecoveryRequest{}, answers: ok(keyfactor.RecoveryResponse{}),
		refusals: []int{http.StatusNotFound, http.StatusConflict}},
	"GET /Workflow/Definitions": {summary: "The loaded workflow definitions. (certflow)", answers: ok([]keyfactor.Definition{})},
	"POST /Workflow/Definitions/Reload": {summary: "Reload the definitions in every process; a set that does not lint changes nothing (400). (certflow)",
		roles: []string{config.RoleAdmin}, refusals: []int{http.StatusBadRequest}, answers: ok([]keyfactor.Definition{})},
	"POST /Workflow/Definitions/Test": {summary: "Dry-run a test case (a request or an event, stubbed http answers and approvals, optional expect) against the loaded definitions: which definition runs, why each other does not, what each step would do. Nothing is issued, sent or stored. (certflow)",
		roles: []string{config.RoleAdmin}, body: dryrun.TestCase{}, refusals: []int{http.StatusBadRequest}, answers: ok(dryrun.TestAnswer{})},
	"GET /Workflow/Instances":              {summary: "Every instance the caller may see, newest first.", params: paging, answers: ok([]keyfactor.Instance{})},
	"GET /Workflow/Instances/AssignedToMe": {summary: "The instances the caller may decide now.", params: paging, answers: ok([]keyfactor.Instance{})},
	"GET /Workflow/Instances/My":           {summary: "The caller's own instances.", params: paging, answers: ok([]keyfactor.Instance{})},
	"GET /Workflow/Instances/{id}":         {summary: "One workflow instance.", pathSchema: anyString, answers: ok(keyfactor.Instance{})},
	"POST /Workflow/Instances/{id}/Signals": {summary: "An approver's decision on the step the instance is suspended at.", pathSchema: anyString,
		body: keyfactor.SignalRequest{}, answers: noContent, refusals: []int{http.StatusConflict}},
	"POST /Workflow/Instances/{id}/Stop": {summary: "Reject a running instance.", roles: []string{config.RoleAdmin}, pathSchema: anyString,
		body: keyfactor.StopRequest{}, optional: true, answers: noContent, refusals: []int{http.StatusConflict}},
	"POST /Workflow/Instances/{id}/Restart": {summary: "Restart a failed instance.", roles: []string{config.RoleAdmin}, pathSchema: anyString,
		answers: noContent, refusals: []int{http.StatusConflict}},
	"GET /Workflow/Certificates/Pending": {summary: "Keyfactor's older approval queue: requests awaiting approval.", params: paging,
		answers: ok([]keyfactor.CertificateRequest{})},
	"GET /Workflow/Certificates/Denied": {summary: "Denied requests.", params: paging,
		answers: ok([]keyfactor.CertificateRequest{})},
	"POST /Workflow/Certificates/Approve": {summary: "Approve requests by id.", body: []int64{}, answers: ok(keyfactor.ApproveDenyResult{})},
	"POST /Workflow/Certificates/Deny":    {summary: "Deny requests by id, with a comment.", body: keyfactor.DenialRequest{}, answers: ok(keyfactor.ApproveDenyResult{})},
	"GET /Certificates": {summary: "Certificate records, searched by pq.queryString (terms joined by AND), sorted and paged.",
		params:  append(append(slices.Clone(paging), "sortField", "sortAscending", "includeRevoked", "includeExpired"), renderQuery...),
		answers: []answer{{status: http.StatusOK, body: []keyfactor.CertificateRecord{}, headers: []string{"TotalCount"}}}},
	"GET /Certificates/{id}": {summary: "One certificate record.", params: renderQuery, answers: ok(keyfactor.CertificateRecord{})},
	"POST /Certificates/Download": {summary: "A certificate (with its chain, in either order) as PEM, DER or P7B, base64.",
		params: []string{"CertificateFormatDownload"}, body: keyfactor.CertificateDownloadRequest{}, answers: ok(keyfactor.CertificateDownloadResponse{}),
		refusals: []int{http.StatusNotFound}},
	"POST /Certificates/Revoke": {summary: "Revoke certificates through the revocation workflow.", roles: []string{config.RoleRequester},
		body: keyfactor.RevokeCertificateRequest{}, answers: ok(keyfactor.RevocationResponse{}), refusals: []int{http.StatusNotFound, http.StatusConflict}},
	"PUT /Certificates/Metadata": {summary: "Set or clear (empty value) metadata fields of one certificate (administrators).",
		body: keyfactor.MetadataUpdateRequest{}, answers: noContent, refusals: []int{http.StatusNotFound}},
	"PUT /Certificates/Metadata/All": {summary: "Set or clear metadata fields of up to 500 certificates, all or nothing (administrators).",
		body: keyfactor.MetadataAllUpdateRequest{}, answers: noContent, refusals: []int{http.StatusNotFound}},
	"POST /Events": {summary: "Post an external event that starts the workflows it triggers; a repeated Id from the same caller is accepted once (200, Idempotent-Replayed: true, the first event). (certflow)",
		roles: []string{config.RoleAdmin, "a role in events.publisher_roles (default event-publisher)"}, body: EventRequest{},
		answers: []answer{
			{status: http.StatusCreated, body: workflow.Event{}, headers: []string{"EventLocation"}, desc: "Accepted: the event as the log keeps it."},
			{status: http.StatusOK, body: workflow.Event{}, headers: []string{"IdempotentReplayed"}, desc: "A repeated Id: the first event; nothing new starts."},
		}},
	"POST /Events/Sources/{name}": {summary: "An event from a configured source (events.sources), authenticated by its Standard Webhooks signature instead of a token; a replayed webhook-id or a repeated Id is accepted once. (certflow)",
		signed: true, pathSchema: anyString, params: []string{"WebhookId", "WebhookTimestamp", "WebhookSignature"}, body: EventRequest{},
		answers: []answer{
			{status: http.StatusCreated, body: workflow.Event{}, headers: []string{"EventLocation"}, desc: "Accepted: the event as the log keeps it."},
			{status: http.StatusOK, body: workflow.Event{}, headers: []string{"IdempotentReplayed"}, desc: "A replayed delivery or repeated Id: the first event; nothing new starts."},
		}},
	"GET /Events": {summary: "The event log, newest first, filtered; X-Next-Cursor, when present, says more may follow (also when the read budget ran out before the page filled) and continues it as cursor. (certflow)",
		roles:   []string{config.RoleAdmin, "a role in events.reader_roles"},
		params:  []string{"returnLimit", "pageReturned", "eventName", "certificateId", "requestId", "eventsAfter", "eventsBefore", "eventCursor"},
		answers: []answer{{status: http.StatusOK, body: []workflow.Event{}, headers: []string{"NextCursor"}}}},
	"GET /Events/{id}": {summary: "One event and the runs it started: each triggered definition, whether its match held, and its run's request, instance, status and outcome. (certflow)",
		roles: []string{config.RoleAdmin, "a role in events.reader_roles"}, pathSchema: anyString, answers: ok(EventDetail{})},
	"GET /.well-known/acme-challenge/{token}": {summary: "An ACME http-01 challenge's key authorization (RFC 8555 §8.3), text/plain, while certflow's order with an external CA is being validated (404 otherwise); case-sensitive. Public: the CA asks without credentials. (certflow)", public: true, pathSchema: anyString,
		answers: []answer{{status: http.StatusOK, media: "text/plain"}, {status: http.StatusNotFound, media: "text/plain", desc: "No challenge with that token is being validated."},
			{status: http.StatusServiceUnavailable, media: "text/plain", desc: "Redis does not answer."}}},
	"GET /CRL/{ca}": {summary: "The CA's CRL (DER). Public: relying parties fetch CRLs without credentials.", public: true, pathSchema: anyString,
		answers:  []answer{{status: http.StatusOK, media: "application/pkix-crl", headers: []string{"LastModified", "Expires"}}},
		refusals: []int{http.StatusNotFound, http.StatusServiceUnavailable}},
}

// CSRParseRequest is the body of POST /Enrollment/CSR/Parse (the handler
// reads Keyfactor's CSRContents, of which only CSR).
type CSRParseRequest struct {
	CSR string `json:"CSR"`
}

// OpenAPI is the document GET /openapi.json answers.
var OpenAPI = sync.OnceValue(func() []byte {
	data, err := json.Marshal(openAPIDocument())
	if err != nil {
		panic(err)
	}
	return data
})

// handleOpenAPI is GET /openapi.json.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(OpenAPI())
}

func openAPIDocument() map[string]any {
	sc := &schemas{components: map[string]any{}, seen: map[string]schemaUse{}}
	errSchema := sc.of(keyfactor.Error{}, true)
	paths := map[string]any{}
	for _, pattern := range slices.Sorted(maps.Keys(operations)) {
		method, path, _ := strings.Cut(pattern, " ")
		item, _ := paths[path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[path] = item
		}
		item[strings.ToLower(method)] = operations[pattern].document(sc, method, path)
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       "certflow",
			"version":     ProductVersion,
			"description": apiDescription,
		},
		"servers": []any{
			map[string]any{"url": "/", "description": "The root."},
			map[string]any{"url": "/KeyfactorAPI", "description": "Keyfactor Command's base path: every path is served under it too."},
		},
		"security": []any{map[string]any{"basic": []string{}}, map[string]any{"bearer": []string{}}},
		"paths":    paths,
		"components": map[string]any{
			"schemas": sc.components,
			"securitySchemes": map[string]any{
				"basic":  map[string]any{"type": "http", "scheme": "basic", "description": "A configured user's name and password."},
				"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "A configured user's API token, or an OAuth 2.0 access token (JWT) of the configured OIDC issuer."},
				"standardWebhooks": map[string]any{"type": "apiKey", "in": "header", "name": "webhook-signature",
					"description": "Standard Webhooks: webhook-signature holds v1,<base64 HMAC-SHA256 of webhook-id.webhook-timestamp.body> under the source's secret (events.sources); webhook-timestamp within the source's tolerance. A failure spends the address's failed-login budget."},
			},
			"parameters": parameters,
			"headers":    headers,
			"responses":  refusalResponses(errSchema),
		},
	}
}

const apiDescription = "certflow speaks Keyfactor Command's REST dialect (its paths, JSON field names and casing, headers, error shape); " +
	"its additions are marked (certflow). Paths match without regard to case and are served at the root and under /KeyfactorAPI. " +
	"JSON field names in request bodies match without regard to case, as Go's decoder does. " +
	"Every answer carries X-Request-Id; every refusal is {\"ErrorCode\", \"Message\"} (the message names the field) and is logged with that id. " +
	"A path certflow does not serve answers 404, a method it does not serve on a path 405, both in that shape. " +
	"Headers over 64 KiB are refused 431 by the HTTP server itself, in plain text. " +
	"info.version is the Keyfactor Command API level certflow answers as (x-keyfactor-product-version)."

// document renders one operation.
func (op operation) document(sc *schemas, method, path string) map[string]any {
	out := map[string]any{
		"operationId": operationID(method, path),
		"summary":     op.summary,
		"tags":        []string{strings.Split(strings.TrimPrefix(path, "/"), "/")[0]},
	}
	if len(op.roles) > 0 {
		out["description"] = "Needs role " + strings.Join(op.roles, " or ") + " (admin holds every role)."
	}
	if op.public {
		out["security"] = []any{}
	}
	if op.signed {
		out["security"] = []any{map[string]any{"standardWebhooks": []string{}}}
	}
	params := []any{ref("parameters", "RequestId")}
	if !op.public && !op.signed {
		params = append(params, ref("parameters", "RequestedWith"), ref("parameters", "ApiVersion"))
	}
	for _, p := range op.params {
		if _, ok := parameters[p]; !ok {
			panic("openapi: no parameter " + p)
		}
		params = append(params, ref("parameters", p))
	}
	if i := strings.Index(path, "{"); i >= 0 {
		name := path[i+1 : strings.Index(path, "}")]
		schema := op.pathSchema
		if schema == nil {
			schema = map[string]any{"type": "integer", "format": "int64", "minimum": 1}
		}
		params = append(params, map[string]any{"name": name, "in": "path", "required": true, "schema": schema})
	}
	out["parameters"] = params
	if op.body != nil {
		out["requestBody"] = map[string]any{
			"required": !op.optional,
			"content":  map[string]any{"application/json": map[string]any{"schema": sc.of(op.body, false)}},
		}
	}
	responses := map[string]any{}
	for _, a := range op.answers {
		responses[strconv.Itoa(a.status)] = a.document(sc)
	}
	for _, status := range op.refusalsOf(path) {
		if _, taken := responses[strconv.Itoa(status)]; !taken {
			responses[strconv.Itoa(status)] = ref("responses", refusalNames[status])
		}
	}
	responses[strconv.Itoa(http.StatusRequestHeaderFieldsTooLarge)] = ref("responses", "HeadersTooLarge")
	out["responses"] = responses
	return out
}

// refusalsOf is what the operation may refuse with: every one a 500;
// authenticated ones 401, 403 (roles, or what enroll forbids), 429 (rate
// limits) and 503 (Redis); those with inputs 400; with a body 413; with a
// path parameter 400 and 404; and the operation's own.
func (op operation) refusalsOf(path string) []int {
	out := append([]int{http.StatusInternalServerError}, op.refusals...)
	if !op.public {
		out = append(out, http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests, http.StatusServiceUnavailable)
	}
	if op.body != nil || len(op.params) > 0 || strings.Contains(path, "{") {
		out = append(out, http.StatusBadRequest)
	}
	if strings.Contains(path, "{") {
		out = append(out, http.StatusNotFound)
	}
	if op.body != nil {
		out = append(out, http.StatusRequestEntityTooLarge)
	}
	return out
}

func (a answer) document(sc *schemas) map[string]any {
	desc := a.desc
	if desc == "" {
		desc = http.StatusText(a.status)
	}
	hdrs := map[string]any{RequestIDHeader: ref("headers", "RequestId")}
	for _, h := range a.headers {
		hdrs[headerNames[h]] = ref("headers", h)
	}
	out := map[string]any{"description": desc, "headers": hdrs}
	switch {
	case a.media != "":
		out["content"] = map[string]any{a.media: map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}}
	case a.body != nil:
		out["content"] = map[string]any{"application/json": map[string]any{"schema": sc.of(a.body, true)}}
	}
	return out
}

// refusalNames name components.responses.
var refusalNames = map[int]string{
	http.StatusBadRequest:            "BadRequest",
	http.StatusUnauthorized:          "Unauthorized",
	http.StatusForbidden:             "Forbidden",
	http.StatusNotFound:              "NotFound",
	http.StatusConflict:              "Conflict",
	http.StatusRequestEntityTooLarge: "TooLarge",
	http.StatusTooManyRequests:       "TooMany",
	http.StatusInternalServerError:   "Internal",
	http.StatusServiceUnavailable:    "Unavailable",
}

func refusalResponses(errSchema map[string]any) map[string]any {
	descs := map[int]string{
		http.StatusBadRequest:            "Bad input: the message names the field (parameter, header or body field) and what is wrong with it; also a listing that would read more than api.max_scan records (0xA0010007).",
		http.StatusUnauthorized:          "No credentials, or wrong ones.",
		http.StatusForbidden:             "The caller's roles do not allow it.",
		http.StatusNotFound:              "Not found, or not the caller's to see.",
		http.StatusConflict:              "The state does not allow it (already decided, an Idempotency-Key reused with another ask, …).",
		http.StatusRequestEntityTooLarge: "The body is over the configured limit.",
		http.StatusTooManyRequests:       "A rate limit or the failed-login throttle: retry after Retry-After seconds.",
		http.StatusInternalServerError:   "certflow failed; the log has why under the request id.",
		http.StatusServiceUnavailable:    "Redis is unavailable (or a resource is not ready yet): retry after Retry-After seconds.",
	}
	out := map[string]any{}
	for status, name := range refusalNames {
		hdrs := map[string]any{RequestIDHeader: ref("headers", "RequestId")}
		switch status {
		case http.StatusUnauthorized:
			hdrs["WWW-Authenticate"] = ref("headers", "WWWAuthenticate")
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			hdrs["Retry-After"] = ref("headers", "RetryAfterOptional")
		}
		out[name] = map[string]any{
			"description": descs[status],
			"headers":     hdrs,
			"content":     map[string]any{"application/json": map[string]any{"schema": errSchema}},
		}
	}
	// Go's HTTP server answers this one before certflow sees the request.
	out["HeadersTooLarge"] = map[string]any{
		"description": "The request's headers are over 64 KiB: answered by the HTTP server before certflow reads the request, in plain text and without X-Request-Id.",
		"content":     map[string]any{"text/plain": map[string]any{"schema": str}},
	}
	return out
}

func ref(kind, name string) map[string]any {
	return map[string]any{"$ref": "#/components/" + kind + "/" + name}
}

// operationID is e.g. getCertificatesById for GET /Certificates/{id}.
func operationID(method, path string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, seg := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		if p, ok := strings.CutPrefix(seg, "{"); ok {
			seg = "By" + strings.ToUpper(p[:1]) + strings.TrimSuffix(p[1:], "}")
		}
		seg = strings.NewReplacer(".", "", "-", "").Replace(seg)
		b.WriteString(strings.ToUpper(seg[:1]) + seg[1:])
	}
	return b.String()
}

func queryParameter(name, desc string, schema map[string]any) map[string]any {
	return map[string]any{"name": name, "in": "query", "description": desc, "schema": schema}
}

func header(name, desc string, required bool, schema map[string]any) map[string]any {
	return map[string]any{"name": name, "in": "header", "description": desc, "required": required, "schema": schema}
}

var (
	integer = map[string]any{"type": "integer"}
	boolean = map[string]any{"type": "string", "description": "true or false (any case)"}
	str     = map[string]any{"type": "string"}
)

const spellings = " Also spelled query.…, pagedQuery.… or bare; names match without regard to case."

// parameters are components.parameters.
var parameters = map[string]any{
	"RequestId":     header(RequestIDHeader, "A proxy's or client's id for this request: kept when 1–64 of A–Z a–z 0–9 . _ : -, else replaced by a fresh one. Answered in X-Request-Id. (certflow)", false, str),
	"RequestedWith": header("x-keyfactor-requested-with", "Keyfactor's APIClient or XMLHttpRequest; accepted, not required.", false, str),
	"ApiVersion":    header("x-keyfactor-api-version", "Keyfactor's API version; accepted (default 1).", false, str),
	"Prefer": header("Prefer", "RFC 7240: respond-async answers 202 at once; wait=N waits up to N seconds (at most the configured limit) for the workflow to settle. (certflow)",
		false, str),
	"IdempotencyKey": header("Idempotency-Key", "A repeated submit with the same key and caller returns the first request, never a second certificate; the same key with another ask answers 409. (certflow)",
		false, str),
	"CertificateFormatRequired": header("x-certificateformat", "PEM or DER: the encoding of CertificateInformation.Certificates (any case).", true, str),
	"CertificateFormat":         header("x-certificateformat", "PEM or DER (any case): the encoding of the certificates in the answer.", false, str),
	"CertificateFormatPFX":      header("x-certificateformat", "PFX (any case), as Keyfactor's clients send it; the answer is PKCS#12.", true, str),
	"CertificateFormatRecover":  header("x-certificateformat", "PFX when given.", false, str),
	"CertificateFormatDownload": header("x-certificateformat", "PEM (the default), DER (the leaf alone) or P7B.", false, str),
	"forceEnroll":               queryParameter("forceEnroll", "true to enroll a CSR certflow generated (POST /CSRGeneration/Generate), married to its stored key.", boolean),
	"pageReturned":              queryParameter("pq.pageReturned", "The page, from 1."+spellings, integer),
	"returnLimit":               queryParameter("pq.returnLimit", "Rows per page (default 50); a larger one than 500 (Keyfactor's clients send 1000) is answered with 500 rows."+spellings, integer),
	"queryString":               queryParameter("pq.queryString", `Terms like Field -eq "value" (operators -eq, -ne, -contains, -startswith; GET /Certificates also -lt, -le, -gt, -ge), joined by AND.`+spellings, str),
	"sortField":                 queryParameter("pq.sortField", "Id, CertRequestId, NotAfter, NotBefore, IssuedCN, IssuedDN or SerialNumber."+spellings, str),
	"sortAscending":             queryParameter("pq.sortAscending", "0 ascending (the default), 1 descending, as Keyfactor's SortOrder; true/false too."+spellings, str),
	"includeRevoked":            queryParameter("includeRevoked", "false leaves revoked certificates out (default true).", boolean),
	"includeExpired":            queryParameter("includeExpired", "false leaves expired certificates out (default true).", boolean),
	"includeMetadata":           queryParameter("includeMetadata", "false leaves Metadata out (default true).", boolean),
	"includeHasPrivateKey":      queryParameter("includeHasPrivateKey", "false leaves HasPrivateKey false (default true).", boolean),
	"includeLocations":          queryParameter("includeLocations", "Accepted; certflow knows no locations.", boolean),
	"verbose":                   queryParameter("verbose", "Accepted (an integer).", integer),
	"collectionId":              queryParameter("collectionId", "Accepted (an integer).", integer),
	"eventName":                 queryParameter("name", "An event name, or prefix.* for every name under prefix.", str),
	"certificateId":             queryParameter("certificateId", "Events concerning this certificate.", integer),
	"requestId":                 queryParameter("requestId", "Events concerning this request.", integer),
	"eventsAfter":               queryParameter("after", "Events the log wrote at or after this RFC 3339 time.", map[string]any{"type": "string", "format": "date-time"}),
	"eventsBefore":              queryParameter("before", "Events the log wrote before this RFC 3339 time.", map[string]any{"type": "string", "format": "date-time"}),
	"eventCursor":               queryParameter("cursor", "Continue a listing: events older than this event id (an X-Next-Cursor value).", str),
	"WebhookId":                 header("webhook-id", "The delivery's id (1-256 printable ASCII); a replayed one is accepted once.", true, str),
	"WebhookTimestamp":          header("webhook-timestamp", "The delivery's time, unix seconds; within the source's tolerance of certflow's clock, either way.", true, integer),
	"WebhookSignature":          header("webhook-signature", "v1,<base64 signature>, space-separated when several (key rotation).", true, str),
}

// headerNames are the answer headers' names, by their components.headers key.
var headerNames = map[string]string{
	"Location": "Location", "Retry-After": "Retry-After", "TotalCount": "X-Total-Count",
	"ProductVersion": "x-keyfactor-product-version", "LastModified": "Last-Modified", "Expires": "Expires",
	"EventLocation": "Location", "IdempotentReplayed": "Idempotent-Replayed", "NextCursor": "X-Next-Cursor",
}

// headers are components.headers.
var headers = map[string]any{
	"RequestId":          map[string]any{"description": "This request's id, as logged with any refusal. (certflow)", "required": true, "schema": str},
	"Location":           map[string]any{"description": "Where to poll the request: /Enrollment/Requests/{id}, under /KeyfactorAPI when the client used it.", "required": true, "schema": str},
	"Retry-After":        map[string]any{"description": "Seconds before polling again.", "required": true, "schema": integer},
	"RetryAfterOptional": map[string]any{"description": "Seconds before retrying.", "schema": integer},
	"TotalCount":         map[string]any{"description": "How many certificates match, when counted.", "schema": integer},
	"ProductVersion":     map[string]any{"description": "The Keyfactor Command API level certflow answers as.", "required": true, "schema": str},
	"LastModified":       map[string]any{"description": "The CRL's thisUpdate.", "required": true, "schema": str},
	"Expires":            map[string]any{"description": "The CRL's nextUpdate.", "required": true, "schema": str},
	"WWWAuthenticate":    map[string]any{"description": "Basic realm=\"certflow\".", "required": true, "schema": str},
	"EventLocation":      map[string]any{"description": "The event: /Events/{id}, under /KeyfactorAPI when the client used it.", "required": true, "schema": str},
	"IdempotentReplayed": map[string]any{"description": "true: the event was posted before under this Id (or webhook-id); the body is the first event.", "required": true, "schema": str},
	"NextCursor":         map[string]any{"description": "More events may follow: pass this as cursor. Absent when the listing is complete.", "schema": str},
}

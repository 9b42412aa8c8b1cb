// Package api is certflow's HTTP front door in Keyfactor Command's REST
// dialect: routing (case-insensitive, also under /KeyfactorAPI),
// authentication and roles, rate limits and the failed-login throttle,
// reading bodies, headers and queries, waiting for a submit to settle
// (Prefer), and answering with status codes, headers and
// Keyfactor-shaped bodies (internal/keyfactor). What a request asks for is
// done by internal/enroll: a handler decodes, calls one enroll.Service
// operation and writes its answer; an *enroll.Error's kind becomes the
// status (writeError). Reads that only render what the store holds (GET
// of a request, an instance list, certificates, downloads, the pending
// CSRs, the CRL) read the store here, under api.redis_timeout, and decide
// what the caller may see with enroll's rules (enroll.Visible,
// enroll.CertificateVisible, enroll.MayActOn).
package api

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/callback"
	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// Options wire a Server.
type Options struct {
	Config *config.Config
	Store  *store.Store
	Queue  enroll.Enqueuer
	KEK    *pki.KEK
	Auth   *Authenticator
	Log    *slog.Logger
	// Definitions are the loaded workflow definitions (swapped on reload).
	Definitions *atomic.Pointer[workflow.Set]
	// Reload reloads the definitions in every process.
	Reload func(ctx context.Context) error
	// CASubjects are the CAs' subjects, which no issued certificate may
	// carry (nil: none known).
	CASubjects *ca.Subjects
	// KeyPool bounds server-side key generation (nil: a pool of
	// api.key_generation_concurrency slots of the server's own).
	KeyPool *pki.KeyPool
	// StoreStatus says where records are kept, for GET /Status.
	StoreStatus StoreStatus
	// EventSources are the signed event sources (LoadEventSources), by
	// name.
	EventSources map[string]*EventSource
	// HTTP01 answers ACME http-01 challenges under
	// /.well-known/acme-challenge/ (internal/acme.HTTP01Handler); nil:
	// that path is not served.
	HTTP01 http.Handler
}

// StoreStatus says where a certflow keeps its records and what a restart
// loses (GET /Status).
type StoreStatus struct {
	// Redis names the Redis: configured, run by certflow, or in-memory.
	Redis string
	// Persistent is false when a restart loses the records.
	Persistent bool
	// RestartLoses says what a restart loses, when it loses anything.
	RestartLoses string `json:",omitempty"`
}

// Server serves the API: HTTP in front of an enroll.Service.
type Server struct {
	http01  http.Handler
	cfg     *config.Config
	store   *store.Store
	waiters *store.Waiters
	auth    *Authenticator
	log     *slog.Logger
	defs    *atomic.Pointer[workflow.Set]
	reload  func(ctx context.Context) error
	// enroll runs what the handlers are asked to do.
	enroll *enroll.Service
	// mux routes lower-cased paths; paths (the same patterns without
	// methods) tells 405 from 404.
	mux       *http.ServeMux
	paths     *http.ServeMux
	endpoints []string
	// perIdentity limits each caller's request rate (nil: unlimited).
	// Failed logins are limited by the Authenticator.
	perIdentity *limiters
	storeStatus StoreStatus
	// caSubjects are the CAs' subjects (dry runs keep them out of
	// certificates as issuing does).
	caSubjects *ca.Subjects
	// proxies are api.trusted_proxies: behind one, the client is read from
	// X-Forwarded-For (proxy.go).
	proxies trustedProxies
	// sources are the signed event sources; an unknown one's delivery is
	// checked against dummySource (events.go).
	sources     map[string]*EventSource
	dummySource callback.Secret
}

// keyfactorBase is Keyfactor's base path; every route is served under it too.
const keyfactorBase = "/keyfactorapi"

// ProductVersion is the Keyfactor Command API level certflow answers as,
// in x-keyfactor-product-version; Keyfactor's clients read it at login.
const ProductVersion = "10.5.0"

// New builds the server. Start Listen(ctx) for synchronous submits to be
// woken promptly (without it they poll once a second).
func New(o Options) *Server {
	s := &Server{
		cfg: o.Config, store: o.Store, auth: o.Auth, log: o.Log,
		defs: o.Definitions, reload: o.Reload, storeStatus: o.StoreStatus, caSubjects: o.CASubjects,
		waiters: o.Store.NewWaiters(), mux: http.NewServeMux(), paths: http.NewServeMux(),
		enroll: enroll.New(enroll.Options{
			Config: o.Config, Store: o.Store, Queue: o.Queue, KEK: o.KEK, Log: o.Log,
			Definitions: o.Definitions, CASubjects: o.CASubjects, KeyPool: o.KeyPool,
		}),
	}
	s.http01 = o.HTTP01
	s.proxies = parseTrustedProxies(o.Config.API.TrustedProxies)
	s.sources, s.dummySource = o.EventSources, newDummySource()
	if o.Config.API.RateLimit > 0 {
		s.perIdentity = newLimiters(o.Config.API.RateLimit, o.Config.API.RateBurst)
	}
	s.public("GET /healthz", s.handleHealthz)
	// Orchestrators probe readiness without credentials; the answer says
	// ready or not and nothing more (no addresses, no errors).
	s.public("GET /readyz", s.handleReadyz)
	s.route("GET /Status", s.handleStatus)
	s.route("GET /Status/Endpoints", s.handleEndpoints)
	s.public("GET /openapi.json", s.handleOpenAPI) // it describes the API, no data
	s.route("POST /Enrollment/CSR", s.handleEnrollCSR, config.RoleRequester)
	s.route("POST /Enrollment/CSR/Parse", s.handleParseCSR)
	s.route("POST /Enrollment/Renew", s.handleRenew, config.RoleRequester)
	s.route("GET /Enrollment/Requests/{id}", s.handleGetRequest)
	s.route("GET /Enrollment/CSR/Context/My", s.handleCSRContext)
	s.route("GET /Enrollment/PFX/Context/My", s.handleCSRContext) // every template allows both
	s.route("GET /Templates", s.handleTemplates)
	s.route("GET /Templates/{id}", s.handleTemplate)
	s.route("GET /CertificateAuthority", s.handleCAs)
	s.route("GET /CertificateAuthority/{id}", s.handleCA)
	s.route("GET /MetadataFields", s.handleMetadataFields)
	s.route("GET /MetadataFields/{id}", s.handleMetadataField)
	s.route("GET /Security/Roles", s.handleSecurityRoles)
	s.route("GET /Security/Roles/{id}", s.handleSecurityRole)
	s.route("POST /Enrollment/PFX", s.handleEnrollPFX, config.RoleRequester)
	s.route("POST /CSRGeneration/Generate", s.handleGenerateCSR, config.RoleRequester)
	s.route("GET /CSRGeneration/Pending", s.handleListPendingCSRs)
	s.route("DELETE /CSRGeneration/Pending", s.handleDeletePendingCSRs)
	s.route("GET /CSRGeneration/Pending/{id}", s.handleGetPendingCSR)
	s.route("DELETE /CSRGeneration/Pending/{id}", s.handleDeletePendingCSR)
	s.route("POST /Certificates/Recover", s.handleRecover)
	s.route("GET /Workflow/Definitions", s.handleListDefinitions)
	s.route("POST /Workflow/Definitions/Reload", s.handleReloadDefinitions, config.RoleAdmin)
	s.route("POST /Workflow/Definitions/Test", s.handleTestDefinitions, config.RoleAdmin)
	s.route("GET /Workflow/Instances", s.handleListInstances)
	s.route("GET /Workflow/Instances/AssignedToMe", s.handleAssignedToMe)
	s.route("GET /Workflow/Instances/My", s.handleMyInstances)
	s.route("GET /Workflow/Instances/{id}", s.handleGetInstance)
	s.route("POST /Workflow/Instances/{id}/Signals", s.handleSignal)
	s.route("POST /Workflow/Instances/{id}/Stop", s.handleStop, config.RoleAdmin)
	s.route("POST /Workflow/Instances/{id}/Restart", s.handleRestart, config.RoleAdmin)
	s.route("GET /Workflow/Certificates/Pending", s.handlePendingCertificates)
	s.route("GET /Workflow/Certificates/Denied", s.handleDeniedCertificates)
	s.route("POST /Workflow/Certificates/Approve", s.handleApproveCertificates)
	s.route("POST /Workflow/Certificates/Deny", s.handleDenyCertificates)
	s.route("GET /Certificates", s.handleListCertificates)
	s.route("GET /Certificates/{id}", s.handleGetCertificate)
	s.route("POST /Certificates/Download", s.handleDownloadCertificate)
	s.route("POST /Certificates/Revoke", s.handleRevokeCertificates, config.RoleRequester)
	// Administrators only; enroll answers anyone else 403 or, for what
	// they may not see, 404.
	s.route("PUT /Certificates/Metadata", s.handleUpdateMetadata)
	s.route("PUT /Certificates/Metadata/All", s.handleUpdateMetadataAll)
	s.public("GET /CRL/{ca}", s.handleGetCRL)
	if o.HTTP01 != nil {
		// Listed here; Handler serves it before routing (case-sensitive).
		s.public("GET "+HTTP01Path+"{token}", func(w http.ResponseWriter, r *http.Request) { o.HTTP01.ServeHTTP(w, r) })
	}
	// The event log (events.go): external events, and reading the log.
	s.route("POST /Events", s.handlePostEvent, append([]string{config.RoleAdmin}, o.Config.Events.PublisherRoles...)...)
	s.public("POST /Events/Sources/{name}", s.handleSourceEvent) // authenticated by its signature
	s.route("GET /Events", s.handleListEvents, append([]string{config.RoleAdmin}, o.Config.Events.ReaderRoles...)...)
	s.route("GET /Events/{id}", s.handleGetEvent, append([]string{config.RoleAdmin}, o.Config.Events.ReaderRoles...)...)
	s.mux.HandleFunc("/", s.handleUnmatched)
	return s
}

// Listen relays "request settled" announcements to waiting submits until
// ctx ends.
func (s *Server) Listen(ctx context.Context) { s.waiters.Listen(ctx, s.log) }

// route registers an authenticated endpoint; with roles, the caller must
// hold one of them (admin holds all).
func (s *Server) route(pattern string, h http.HandlerFunc, roles ...string) {
	s.endpoints = append(s.endpoints, pattern)
	s.register(pattern, func(w http.ResponseWriter, r *http.Request) {
		login := s.auth.login(r)
		if login.wait > 0 {
			s.tooMany(w, r, login.wait, login.why)
			return
		}
		if login.down != "" {
			w.Header().Set("Retry-After", "10")
			writeError(w, r, s.log, newError(http.StatusServiceUnavailable, keyfactor.CodeUnavailable, "bearer token: %s", login.down))
			return
		}
		id := login.id
		if id == nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="certflow", charset="UTF-8"`)
			w.Header().Add("WWW-Authenticate", `Bearer realm="certflow"`)
			writeError(w, r, s.log, newError(http.StatusUnauthorized, keyfactor.CodeUnauthorized, "%s", cmp.Or(login.refusal, "authentication required: HTTP Basic or Bearer token")))
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), identityKey{}, id)) // refusals from here on log the user
		if s.perIdentity != nil {
			if ok, wait := s.perIdentity.allow(id.Name); !ok {
				s.tooMany(w, r, wait, "rate limit of "+id.Name+" reached")
				return
			}
		}
		if len(roles) > 0 && !id.Has(roles...) {
			writeError(w, r, s.log, newError(http.StatusForbidden, keyfactor.CodeForbidden, "%s may not %s: needs role %s", id.Name, pattern, strings.Join(roles, " or ")))
			return
		}
		h(w, r)
	})
}

// public registers an endpoint that needs no credentials.
func (s *Server) public(pattern string, h http.HandlerFunc) {
	s.endpoints = append(s.endpoints, pattern)
	s.register(pattern, h)
}

func (s *Server) register(pattern string, h http.HandlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	lower := strings.ToLower(path)
	s.mux.HandleFunc(method+" "+lower, h)
	if !slices.ContainsFunc(s.endpoints[:len(s.endpoints)-1], func(e string) bool {
		_, p, _ := strings.Cut(e, " ")
		return strings.EqualFold(p, path)
	}) {
		s.paths.HandleFunc(lower, func(http.ResponseWriter, *http.Request) {})
	}
}

type identityKey struct{}

// identity returns the authenticated caller of an authenticated route.
func identity(r *http.Request) *enroll.Caller {
	id, _ := r.Context().Value(identityKey{}).(*enroll.Caller)
	return id
}

// Handler returns the server's http.Handler with its middleware.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		// Rate limits, the login throttle and the logs all read RemoteAddr:
		// behind a trusted proxy it is the client's (a shallow copy: a
		// handler does not modify the request it is given).
		if addr := s.proxies.clientAddr(r); addr != r.RemoteAddr {
			r = r.WithContext(r.Context())
			r.RemoteAddr = addr
		}
		r = withRequestID(rec, r)
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic in handler", "request_id", requestID(r), "method", r.Method, "path", loggedPath(r), "panic", p, "stack", string(debug.Stack()))
				writeError(rec, r, s.log, newError(http.StatusInternalServerError, keyfactor.CodeInternal, "internal error"))
			}
			s.log.Debug("http", "request_id", requestID(r), "method", r.Method, "path", loggedPath(r), "status", rec.status, "duration", time.Since(start))
		}()
		if r.Body != nil {
			r.Body = http.MaxBytesReader(rec, r.Body, s.cfg.API.MaxBodyBytes)
		}
		if s.http01 != nil && strings.HasPrefix(r.URL.Path, HTTP01Path) {
			// Public by design (the CA asks anonymously), and its tokens
			// are case-sensitive: served before the path is lower-cased.
			s.http01.ServeHTTP(rec, r)
			return
		}
		// Keyfactor matches paths without regard to case, and serves them
		// under /KeyfactorAPI as well as at the root.
		path := strings.ToLower(r.URL.Path)
		if rest, ok := strings.CutPrefix(path, keyfactorBase); ok && (rest == "" || rest[0] == '/') {
			path = rest
			r = r.WithContext(context.WithValue(r.Context(), baseKey{}, r.URL.Path[:len(keyfactorBase)]))
		}
		r.URL.Path, r.URL.RawPath = path, ""
		s.mux.ServeHTTP(rec, r)
	})
}

// HTTP01Path is where ACME CAs look for http-01 answers (RFC 8555 §8.3).
const HTTP01Path = "/.well-known/acme-challenge/"

type baseKey struct{}

// basePath is the prefix the client used ("" or "/KeyfactorAPI"), for
// Location headers it can follow.
func basePath(r *http.Request) string {
	b, _ := r.Context().Value(baseKey{}).(string)
	return b
}

func (s *Server) handleUnmatched(w http.ResponseWriter, r *http.Request) {
	if _, p := s.paths.Handler(r); p != "" {
		writeError(w, r, s.log, newError(http.StatusMethodNotAllowed, keyfactor.CodeMethodNotAllow, "%s is not allowed on %s", r.Method, r.URL.Path))
		return
	}
	writeError(w, r, s.log, newError(http.StatusNotFound, keyfactor.CodeNotFound, "no endpoint %s %s", r.Method, r.URL.Path))
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("not ready: Redis does not answer", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// handleStatus says where records are kept and what a restart loses
// (certflow's own; Keyfactor has none).
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, StatusResponse{Store: s.storeStatus})
}

// StatusResponse is GET /Status's body.
type StatusResponse struct {
	Store StoreStatus
}

func (s *Server) handleEndpoints(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-keyfactor-product-version", ProductVersion)
	writeJSON(w, http.StatusOK, slices.Sorted(slices.Values(s.endpoints)))
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

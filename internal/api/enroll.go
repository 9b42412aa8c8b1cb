package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/enroll"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
)

// handleEnrollCSR is POST /Enrollment/CSR: it reads the
// x-certificateformat header, forceEnroll and the body, runs
// enroll.Service.SubmitCSR through accept (which waits for the request to
// settle, per Prefer) and answers with writeEnrollment.
func (s *Server) handleEnrollCSR(w http.ResponseWriter, r *http.Request) {
	format, err := pki.ParseFormat(r.Header.Get("x-certificateformat"))
	if err != nil {
		writeError(w, r, s.log, badField("x-certificateformat header", "%v", err))
		return
	}
	forceEnroll := false
	if v := r.URL.Query().Get("forceEnroll"); v != "" {
		if forceEnroll, err = strconv.ParseBool(v); err != nil {
			writeError(w, r, s.log, badField("forceEnroll", "want true or false, got %q", v))
			return
		}
	}
	var body keyfactor.EnrollmentCSRRequest
	if err := decodeJSON(r, &body); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	req, ok := s.accept(w, r, func(ctx context.Context, allocated func(id int64)) (*store.Request, bool, error) {
		return s.enroll.SubmitCSR(ctx, identity(r), &body, format, forceEnroll, enroll.Submit{IdempotencyKey: r.Header.Get("Idempotency-Key"), Allocated: allocated})
	})
	if ok {
		s.writeEnrollment(w, r, req, "")
	}
}

// submitFunc is one of enroll.Service's submits (SubmitCSR, SubmitPFX,
// SubmitRenewal), handed the hook that learns the new request's id.
type submitFunc func(ctx context.Context, allocated func(id int64)) (req *store.Request, existing bool, err error)

// accept runs a submit and, unless the client prefers an asynchronous
// answer, waits for the request to settle (Prefer: wait=N, else
// api.sync_wait). It answers the client itself only when the request was
// refused (ok false). Every kind of submit (CSR, PFX, renewal) goes
// through here.
func (s *Server) accept(w http.ResponseWriter, r *http.Request, submit submitFunc) (req *store.Request, ok bool) {
	wait, async := parsePrefer(r.Header.Values("Prefer"), s.cfg.API.SyncWait, s.cfg.API.MaxSyncWait)
	var waiter *store.Waiter
	req, existing, err := submit(r.Context(), func(id int64) {
		if !async && wait > 0 {
			// Listen before the request can settle: the announcement
			// then answers without polling the store.
			if waiter != nil {
				waiter.Close() // an id withdrawn for another
			}
			waiter = s.waiters.Register(id)
		}
	})
	if waiter != nil {
		defer waiter.Close()
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return nil, false
	}
	// From here on the request is accepted: whatever fails, the answer is
	// never an error (a client would retry and get a second certificate),
	// but at worst 202 with the Location to poll.
	if waiter != nil && !req.Answered() {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		var latest *store.Request
		var werr error
		if existing {
			latest, werr = s.waiters.Wait(ctx, req.ID) // a repeat: it may have settled long ago
		} else {
			latest, werr = waiter.Wait(ctx)
		}
		cancel()
		if latest != nil {
			req = latest
		}
		if werr != nil && !errors.Is(werr, context.DeadlineExceeded) && !errors.Is(werr, context.Canceled) {
			s.log.Warn("waiting for an accepted request failed; answering 202", "request", req.ID, "err", werr)
		}
	}
	return req, true
}

// parsePrefer reads RFC 7240 Prefer: respond-async, wait=N. As the RFC
// asks, a preference it cannot understand is ignored, not an error.
func parsePrefer(values []string, def, max time.Duration) (wait time.Duration, async bool) {
	wait = def
	for _, v := range values {
		for _, pref := range strings.Split(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(pref), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "respond-async":
				async = true
			case "wait":
				if n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64); err == nil && n >= 0 {
					wait = min(time.Duration(min(n, int64(max/time.Second)))*time.Second, max)
				}
			}
		}
	}
	return wait, async
}

// writeEnrollment answers with the request: 200 once it settled, 202 with
// Location while it runs.
func (s *Server) writeEnrollment(w http.ResponseWriter, r *http.Request, req *store.Request, format pki.Format) {
	s.writeAccepted(w, r, req, func(cert *store.Certificate) (any, error) {
		return keyfactor.NewEnrollmentResponse(req, cert, format, identity(r).RoleNames())
	})
}

// writeAccepted answers an accepted request with the body render makes of
// it and its certificate (nil until issued): 200 once it settled, else
// 202 with the Location to poll. An issued certificate that cannot be read
// now also answers 202: the client should poll, not submit again.
func (s *Server) writeAccepted(w http.ResponseWriter, r *http.Request, req *store.Request, render func(*store.Certificate) (any, error)) {
	var cert *store.Certificate
	status := http.StatusOK
	if req.Disposition == store.Issued {
		c, err := s.enroll.CertificateOf(r.Context(), req)
		if err != nil {
			s.log.Warn("could not load an issued certificate; answering 202", "request", req.ID, "err", err)
			status = http.StatusAccepted
		}
		cert = c
	}
	resp, err := render(cert)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if status == http.StatusAccepted || !req.Answered() {
		status = http.StatusAccepted
		w.Header().Set("Location", basePath(r)+"/Enrollment/Requests/"+strconv.FormatInt(req.ID, 10))
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, resp)
}

// handleGetRequest is GET /Enrollment/Requests/{id}.
func (s *Server) handleGetRequest(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "request")
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	var format pki.Format
	if h := r.Header.Get("x-certificateformat"); h != "" {
		if format, err = pki.ParseFormat(h); err != nil {
			writeError(w, r, s.log, badField("x-certificateformat header", "%v", err))
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.API.RedisTimeout)
	defer cancel()
	req, err := s.store.Get(ctx, id)
	caller := identity(r)
	// Someone else's request answers 404, not 403: ids are sequential and
	// must not reveal what others requested. Its deciders may read it.
	if errors.Is(err, store.ErrNotFound) || (err == nil && !enroll.Visible(req, caller)) {
		writeError(w, r, s.log, newError(http.StatusNotFound, keyfactor.CodeNotFound, "request %d: not found", id))
		return
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	var cert *store.Certificate
	if req.Disposition == store.Issued {
		if cert, err = s.enroll.CertificateOf(ctx, req); err != nil {
			writeError(w, r, s.log, err)
			return
		}
	}
	st, err := keyfactor.NewRequestStatus(req, cert, format, caller.RoleNames())
	if err == nil {
		st.CertificateInformation.Pkcs12Blob, err = s.enroll.PFXBlobFor(req, cert, caller)
	}
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

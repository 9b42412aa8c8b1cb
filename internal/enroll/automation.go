package enroll

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/keyfactor"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/steps"
	"github.com/certflow/certflow/workflow"
)

// Automation is the Service as the steps that act on certificates use it
// (steps.Actions): every action is the Keyfactor endpoint's, with its
// checks, made by steps.Actor — a caller with the administrator role, as
// the definitions that act are an administrator's — and carrying the
// Idempotency-Key of the step's origin and the event depth of its run
// (store.Request.EventDepth).
type Automation struct{ s *Service }

var _ steps.Actions = (*Automation)(nil)

// Automation returns the service as steps.Actions.
func (s *Service) Automation() *Automation { return &Automation{s: s} }

// automationCaller is who the actions are made by.
var automationCaller = &Caller{Name: steps.Actor, Roles: []string{config.RoleAdmin}}

// acted classifies an action's error for the step: a refusal (an *Error
// but for want of capacity or readiness) is permanent, with its message;
// anything else may be retried.
func acted(err error) error {
	var e *Error
	if errors.As(err, &e) && e.Kind != TooMany && e.Kind != NotYet {
		return workflow.Permanent(err)
	}
	return err
}

// earlier returns the request an earlier attempt made under key (0: none).
func (a *Automation) earlier(ctx context.Context, key string) (int64, error) {
	return a.earlierOf(ctx, automationCaller.Name, key)
}

// earlierOf is earlier for a request made in caller's name (a renewal is
// its certificate's requester's).
func (a *Automation) earlierOf(ctx context.Context, caller, key string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, a.s.cfg.API.RedisTimeout)
	defer cancel()
	return a.s.store.IdempotentRequest(ctx, caller, key)
}

// again answers a submit that lost the race for its key to a concurrent
// attempt (a Conflict on the Idempotency-Key): the request that attempt
// made, when there is one.
func (a *Automation) again(ctx context.Context, caller, key string, err error, certID int64) (steps.Outcome, error) {
	var e *Error
	if errors.As(err, &e) && e.Kind == Conflict && e.Field == "Idempotency-Key header" {
		if prev, lerr := a.earlierOf(ctx, caller, key); lerr == nil && prev != 0 {
			return steps.Outcome{RequestID: prev, CertificateID: certID, Existing: true}, nil
		}
	}
	return steps.Outcome{}, acted(err)
}

// target loads the issued certificate id names, or refuses permanently.
func (a *Automation) target(ctx context.Context, id int64) (*store.Request, *store.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, a.s.cfg.API.RedisTimeout)
	defer cancel()
	r, c, err := a.s.IssuedCertificate(ctx, id, "")
	if errors.Is(err, store.ErrNotFound) || err == nil && len(c.Chain) == 0 {
		return nil, nil, workflow.Permanent(fmt.Errorf("certificate %d: not found", id))
	}
	return r, c, err
}

// Renew implements steps.Actions: SubmitRenewal's renewal of the
// certificate, with the retained key, the CSR it was issued from (its
// public key certified again), or a new key certflow generates and
// retains.
func (a *Automation) Renew(ctx context.Context, o steps.RenewOrder) (steps.Outcome, error) {
	s, id, key := a.s, o.CertificateID, o.Key(o.CertificateID)
	old, cert, err := a.target(ctx, id)
	if err != nil {
		return steps.Outcome{}, err
	}
	// The renewal is the certificate's requester's, as if they had asked
	// for it: they see, recover and deploy the new certificate, and it
	// passes the checks their renewal would (template access, policy),
	// so automation never issues what its owner could not get. The
	// administrator's definition only decides when.
	owner, err := a.ownerNow(id, old.Requester)
	if err != nil {
		return steps.Outcome{}, err
	}
	// Runs at the same time (two definitions on one event, each with its
	// own key) decide and submit one after the other: the second finds
	// the first's renewal under way (NoteRenewal, below) and skips.
	release, err := s.store.LockRenewal(ctx, id, renewLockWait(s.cfg.API.RedisTimeout))
	if err != nil {
		return steps.Outcome{}, err
	}
	defer release()
	if prev, err := a.earlierOf(ctx, owner.Name, key); err != nil || prev != 0 {
		return steps.Outcome{RequestID: prev, CertificateID: id, Existing: prev != 0}, err
	}
	for _, under := range []struct {
		what string
		of   func(context.Context, int64) (int64, error)
	}{{"renewed", s.store.RenewalUnderWay}, {"revoked", s.store.RevocationUnderWay}} {
		holder, err := under.of(ctx, id)
		if err != nil {
			return steps.Outcome{}, err
		}
		if holder != 0 {
			// An attempt of this step at the same time may have made it.
			if prev, err := a.earlierOf(ctx, owner.Name, key); err == nil && prev == holder {
				return steps.Outcome{RequestID: prev, CertificateID: id, Existing: true}, nil
			}
			return steps.Outcome{CertificateID: id, Skipped: fmt.Sprintf("being %s by request %d", under.what, holder)}, nil
		}
	}
	// Read again after the under-way checks: a renewal or revocation that
	// finished since the first read is no longer under way, and shows
	// here instead.
	if old, cert, err = a.target(ctx, id); err != nil {
		return steps.Outcome{}, err
	}
	by, err := s.store.SupersededBy(ctx, id)
	if err != nil {
		return steps.Outcome{}, err
	}
	if by != 0 {
		return steps.Outcome{CertificateID: id, Skipped: fmt.Sprintf("superseded by %d", by)}, nil
	}
	if rev := cert.Revocation; rev != nil {
		return steps.Outcome{CertificateID: id, Skipped: fmt.Sprintf("revoked (reason %d)", rev.Reason)}, nil
	}
	body := &keyfactor.RenewalRequest{CertificateId: &id}
	var newKey []byte
	switch {
	case o.NewKey:
		tmpl, _ := s.cfg.Template(old.Input.Template)
		if !s.retains(old.Input.Template) {
			return steps.Outcome{}, workflow.Permanent(fmt.Errorf("key: new: template %q does not retain private keys (key_retention), so a key certflow generated for certificate %d could never be recovered; renew with key: retained", old.Input.Template, id))
		}
		leaf, err := x509.ParseCertificate(cert.Chain[0])
		if err != nil {
			return steps.Outcome{}, workflow.Permanent(fmt.Errorf("certificate %d does not parse: %w", id, err))
		}
		spec := pki.SpecOf(leaf.PublicKey)
		if err := checkKeyPolicy(tmpl, spec); err != nil {
			return steps.Outcome{}, workflow.Permanent(fmt.Errorf("key: new: a key like certificate %d's (%s): %w", id, spec, err))
		}
		slot, err := s.keyPool.Acquire(ctx)
		if err != nil {
			return steps.Outcome{}, err
		}
		signer, err := slot.Generate(spec)
		slot.Release()
		if err != nil {
			return steps.Outcome{}, fmt.Errorf("generate a %s key: %w", spec, err)
		}
		if newKey, err = x509.MarshalPKCS8PrivateKey(signer); err != nil {
			return steps.Outcome{}, err
		}
		der, _, err := renewalCSR(leaf, signer)
		if err != nil {
			return steps.Outcome{}, err
		}
		body.CSR = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	case len(old.PrivateKey) == 0 || !s.retains(old.Input.Template):
		// certflow never held this key (or the template no longer
		// retains keys, so the renewal may not carry it): the renewal
		// certifies the public key of the CSR the certificate was
		// issued from, again.
		if len(old.CSR) == 0 {
			return steps.Outcome{}, workflow.Permanent(fmt.Errorf("certificate %d has neither a retained private key nor the CSR it was issued from; renew it with a CSR (POST /Enrollment/Renew) or with key: new", id))
		}
		body.CSR = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: old.CSR}))
	}
	e, err := s.checkRenewal(ctx, owner, body, pki.FormatPEM, key)
	if err != nil {
		return steps.Outcome{}, acted(err)
	}
	if newKey != nil {
		e.privateKey, e.req.Input.HasPrivateKey = newKey, true
	}
	e.req.EventDepth = o.Depth
	req, existing, err := s.submit(ctx, e, nil)
	if err != nil {
		return a.again(ctx, owner.Name, key, err, id)
	}
	if !existing {
		// Noted under the renewal lock, so that a run at the same moment
		// finds it; the idempotency key covers one run's repeats.
		s.noteRenewal(ctx, req)
	}
	return steps.Outcome{RequestID: req.ID, CertificateID: id, Existing: existing}, nil
}

// renewLockWait is how long a renewal waits for another run's to be
// submitted: its checks, a key generated and the submit's round trips.
func renewLockWait(redisTimeout time.Duration) time.Duration {
	return 10*time.Second + 4*redisTimeout
}

// retains reports whether template name retains private keys.
func (s *Service) retains(name string) bool {
	t, ok := s.cfg.Template(name)
	return ok && t.KeyRetention
}

// Revoke implements steps.Actions: Revoke's revocation of one
// certificate; one revoked already or being revoked is skipped.
func (a *Automation) Revoke(ctx context.Context, o steps.RevokeOrder) (steps.Outcome, error) {
	s, id, key := a.s, o.CertificateID, o.Key(o.CertificateID)
	if prev, err := a.earlier(ctx, key); err != nil || prev != 0 {
		return steps.Outcome{RequestID: prev, CertificateID: id, Existing: prev != 0}, err
	}
	now := time.Now().UTC()
	reason := o.Reason
	ask, err := checkRevocation(&keyfactor.RevokeCertificateRequest{CertificateIds: []int64{id}, Reason: &reason, Comment: o.Comment}, now)
	if err != nil {
		return steps.Outcome{}, acted(err)
	}
	q, c, err := a.target(ctx, id)
	if err != nil {
		return steps.Outcome{}, err
	}
	if rev := c.Revocation; rev != nil {
		return steps.Outcome{CertificateID: id, Skipped: fmt.Sprintf("revoked already (reason %d, request %d)", rev.Reason, rev.RequestID)}, nil
	}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.API.RedisTimeout)
	holder, err := s.store.RevocationUnderWay(lctx, id)
	cancel()
	if err != nil {
		return steps.Outcome{}, err
	}
	if holder > 0 {
		// An attempt of this step at the same time may have made it.
		if prev, err := a.earlier(ctx, key); err == nil && prev == holder {
			return steps.Outcome{RequestID: prev, CertificateID: id, Existing: true}, nil
		}
		return steps.Outcome{CertificateID: id, Skipped: fmt.Sprintf("being revoked by request %d", holder)}, nil
	}
	e, err := s.revocationSubmit(q, c, automationCaller, ask, now)
	if err == nil {
		err = s.selectDefinition(e)
	}
	if err != nil {
		return steps.Outcome{}, acted(err)
	}
	e.req.IdempotencyKey, e.req.EventDepth = key, o.Depth
	req, existing, err := a.submitRevocation(ctx, e)
	var other *revocationUnderWay
	if errors.As(err, &other) {
		return steps.Outcome{CertificateID: id, Skipped: fmt.Sprintf("being revoked by request %d", other.holder)}, nil
	}
	if err != nil {
		return steps.Outcome{}, acted(err)
	}
	return steps.Outcome{RequestID: req.ID, CertificateID: id, Existing: existing}, nil
}

// revocationUnderWay: another request holds the certificate's revocation.
type revocationUnderWay struct{ holder int64 }

func (e *revocationUnderWay) Error() string {
	return fmt.Sprintf("a revocation is under way (request %d)", e.holder)
}

// submitRevocation is submitRevocations for one revocation that carries
// an Idempotency-Key: a repeat that lost the race for the key gives its
// claim up and answers the first request.
func (a *Automation) submitRevocation(ctx context.Context, e *enrollment) (*store.Request, bool, error) {
	s := a.s
	ctx, cancel := context.WithTimeout(ctx, 2*s.cfg.API.RedisTimeout)
	defer cancel()
	id, err := s.store.NewID(ctx)
	if err != nil {
		return nil, false, err
	}
	req := &e.req
	req.ID, req.Instance.ID = id, s.store.InstanceID(id)
	certID := req.Input.Revocation.CertificateId
	holder, err := s.store.ClaimRevocation(ctx, certID, id, s.store.RevocationOver)
	switch {
	case errors.Is(err, store.ErrConflict):
		// Another attempt of this step may hold it, its request not yet
		// stored under the key: wait for the key a moment.
		for i := 0; i < 20; i++ {
			prev, lerr := a.earlier(ctx, req.IdempotencyKey)
			if lerr == nil && prev == holder {
				return &store.Request{ID: prev}, true, nil
			}
			select {
			case <-ctx.Done():
				return nil, false, ctx.Err()
			case <-time.After(25 * time.Millisecond):
			}
		}
		return nil, false, &revocationUnderWay{holder: holder}
	case errors.Is(err, store.ErrNotFound):
		return nil, false, fieldError(NotFound, keyfactor.CodeNotFound, "certificate", "certificate %d: not found", certID)
	case err != nil:
		return nil, false, err
	}
	prev, existing, err := s.store.CreateQueued(ctx, req, s.cfg.API.IdempotencyTTL, s.firstRun(req), store.KeyChecks{})
	if err != nil || existing {
		s.store.ReleaseRevocation(context.WithoutCancel(ctx), certID, id)
	}
	if err != nil {
		return nil, false, err
	}
	if existing {
		return &store.Request{ID: prev}, true, nil
	}
	s.log.Info("revocation accepted", "request", req.ID, "instance", req.Instance.ID, "certificate", certID,
		"reason", req.Input.Revocation.Reason, "requester", req.Requester.Name, "key", req.IdempotencyKey)
	return req, false, nil
}

// Enroll implements steps.Actions: SubmitCSR's enrollment of o.CSR, or
// SubmitPFX's of a key certflow generates (o.Subject) and retains, which
// the template must allow. The PKCS#12 password such an enrollment needs
// is derived from its key (it protects an archive nobody receives: an
// administrator recovers the key with a password of their own).
func (a *Automation) Enroll(ctx context.Context, o steps.EnrollOrder) (steps.Outcome, error) {
	s, key := a.s, o.Key(0)
	if prev, err := a.earlier(ctx, key); err != nil || prev != 0 {
		return steps.Outcome{RequestID: prev, Existing: prev != 0}, err
	}
	body := keyfactor.EnrollmentCSRRequest{
		CSR: o.CSR, Template: o.Template, CertificateAuthority: o.CA, SANs: o.SANs,
		Timestamp: time.Now().UTC().Format(time.RFC3339),
	}
	if len(o.Metadata) > 0 {
		body.Metadata = make(map[string]any, len(o.Metadata))
		for k, v := range o.Metadata {
			body.Metadata[k] = v
		}
	}
	var e *enrollment
	var err error
	if o.CSR != "" {
		if e, err = s.checkCSR(automationCaller, &body, pki.FormatPEM, false, key); err == nil {
			e.keyID = pki.CSRKeyID(e.csr)
		}
	} else {
		if tmpl, ok := s.cfg.Template(o.Template); ok && !tmpl.KeyRetention {
			return steps.Outcome{}, workflow.Permanent(fmt.Errorf("subject: template %s does not retain private keys (key_retention), so a key certflow generated could never be recovered; give a csr", tmpl.Name))
		}
		e, err = s.checkPFX(automationCaller, &keyfactor.EnrollmentPFXRequest{
			EnrollmentCSRRequest: body, Subject: o.Subject, Password: a.pfxPassword(key),
		}, key)
	}
	if err != nil {
		return steps.Outcome{}, acted(err)
	}
	e.req.EventDepth = o.Depth
	req, existing, err := s.submit(ctx, e, nil)
	if err != nil {
		return a.again(ctx, automationCaller.Name, key, err, 0)
	}
	return steps.Outcome{RequestID: req.ID, Existing: existing}, nil
}

// pfxPassword is the password of an enrollment's PKCS#12, the same for
// every attempt of the step (the submit's fingerprint covers it) and
// known to no one: a MAC of the key under the KEK.
func (a *Automation) pfxPassword(key string) string {
	var sum []byte
	if a.s.kek != nil {
		sum = a.s.kek.MAC("automation-pfx", []byte(key))
	} else {
		h := sha256.Sum256([]byte("automation-pfx\x00" + key))
		sum = h[:]
	}
	return hex.EncodeToString(sum)[:32]
}

// SetMetadata implements steps.Actions: UpdateMetadata's edit of one
// certificate, but that a workflow may set the fields workflows set.
func (a *Automation) SetMetadata(ctx context.Context, o steps.MetadataOrder) (steps.Outcome, error) {
	in := make(map[string]any, len(o.Values))
	for k, v := range o.Values {
		in[k] = v
	}
	edit, err := a.s.checkMetadataEditBy(in, nil, true)
	if err != nil {
		return steps.Outcome{}, acted(err)
	}
	n, err := a.s.editMetadata(ctx, automationCaller, []int64{o.CertificateID}, func(int) string { return "certificate" }, edit)
	var e *Error
	if errors.As(err, &e) && e.Kind == Conflict {
		return steps.Outcome{}, err // changed by others on every try: later
	}
	if err != nil {
		return steps.Outcome{}, acted(err)
	}
	out := steps.Outcome{CertificateID: o.CertificateID}
	if n == 0 {
		out.Skipped = "unchanged"
	}
	return out, nil
}

// FindCertificates implements steps.Actions: the certificates a
// Keyfactor query matches, as GET /Certificates searches them (the
// inventory's indexes, within api.max_index_read and api.max_scan), at
// most limit of them (more: *steps.TooManyError).
func (a *Automation) FindCertificates(ctx context.Context, query string, limit int) ([]int64, error) {
	s := a.s
	terms, err := s.parseCertificateQuery(query)
	if err != nil {
		return nil, workflow.Permanent(err)
	}
	if len(terms) == 0 {
		return nil, workflow.Permanent(errors.New("query: at least one clause is required"))
	}
	// The step refuses an empty value from an expression; one empty only
	// once normalized ("0" or ":" of a serial number) would widen the
	// query to every certificate as much.
	for _, t := range terms {
		if store.MatchesEverything(t) {
			return nil, workflow.Permanent(fmt.Errorf("query: %s -%s %q: the value is empty once normalized as the inventory compares it, and would match every certificate", t.Field, t.Op, t.Value))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*s.cfg.API.RedisTimeout)
	defer cancel()
	ready, err := s.store.InventoryReady(ctx)
	if err != nil {
		return nil, err
	}
	if !ready {
		s.buildInventoryLater()
		return nil, errors.New("the certificate inventory's indexes are being built; the search is tried again")
	}
	res, err := s.store.QueryCertificates(ctx, store.Query{
		Terms: terms, Limit: limit + 1, MaxIndex: s.cfg.API.MaxIndexRead, MaxRecords: s.cfg.API.MaxScan,
	})
	var tb *store.TooBroadError
	switch {
	case errors.As(err, &tb):
		return nil, workflow.Permanent(fmt.Errorf("query %s: %w", query, tb))
	case err != nil:
		return nil, err
	case len(res.Matches) > limit:
		return nil, &steps.TooManyError{Limit: limit}
	}
	ids := make([]int64, len(res.Matches))
	for i, m := range res.Matches {
		ids[i] = m.Certificate.ID
	}
	return ids, nil
}

// queryTermRE and queryAndRE read a Keyfactor query as GET /Certificates
// does: `Field -op "value"` clauses (a quoted value holds anything but a
// quote) joined by AND.
var (
	queryTermRE = regexp.MustCompile(`(?i)^\s*([A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z0-9_-]+)?)\s+-([a-z]+)\s+(?:"([^"]*)"|([^\s"]+))`)
	queryAndRE  = regexp.MustCompile(`(?i)^\s+AND\s+`)
)

// parseCertificateQuery reads a query into the inventory's terms: the
// certificate fields GET /Certificates takes, SAN, and metadata fields by
// their configured names or as Metadata.<name>.
func (s *Service) parseCertificateQuery(qs string) ([]store.Term, error) {
	var terms []store.Term
	for rest := strings.TrimSpace(qs); rest != ""; {
		m := queryTermRE.FindStringSubmatch(rest)
		if m == nil {
			return nil, fmt.Errorf("query: %q is not a clause of the form Field -eq \"value\" (clauses joined by AND)", rest)
		}
		clause := strings.TrimSpace(m[0])
		if rest = rest[len(m[0]):]; rest != "" {
			and := queryAndRE.FindString(rest)
			if and == "" {
				return nil, fmt.Errorf("query: %q follows %q: clauses are joined by AND", rest, clause)
			}
			if rest = rest[len(and):]; rest == "" {
				return nil, errors.New("query: AND ends the query: a clause must follow it")
			}
		}
		field := strings.ToLower(m[1])
		if store.OpsOf(field) == nil {
			name, ok := strings.CutPrefix(field, "metadata.")
			if !ok && slices.ContainsFunc(s.cfg.Metadata, func(f config.MetaField) bool { return strings.EqualFold(f.Name, field) }) {
				name, ok = field, true
			}
			if ok {
				field = "metadata." + name
			}
		}
		t := store.Term{Field: field, Op: strings.ToLower(m[2]), Value: m[3] + m[4]}
		if store.OpsOf(field) == nil {
			return nil, fmt.Errorf("query: unknown field %q in %q", m[1], clause)
		}
		if err := store.CheckTerm(t); err != nil {
			return nil, fmt.Errorf("query: %v", err)
		}
		if terms = append(terms, t); len(terms) > store.MaxTerms {
			return nil, fmt.Errorf("query: at most %d clauses", store.MaxTerms)
		}
	}
	return terms, nil
}

// checkClientKey refuses a client's Idempotency-Key in the automation's
// namespace (steps.KeyPrefix).
func checkClientKey(key string) error {
	if strings.HasPrefix(key, steps.KeyPrefix) {
		return badField("Idempotency-Key header", "keys starting %q are certflow's own", steps.KeyPrefix)
	}
	return nil
}

// ownerNow is who a renewal of certificate id is made for: its requester,
// with the roles they hold now where certflow knows them — a configured
// user's from the configuration, the admin token's admin — so that a
// requester whose roles were taken away, or who was removed, gets no
// renewal their own request would not get. An identity provider's user
// keeps the roles their token carried when they asked: certflow learns a
// token user's roles only from a token. certflow's own callers are
// themselves.
func (a *Automation) ownerNow(id int64, r workflow.Requester) (*Caller, error) {
	auth := a.s.cfg.Auth
	switch {
	case r.Name == config.AdminName:
		return &Caller{Name: r.Name, Roles: []string{config.RoleAdmin}}, nil
	case strings.HasPrefix(r.Name, config.SystemNamePrefix):
		return &Caller{Name: r.Name, Roles: automationCaller.Roles}, nil
	case auth.OIDC.Issuer != "" && auth.OIDC.UsernamePrefix != "" && strings.HasPrefix(r.Name, auth.OIDC.UsernamePrefix):
		return &Caller{Name: r.Name, Roles: r.Roles}, nil
	}
	for _, u := range auth.Users {
		if u.Name == r.Name {
			return &Caller{Name: u.Name, Roles: u.Roles}, nil
		}
	}
	return nil, workflow.Permanent(fmt.Errorf("certificate %d's requester %q is no longer a configured user: it is renewed by nobody on their behalf (an administrator may renew it by hand)", id, r.Name))
}

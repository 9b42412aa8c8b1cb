package steps

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/pki"
	"github.com/certflow/certflow/internal/redact"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
)

// orderRecord is what the issue step keeps with a request whose CA issues
// by order (store.IssueClaim.RecordOrder): the CA, its order, and when the
// order was placed.
type orderRecord struct {
	Authority string    `json:"Authority"`
	Order     ca.Order  `json:"Order"`
	Placed    time.Time `json:"Placed"`
}

// recordedOrder reads the order recorded for a request and the one a
// restart retired (zero: none).
func (is Issue) recordedOrder(ctx context.Context, requestID int64) (current, retired orderRecord, err error) {
	cur, old, err := is.Store.OrderOf(ctx, requestID)
	if err != nil {
		return current, retired, workflow.RetryLater(err)
	}
	for _, r := range []struct {
		data []byte
		into *orderRecord
	}{{cur, &current}, {old, &retired}} {
		if r.data == nil {
			continue
		}
		if err := json.Unmarshal(r.data, r.into); err != nil {
			return current, retired, workflow.Permanent(fmt.Errorf("the order recorded for request %d does not decode: %w", requestID, err))
		}
	}
	return current, retired, nil
}

// order is the issue step for a CA that issues by order (ACME). Under the
// issue claim it looks for the request's recorded order; with none, it
// places one and records it before anything acts on it, so that a crash
// at any point resumes that order and never places a second. Then it moves
// the order on (ca.Orderer.Advance). Issued, it returns the certificate
// (its record) for the caller to mark signed under the claim; otherwise
// the instance waits (an authority wait, looked at again after a backoff
// or the CA's Retry-After), holding no worker.
func (is Issue) order(ctx context.Context, run *workflow.Run, claim *store.IssueClaim, o ca.Orderer, p prepared, rec orderRecord) (workflow.Result, *store.Certificate, error) {
	acfg := p.ca.ACME
	if err := orderableNames(run, p.ca.Name); err != nil {
		return workflow.Result{}, nil, err
	}
	now := time.Now().UTC()
	// Placed is when certflow first asked the CA: order_timeout counts
	// from there, and so do the waits between looks, also while the CA
	// cannot even take the order.
	first := rec.Placed.IsZero()
	if first {
		rec.Authority, rec.Placed = p.ca.Name, now
	}
	// Past order_timeout the request ends, after one last look at a
	// placed order: one the CA has issued meanwhile is released, not
	// given up (which would revoke it), and one it is finishing
	// (processing, or valid with the certificate still to fetch) gets
	// finishGrace more: given up then, the certificate the CA issues a
	// moment later would be neither released nor revoked.
	deadline := func(finishing bool) time.Time {
		d := rec.Placed.Add(acfg.OrderTimeout)
		if finishing {
			d = d.Add(max(acfg.MaxPollInterval, finishGrace))
		}
		return d
	}
	late := now.After(deadline(false))
	timedOut := func() (workflow.Result, *store.Certificate, error) {
		is.abandon(ctx, run, rec, claim)
		return workflow.Result{}, nil, workflow.Permanent(fmt.Errorf("certificate authority %s did not issue within %s (order_timeout) of being asked (order %s)",
			p.ca.Name, acfg.OrderTimeout, cmp.Or(redact.URL(rec.Order.URL), "never placed")))
	}
	if late && rec.Order.URL == "" {
		return timedOut()
	}
	if rec.Order.URL == "" {
		// The lock is renewed first: placing may take up to the CA's
		// timeout, and nobody else may place meanwhile.
		if err := claim.Extend(ctx); err != nil {
			return workflow.Result{}, nil, workflow.RetryLater(fmt.Errorf("issue: %w", err))
		}
		pctx, cancel := context.WithTimeout(ctx, min(acfg.Timeout, store.IssueLockTTL/2))
		placed, err := o.Place(pctx, p.req)
		cancel()
		if err != nil {
			res, cert, err := is.orderTrouble(run, p, rec.Placed, deadline(false), err)
			if first && res.Suspend != nil {
				// The request waits: when asking began, for the next
				// try's wait and timeout (a refusal records nothing).
				if rerr := is.record(ctx, claim, rec, true); rerr != nil {
					return workflow.Result{}, nil, workflow.RetryLater(fmt.Errorf("record order: %w", rerr))
				}
			}
			return res, cert, err
		}
		rec.Order = placed
		if err := is.record(ctx, claim, rec, first); err != nil {
			run.Log.Warn("order placed but not recorded; it is abandoned", "authority", p.ca.Name, "order", redact.URL(placed.URL), "err", err)
			return workflow.Result{}, nil, workflow.RetryLater(fmt.Errorf("record order: %w", err))
		}
		run.Log.Info("order placed", "authority", p.ca.Name, "order", redact.URL(placed.URL))
	}
	// Several exchanges with the CA, under a claim renewed for them and
	// bounded well within its lifetime: nobody else moves the order
	// meanwhile, and a CA that stalls holds the worker for that long at
	// most.
	if err := claim.Extend(ctx); err != nil {
		return workflow.Result{}, nil, workflow.RetryLater(fmt.Errorf("issue: %w", err))
	}
	actx, cancel := context.WithTimeout(ctx, min(4*acfg.Timeout, store.IssueLockTTL*3/4))
	prog, err := o.Advance(actx, p.req, rec.Order)
	cancel()
	late = now.After(deadline(prog.Finishing))
	if err != nil {
		res, cert, err := is.orderTrouble(run, p, rec.Placed, deadline(prog.Finishing), err)
		if late && res.Suspend != nil {
			return timedOut()
		}
		return res, cert, err
	}
	if !sameOrder(prog.Order, rec.Order) && prog.Order.URL != "" {
		rec.Order = prog.Order
		if err := is.record(ctx, claim, rec, false); err != nil {
			return workflow.Result{}, nil, workflow.RetryLater(fmt.Errorf("record order: %w", err))
		}
	}
	if prog.Issued == nil {
		if late {
			return timedOut()
		}
		return waitForAuthority(p, prog.Status, rec.Placed, deadline(prog.Finishing), prog.RetryAfter), nil, nil
	}
	if err := issuedForCSR(prog.Issued, run.CSR); err != nil {
		// Never released: a certificate that is not the request's.
		return workflow.Result{}, nil, workflow.Permanent(fmt.Errorf("certificate authority %s: %w", p.ca.Name, err))
	}
	cert := is.certificate(run, p, prog.Issued)
	return issued(cert, true), cert, nil
}

// abandon gives the recorded order up at its CA (ca.Abandoner), best
// effort: the request will not wait for it any longer. The CA may have
// issued the order's certificate meanwhile (revokeUnreleased). It reports
// whether nothing is left to do at the CA (false: try again later).
func (is Issue) abandon(ctx context.Context, run *workflow.Run, rec orderRecord, claim *store.IssueClaim) (done bool) {
	if rec.Order.URL == "" || is.CAs == nil {
		return true
	}
	auth, ok := is.CAs.Get(rec.Authority)
	if !ok {
		return true // a CA no longer configured: nobody to tell
	}
	a, ok := auth.(ca.Abandoner)
	if !ok {
		return true
	}
	timeout := store.IssueLockTTL / 2
	if c, ok := is.Config.CA(rec.Authority); ok && c.ACME != nil {
		timeout = min(c.ACME.Timeout, timeout)
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	order := redact.URL(rec.Order.URL)
	leaf, err := a.Abandon(actx, rec.Order)
	done = leaf == nil || is.revokeUnreleased(actx, run, auth, claim, leaf, "authority", rec.Authority, "order", order)
	if err != nil {
		run.Log.Warn("could not give the order up at its CA", "authority", rec.Authority, "order", order, "err", err)
		return false
	}
	run.Log.Info("order given up at its CA", "authority", rec.Authority, "order", order)
	return done
}

// revokeUnreleased revokes at its CA (cessationOfOperation) the
// certificate of an order given up after the CA issued it, if certflow
// never released it: the CA has published it, and the requester holds
// its key. It must be the request's (its CSR's key: a CA may hand two
// requests for the same names one order), in no request's record (two
// requests with one CSR may share a leaf), and the request's issue claim
// must still be the caller's right before the revocation (claim.Extend:
// the lock never lapsed, so nobody released it meanwhile). Otherwise it
// is left alone. It reports whether that is settled: false when it could
// not be decided or revoked now (worth trying again).
func (is Issue) revokeUnreleased(ctx context.Context, run *workflow.Run, auth ca.Authority, claim *store.IssueClaim, leaf []byte, logArgs ...any) (settled bool) {
	log := run.Log.With(logArgs...)
	r, ok := auth.(ca.RemoteRevoker)
	if !ok {
		log.Warn("the CA issued the given-up order's certificate, and cannot be asked to revoke it")
		return true
	}
	cert, err := x509.ParseCertificate(leaf)
	if err != nil || run.CSR == nil || !pki.SamePublicKey(cert.PublicKey, run.CSR.PublicKey) {
		log.Warn("the given-up order's certificate is not for the request's key; not revoked")
		return true
	}
	if _, err := is.Store.CertificateByThumbprint(ctx, pki.Thumbprint(leaf)); !errors.Is(err, store.ErrNotFound) {
		log.Warn("the given-up order's certificate is in the inventory, or the inventory cannot say; not revoked", "err", err)
		return err == nil
	}
	if claim == nil || claim.Extend(ctx) != nil {
		log.Warn("the CA issued the given-up order's certificate; not revoked, as the request's issue lock is not this worker's and another may be releasing it")
		return false
	}
	if err := r.RevokeAtCA(ctx, leaf, revocationReasons["cessationofoperation"]); err != nil {
		log.Error("the CA issued the given-up order's certificate, which certflow never released, and it could not be revoked", "err", err)
		return false
	}
	log.Warn("the CA issued the given-up order's certificate, which certflow never released; revoked at the CA")
	return true
}

// record writes the order record under the claim.
func (is Issue) record(ctx context.Context, claim *store.IssueClaim, rec orderRecord, first bool) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return claim.RecordOrder(context.WithoutCancel(ctx), data, first)
}

// finishGrace is how long past order_timeout an order the CA is
// finishing is still looked at (at least max_poll_interval).
const finishGrace = time.Minute

// orderTrouble decides what an error from the CA means for the request:
// a problem document that refuses what was asked denies it, another
// problem fails it, both with the CA's words; a CA that asks for time, or
// cannot be reached, or answers 5xx, leaves it waiting.
func (is Issue) orderTrouble(run *workflow.Run, p prepared, placed, deadline time.Time, err error) (workflow.Result, *store.Certificate, error) {
	var prob *ca.Problem
	var later *ca.RetryAfterError
	switch {
	case errors.As(err, &later):
		run.Log.Warn("certificate authority asks for time", "authority", p.ca.Name, "retry_after", later.After, "err", err)
		return waitForAuthority(p, "rate limited", placed, deadline, max(later.After, time.Second)), nil, nil
	case errors.As(err, &prob) && prob.Refusal(), errors.Is(err, ca.ErrRefused):
		return workflow.Result{}, nil, workflow.Deny("certificate authority %s refused: %v", p.ca.Name, err)
	case errors.As(err, &prob):
		return workflow.Result{}, nil, workflow.Permanent(fmt.Errorf("certificate authority %s: %w", p.ca.Name, err))
	}
	run.Log.Warn("certificate authority unavailable; the request waits", "authority", p.ca.Name, "err", err)
	return waitForAuthority(p, "unavailable", placed, deadline, 0), nil, nil
}

// waitForAuthority suspends the instance until the next look at the
// order: after retryAfter when the CA named a time, else after as long as
// the order has been open (so the waits double), from poll_interval up to
// max_poll_interval; never after deadline (order_timeout, and the grace
// of an order the CA is finishing). The delay counts from when the CA's
// answer (or its silence) ended, not from when the step began: a CA that
// stalls for longer than the delay would otherwise be asked again at
// once, over and over, holding a worker.
func waitForAuthority(p prepared, status string, placed, deadline time.Time, retryAfter time.Duration) workflow.Result {
	acfg := p.ca.ACME
	now := time.Now().UTC()
	delay := retryAfter
	if delay <= 0 {
		delay = min(max(now.Sub(placed), acfg.PollInterval), acfg.MaxPollInterval)
	}
	// Never past the order's deadline: that look ends it.
	if end := deadline.Sub(now) + time.Millisecond; end < delay {
		delay = max(end, time.Millisecond)
	}
	return workflow.Result{Suspend: &workflow.Wait{
		Kind: workflow.WaitAuthority, Authority: p.ca.Name, Status: status, Deadline: now.Add(delay),
	}}
}

func sameOrder(a, b ca.Order) bool { return a.URL == b.URL && bytes.Equal(a.State, b.State) }

// orderableNames refuses what an ACME CA cannot certify as asked: it
// certifies the CSR's own DNS names and IP addresses (the CSR is what the
// order is finalized with), so SANs the request adds beyond the CSR's, and
// e-mail or URI SANs, are denied at once rather than lost.
func orderableNames(run *workflow.Run, caName string) error {
	sans := run.Env.SANs
	if len(sans.Email) > 0 || len(sans.URI) > 0 {
		return workflow.Deny("certificate authority %s (ACME) certifies DNS names and IP addresses only; the request has %s",
			caName, strings.Join(append(slices.Clone(sans.Email), sans.URI...), ", "))
	}
	in := csrNames(run.CSR)
	var extra []string
	for _, d := range sans.DNS {
		if !in[nameKey(d)] {
			extra = append(extra, d)
		}
	}
	for _, s := range sans.IP {
		if net.ParseIP(s) == nil || !in[nameKey(s)] {
			extra = append(extra, s)
		}
	}
	if len(extra) > 0 {
		return workflow.Deny("certificate authority %s (ACME) certifies the CSR's names as they are; the request adds %s, which the CSR does not carry",
			caName, strings.Join(extra, ", "))
	}
	return nil
}

// issuedForCSR checks that a certificate an external CA returned is the
// request's: its public key is the CSR's, and its chain verifies link by
// link (each certificate signed by the next).
func issuedForCSR(iss *ca.Issued, csr *x509.CertificateRequest) error {
	if iss.Leaf == nil || len(iss.Chain) == 0 {
		return errors.New("returned no certificate")
	}
	want, err := pki.PublicKeyID(csr.PublicKey)
	if err != nil {
		return err
	}
	got, err := pki.PublicKeyID(iss.Leaf.PublicKey)
	if err != nil || got != want {
		return errors.New("returned a certificate for another public key than the CSR's")
	}
	if iss.Leaf.IsCA {
		return errors.New("returned a CA certificate, not an end-entity one")
	}
	if extra := namesBeyondCSR(iss.Leaf, csr); len(extra) > 0 {
		return fmt.Errorf("returned a certificate for names the request did not ask for (%s): policy approved the CSR's names only", strings.Join(extra, ", "))
	}
	if !bytes.Equal(iss.Chain[0], iss.Leaf.Raw) {
		return errors.New("returned a chain that does not start with its certificate")
	}
	child := iss.Leaf
	for i, der := range iss.Chain[1:] {
		parent, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("chain certificate %d does not parse: %w", i+1, err)
		}
		if err := child.CheckSignatureFrom(parent); err != nil {
			return fmt.Errorf("chain certificate %d did not sign the one before it: %w", i+1, err)
		}
		child = parent
	}
	return nil
}

// namesBeyondCSR lists what leaf certifies that csr did not ask for (and
// policy did not approve): a DNS name or IP address not among the CSR's
// names (its SANs, and its CN), a CN that is none of them, any e-mail or
// URI SAN. The order an ACME CA reports is the CA's word: what it signed
// is checked against what certflow approved.
func namesBeyondCSR(leaf *x509.Certificate, csr *x509.CertificateRequest) []string {
	asked := csrNames(csr)
	var extra []string
	for _, d := range leaf.DNSNames {
		if !asked[nameKey(d)] {
			extra = append(extra, d)
		}
	}
	for _, ip := range leaf.IPAddresses {
		if !asked[ip.String()] {
			extra = append(extra, ip.String())
		}
	}
	if c := leaf.Subject.CommonName; c != "" && !asked[nameKey(c)] {
		extra = append(extra, "CN "+c)
	}
	extra = append(extra, leaf.EmailAddresses...)
	for _, u := range leaf.URIs {
		extra = append(extra, u.String())
	}
	return extra
}

// csrNames is the set of names a CSR asks for, by nameKey: its DNS SANs,
// its IP SANs and its CN. What an ACME CA is asked for, and what it may
// certify, are both checked against it.
func csrNames(csr *x509.CertificateRequest) map[string]bool {
	names := map[string]bool{}
	for _, d := range csr.DNSNames {
		names[nameKey(d)] = true
	}
	for _, ip := range csr.IPAddresses {
		names[ip.String()] = true
	}
	if cn := csr.Subject.CommonName; cn != "" {
		names[nameKey(cn)] = true
	}
	return names
}

// nameKey is how a name compares: an IP address in its canonical form
// (an IPv4-mapped IPv6 address as IPv4), a DNS name lower-cased without a
// final dot.
func nameKey(n string) string {
	if ip := net.ParseIP(n); ip != nil {
		return ip.String()
	}
	return strings.ToLower(strings.TrimSuffix(n, "."))
}

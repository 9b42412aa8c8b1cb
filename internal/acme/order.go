package acme

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/acme/api"

	"github.com/certflow/certflow/internal/ca"
	"github.com/certflow/certflow/internal/config"
)

// ErrUnsupportedName is Place's refusal of a CSR naming what ACME cannot
// validate here (an email address, a URI, a wildcard by http-01, no name
// at all): the caller denies the request (it is a ca.ErrRefused: asking
// again does not help). It is wrapped with the name.
var ErrUnsupportedName error = refusal("the CSR names what this ACME CA cannot validate")

// refusal is an error that is a ca.ErrRefused, in words of its own.
type refusal string

func (r refusal) Error() string { return string(r) }
func (r refusal) Unwrap() error { return ca.ErrRefused }

// http01TTL is how long an http-01 answer stays in Redis; retrigger is
// how long a triggered challenge may stay pending before it is asked for
// again (the CA may have lost the first request).
const (
	http01TTL = 2 * time.Hour
	retrigger = time.Minute
)

// orderState is Order.State: what this CA did for the order, so that a
// later Advance (another process, after a crash) does not do it again.
type orderState struct {
	Placed time.Time `json:"placed"`
	// Authz are the challenges presented, by authorization URL.
	Authz map[string]*authzState `json:"authz,omitempty"`
}

type authzState struct {
	Identifier string    `json:"identifier"`
	Type       string    `json:"type"`
	Challenge  string    `json:"challenge"`
	Token      string    `json:"token"`
	Presented  time.Time `json:"presented,omitzero"`
	Triggered  time.Time `json:"triggered,omitzero"`
}

// Identifiers lists what an order for csr must name: its DNS SANs, its
// CN when it is a DNS name not among them, its IP SANs (lower-cased,
// unique). Emails and URIs, a wildcard when the challenge is http-01, or
// no name at all wrap ErrUnsupportedName.
func Identifiers(csr *x509.CertificateRequest, challenge string) ([]string, error) {
	if len(csr.EmailAddresses) > 0 {
		return nil, fmt.Errorf("%w: email address %q", ErrUnsupportedName, csr.EmailAddresses[0])
	}
	if len(csr.URIs) > 0 {
		return nil, fmt.Errorf("%w: URI %q", ErrUnsupportedName, csr.URIs[0].String())
	}
	var names []string
	add := func(n string) {
		n = strings.ToLower(n)
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, n := range csr.DNSNames {
		if strings.HasPrefix(n, "*.") && challenge == config.ChallengeHTTP01 {
			return nil, fmt.Errorf("%w: wildcard %q needs dns-01", ErrUnsupportedName, n)
		}
		add(n)
	}
	if cn := csr.Subject.CommonName; cn != "" && isDNSName(cn) && net.ParseIP(cn) == nil {
		if strings.HasPrefix(cn, "*.") && challenge == config.ChallengeHTTP01 {
			return nil, fmt.Errorf("%w: wildcard %q needs dns-01", ErrUnsupportedName, cn)
		}
		add(cn)
	}
	for _, ip := range csr.IPAddresses {
		add(ip.String())
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: no DNS name or IP address", ErrUnsupportedName)
	}
	return names, nil
}

// isDNSName reports whether s reads as a host name (labels of letters,
// digits and hyphens, at least two, the first may be "*").
func isDNSName(s string) bool {
	labels := strings.Split(strings.TrimSuffix(s, "."), ".")
	if len(s) > 253 || len(labels) < 2 {
		return false
	}
	for i, l := range labels {
		if l == "*" && i == 0 {
			continue
		}
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Place creates an order for the names of req.CSR, with the configured
// profile. An account the CA no longer knows (a CA that lost its state, an
// account deactivated) is registered again with the same key, and the
// order placed once more.
func (a *Authority) Place(ctx context.Context, req *ca.Request) (ca.Order, error) {
	o, err := a.place(ctx, req)
	if a.forgetLostAccount(ctx, err) {
		o, err = a.place(ctx, req)
	}
	return o, err
}

func (a *Authority) place(ctx context.Context, req *ca.Request) (ca.Order, error) {
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return ca.Order{}, fmt.Errorf("acme %s: the request's CSR does not parse: %w", a.name, err)
	}
	names, err := Identifiers(csr, a.cfg.Challenge)
	if err != nil {
		return ca.Order{}, err
	}
	core, err := a.client(ctx)
	if err != nil {
		return ca.Order{}, err
	}
	ctx, slot := withRetryAfter(ctx)
	o, err := core.Orders.New(ctx, names, &api.OrderOptions{Profile: a.cfg.Profile})
	if err != nil {
		return ca.Order{}, a.mapErr("new order", err, slot)
	}
	if o.Location == "" {
		return ca.Order{}, fmt.Errorf("acme %s: the CA created an order without naming its URL", a.name)
	}
	state, _ := json.Marshal(orderState{Placed: time.Now().UTC()})
	a.log.Info("acme order placed", "names", len(names), "status", o.Status)
	return ca.Order{URL: o.Location, State: state}, nil
}

// Advance moves the order on as far as it goes now (see ca.Orderer). An
// order of an account the CA no longer knows is lost with it: the CA's
// problem is returned, and the account registered again for the next
// order.
func (a *Authority) Advance(ctx context.Context, req *ca.Request, o ca.Order) (ca.Progress, error) {
	p, err := a.advance(ctx, req, o)
	a.forgetLostAccount(ctx, err)
	p.Finishing = p.Status == legoacme.StatusProcessing || p.Status == legoacme.StatusValid
	return p, err
}

func (a *Authority) advance(ctx context.Context, req *ca.Request, o ca.Order) (ca.Progress, error) {
	var st orderState
	if len(o.State) > 0 {
		if err := json.Unmarshal(o.State, &st); err != nil {
			return ca.Progress{}, fmt.Errorf("acme %s: the order's state does not decode: %w", a.name, err)
		}
	}
	core, err := a.client(ctx)
	if err != nil {
		return ca.Progress{}, err
	}
	ctx, slot := withRetryAfter(ctx)
	ord, err := core.Orders.Get(ctx, o.URL)
	if err != nil {
		return ca.Progress{}, a.mapErr("get order", err, slot)
	}
	p := ca.Progress{Order: o, Status: ord.Status, RetryAfter: slot.get()}
	asked, err := askedNames(req, a.cfg.Challenge)
	if err != nil {
		return p, err
	}
	if err := ordersAsked(ord.Order, asked); err != nil {
		return p, err
	}
	switch ord.Status {
	case legoacme.StatusPending:
		wait, err := a.authorize(ctx, core, ord.Order, &st, asked)
		p.Order.State, _ = json.Marshal(st)
		if err != nil {
			if _, refused := errors.AsType[*ca.Problem](err); refused {
				a.cleanup(ctx, core, &st)
			}
			return p, err
		}
		p.RetryAfter = max(p.RetryAfter, wait)
		return p, nil
	case legoacme.StatusReady:
		fin, err := core.Orders.UpdateForCSR(ctx, ord.Finalize, req.CSR)
		if err != nil {
			if pd, ok := errors.AsType[*legoacme.ProblemDetails](err); ok && pd.Type == legoacme.OrderNotReadyErrorType {
				// Another process finalized it first: look again later.
				return p, nil
			}
			if _, ok := errors.AsType[*legoacme.ProblemDetails](err); ok {
				a.cleanup(ctx, core, &st)
			}
			return p, a.mapErr("finalize order", err, slot)
		}
		p.Status, p.RetryAfter = fin.Status, slot.get()
		if fin.Status != legoacme.StatusValid {
			return p, nil
		}
		ord.Order = fin.Order
		fallthrough
	case legoacme.StatusValid:
		issued, err := a.download(ctx, core, req, ord.Order, slot)
		if err != nil {
			return p, err
		}
		a.cleanup(ctx, core, &st)
		p.Issued = issued
		return p, nil
	case legoacme.StatusInvalid:
		a.cleanup(ctx, core, &st)
		azp := a.authzProblem(ctx, core, ord.Order)
		if ord.Error != nil {
			prob := problem(ord.Error)
			if azp != nil {
				// A name's validation failed: say which, and that the
				// request fails rather than is refused.
				if len(prob.Subproblems) == 0 {
					prob.Subproblems = azp.Subproblems
				}
				prob.Validation = true
			}
			return p, prob
		}
		if azp != nil {
			return p, azp
		}
		return p, &ca.Problem{Type: "about:blank", Detail: "the CA made the order invalid without saying why"}
	default: // processing, or a status to wait out
		return p, nil
	}
}

// authorize answers the order's pending authorizations: presents the
// configured challenge (unless this order's state says it was) and asks
// the CA to validate it, once any DNS propagation delay has passed.
// wait is how long until that delay ends, for the one not yet asked.
func (a *Authority) authorize(ctx context.Context, core *api.Core, ord legoacme.Order, st *orderState, asked map[string]bool) (wait time.Duration, err error) {
	if st.Authz == nil {
		st.Authz = map[string]*authzState{}
	}
	for _, u := range ord.Authorizations {
		slot := &retryAfterSlot{}
		ctx := context.WithValue(ctx, retryAfterKey{}, slot)
		az, err := core.Authorizations.Get(ctx, u)
		if err != nil {
			return 0, a.mapErr("get authorization", err, slot)
		}
		switch az.Status {
		case legoacme.StatusValid:
			continue // validated before (the CA reuses authorizations)
		case legoacme.StatusPending:
		case legoacme.StatusInvalid:
			return 0, authzRefusal(az)
		default:
			return 0, &ca.Problem{Type: "about:blank", Detail: fmt.Sprintf("the authorization for %s is %s", az.Identifier.Value, az.Status)}
		}
		i := slices.IndexFunc(az.Challenges, func(c legoacme.Challenge) bool { return c.Type == a.cfg.Challenge })
		if i < 0 {
			var offered []string
			for _, c := range az.Challenges {
				offered = append(offered, c.Type)
			}
			return 0, &ca.Problem{Type: "about:blank", Detail: fmt.Sprintf("the CA offers no %s challenge for %s (it offers %s)", a.cfg.Challenge, az.Identifier.Value, strings.Join(offered, ", "))}
		}
		ch := az.Challenges[i]
		if ch.Status == legoacme.StatusInvalid {
			return 0, authzRefusal(az)
		}
		if ch.Status != legoacme.StatusPending {
			continue // processing, or valid with the authorization to follow
		}
		domain := az.Identifier.Value
		if az.Wildcard {
			domain = "*." + domain
		}
		if !asked[normalName(az.Identifier.Type, domain)] {
			// Never presented: a CA does not get a record put up, or an
			// answer served, for a name the request did not ask for.
			return 0, &ca.Problem{Type: "about:blank", Detail: fmt.Sprintf("the CA asks certflow to prove control of %q, which the request did not ask for", printable(domain))}
		}
		as := st.Authz[u]
		if as == nil || as.Challenge != ch.URL || as.Token != ch.Token {
			as = &authzState{Identifier: domain, Type: ch.Type, Challenge: ch.URL, Token: ch.Token}
			st.Authz[u] = as
		}
		now := time.Now()
		if as.Presented.IsZero() || (as.Type == config.ChallengeHTTP01 && now.Sub(as.Presented) > http01TTL/2) {
			if err := a.present(ctx, core, as); err != nil {
				return 0, err
			}
			as.Presented = now.UTC()
		}
		if as.Type == config.ChallengeDNS01 {
			if left := a.cfg.DNS.PropagationDelay - now.Sub(as.Presented); left > 0 {
				wait = max(wait, left)
				continue
			}
		}
		if !as.Triggered.IsZero() && now.Sub(as.Triggered) < retrigger {
			continue
		}
		if _, err := core.Challenges.New(ctx, ch.URL); err != nil {
			return 0, a.mapErr("answer challenge", err, slot)
		}
		as.Triggered = time.Now().UTC()
		a.log.Info("acme challenge answered", "type", as.Type, "identifier", as.Identifier)
	}
	return wait, nil
}

// authzRefusal is an invalid authorization's problem: its challenge's
// error, with the identifier.
func authzRefusal(az legoacme.Authorization) *ca.Problem {
	for _, c := range az.Challenges {
		if c.Error != nil {
			p := problem(c.Error)
			if len(p.Subproblems) == 0 {
				p.Subproblems = []ca.Subproblem{{Type: c.Error.Type, Detail: c.Error.Detail, Identifier: az.Identifier.Value}}
			}
			p.Validation = true
			return p
		}
	}
	return &ca.Problem{Type: "about:blank", Detail: fmt.Sprintf("the authorization for %s is invalid", az.Identifier.Value), Validation: true}
}

// authzProblem finds the problem of an invalid order that names none.
func (a *Authority) authzProblem(ctx context.Context, core *api.Core, ord legoacme.Order) *ca.Problem {
	for _, u := range ord.Authorizations {
		az, err := core.Authorizations.Get(ctx, u)
		if err == nil && az.Status == legoacme.StatusInvalid {
			return authzRefusal(az)
		}
	}
	return nil
}

// present puts up the answer to one challenge.
func (a *Authority) present(ctx context.Context, core *api.Core, as *authzState) error {
	keyAuth, err := core.GetKeyAuthorization(as.Token)
	if err != nil {
		return fmt.Errorf("acme %s: key authorization: %w", a.name, err)
	}
	switch as.Type {
	case config.ChallengeHTTP01:
		if !validToken(as.Token) {
			return &ca.Problem{Type: "about:blank", Detail: "the CA's http-01 token is not a base64url string of at most 128 characters"}
		}
		if err := a.st.PutHTTP01(ctx, as.Token, keyAuth, http01TTL); err != nil {
			return fmt.Errorf("acme %s: store the http-01 answer: %w", a.name, err)
		}
	case config.ChallengeDNS01:
		if err := a.presenter.Present(ctx, as.Identifier, as.Token, keyAuth); err != nil {
			return fmt.Errorf("acme %s: present the dns-01 record for %s: %w", a.name, as.Identifier, err)
		}
	}
	return nil
}

// cleanup takes down what was presented for the order, best effort.
func (a *Authority) cleanup(ctx context.Context, core *api.Core, st *orderState) {
	for _, as := range st.Authz {
		if as.Presented.IsZero() {
			continue
		}
		var err error
		switch as.Type {
		case config.ChallengeHTTP01:
			err = a.st.DeleteHTTP01(ctx, as.Token)
		case config.ChallengeDNS01:
			var keyAuth string
			if keyAuth, err = core.GetKeyAuthorization(as.Token); err == nil {
				err = a.presenter.CleanUp(ctx, as.Identifier, as.Token, keyAuth)
			}
		}
		if err != nil {
			a.log.Warn("acme challenge cleanup failed", "type", as.Type, "identifier", as.Identifier, "err", err)
		}
	}
}

// download fetches the certificate of a valid order and checks it: the
// leaf certifies the CSR's key, names exactly the order's identifiers,
// and each certificate is signed by the next. The chain is the leaf and
// what the CA sent above it (ACME CAs send intermediates; the root only
// when the CA includes it).
func (a *Authority) download(ctx context.Context, core *api.Core, req *ca.Request, ord legoacme.Order, slot *retryAfterSlot) (*ca.Issued, error) {
	raw, err := core.Certificates.Get(ctx, ord.Certificate, true)
	if err != nil {
		return nil, a.mapErr("download certificate", err, slot)
	}
	var chain [][]byte
	var certs []*x509.Certificate
	rest := raw.Cert
	for len(chain) < 10 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("acme %s: the CA's certificate does not parse: %w", a.name, err)
		}
		chain, certs = append(chain, b.Bytes), append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("acme %s: the CA's certificate download holds no certificate", a.name)
	}
	leaf := certs[0]
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("acme %s: the request's CSR does not parse: %w", a.name, err)
	}
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(csr.PublicKey) {
		return nil, fmt.Errorf("acme %s: the CA's certificate does not certify the CSR's key", a.name)
	}
	var got, want []string
	for _, n := range leaf.DNSNames {
		got = append(got, strings.ToLower(n))
	}
	for _, ip := range leaf.IPAddresses {
		got = append(got, ip.String())
	}
	for _, id := range ord.Identifiers {
		v := strings.ToLower(id.Value)
		if id.Type == "ip" {
			if ip := net.ParseIP(v); ip != nil {
				v = ip.String()
			}
		}
		want = append(want, v)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(slices.Compact(got), slices.Compact(want)) {
		return nil, fmt.Errorf("acme %s: the CA's certificate names %v, the order %v", a.name, got, want)
	}
	for i := 0; i+1 < len(certs); i++ {
		if err := certs[i].CheckSignatureFrom(certs[i+1]); err != nil {
			return nil, fmt.Errorf("acme %s: the CA's chain is broken at certificate %d: %w", a.name, i+1, err)
		}
	}
	return &ca.Issued{Leaf: leaf, Chain: chain}, nil
}

// Abandon gives up an order that will not be advanced again (its request
// timed out, was cancelled): it takes down what was presented for it and
// deactivates its pending authorizations (RFC 8555 §7.5.2), so the CA
// stops validating and the names' records do not linger. An order the CA
// issued already has its leaf returned (the CA published it, and the
// requester holds its key: the caller revokes it if it was never
// released). Best effort: an error says what could not be done; calling
// it again is harmless.
func (a *Authority) Abandon(ctx context.Context, o ca.Order) (issued []byte, err error) {
	var st orderState
	if len(o.State) > 0 {
		if err := json.Unmarshal(o.State, &st); err != nil {
			return nil, fmt.Errorf("acme %s: the order's state does not decode: %w", a.name, err)
		}
	}
	core, err := a.client(ctx)
	if err != nil {
		return nil, err
	}
	a.cleanup(ctx, core, &st)
	ctx, slot := withRetryAfter(ctx)
	ord, err := core.Orders.Get(ctx, o.URL)
	if err != nil {
		return nil, a.mapErr("get order", err, slot)
	}
	var errs []error
	if ord.Status == legoacme.StatusValid && ord.Certificate != "" {
		if issued, err = a.leafOf(ctx, core, ord.Certificate, slot); err != nil {
			errs = append(errs, err)
		}
	}
	for _, u := range ord.Authorizations {
		az, err := core.Authorizations.Get(ctx, u)
		if err == nil && az.Status == legoacme.StatusPending {
			err = core.Authorizations.Deactivate(ctx, u)
		}
		if err != nil {
			errs = append(errs, a.mapErr("deactivate authorization", err, slot))
		}
	}
	return issued, errors.Join(errs...)
}

// leafOf downloads the certificate at certURL and returns its leaf (DER),
// unchecked: it is not released, only named for revocation.
func (a *Authority) leafOf(ctx context.Context, core *api.Core, certURL string, slot *retryAfterSlot) ([]byte, error) {
	raw, err := core.Certificates.Get(ctx, certURL, false)
	if err != nil {
		return nil, a.mapErr("download certificate", err, slot)
	}
	b, _ := pem.Decode(raw.Cert)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("acme %s: the CA's certificate download holds no certificate", a.name)
	}
	return b.Bytes, nil
}

// askedNames are the identifiers an order for req may name (Identifiers
// of its CSR, normalised).
func askedNames(req *ca.Request, challenge string) (map[string]bool, error) {
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("the request's CSR does not parse: %w", err)
	}
	names, err := Identifiers(csr, challenge)
	if err != nil {
		return nil, err
	}
	asked := make(map[string]bool, len(names))
	for _, n := range names {
		t := "dns"
		if net.ParseIP(n) != nil {
			t = "ip"
		}
		asked[normalName(t, n)] = true
	}
	return asked, nil
}

// normalName is an identifier as askedNames keeps it.
func normalName(typ, v string) string {
	if typ == "ip" {
		if ip := net.ParseIP(v); ip != nil {
			return ip.String()
		}
	}
	return strings.ToLower(strings.TrimSuffix(v, "."))
}

// ordersAsked refuses an order that is not the one certflow placed: one
// naming identifiers the request did not ask for, or with more
// authorizations than it has names (each look would fetch, and present,
// every one of them).
func ordersAsked(ord legoacme.Order, asked map[string]bool) error {
	if n := len(ord.Authorizations); n > len(asked) {
		return &ca.Problem{Type: "about:blank", Detail: fmt.Sprintf("the CA's order has %d authorizations for a request of %d names", n, len(asked))}
	}
	for _, id := range ord.Identifiers {
		if !asked[normalName(id.Type, id.Value)] {
			return &ca.Problem{Type: "about:blank", Detail: fmt.Sprintf("the CA's order names %q, which the request did not ask for", printable(id.Value))}
		}
	}
	return nil
}

// printable bounds a CA-given name for a message.
func printable(s string) string {
	if len(s) > 255 {
		s = s[:255] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

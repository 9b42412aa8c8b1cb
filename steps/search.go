package steps

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/certflow/certflow/internal/config"
	"github.com/certflow/certflow/internal/store"
	"github.com/certflow/certflow/workflow"
	"gopkg.in/yaml.v3"
)

// Bounds of the search step.
const (
	// SearchDefaultLimit is how many items a search answers when its
	// `limit:` is not given; SearchMaxLimit the most it may ask for.
	SearchDefaultLimit = 100
	SearchMaxLimit     = 500
)

// Search is the search step type, for event-triggered and schedule
// definitions: it reads certflow's inventory or its pending requests and
// hands what it found to later steps (a digest by e-mail, a reminder).
// It reads and never writes, so it is pure (workflow.Pure): a run that
// crashes after it searches again, which answers as validly.
//
//	uses: search
//	with:
//	  certificates: 'NotAfter -le "${{ now + duration("720h") }}" AND CertState -eq "1"'
//	  sort: NotAfter        # optional: Id (default), NotAfter, NotBefore, IssuedCN, IssuedDN, SerialNumber
//	  limit: 100            # 1–500, default 100
//
// certificates is a Keyfactor query (`Field -op "value"` clauses joined
// by AND, the fields of GET /Certificates, metadata fields by name or as
// Metadata.<name>), answered by the inventory's indexes under the bounds
// of api.max_index_read and api.max_scan. Its clauses are read when the
// definition loads; an expression may stand only in a clause's value,
// where its result is that value whole (a time is written RFC 3339; an
// empty result fails the step, as -contains "" would match everything),
// so what an event carries can never add a clause, change a field or
// widen the search to every certificate. The
// outputs are certificates (a list of maps: Id, IssuedCN, SerialNumber,
// NotAfter as RFC 3339, Template, Requester, Metadata), count (how many
// are in the list), total (how many match, -1 when the search does not
// know) and truncated (more match than the list holds).
//
//	uses: search
//	with:
//	  pending_requests: {older_than: 24h}
//	  limit: 50
//
// pending_requests lists the requests waiting for approval submitted at
// least older_than ago (a Go duration; 0 or absent: all), oldest first:
// output requests (maps: Id, CommonName, Template, Requester, Submitted
// as RFC 3339, Step, Roles — who may decide), count and truncated. At
// most api.max_scan pending requests are read; with more waiting,
// truncated is true.
//
// Give certificates or pending_requests, not both.
type Search struct {
	// Store is searched (nil in certflow lint).
	Store *store.Store
	// Config gives the metadata fields and the search bounds.
	Config *config.Config
}

type searchWith struct {
	Certificates    yaml.Node `yaml:"certificates"`
	PendingRequests yaml.Node `yaml:"pending_requests"`
	Sort            yaml.Node `yaml:"sort"`
	Limit           yaml.Node `yaml:"limit"`
}

type pendingWith struct {
	OlderThan string `yaml:"older_than"`
}

// searchClause is one clause of a certificates query, its value a
// template evaluated when the step runs.
type searchClause struct {
	field, op string
	value     *workflow.Template
}

// Build implements workflow.Builder.
func (sr Search) Build(spec *workflow.Spec) (workflow.Step, error) {
	if !workflow.EventTrigger(spec.Trigger) {
		return nil, spec.Errorf(nil, "the search step runs in event-triggered and schedule definitions (trigger event:<name> or schedule), not in a %s workflow", spec.Trigger)
	}
	var w searchWith
	if err := spec.DecodeWith(&w); err != nil {
		return nil, err
	}
	var errs []error
	limit := SearchDefaultLimit
	if n := &w.Limit; n.Kind != 0 {
		if err := n.Decode(&limit); err != nil || n.Kind != yaml.ScalarNode || limit < 1 {
			errs = append(errs, spec.Errorf(n, "limit: want a whole number from 1 to %d, got %q", SearchMaxLimit, n.Value))
		} else if limit > SearchMaxLimit {
			errs = append(errs, spec.Errorf(n, "limit: %d is over the most one search step answers (%d); narrow the search instead", limit, SearchMaxLimit))
		}
	}
	haveCerts, havePending := w.Certificates.Kind != 0, w.PendingRequests.Kind != 0
	switch {
	case haveCerts && havePending:
		errs = append(errs, spec.Errorf(&w.PendingRequests, "pending_requests: give certificates or pending_requests, not both"))
	case !haveCerts && !havePending:
		errs = append(errs, spec.Errorf(spec.With, "search needs certificates: (a query) or pending_requests: under with:"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if havePending {
		if w.Sort.Kind != 0 {
			return nil, spec.Errorf(&w.Sort, "sort: pending requests are answered oldest first; sort applies to certificates")
		}
		var p pendingWith
		if w.PendingRequests.Kind != yaml.MappingNode {
			return nil, spec.Errorf(&w.PendingRequests, "pending_requests: want a mapping, e.g. {older_than: 24h}")
		}
		if err := decodeNodeStrict(&w.PendingRequests, &p); err != nil {
			return nil, spec.Errorf(&w.PendingRequests, "pending_requests: %v", err)
		}
		var older time.Duration
		if p.OlderThan != "" {
			d, err := time.ParseDuration(p.OlderThan)
			if err != nil || d < 0 {
				return nil, spec.Errorf(&w.PendingRequests, "pending_requests.older_than: want a duration such as 24h or 90m, got %q", p.OlderThan)
			}
			older = d
		}
		return pendingSearch{sr: sr, olderThan: older, limit: limit}, nil
	}
	if w.Certificates.Kind != yaml.ScalarNode {
		return nil, spec.Errorf(&w.Certificates, `certificates: want a query such as 'NotAfter -le "${{ now + duration("720h") }}"'`)
	}
	clauses, err := parseSearchQuery(w.Certificates.Value, func(field string) (string, error) { return sr.termField(field) })
	if err != nil {
		return nil, spec.Errorf(&w.Certificates, "certificates: %v", err)
	}
	cs := certSearch{sr: sr, limit: limit}
	for _, c := range clauses {
		t, err := spec.Template(c.value, &w.Certificates)
		if err != nil {
			return nil, err
		}
		if t.IsLiteral() {
			if err := store.CheckTerm(store.Term{Field: c.field, Op: c.op, Value: c.value}); err != nil {
				return nil, spec.Errorf(&w.Certificates, "certificates: %v", err)
			}
		}
		cs.clauses = append(cs.clauses, searchClause{field: c.field, op: c.op, value: t})
	}
	if len(cs.clauses) > store.MaxTerms {
		return nil, spec.Errorf(&w.Certificates, "certificates: at most %d clauses, not %d", store.MaxTerms, len(cs.clauses))
	}
	if n := &w.Sort; n.Kind != 0 {
		cs.sort = strings.ToLower(n.Value)
		if n.Kind != yaml.ScalarNode || !slices.Contains(store.SortFields, cs.sort) {
			return nil, spec.Errorf(n, "sort: want one of Id, NotAfter, NotBefore, IssuedCN, IssuedDN, SerialNumber, got %q", n.Value)
		}
	}
	return cs, nil
}

// termField is the store's name of a query's field: Keyfactor's names
// (any case), SAN, and metadata fields by their configured names or as
// Metadata.<name>.
func (sr Search) termField(name string) (string, error) {
	field := strings.ToLower(name)
	if store.OpsOf(field) != nil && !strings.HasPrefix(field, "metadata.") {
		return field, nil
	}
	if m, ok := strings.CutPrefix(field, "metadata."); ok {
		return "metadata." + m, nil
	}
	if sr.Config != nil {
		for _, f := range sr.Config.Metadata {
			if strings.EqualFold(f.Name, name) {
				return "metadata." + strings.ToLower(f.Name), nil
			}
		}
	}
	return "", fmt.Errorf("unknown field %q (fields: Id, Thumbprint, SerialNumber, IssuedDN, IssuedCN, IssuerDN, IssuedOU, IssuedEmail, CertState, TemplateName, RequesterName, CertificateAuthorityName, KeyTypeString, KeySizeInBits, NotBefore, NotAfter, SAN, and metadata fields by name or as Metadata.<name>)", name)
}

// rawClause is a clause as written: field and operator checked, value
// still a template.
type rawClause struct{ field, op, value string }

// parseSearchQuery reads a query's clauses: `Field -op "value"` or
// `Field -op value`, joined by AND. A quoted value ends at the first
// quote outside ${{ }}; a bare one at the first space outside it.
func parseSearchQuery(q string, field func(string) (string, error)) ([]rawClause, error) {
	var out []rawClause
	rest := strings.TrimSpace(q)
	if rest == "" {
		return nil, errors.New("the query is empty")
	}
	for rest != "" {
		clause := rest
		name, after := cutWord(rest, func(r byte, i int) bool {
			return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && (r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
		})
		if name == "" {
			return nil, fmt.Errorf("%q is not a clause of the form Field -op \"value\" (clauses joined by AND)", short(clause))
		}
		f, err := field(name)
		if err != nil {
			return nil, err
		}
		after = strings.TrimLeft(after, " \t")
		if !strings.HasPrefix(after, "-") {
			return nil, fmt.Errorf("%s: want an operator (-eq, -le, …) after the field in %q", name, short(clause))
		}
		op, after2 := cutWord(after[1:], func(r byte, _ int) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' })
		op = strings.ToLower(op)
		if ops := store.OpsOf(f); !slices.Contains(ops, op) {
			return nil, fmt.Errorf("field %s takes -%s, not -%s", name, strings.Join(ops, ", -"), op)
		}
		after = strings.TrimLeft(after2, " \t")
		var value string
		if value, rest, err = cutValue(after); err != nil {
			return nil, fmt.Errorf("%s -%s: %v", name, op, err)
		}
		out = append(out, rawClause{field: f, op: op, value: value})
		trimmed := strings.TrimLeft(rest, " \t\n")
		if trimmed == "" {
			break
		}
		if strings.EqualFold(trimmed, "AND") {
			return nil, errors.New("AND ends the query: a clause must follow it")
		}
		if len(trimmed) < 4 || !strings.EqualFold(trimmed[:3], "AND") || (trimmed[3] != ' ' && trimmed[3] != '\t' && trimmed[3] != '\n') || len(trimmed) == len(rest) {
			return nil, fmt.Errorf("%q follows a clause: clauses are joined by AND", short(trimmed))
		}
		rest = strings.TrimLeft(trimmed[3:], " \t\n")
		if rest == "" {
			return nil, errors.New("AND ends the query: a clause must follow it")
		}
	}
	return out, nil
}

func cutWord(s string, ok func(byte, int) bool) (string, string) {
	i := 0
	for i < len(s) && ok(s[i], i) {
		i++
	}
	return s[:i], s[i:]
}

// cutValue reads a clause's value from the start of s.
func cutValue(s string) (value, rest string, err error) {
	if s == "" {
		return "", "", errors.New("the value is missing")
	}
	quoted := s[0] == '"'
	i := 0
	if quoted {
		i = 1
	}
	for i < len(s) {
		if strings.HasPrefix(s[i:], "${{") {
			j := strings.Index(s[i:], "}}")
			if j < 0 {
				return "", "", errors.New("unterminated ${{")
			}
			i += j + 2
			continue
		}
		c := s[i]
		if quoted && c == '"' {
			return s[1:i], s[i+1:], nil
		}
		if !quoted && (c == ' ' || c == '\t' || c == '\n' || c == '"') {
			break
		}
		i++
	}
	if quoted {
		return "", "", errors.New("the quoted value has no closing quote")
	}
	return s[:i], s[i:], nil
}

func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// decodeNodeStrict decodes a mapping node into v, refusing unknown keys.
func decodeNodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// certSearch is a search step over the inventory.
type certSearch struct {
	sr      Search
	clauses []searchClause
	sort    string
	limit   int
}

// Pure implements workflow.Pure: a search reads and never writes.
func (certSearch) Pure() bool { return true }

func (cs certSearch) Run(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
	q := store.Query{Sort: cs.sort, Limit: cs.limit + 1}
	for _, c := range cs.clauses {
		v, err := c.value.Value(run.Env)
		if err != nil {
			return workflow.Result{}, workflow.Permanent(fmt.Errorf("certificates: %s -%s: %w", c.field, c.op, err))
		}
		var text string
		switch x := v.(type) {
		case time.Time:
			text = x.UTC().Format(time.RFC3339)
		case nil:
		default:
			text = fmt.Sprint(x)
		}
		if !c.value.IsLiteral() && strings.TrimSpace(text) == "" {
			// -contains "" would match every certificate.
			return workflow.Result{}, workflow.Permanent(fmt.Errorf("certificates: %s -%s: the value %s is empty; a value from an expression must not be", c.field, c.op, c.value.Source))
		}
		t := store.Term{Field: c.field, Op: c.op, Value: text}
		if err := store.CheckTerm(t); err != nil {
			return workflow.Result{}, workflow.Permanent(fmt.Errorf("certificates: %w", err))
		}
		q.Terms = append(q.Terms, t)
	}
	if cs.sr.Store == nil {
		return workflow.Result{}, workflow.Permanent(errors.New("no inventory is wired into this process"))
	}
	q.MaxIndex, q.MaxRecords = cs.sr.Config.API.MaxIndexRead, cs.sr.Config.API.MaxScan
	res, err := cs.sr.Store.QueryCertificates(ctx, q)
	var tb *store.TooBroadError
	switch {
	case errors.As(err, &tb):
		return workflow.Result{}, workflow.Permanent(fmt.Errorf("certificates: %v; narrow the query with a term an index answers", tb))
	case err != nil:
		return workflow.Result{}, fmt.Errorf("certificates: %w", err)
	}
	matches := res.Matches
	truncated := len(matches) > cs.limit || res.Total > int64(cs.limit)
	matches = matches[:min(len(matches), cs.limit)]
	list := make([]any, 0, len(matches))
	for _, m := range matches {
		meta := map[string]any{}
		for k, v := range m.Request.Metadata() {
			meta[k] = v
		}
		list = append(list, map[string]any{
			"Id": m.Certificate.ID, "IssuedCN": m.Certificate.IssuedCN, "SerialNumber": m.Certificate.SerialNumber,
			"NotAfter": m.Certificate.NotAfter.UTC().Format(time.RFC3339), "Template": m.Certificate.Template,
			"Requester": m.Certificate.Requester, "Metadata": meta,
		})
	}
	return workflow.Result{Outputs: map[string]any{
		"certificates": list, "count": len(list), "total": res.Total, "truncated": truncated,
	}}, nil
}

// pendingSearch is a search step over the requests waiting for approval.
type pendingSearch struct {
	sr        Search
	olderThan time.Duration
	limit     int
}

// Pure implements workflow.Pure: a search reads and never writes.
func (pendingSearch) Pure() bool { return true }

func (ps pendingSearch) Run(ctx context.Context, run *workflow.Run) (workflow.Result, error) {
	if ps.sr.Store == nil {
		return workflow.Result{}, workflow.Permanent(errors.New("no pending index is wired into this process"))
	}
	scan := ps.sr.Config.API.MaxScan
	ids, err := ps.sr.Store.PendingIDs(ctx, int64(scan)+1)
	if err != nil {
		return workflow.Result{}, fmt.Errorf("pending_requests: %w", err)
	}
	truncated := len(ids) > scan
	ids = ids[:min(len(ids), scan)]
	now := run.Env.Now
	if now.IsZero() {
		now = time.Now()
	}
	cutoff := now.Add(-ps.olderThan)
	var found []*store.Request
	for i := 0; i < len(ids); i += 500 {
		rs, err := ps.sr.Store.GetMany(ctx, ids[i:min(i+500, len(ids))])
		if err != nil {
			return workflow.Result{}, fmt.Errorf("pending_requests: %w", err)
		}
		for _, r := range rs {
			// The index is derived: the record says whether it waits.
			if r != nil && r.Disposition == store.Pending && !r.Submitted.After(cutoff) {
				found = append(found, r)
			}
		}
	}
	slices.SortFunc(found, func(a, b *store.Request) int {
		return cmp.Or(a.Submitted.Compare(b.Submitted), cmp.Compare(a.ID, b.ID))
	})
	if len(found) > ps.limit {
		found, truncated = found[:ps.limit], true
	}
	list := make([]any, 0, len(found))
	for _, r := range found {
		roles, step := []any{}, ""
		if w := r.Instance.Wait; w != nil {
			step = w.Step
			for _, role := range w.Roles {
				roles = append(roles, role)
			}
		}
		list = append(list, map[string]any{
			"Id": r.ID, "CommonName": r.CommonName, "Template": r.Input.Template, "Requester": r.Requester.Name,
			"Submitted": r.Submitted.UTC().Format(time.RFC3339), "Step": step, "Roles": roles,
		})
	}
	return workflow.Result{Outputs: map[string]any{"requests": list, "count": len(list), "truncated": truncated}}, nil
}

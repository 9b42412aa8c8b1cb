package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Kinds of source.
const (
	srcSet   = iota // an id set: every member
	srcScore        // a score set between lo and hi
	srcName         // a name set between min and max (ZRANGE BYLEX)
	srcScan         // a name set's members whose value scan accepts
	srcIDs          // ids looked up directly
	srcNot          // the inventory less an id set (except)
)

// source is where the candidates of an indexed term come from.
type source struct {
	kind     int
	key      string
	lo, hi   int64  // srcScore, inclusive
	min, max string // srcName, ZRANGE BYLEX bounds
	scan     func(value string) bool
	ids      []int64
	except   string
	order    string  // the answer order its members come in ("" for none)
	term     *Term   // the term it answers (nil: the order index)
	all      []int64 // its ids, once read whole (narrow)
	size     int64   // srcNot: the size of key, of which except is taken
	count    int64   // filled by count: how many members (for srcScan, the set's size)
	start    int64   // filled by count: the rank of its first member
}

// sourceOf returns the source answering t, or nil when no index does.
func (s *Store) sourceOf(ctx context.Context, t *Term) (*source, error) {
	k := s.keys
	name := func(field string) *source {
		v := normalize(t.Field, t.Value)
		if field == nameSerial {
			v = NormalizeSerial(t.Value)
		}
		src := &source{kind: srcName, key: k.invNames(field), term: t, order: t.Field}
		if field == nameSAN {
			src.order = "" // several entries per certificate
		}
		switch t.Op {
		case "eq":
			src.min, src.max = "["+v+"\x00", "("+v+"\x01"
		case "startswith":
			src.min, src.max = "["+v, "("+v+"\xff"
		case "contains":
			src.kind, src.scan = srcScan, func(x string) bool { return strings.Contains(x, v) }
		case "endswith":
			src.kind, src.scan = srcScan, func(x string) bool { return strings.HasSuffix(x, v) }
		default:
			return nil
		}
		return src
	}
	set := func(key string) *source {
		if t.Op != "eq" {
			return nil
		}
		return &source{kind: srcSet, key: key, term: t, order: "id"}
	}
	scoreRange := func(key, order string) *source {
		lo, hi := dateRange(*t)
		if t.Op == "ne" {
			return nil
		}
		return &source{kind: srcScore, key: key, lo: lo, hi: hi, term: t, order: order}
	}
	state := func(revoked bool) *source {
		if t.Op == "ne" {
			revoked = !revoked
		} else if t.Op != "eq" {
			return nil
		}
		if revoked {
			return &source{kind: srcSet, key: k.invRevoked(), term: t, order: "id"}
		}
		return &source{kind: srcNot, key: k.certificates(), except: k.invRevoked(), term: t, order: "id"}
	}
	if mdName, ok := strings.CutPrefix(t.Field, "metadata."); ok {
		if t.Value == "" {
			return nil, nil
		}
		return set(k.invMetadata(mdName, t.Value)), nil
	}
	switch t.Field {
	case "id", "certrequestid":
		n, err := strconv.ParseInt(t.Value, 10, 64)
		if err != nil {
			return nil, nil // -contains, -startswith
		}
		lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
		switch t.Op {
		case "eq":
			return &source{kind: srcIDs, ids: []int64{n}, term: t, order: "id"}, nil
		case "gt":
			lo = n + 1
		case "ge":
			lo = n
		case "lt":
			hi = n - 1
		case "le":
			hi = n
		default:
			return nil, nil
		}
		return &source{kind: srcScore, key: k.certificates(), lo: lo, hi: hi, term: t, order: "id"}, nil
	case "thumbprint":
		if t.Op != "eq" {
			return nil, nil
		}
		src := &source{kind: srcIDs, term: t, order: "id"}
		id, err := s.rdb.Get(ctx, k.thumbprint(strings.ToUpper(strings.ReplaceAll(t.Value, ":", "")))).Int64()
		switch {
		case err == nil:
			src.ids = []int64{id}
		case !errors.Is(err, redis.Nil):
			return nil, fmt.Errorf("look up thumbprint: %w", err)
		}
		return src, nil
	case "serialnumber":
		return name(nameSerial), nil
	case "issuedcn":
		return name(nameCN), nil
	case "issueddn":
		return name(nameDN), nil
	case "san":
		return name(nameSAN), nil
	case "certstate":
		return state(t.Value == "2"), nil
	case "certstatestring":
		return state(strings.EqualFold(t.Value, "revoked")), nil
	case "templatename":
		return set(k.invSet(setTemplate, strings.ToLower(t.Value))), nil
	case "certificateauthorityname":
		return set(k.invSet(setCA, strings.ToLower(t.Value))), nil
	case "requestername":
		return set(k.invSet(setRequester, t.Value)), nil
	case "notafter":
		return scoreRange(k.certExpiry(), "notafter"), nil
	case "notbefore":
		return scoreRange(k.invNotBefore(), "notbefore"), nil
	}
	return nil, nil
}

// orderSource is the whole index an order is read from.
func (s *Store) orderSource(order string) *source {
	k := s.keys
	full := func(key string) *source {
		return &source{kind: srcScore, key: key, lo: math.MinInt64, hi: math.MaxInt64, order: order}
	}
	switch order {
	case "notafter":
		return full(k.certExpiry())
	case "notbefore":
		return full(k.invNotBefore())
	case "issuedcn":
		return &source{kind: srcName, key: k.invNames(nameCN), min: "-", max: "+", order: order}
	case "issueddn":
		return &source{kind: srcName, key: k.invNames(nameDN), min: "-", max: "+", order: order}
	case "serialnumber":
		return &source{kind: srcName, key: k.invNames(nameSerial), min: "-", max: "+", order: order}
	}
	return &source{kind: srcSet, key: k.certificates(), order: "id"}
}

func scoreBound(n int64, exclusive bool) string {
	switch {
	case n == math.MinInt64:
		return "-inf"
	case n == math.MaxInt64:
		return "+inf"
	case exclusive:
		return "(" + strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10)
}

// flipLex turns a BYLEX lower bound into the upper bound of what lies
// below it.
func flipLex(min string) string {
	switch {
	case min == "-":
		return ""
	case min[0] == '[':
		return "(" + min[1:]
	}
	return "[" + min[1:]
}

// countSources fills every source's count and start in one round trip.
func (s *Store) countSources(ctx context.Context, srcs []*source) (err error) {
	pipe := s.rdb.Pipeline()
	type pending struct {
		src          *source
		count, below *redis.IntCmd
	}
	var ps []pending
	for _, src := range srcs {
		p := pending{src: src}
		switch src.kind {
		case srcSet, srcScan:
			p.count = pipe.ZCard(ctx, src.key)
		case srcScore:
			p.count = pipe.ZCount(ctx, src.key, scoreBound(src.lo, false), scoreBound(src.hi, false))
			if src.lo != math.MinInt64 {
				p.below = pipe.ZCount(ctx, src.key, "-inf", scoreBound(src.lo, true))
			}
		case srcName:
			p.count = pipe.ZLexCount(ctx, src.key, src.min, src.max)
			if below := flipLex(src.min); below != "" {
				p.below = pipe.ZLexCount(ctx, src.key, "-", below)
			}
		case srcNot:
			p.count = pipe.ZCard(ctx, src.key)
			p.below = pipe.ZCard(ctx, src.except) // subtracted below
		case srcIDs:
			// Only the ids that are certificates (an id looked up need
			// not be one; a thumbprint key can outlive a lost race).
			if len(src.ids) > 0 {
				if src.ids, err = s.keep(ctx, &source{kind: srcSet, key: s.keys.certificates()}, src.ids); err != nil {
					return err
				}
			}
			src.count = int64(len(src.ids))
			continue
		}
		ps = append(ps, p)
	}
	if pipe.Len() == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("count index entries: %w", err)
	}
	for _, p := range ps {
		p.src.count = p.count.Val()
		if p.below != nil {
			if p.src.kind == srcNot {
				p.src.size = p.src.count
				p.src.count -= p.below.Val()
			} else {
				p.src.start = p.below.Val()
			}
		}
	}
	return nil
}

// idOfMember reads the certificate id a member of src's set names.
func (src *source) idOfMember(m string) (id int64, value string, ok bool) {
	if src.kind == srcName || src.kind == srcScan {
		value, id, ok := splitNameMember(m)
		return id, value, ok
	}
	id, err := strconv.ParseInt(m, 10, 64)
	return id, "", err == nil
}

// readRanks reads src's members from rank lo to hi (inclusive, counted
// from its first member, in descending order if desc) as ids.
func (s *Store) readRanks(ctx context.Context, src *source, lo, hi int64, desc bool) ([]int64, error) {
	first, last := src.start+lo, src.start+hi
	if desc {
		first, last = src.start+src.count-1-hi, src.start+src.count-1-lo
	}
	members, err := s.rdb.ZRange(ctx, src.key, first, last).Result()
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	if desc {
		slices.Reverse(members)
	}
	ids := make([]int64, 0, len(members))
	for _, m := range members {
		if id, _, ok := src.idOfMember(m); ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// readChunk is how many index entries one read asks for.
const readChunk = 5000

// readAll returns every id of src (srcScan: whose value it accepts),
// reading at most bound entries (else a TooBroadError), sorted, once
// each.
func (s *Store) readAll(ctx context.Context, src *source, bound int) ([]int64, error) {
	if src.kind == srcIDs {
		return slices.Clone(src.ids), nil
	}
	if src.count > int64(bound) {
		return nil, &TooBroadError{Bound: "index", Read: bound}
	}
	var out []int64
	n := src.count
	if src.kind == srcNot {
		n = src.size
	}
	for lo := int64(0); lo < n; lo += readChunk {
		members, err := s.rdb.ZRange(ctx, src.key, src.start+lo, src.start+min(lo+readChunk, n)-1).Result()
		if err != nil {
			return nil, fmt.Errorf("read index: %w", err)
		}
		for _, m := range members {
			id, value, ok := src.idOfMember(m)
			if ok && (src.scan == nil || src.scan(value)) {
				out = append(out, id)
			}
		}
	}
	if src.kind == srcNot {
		except, err := s.rdb.ZRange(ctx, src.except, 0, -1).Result()
		if err != nil {
			return nil, fmt.Errorf("read index: %w", err)
		}
		out = subtractSorted(out, parseIDs(except))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func subtractSorted(ids, drop []int64) []int64 {
	slices.Sort(drop)
	return slices.DeleteFunc(ids, func(id int64) bool {
		_, found := slices.BinarySearch(drop, id)
		return found
	})
}

// ranked reports whether src's members are its candidates, one each, in
// its order: a page of it is read by rank.
func (src *source) ranked() bool {
	return src.kind != srcScan && src.kind != srcNot && !(src.kind == srcName && src.order == "")
}

// members reports whether src can say of an id whether it is a member
// without reading its record.
func (src *source) members() bool { return src.kind != srcName && src.kind != srcScan }

// keep narrows ids to src's members (src.members()), keeping their order.
func (s *Store) keep(ctx context.Context, src *source, ids []int64) ([]int64, error) {
	if src.kind == srcIDs {
		return slices.DeleteFunc(ids, func(id int64) bool { return !slices.Contains(src.ids, id) }), nil
	}
	key := src.key
	if src.kind == srcNot {
		key = src.except
	}
	out := ids[:0:0]
	for i := 0; i < len(ids); i += readChunk {
		chunk := ids[i:min(i+readChunk, len(ids))]
		args := make([]any, 0, 2+len(chunk))
		args = append(args, "ZMSCORE", key)
		for _, id := range chunk {
			args = append(args, strconv.FormatInt(id, 10))
		}
		scores, err := s.rdb.Do(ctx, args...).Slice()
		if err != nil {
			return nil, fmt.Errorf("read index: %w", err)
		}
		for j, id := range chunk {
			score, in := scoreOf(scores[j])
			switch src.kind {
			case srcNot:
				in = !in
			case srcScore:
				in = in && score >= src.lo && score <= src.hi
			}
			if in {
				out = append(out, id)
			}
		}
	}
	return out, nil
}

// scoreOf reads one score of a ZMSCORE reply (nil: not a member).
func scoreOf(v any) (int64, bool) {
	switch v := v.(type) {
	case float64:
		return int64(v), true
	case string:
		f, err := strconv.ParseFloat(v, 64)
		return int64(f), err == nil
	}
	return 0, false
}

// gatherMax is how many ids a search reads from its smallest source to
// answer from them alone; beyond it, the answer's order is walked.
const gatherMax = 100_000

// QueryCertificates answers a search: a page of the matching certificates
// in q's order, and their count when it is known. The terms must have
// passed CheckTerm, q.Sort must be one of SortFields or "".
func (s *Store) QueryCertificates(ctx context.Context, q Query) (*QueryResult, error) {
	order := q.Sort
	if order == "" || order == "certrequestid" {
		order = "id"
	}
	var srcs []*source
	var residual []Term
	for i := range q.Terms {
		src, err := s.sourceOf(ctx, &q.Terms[i])
		if err != nil {
			return nil, err
		}
		if src == nil {
			residual = append(residual, q.Terms[i])
			continue
		}
		srcs = append(srcs, src)
	}
	if len(srcs) == 0 {
		srcs = []*source{s.orderSource(order)}
	}
	if err := s.countSources(ctx, srcs); err != nil {
		return nil, err
	}
	slices.SortStableFunc(srcs, func(a, b *source) int { return cmp.Compare(a.count, b.count) })
	if len(srcs) == 1 && len(residual) == 0 && srcs[0].order == order && srcs[0].ranked() {
		return s.direct(ctx, q, srcs[0])
	}
	driver := -1
	for i, src := range srcs {
		if src.kind != srcScan && src.count <= int64(min(gatherMax, q.MaxIndex)) {
			driver = i
			break
		}
	}
	if driver < 0 {
		for i, src := range srcs {
			if src.kind == srcScan && src.count <= int64(q.MaxIndex) {
				driver = i
				break
			}
		}
	}
	if driver >= 0 {
		return s.gather(ctx, q, order, srcs, driver)
	}
	return s.walk(ctx, q, order, srcs)
}

// direct reads the page by rank from the one source whose order is the
// answer's: what an unfiltered listing, or a search by one indexed term
// in that term's order, costs (one index read, one record read).
func (s *Store) direct(ctx context.Context, q Query, src *source) (*QueryResult, error) {
	res := &QueryResult{Total: src.count}
	lo := int64(q.Offset)
	if lo >= src.count {
		return res, nil
	}
	hi := min(lo+int64(q.Limit), src.count) - 1
	var ids []int64
	var err error
	if src.kind == srcIDs {
		ids = src.ids[lo : hi+1]
	} else if ids, err = s.readRanks(ctx, src, lo, hi, q.Descending); err != nil {
		return nil, err
	}
	res.Matches, err = s.loadMatches(ctx, q, ids, q.Terms)
	return res, err
}

// loadMatches loads ids' records and keeps those that match terms and
// that q.Visible accepts, in ids' order.
func (s *Store) loadMatches(ctx context.Context, q Query, ids []int64, terms []Term) ([]Match, error) {
	var out []Match
	for i := 0; i < len(ids); i += 500 {
		rs, err := s.GetMany(ctx, ids[i:min(i+500, len(ids))])
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			c, err := r.Certificate()
			if err != nil {
				return nil, err
			}
			if c != nil && matchesAll(terms, r, c) && (q.Visible == nil || q.Visible(r)) {
				out = append(out, Match{Request: r, Certificate: c})
			}
		}
	}
	return out, nil
}

// narrow keeps of ids those every source but skip accepts without a
// record (ZMSCORE), or by reading the source whole when it is small
// enough; it returns the terms left to check on the records.
func (s *Store) narrow(ctx context.Context, q Query, srcs []*source, skip int, ids []int64) ([]int64, []Term, error) {
	var onRecords []Term
	for i, src := range srcs {
		if i == skip || len(ids) == 0 {
			continue
		}
		switch {
		case src.members():
			var err error
			if ids, err = s.keep(ctx, src, ids); err != nil {
				return nil, nil, err
			}
		case src.kind == srcName && src.count <= int64(min(gatherMax, q.MaxIndex)):
			if src.all == nil {
				all, err := s.readAll(ctx, src, q.MaxIndex)
				if err != nil {
					return nil, nil, err
				}
				src.all = all
			}
			ids = slices.DeleteFunc(ids, func(id int64) bool {
				_, found := slices.BinarySearch(src.all, id)
				return !found
			})
		default:
			onRecords = append(onRecords, *src.term)
		}
	}
	return ids, onRecords, nil
}

// gather answers from all the ids of srcs[driver], narrowed by the other
// sources and, for the terms no index answers, by their records.
func (s *Store) gather(ctx context.Context, q Query, order string, srcs []*source, driver int) (*QueryResult, error) {
	ids, err := s.readAll(ctx, srcs[driver], q.MaxIndex)
	if err != nil {
		return nil, err
	}
	ids, onRecords, err := s.narrow(ctx, q, srcs, driver, ids)
	if err != nil {
		return nil, err
	}
	onRecords = append(onRecords, residualTerms(q.Terms, srcs)...)
	byName := order != "id" && order != "notafter" && order != "notbefore"
	if len(onRecords) == 0 && !byName {
		// Every term answered by an index: sort the ids, read the page.
		keys, err := s.sortKeys(ctx, order, ids)
		if err != nil {
			return nil, err
		}
		sortByKeys(ids, keys, q.Descending)
		res := &QueryResult{Total: int64(len(ids))}
		page := pageOf(ids, q.Offset, q.Limit)
		res.Matches, err = s.loadMatches(ctx, q, page, q.Terms)
		return res, err
	}
	if len(ids) > q.MaxRecords {
		if byName {
			// Too many to sort by their records: the name order's index
			// is walked instead, narrowed as it goes.
			return s.walk(ctx, q, order, srcs)
		}
		// Walked in order, the records read until the page is full.
		keys, err := s.sortKeys(ctx, order, ids)
		if err != nil {
			return nil, err
		}
		sortByKeys(ids, keys, q.Descending)
		return s.walkIDs(ctx, q, ids, q.Terms)
	}
	matches, err := s.loadMatches(ctx, q, ids, q.Terms)
	if err != nil {
		return nil, err
	}
	sortMatches(matches, order, q.Descending)
	return &QueryResult{Total: int64(len(matches)), Matches: pageOf(matches, q.Offset, q.Limit)}, nil
}

// residualTerms are the terms no source answers.
func residualTerms(terms []Term, srcs []*source) []Term {
	var out []Term
	for i := range terms {
		if !slices.ContainsFunc(srcs, func(src *source) bool { return src.term == &terms[i] }) {
			out = append(out, terms[i])
		}
	}
	return out
}

func pageOf[T any](all []T, offset, limit int) []T {
	if offset >= len(all) {
		return nil
	}
	return all[offset:min(offset+limit, len(all))]
}

// sortKeys returns ids' keys in a date order (their scores), or nil for
// the id order.
func (s *Store) sortKeys(ctx context.Context, order string, ids []int64) (map[int64]int64, error) {
	key := map[string]string{"notafter": s.keys.certExpiry(), "notbefore": s.keys.invNotBefore()}[order]
	if key == "" || len(ids) == 0 {
		return nil, nil
	}
	keys := make(map[int64]int64, len(ids))
	for i := 0; i < len(ids); i += readChunk {
		chunk := ids[i:min(i+readChunk, len(ids))]
		args := []any{"ZMSCORE", key}
		for _, id := range chunk {
			args = append(args, strconv.FormatInt(id, 10))
		}
		scores, err := s.rdb.Do(ctx, args...).Slice()
		if err != nil {
			return nil, fmt.Errorf("read index: %w", err)
		}
		for j, id := range chunk {
			keys[id], _ = scoreOf(scores[j])
		}
	}
	return keys, nil
}

// sortByKeys sorts ids as Redis orders a sorted set: by score (keys; nil:
// the id), ties by member, the id in decimal.
func sortByKeys(ids []int64, keys map[int64]int64, desc bool) {
	if keys == nil {
		slices.Sort(ids)
	} else {
		slices.SortFunc(ids, func(a, b int64) int {
			if c := cmp.Compare(keys[a], keys[b]); c != 0 {
				return c
			}
			return strings.Compare(strconv.FormatInt(a, 10), strconv.FormatInt(b, 10))
		})
	}
	if desc {
		slices.Reverse(ids)
	}
}

// sortMatches sorts matches in an order as its index holds them.
func sortMatches(ms []Match, order string, desc bool) {
	slices.SortFunc(ms, func(a, b Match) int {
		ca, cb := a.Certificate, b.Certificate
		switch order {
		case "notafter", "notbefore":
			ka, kb := ca.NotAfter.Unix(), cb.NotAfter.Unix()
			if order == "notbefore" {
				ka, kb = ca.NotBefore.Unix(), cb.NotBefore.Unix()
			}
			if c := cmp.Compare(ka, kb); c != 0 {
				return c
			}
			return strings.Compare(strconv.FormatInt(ca.ID, 10), strconv.FormatInt(cb.ID, 10))
		case "issuedcn", "issueddn", "serialnumber":
			va, vb := orderValue(order, ca), orderValue(order, cb)
			if c := strings.Compare(va, vb); c != 0 {
				return c
			}
		}
		return cmp.Compare(ca.ID, cb.ID)
	})
	if desc {
		slices.Reverse(ms)
	}
}

// orderValue is c's value in a name order, as its name set holds it.
func orderValue(order string, c *Certificate) string {
	switch order {
	case "issuedcn":
		return strings.ToLower(c.IssuedCN)
	case "issueddn":
		return NormalizeDN(c.SubjectDN)
	}
	return NormalizeSerial(c.SerialNumber)
}

// walkIDs loads ids' records in order until the page is full, reading
// at most q.MaxRecords of them.
func (s *Store) walkIDs(ctx context.Context, q Query, ids []int64, terms []Term) (*QueryResult, error) {
	var matches []Match
	for read := 0; read < len(ids); {
		if read >= q.MaxRecords {
			return nil, &TooBroadError{Bound: "records", Read: read}
		}
		chunk := ids[read:min(read+200, len(ids), q.MaxRecords)]
		read += len(chunk)
		ms, err := s.loadMatches(ctx, q, chunk, terms)
		if err != nil {
			return nil, err
		}
		if matches = append(matches, ms...); len(matches) >= q.Offset+q.Limit {
			return &QueryResult{Total: -1, Matches: pageOf(matches, q.Offset, q.Limit)}, nil
		}
	}
	return &QueryResult{Total: int64(len(matches)), Matches: pageOf(matches, q.Offset, q.Limit)}, nil
}

// walk reads the answer's order index in order, a chunk at a time,
// narrowing each chunk by every source and the records, until the page
// is full or a bound is reached. The order index is the one source in
// that order, if a term has one, else the whole inventory's.
func (s *Store) walk(ctx context.Context, q Query, order string, srcs []*source) (*QueryResult, error) {
	walked, skip := s.orderSource(order), -1
	for i, src := range srcs {
		if src.order == order && src.ranked() {
			walked, skip = src, i
			break
		}
	}
	if skip < 0 {
		if err := s.countSources(ctx, []*source{walked}); err != nil {
			return nil, err
		}
	}
	residual := residualTerms(q.Terms, srcs)
	var matches []Match
	var passed []int64 // while no term needs a record
	read, records := 0, 0
	for lo := int64(0); lo < walked.count; lo += readChunk {
		if read >= q.MaxIndex {
			return nil, &TooBroadError{Bound: "index", Read: read}
		}
		ids, err := s.readRanks(ctx, walked, lo, min(lo+readChunk, walked.count)-1, q.Descending)
		if err != nil {
			return nil, err
		}
		read += len(ids)
		ids, onRecords, err := s.narrow(ctx, q, srcs, skip, ids)
		if err != nil {
			return nil, err
		}
		if len(onRecords)+len(residual) == 0 {
			// No term needs a record: only the page's are read.
			if passed = append(passed, ids...); len(passed) >= q.Offset+q.Limit {
				ms, err := s.loadMatches(ctx, q, pageOf(passed, q.Offset, q.Limit), q.Terms)
				return &QueryResult{Total: -1, Matches: ms}, err
			}
			continue
		}
		for i := 0; i < len(ids); i += 200 {
			chunk := ids[i:min(i+200, len(ids))]
			if records += len(chunk); records > q.MaxRecords {
				return nil, &TooBroadError{Bound: "records", Read: records - len(chunk)}
			}
			ms, err := s.loadMatches(ctx, q, chunk, q.Terms)
			if err != nil {
				return nil, err
			}
			if matches = append(matches, ms...); len(matches) >= q.Offset+q.Limit {
				return &QueryResult{Total: -1, Matches: pageOf(matches, q.Offset, q.Limit)}, nil
			}
		}
	}
	if passed != nil {
		ms, err := s.loadMatches(ctx, q, pageOf(passed, q.Offset, q.Limit), q.Terms)
		return &QueryResult{Total: int64(len(passed)), Matches: ms}, err
	}
	return &QueryResult{Total: int64(len(matches)), Matches: pageOf(matches, q.Offset, q.Limit)}, nil
}

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
		v := indexValue(normalizeFor(t.Field, t.Op, t.Value))
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
	// state answers CertState and CertStateString: st is the state the
	// term's value names ("" for none).
	state := func(st string) *source {
		switch {
		case t.Op != "eq" && t.Op != "ne":
			return nil
		case st == "" && t.Op == "eq": // no certificate is in a state of no name
			return &source{kind: srcIDs, term: t, order: "id"}
		case st == "": // every certificate is not in it
			return &source{kind: srcSet, key: k.certificates(), term: t, order: "id"}
		case (st == "revoked") == (t.Op == "eq"):
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
			if n == math.MaxInt64 {
				return &source{kind: srcIDs, term: t, order: "id"}, nil
			}
			lo = n + 1
		case "ge":
			lo = n
		case "lt":
			if n == math.MinInt64 {
				return &source{kind: srcIDs, term: t, order: "id"}, nil
			}
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
	case "certstate", "certstatestring":
		return state(stateNamed(t.Field, t.Value)), nil
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

// search is one search under way: its query, its sources, and what it has
// read so far against its bounds.
type search struct {
	s        *Store
	q        Query
	order    string
	srcs     []*source
	residual []Term // the terms no source answers
	// owner is the source of q.Owner's certificates (nil: none): the
	// search is answered from it alone (see QueryCertificates).
	owner          *source
	index, records int
}

// spendIndex counts n index entries read, refusing past q.MaxIndex.
func (se *search) spendIndex(n int) error {
	if se.index+n > se.q.MaxIndex {
		return &TooBroadError{Bound: "index", Read: se.index}
	}
	se.index += n
	return nil
}

// spendRecords counts n records read to check terms, refusing past
// q.MaxRecords.
func (se *search) spendRecords(n int) error {
	if se.records+n > se.q.MaxRecords {
		return &TooBroadError{Bound: "records", Read: se.records}
	}
	se.records += n
	return nil
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
				if src.ids, err = s.keep(ctx, nil, &source{kind: srcSet, key: s.keys.certificates()}, src.ids); err != nil {
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
func (se *search) readRanks(ctx context.Context, src *source, lo, hi int64, desc bool) ([]int64, error) {
	if err := se.spendIndex(int(hi - lo + 1)); err != nil {
		return nil, err
	}
	first, last := src.start+lo, src.start+hi
	if desc {
		first, last = src.start+src.count-1-hi, src.start+src.count-1-lo
	}
	members, err := se.s.rdb.ZRange(ctx, src.key, first, last).Result()
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
// sorted, once each, counting what it reads.
func (se *search) readAll(ctx context.Context, src *source) ([]int64, error) {
	if src.all != nil {
		return src.all, nil
	}
	if src.kind == srcIDs {
		return slices.Clone(src.ids), nil
	}
	n := src.count
	if src.kind == srcNot {
		n = src.size
	}
	var out []int64
	for lo := int64(0); lo < n; lo += readChunk {
		hi := min(lo+readChunk, n) - 1
		if err := se.spendIndex(int(hi - lo + 1)); err != nil {
			return nil, err
		}
		members, err := se.s.rdb.ZRange(ctx, src.key, src.start+lo, src.start+hi).Result()
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
		except, err := se.s.rdb.ZRange(ctx, src.except, 0, -1).Result()
		if err != nil {
			return nil, fmt.Errorf("read index: %w", err)
		}
		if err := se.spendIndex(len(except)); err != nil {
			return nil, err
		}
		out = subtractSorted(out, parseIDs(except))
	}
	slices.Sort(out)
	src.all = slices.Compact(out)
	return src.all, nil
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

// keep narrows ids to src's members (src.members()), keeping their order;
// se (nil for none) counts the ids asked about.
func (s *Store) keep(ctx context.Context, se *search, src *source, ids []int64) ([]int64, error) {
	if src.kind == srcIDs {
		return slices.DeleteFunc(ids, func(id int64) bool { return !slices.Contains(src.ids, id) }), nil
	}
	if se != nil {
		if err := se.spendIndex(len(ids)); err != nil {
			return nil, err
		}
	}
	key := src.key
	if src.kind == srcNot {
		key = src.except
	}
	out := ids[:0:0]
	for i := 0; i < len(ids); i += readChunk {
		chunk := ids[i:min(i+readChunk, len(ids))]
		scores, err := s.zmscore(ctx, key, chunk)
		if err != nil {
			return nil, err
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

// zmscore is ZMSCORE key ids... (nil for an id that is not a member).
func (s *Store) zmscore(ctx context.Context, key string, ids []int64) ([]any, error) {
	args := make([]any, 0, 2+len(ids))
	args = append(args, "ZMSCORE", key)
	for _, id := range ids {
		args = append(args, strconv.FormatInt(id, 10))
	}
	scores, err := s.rdb.Do(ctx, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	return scores, nil
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

// MaxTerms bounds the terms of one search.
const MaxTerms = 20

// QueryCertificates answers a search: a page of the matching certificates
// in q's order, and their count when it is known. The terms must have
// passed CheckTerm (at most MaxTerms), q.Sort must be one of SortFields
// or "".
//
// With q.Owner, the search is of that requester's certificates, and every
// choice it makes depends on them alone: they are read whole (up to
// q.MaxIndex), narrowed by the other terms' id sets and by their records
// (up to q.MaxRecords), never by reading another index whole or walking
// the inventory. So neither its answer, nor its count, nor a refusal
// tells the owner anything of others' certificates.
func (s *Store) QueryCertificates(ctx context.Context, q Query) (*QueryResult, error) {
	if len(q.Terms) > MaxTerms {
		return nil, fmt.Errorf("a search takes at most %d terms, not %d", MaxTerms, len(q.Terms))
	}
	se := &search{s: s, q: q, order: q.Sort}
	if se.order == "" || se.order == "certrequestid" {
		se.order = "id"
	}
	for i := range q.Terms {
		src, err := s.sourceOf(ctx, &q.Terms[i])
		if err != nil {
			return nil, err
		}
		if src == nil {
			se.residual = append(se.residual, q.Terms[i])
			continue
		}
		se.srcs = append(se.srcs, src)
	}
	se.srcs = mergeRanges(se.srcs)
	if q.Owner != "" {
		se.owner = &source{kind: srcSet, key: s.keys.invSet(setRequester, q.Owner), order: "id"}
		se.srcs = append(se.srcs, se.owner)
	}
	if len(se.srcs) == 0 {
		se.srcs = []*source{s.orderSource(se.order)}
	}
	if err := s.countSources(ctx, se.srcs); err != nil {
		return nil, err
	}
	if se.owner == nil {
		slices.SortStableFunc(se.srcs, func(a, b *source) int { return cmp.Compare(a.count, b.count) })
	}
	only := se.srcs[0]
	if len(se.srcs) == 1 && len(se.residual) == 0 && only.order == se.order && only.ranked() {
		return se.direct(ctx, only)
	}
	if len(se.srcs) == 1 && len(se.residual) == 0 && only.kind == srcNot && se.order == "id" {
		return se.directActive(ctx, only)
	}
	if se.owner != nil {
		return se.gather(ctx, slices.Index(se.srcs, se.owner))
	}
	for i, src := range se.srcs {
		if src.kind != srcScan && src.count <= int64(min(gatherMax, q.MaxIndex)) {
			return se.gather(ctx, i)
		}
	}
	for i, src := range se.srcs {
		if src.kind == srcScan && src.count <= int64(q.MaxIndex) {
			return se.gather(ctx, i)
		}
	}
	return se.walk(ctx)
}

// mergeRanges makes one source of the score ranges on one index
// (`NotAfter -ge X AND NotAfter -lt Y`, `Id -gt N AND Id -le M`): their
// intersection, read and counted by rank like one.
func mergeRanges(srcs []*source) []*source {
	var out []*source
	for _, src := range srcs {
		i := slices.IndexFunc(out, func(o *source) bool { return o.kind == srcScore && src.kind == srcScore && o.key == src.key })
		if i < 0 {
			out = append(out, src)
			continue
		}
		out[i].lo, out[i].hi = max(out[i].lo, src.lo), min(out[i].hi, src.hi)
	}
	return out
}

// direct reads the page by rank from the one source whose order is the
// answer's: what an unfiltered listing, or a search by one indexed term
// in that term's order, costs (one index read, one record read).
func (se *search) direct(ctx context.Context, src *source) (*QueryResult, error) {
	res := &QueryResult{Total: src.count}
	lo := int64(se.q.Offset)
	if lo >= src.count {
		return res, nil
	}
	hi := min(lo+int64(se.q.Limit), src.count) - 1
	var ids []int64
	var err error
	if src.kind == srcIDs {
		ids = src.ids[lo : hi+1]
	} else if ids, err = se.readRanks(ctx, src, lo, hi, se.q.Descending); err != nil {
		return nil, err
	}
	res.Matches, err = se.s.loadMatches(ctx, se.q, ids)
	return res, err
}

// activeRankScript finds the rank, in the inventory, of the certificate
// that is the k-th (from 0) not revoked, by id: the smallest rank r at
// which r+1 less the revoked ids up to r's is k+1, by bisection (the
// revoked set is scored by id, so each probe is two O(log N) calls).
// KEYS: certificates, revoked; ARGV: k. -1: there are not k+1.
var activeRankScript = redis.NewScript(`
local k = tonumber(ARGV[1])
local n = redis.call('ZCARD', KEYS[1])
local lo, hi = k, math.min(k + redis.call('ZCARD', KEYS[2]), n - 1)
if lo > hi then return -1 end
while lo < hi do
  local mid = math.floor((lo + hi) / 2)
  local id = redis.call('ZRANGE', KEYS[1], mid, mid, 'WITHSCORES')[2]
  if mid + 1 - redis.call('ZCOUNT', KEYS[2], '-inf', id) >= k + 1 then hi = mid else lo = mid + 1 end
end
return lo
`)

// directActive pages the certificates that are not revoked (a lone
// `CertState -eq 1`) as if they had an index of their own: the page's
// first rank in the inventory is found by activeRankScript, and the
// inventory is read from there, passing over the revoked.
func (se *search) directActive(ctx context.Context, src *source) (*QueryResult, error) {
	res := &QueryResult{Total: src.count}
	if int64(se.q.Offset) >= src.count {
		return res, nil
	}
	k := int64(se.q.Offset)
	if se.q.Descending {
		k = src.count - 1 - k // the page's first, counted from the lowest id
	}
	r, err := activeRankScript.Run(ctx, se.s.rdb, []string{src.key, src.except}, k).Int64()
	if err != nil || r < 0 {
		return res, err
	}
	all := &source{kind: srcSet, key: src.key, order: "id", count: src.size}
	revoked := &source{kind: srcNot, except: src.except}
	var ids []int64
	for len(ids) < se.q.Limit {
		lo, hi := r, r+int64(se.q.Limit)+63 // ranks, ascending
		if se.q.Descending {
			lo, hi = r-int64(se.q.Limit)-63, r
		}
		lo, hi = max(lo, 0), min(hi, all.count-1)
		if lo > hi {
			break
		}
		chunk, err := se.readRanks(ctx, all, lo, hi, false)
		if err != nil {
			return nil, err
		}
		if se.q.Descending {
			slices.Reverse(chunk)
			r = lo - 1
		} else {
			r = hi + 1
		}
		if chunk, err = se.s.keep(ctx, se, revoked, chunk); err != nil {
			return nil, err
		}
		ids = append(ids, chunk[:min(len(chunk), se.q.Limit-len(ids))]...)
	}
	res.Matches, err = se.s.loadMatches(ctx, se.q, ids)
	return res, err
}

// loadMatches loads ids' records and keeps those that match every term
// and that q.Visible accepts, in ids' order.
func (s *Store) loadMatches(ctx context.Context, q Query, ids []int64) ([]Match, error) {
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
			if c != nil && matchesAll(q.Terms, r, c) && (q.Owner == "" || c.Requester == q.Owner) && (q.Visible == nil || q.Visible(r)) {
				out = append(out, Match{Request: r, Certificate: c})
			}
		}
	}
	return out, nil
}

// checkRecords is loadMatches for records read to check terms: they count
// against q.MaxRecords.
func (se *search) checkRecords(ctx context.Context, ids []int64) ([]Match, error) {
	if err := se.spendRecords(len(ids)); err != nil {
		return nil, err
	}
	return se.s.loadMatches(ctx, se.q, ids)
}

// checkInOrder checks ids' records in order, a batch at a time, adding
// the matches to matches, until there are want of them; it refuses only
// when q.MaxRecords runs out before that, with ids left unread.
func (se *search) checkInOrder(ctx context.Context, ids []int64, matches []Match, want int) ([]Match, bool, error) {
	for i := 0; i < len(ids); {
		n := min(200, len(ids)-i, se.q.MaxRecords-se.records)
		if n == 0 {
			return nil, false, &TooBroadError{Bound: "records", Read: se.records}
		}
		ms, err := se.checkRecords(ctx, ids[i:i+n])
		if err != nil {
			return nil, false, err
		}
		i += n
		if matches = append(matches, ms...); len(matches) >= want {
			return matches, true, nil
		}
	}
	return matches, false, nil
}

// narrow keeps of ids those every source but skip accepts without a
// record (ZMSCORE), or by reading a name source whole when it is small
// enough (never for an owner's search); it reports whether terms are left
// that only the records can check.
func (se *search) narrow(ctx context.Context, skip *source, ids []int64) ([]int64, bool, error) {
	onRecords := len(se.residual) > 0
	for _, src := range se.srcs {
		if src == skip {
			continue
		}
		switch {
		case src.members():
			if len(ids) == 0 {
				continue
			}
			var err error
			if ids, err = se.s.keep(ctx, se, src, ids); err != nil {
				return nil, false, err
			}
		case src.kind == srcName && se.owner == nil && src.count <= int64(min(gatherMax, se.q.MaxIndex)):
			if len(ids) == 0 {
				continue
			}
			all, err := se.readAll(ctx, src)
			if err != nil {
				return nil, false, err
			}
			ids = slices.DeleteFunc(ids, func(id int64) bool {
				_, found := slices.BinarySearch(all, id)
				return !found
			})
		default:
			onRecords = true
		}
	}
	return ids, onRecords, nil
}

// gather answers from all the ids of srcs[driver], narrowed by the other
// sources and, for the terms no index answers, by their records.
func (se *search) gather(ctx context.Context, driver int) (*QueryResult, error) {
	ids, err := se.readAll(ctx, se.srcs[driver])
	if err != nil {
		return nil, err
	}
	ids, onRecords, err := se.narrow(ctx, se.srcs[driver], slices.Clone(ids))
	if err != nil {
		return nil, err
	}
	byName := se.order != "id" && se.order != "notafter" && se.order != "notbefore"
	if !onRecords && !byName {
		// Every term answered by an index: sort the ids, read the page.
		if err := se.sortByIndex(ctx, ids); err != nil {
			return nil, err
		}
		res := &QueryResult{Total: int64(len(ids))}
		res.Matches, err = se.s.loadMatches(ctx, se.q, pageOf(ids, se.q.Offset, se.q.Limit))
		return res, err
	}
	if len(ids) > se.q.MaxRecords-se.records {
		if byName {
			if se.owner != nil {
				return nil, &TooBroadError{Bound: "records", Read: se.records}
			}
			// Too many to sort by their records: the name order's index
			// is walked instead, narrowed as it goes.
			return se.walk(ctx)
		}
		// Walked in order, the records read until the page is full.
		if err := se.sortByIndex(ctx, ids); err != nil {
			return nil, err
		}
		return se.walkIDs(ctx, ids)
	}
	matches, err := se.checkRecords(ctx, ids)
	if err != nil {
		return nil, err
	}
	sortMatches(matches, se.order, se.q.Descending)
	return &QueryResult{Total: int64(len(matches)), Matches: pageOf(matches, se.q.Offset, se.q.Limit)}, nil
}

func pageOf[T any](all []T, offset, limit int) []T {
	if offset >= len(all) {
		return nil
	}
	return all[offset:min(offset+limit, len(all))]
}

// sortByIndex sorts ids in the answer's order when it is the id's or a
// date's (its index's scores, read with ZMSCORE), as Redis orders a
// sorted set: by score, ties by member (the id in decimal).
func (se *search) sortByIndex(ctx context.Context, ids []int64) error {
	key := map[string]string{"notafter": se.s.keys.certExpiry(), "notbefore": se.s.keys.invNotBefore()}[se.order]
	if key == "" {
		slices.Sort(ids)
	} else {
		if err := se.spendIndex(len(ids)); err != nil {
			return err
		}
		keys := make(map[int64]int64, len(ids))
		for i := 0; i < len(ids); i += readChunk {
			chunk := ids[i:min(i+readChunk, len(ids))]
			scores, err := se.s.zmscore(ctx, key, chunk)
			if err != nil {
				return err
			}
			for j, id := range chunk {
				keys[id], _ = scoreOf(scores[j])
			}
		}
		slices.SortFunc(ids, func(a, b int64) int { return byScore(keys[a], keys[b], a, b) })
	}
	if se.q.Descending {
		slices.Reverse(ids)
	}
	return nil
}

// byScore orders two ids as a sorted set does: by score, ties by member
// (the id in decimal: 10 before 9).
func byScore(ka, kb, a, b int64) int {
	if c := cmp.Compare(ka, kb); c != 0 {
		return c
	}
	return strings.Compare(strconv.FormatInt(a, 10), strconv.FormatInt(b, 10))
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
			return byScore(ka, kb, ca.ID, cb.ID)
		case "issuedcn", "issueddn", "serialnumber":
			if c := strings.Compare(orderValue(order, ca), orderValue(order, cb)); c != 0 {
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
		return indexValue(strings.ToLower(c.IssuedCN))
	case "issueddn":
		return indexValue(NormalizeDN(c.SubjectDN))
	}
	return indexValue(NormalizeSerial(c.SerialNumber))
}

// knownTotal is the count of a search answered by one source that counts
// its certificates exactly (one entry each, no term left to the
// records), else -1.
func (se *search) knownTotal() int64 {
	if len(se.srcs) == 1 && len(se.residual) == 0 && (se.srcs[0].ranked() || se.srcs[0].kind == srcNot) {
		return se.srcs[0].count
	}
	return -1
}

// walkIDs checks ids' records in order until the page is full.
func (se *search) walkIDs(ctx context.Context, ids []int64) (*QueryResult, error) {
	matches, full, err := se.checkInOrder(ctx, ids, nil, se.q.Offset+se.q.Limit)
	if err != nil {
		return nil, err
	}
	res := &QueryResult{Total: int64(len(matches)), Matches: pageOf(matches, se.q.Offset, se.q.Limit)}
	if full {
		res.Total = -1
	}
	return res, nil
}

// walk reads the answer's order index in order, a chunk at a time,
// narrowing each chunk by every source and the records, until the page
// is full or a bound is reached. The order index is the one source in
// that order, if a term has one, else the whole inventory's.
func (se *search) walk(ctx context.Context) (*QueryResult, error) {
	walked := se.s.orderSource(se.order)
	for _, src := range se.srcs {
		if src.order == se.order && src.ranked() {
			walked = src
			break
		}
	}
	if !slices.Contains(se.srcs, walked) {
		if err := se.s.countSources(ctx, []*source{walked}); err != nil {
			return nil, err
		}
	}
	want := se.q.Offset + se.q.Limit
	var matches []Match
	var passed []int64 // while no term needs a record
	for lo := int64(0); lo < walked.count; lo += readChunk {
		ids, err := se.readRanks(ctx, walked, lo, min(lo+readChunk, walked.count)-1, se.q.Descending)
		if err != nil {
			return nil, err
		}
		ids, onRecords, err := se.narrow(ctx, walked, ids)
		if err != nil {
			return nil, err
		}
		if !onRecords {
			// No term needs a record: only the page's are read.
			if passed = append(passed, ids...); len(passed) >= want {
				ms, err := se.s.loadMatches(ctx, se.q, pageOf(passed, se.q.Offset, se.q.Limit))
				return &QueryResult{Total: se.knownTotal(), Matches: ms}, err
			}
			continue
		}
		var full bool
		if matches, full, err = se.checkInOrder(ctx, ids, matches, want); err != nil {
			return nil, err
		}
		if full {
			return &QueryResult{Total: -1, Matches: pageOf(matches, se.q.Offset, se.q.Limit)}, nil
		}
	}
	if passed != nil {
		ms, err := se.s.loadMatches(ctx, se.q, pageOf(passed, se.q.Offset, se.q.Limit))
		return &QueryResult{Total: int64(len(passed)), Matches: ms}, err
	}
	return &QueryResult{Total: int64(len(matches)), Matches: pageOf(matches, se.q.Offset, se.q.Limit)}, nil
}

package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The inventory's indexes. Every index entry of a certificate is derived
// from the certificate and its request's metadata by one function
// (inventoryEntries), and written with the change that makes it true, in
// the same Lua script (indexOps): storing the certificate (saveScript),
// revoking it (certCASScript, revokeCompromisedScript), changing its
// metadata (saveScript), deleting it (deleteCertScript). The consistency
// check (CheckInventory) recomputes the entries from the records and
// compares.
//
// Kinds of index:
//
//   - id sets: a sorted set of certificate ids scored by id, one per
//     value (template, CA, requester, metadata field=value) and one of
//     the revoked certificates (an active one is "in certificates, not in
//     revoked": the common state costs nothing);
//   - score sets: certificate ids scored by a date (NotAfter: the
//     existing certificates:expiry; NotBefore);
//   - name sets: one sorted set per name field (IssuedCN, IssuedDN, SAN
//     values, SerialNumber), every member at score 0 so that Redis orders
//     them by bytes: "<normalized value>\x00<encoded id>" (lexID), which
//     answers equality and prefix with ZRANGE BYLEX, and lets -contains
//     scan values without reading any record;
//   - the thumbprint key (a string: thumbprint → id), as before.

// indexVersion names the layout of the inventory's indexes. A store whose
// inv:version key holds another value (or none: a store from before the
// indexes) has certificates the indexes may lack; BuildInventory writes
// them and then the version, and queries use the indexes only from then
// on (see Store.InventoryReady).
const indexVersion = "1"

// Name index fields (keys.invNames).
const (
	nameCN     = "cn"
	nameDN     = "dn"
	nameSAN    = "san"
	nameSerial = "serial"
)

// Id-set index fields (keys.invSet).
const (
	setTemplate  = "template"
	setCA        = "ca"
	setRequester = "requester"
)

// invVersion holds indexVersion once the indexes are complete.
func (k keys) invVersion() string { return k.prefix + ":inv:version" }

// invBuildLock lets one process at a time build the indexes.
func (k keys) invBuildLock() string { return k.prefix + ":inv:build-lock" }

// invRevoked is the id set of revoked certificates.
func (k keys) invRevoked() string { return k.prefix + ":inv:revoked" }

// invNotBefore is the score set of certificate ids by NotBefore.
func (k keys) invNotBefore() string { return k.prefix + ":inv:notbefore" }

// invNames is the name set of one name field.
func (k keys) invNames(field string) string { return k.prefix + ":inv:name:" + field }

// invSet is the id set of the certificates whose field has value (as
// normalized by the caller). The value is hashed: it is client input of
// any length and alphabet.
func (k keys) invSet(field, value string) string {
	return k.prefix + ":inv:" + field + ":" + shortHash(value)
}

// invMetadata is the id set of the certificates whose metadata field
// name (any case) has value (any case).
func (k keys) invMetadata(name, value string) string {
	return k.prefix + ":inv:md:" + shortHash(strings.ToLower(name)+"\x00"+strings.ToLower(value))
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:12])
}

// lexID encodes a certificate id so that byte order is numeric order: the
// number of digits as a letter ('a' for one digit), then the digits.
func lexID(id int64) string {
	d := strconv.FormatInt(id, 10)
	return string(rune('a'+len(d)-1)) + d
}

// nameMember is a name set's member for a value (normalized) of
// certificate id.
func nameMember(value string, id int64) string { return indexValue(value) + "\x00" + lexID(id) }

// indexValue encodes a value for a name set so that it holds no NUL (the
// separator of its id): NUL becomes \x01\x01 and \x01 \x01\x02. The
// encoding keeps byte order and prefixes, so ranges and prefixes of the
// encoded values are those of the values; a search's value holds no
// control character (CheckTerm), so -contains is exact on it too.
func indexValue(v string) string {
	if !strings.ContainsAny(v, "\x00\x01") {
		return v
	}
	return strings.NewReplacer("\x01", "\x01\x02", "\x00", "\x01\x01").Replace(v)
}

// splitNameMember is nameMember's inverse.
func splitNameMember(m string) (value string, id int64, ok bool) {
	i := strings.LastIndexByte(m, 0)
	if i < 0 || i+2 > len(m) {
		return "", 0, false
	}
	id, err := strconv.ParseInt(m[i+2:], 10, 64)
	return m[:i], id, err == nil
}

// NormalizeSerial is the form serial numbers are indexed and compared in:
// upper-case hex without colons or leading zeros.
func NormalizeSerial(s string) string {
	return strings.TrimLeft(strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), ":", "")), "0")
}

// NormalizeDN is the form distinguished names are indexed and compared
// in: lower-case, without the spaces around separators (Keyfactor writes
// "CN=a, O=b", Go "CN=a,O=b"; "CN = a" is "cn=a" too). An escaped
// separator (`\,`) is part of its value, and so is an escaped space.
func NormalizeDN(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	var b strings.Builder
	part := func(p string) {
		trimmed := strings.TrimRight(p, " ")
		if n := len(trimmed) - len(strings.TrimRight(trimmed, "\\")); n%2 == 1 && trimmed != p {
			trimmed += " " // an escaped space ends the value
		}
		b.WriteString(strings.TrimLeft(trimmed, " "))
	}
	start, escaped := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == ',' || c == '+' || c == '=':
			part(s[start:i])
			b.WriteByte(c)
			start = i + 1
		}
	}
	part(s[start:])
	return b.String()
}

// indexEntry is one entry of an index: a member with a score in a sorted
// set, or (str) a string key holding member, or (hash) a hash's field.
type indexEntry struct {
	key    string
	score  int64
	member string
	str    bool
	hash   bool // a hash field (removal only): the CA's revoked list
	// retire: a hash field moved aside to <field>:retired (removal only):
	// a restarted request's order (Request.RetireOrder).
	retire bool
	// stream: an event appended to the event log (addition only; score
	// is the oldest id kept, 0 for no trimming): see events.go.
	stream bool
}

// inventoryEntries are all the index entries of certificate c whose
// request's metadata is md: the one definition of what the indexes hold.
func (k keys) inventoryEntries(c *Certificate, md map[string]string) []indexEntry {
	return append(k.certEntries(c), k.metadataEntries(c.ID, md)...)
}

// certEntries are the index entries of certificate c that the certificate
// alone decides: all but its metadata's.
func (k keys) certEntries(c *Certificate) []indexEntry {
	id := strconv.FormatInt(c.ID, 10)
	out := []indexEntry{
		{key: k.certificates(), score: c.ID, member: id},
		{key: k.certExpiry(), score: c.NotAfter.Unix(), member: id},
		{key: k.invNotBefore(), score: c.NotBefore.Unix(), member: id},
		{key: k.thumbprint(c.Thumbprint), member: id, str: true},
		{key: k.invNames(nameSerial), member: nameMember(NormalizeSerial(c.SerialNumber), c.ID)},
		{key: k.invNames(nameCN), member: nameMember(strings.ToLower(c.IssuedCN), c.ID)},
		{key: k.invNames(nameDN), member: nameMember(NormalizeDN(c.SubjectDN), c.ID)},
		{key: k.invSet(setTemplate, strings.ToLower(c.Template)), score: c.ID, member: id},
		{key: k.invSet(setCA, strings.ToLower(c.Authority)), score: c.ID, member: id},
		{key: k.invSet(setRequester, c.Requester), score: c.ID, member: id},
	}
	var sans []string
	for _, san := range c.SANs {
		if v := strings.ToLower(san.Value); !slices.Contains(sans, v) {
			sans = append(sans, v)
			out = append(out, indexEntry{key: k.invNames(nameSAN), member: nameMember(v, c.ID)})
		}
	}
	if c.Revocation != nil {
		out = append(out, indexEntry{key: k.invRevoked(), score: c.ID, member: id})
	}
	return out
}

// metadataEntries are the metadata index entries of certificate id: one
// per field with a value.
func (k keys) metadataEntries(id int64, md map[string]string) []indexEntry {
	var out []indexEntry
	for name, v := range md {
		if v != "" {
			out = append(out, indexEntry{key: k.invMetadata(name, v), score: id, member: strconv.FormatInt(id, 10)})
		}
	}
	return out
}

// indexOps are the index changes that come with a change of a record:
// entries to add and entries to remove. A script applies them with
// applyOpsLua's apply, the additions before its own write and the
// removals after it. Redis does not undo a script that fails halfway, so
// the order is what keeps the indexes from ever missing an entry: if an
// addition fails, the record is not written (at worst an index names a
// certificate that does not match, which every query checks against the
// record); if a removal fails, the record is written and an entry too
// many is left, which queries pass over and Store.CheckInventory removes.
type indexOps struct {
	adds, removes []indexEntry
}

func (o *indexOps) add(es []indexEntry)    { o.adds = append(o.adds, es...) }
func (o *indexOps) remove(es []indexEntry) { o.removes = append(o.removes, es...) }

// change queues what turns the entries from into the entries to.
func (o *indexOps) change(from, to []indexEntry) {
	o.remove(subtractEntries(from, to))
	o.add(subtractEntries(to, from))
}

func (o *indexOps) empty() bool { return len(o.adds) == 0 && len(o.removes) == 0 }

// encode appends the ops to a script's keys and args: each op names its
// key and takes three arguments, the op, a score and a member. Ops: z
// (ZADD), r (ZREM), s (SET), d (DEL if the key holds the member: a
// thumbprint key is only dropped by its own certificate), h (HDEL), m
// (move a hash field to <field>:retired), x
// (XADD of an event, trimming ids below the score unless it is 0).
func (o *indexOps) encode(keys []string, args []any) ([]string, []any) {
	for _, e := range o.adds {
		op := "z"
		switch {
		case e.str:
			op = "s"
		case e.stream:
			op = "x"
		}
		keys, args = append(keys, e.key), append(args, op, e.score, e.member)
	}
	for _, e := range o.removes {
		op := "r"
		switch {
		case e.str:
			op = "d"
		case e.retire:
			op = "m"
		case e.hash:
			op = "h"
		}
		keys, args = append(keys, e.key), append(args, op, e.score, e.member)
	}
	return keys, args
}

// subtractEntries is a without the entries also in b.
func subtractEntries(a, b []indexEntry) []indexEntry {
	var out []indexEntry
	for _, e := range a {
		if !slices.Contains(b, e) {
			out = append(out, e)
		}
	}
	return out
}

// applyOpsLua defines apply(firstKey, firstArg, n), which applies n ops
// encoded from KEYS[firstKey] and ARGV[firstArg] on (indexOps.encode).
const applyOpsLua = `
local function apply(fk, fa, n)
  for i = fk, fk + n - 1 do
    local a = fa + 3 * (i - fk)
    local op, k, m = ARGV[a], KEYS[i], ARGV[a + 2]
    if op == 'z' then redis.call('ZADD', k, ARGV[a + 1], m)
    elseif op == 'r' then redis.call('ZREM', k, m)
    elseif op == 's' then redis.call('SET', k, m)
    elseif op == 'h' then redis.call('HDEL', k, m)
    elseif op == 'm' then
      local v = redis.call('HGET', k, m)
      if v then redis.call('HSET', k, m .. ':retired', v); redis.call('HDEL', k, m) end
    elseif op == 'x' then
      if ARGV[a + 1] ~= '0' then redis.call('XADD', k, 'MINID', '~', ARGV[a + 1], '*', 'e', m)
      else redis.call('XADD', k, '*', 'e', m) end
    elseif op == 'd' then
      if redis.call('GET', k) == m then redis.call('DEL', k) end
    end
  end
end
`

// applyOpsScript applies indexOps alone: repairs and best-effort fixes.
var applyOpsScript = redis.NewScript(applyOpsLua + `
apply(1, 1, #KEYS)
return 1
`)

// applyOps applies ops at once (nothing when there are none).
func (s *Store) applyOps(ctx context.Context, ops *indexOps) error {
	if ops.empty() {
		return nil
	}
	keys, args := ops.encode(nil, nil)
	return applyOpsScript.Run(ctx, s.rdb, keys, args...).Err()
}

// runBatched runs script in a pipeline shared with other goroutines'
// (execBatched), by its SHA, loading it once if Redis does not know it.
func (s *Store) runBatched(ctx context.Context, script *redis.Script, keys []string, args ...any) (int64, error) {
	exec := func(run func(context.Context, redis.Scripter, []string, ...any) *redis.Cmd) (*redis.Cmd, error) {
		pipe := s.rdb.Pipeline()
		cmd := run(ctx, pipe, keys, args...)
		return cmd, s.execBatched(ctx, pipe)
	}
	cmd, err := exec(script.EvalSha)
	if err == nil && redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		cmd, err = exec(script.Eval)
	}
	if err != nil {
		return 0, err
	}
	return cmd.Int64()
}

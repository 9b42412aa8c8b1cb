package store

import (
	_ "embed"
	"encoding/binary"
	"errors"
	"math/bits"
	"sync"
)

// Packing is how settled records are kept small in Redis: a settled
// request's record (field d) and the JSON part of a certificate (field x,
// see certcodec.go) are stored packed, everything else as plain JSON. A
// packed record is the byte packV1 followed by an LZ77 stream whose
// matches may reach back into a fixed dictionary of the JSON certflow's
// records are made of (packdict-v1.txt): the keys, the usual values, the
// default definitions' steps. Record JSON is mostly that, and the rest
// (timestamps sharing their prefix, serials repeated) matches within the
// record itself, so a 2 KB settled record packs to a few hundred bytes.
// Both directions cost a few microseconds (BenchmarkPack), where
// compress/flate costs tens (its compressor clears a 512 KB table on each
// reset) and gains little more with the same dictionary.
//
// unpack reads what pack wrote and plain JSON alike (a record's JSON
// starts with '{', never with packV1), so records stored before packing
// existed, and the unsettled records that are not packed, read as they
// are.
//
// The stream is a sequence of tokens:
//
//	0nnnnnnn                     a literal: the next n+1 bytes, as they are
//	1nnnnnnn <distance, uvarint>  a match: n+4 bytes copied from distance
//	                              bytes back, the dictionary counting as the
//	                              bytes just before the output
//
// A match lies either wholly in the output written so far (it may overlap
// the bytes it writes, as a run does) or wholly in the dictionary.
//
// The dictionary and the format are part of what is stored: never change
// them. A better dictionary is a new version byte, with this one kept for
// what was written with it (TestPackDictionaryIsFrozen).
const packV1 = 0x01

//go:embed packdict-v1.txt
var packDictV1 []byte

const (
	lzMinMatch = 4
	lzMaxMatch = 0x7f + lzMinMatch
	lzMaxLit   = 0x80
	lzHashBits = 12
)

func lzHash(u uint32) uint32 { return (u * 2654435761) >> (32 - lzHashBits) }

// lzDictTable maps the hash of 4 bytes to where they are in a dictionary
// (+1; 0: nowhere). Dictionaries are shorter than 64 KB.
type lzDictTable [1 << lzHashBits]uint16

// packDictV1Table indexes the dictionary, once.
var packDictV1Table = func() *lzDictTable {
	t := new(lzDictTable)
	for i := 0; i+lzMinMatch <= len(packDictV1); i++ {
		t[lzHash(binary.LittleEndian.Uint32(packDictV1[i:]))] = uint16(i + 1)
	}
	return t
}()

// lzState is an encoder's table of where 4 bytes of its input were last
// seen: base+position+1, an entry at or below base being from an earlier
// input, so that the table is reused without clearing it.
type lzState struct {
	table [1 << lzHashBits]uint32
	base  uint32
}

var lzStates = sync.Pool{New: func() any { return new(lzState) }}

// pack appends src packed to dst; when packing would not make it smaller,
// src as it is (unless src starts with packV1: JSON never does).
func pack(dst, src []byte) []byte {
	start := len(dst)
	dst = append(dst, packV1)
	dst = lzEncode(dst, src, packDictV1, packDictV1Table)
	if len(dst)-start >= len(src) && (len(src) == 0 || src[0] != packV1) {
		return append(dst[:start], src...)
	}
	return dst
}

// errPacked is a packed record that does not unpack.
var errPacked = errors.New("packed record is damaged")

// unpack returns the JSON of data: data itself when it is not packed,
// else its unpacked bytes appended to buf.
func unpack(buf, data []byte) ([]byte, error) {
	if len(data) == 0 || data[0] != packV1 {
		return data, nil
	}
	if buf == nil {
		buf = make([]byte, 0, 5*len(data)) // records pack to a third or a fourth
	}
	return lzDecode(buf, data[1:], packDictV1)
}

// lzEncode appends src's tokens to dst: greedy, at each position the
// longer of the last match in src and the one in the dictionary.
func lzEncode(dst, src, dict []byte, dictTable *lzDictTable) []byte {
	st := lzStates.Get().(*lzState)
	defer lzStates.Put(st)
	if uint64(st.base)+uint64(len(src))+1 >= 1<<32 {
		clear(st.table[:])
		st.base = 0
	}
	base := st.base
	st.base += uint32(len(src)) + 1
	lit := 0 // start of the literals not written yet
	emitLiterals := func(end int) {
		for lit < end {
			n := min(end-lit, lzMaxLit)
			dst = append(dst, byte(n-1))
			dst = append(dst, src[lit:lit+n]...)
			lit += n
		}
	}
	i := 0
	for i+lzMinMatch <= len(src) {
		h := lzHash(binary.LittleEndian.Uint32(src[i:]))
		length, dist := 0, 0
		if v := st.table[h]; v > base {
			p := int(v - base - 1)
			if n := matchLen(src[p:], src[i:]); n >= lzMinMatch {
				length, dist = n, i-p
			}
		}
		if v := dictTable[h]; v > 0 {
			p := int(v - 1)
			if n := matchLen(dict[p:], src[i:]); n >= lzMinMatch && n > length {
				length, dist = n, i+len(dict)-p
			}
		}
		st.table[h] = base + uint32(i) + 1
		if length == 0 {
			i++
			continue
		}
		emitLiterals(i)
		for n := length; n > 0; {
			// Chunks of at most lzMaxMatch, at the same distance (each
			// continues where the last left off), none shorter than
			// lzMinMatch.
			m := min(n, lzMaxMatch)
			if r := n - m; r > 0 && r < lzMinMatch {
				m -= lzMinMatch - r
			}
			dst = append(dst, 0x80|byte(m-lzMinMatch))
			dst = binary.AppendUvarint(dst, uint64(dist))
			n -= m
		}
		if j := i + length - 1; j+lzMinMatch <= len(src) {
			st.table[lzHash(binary.LittleEndian.Uint32(src[j:]))] = base + uint32(j) + 1
		}
		i += length
		lit = i
	}
	emitLiterals(len(src))
	return dst
}

// matchLen is the length of the common prefix of a and b.
func matchLen(a, b []byte) int {
	n := 0
	for len(a) >= 8 && len(b) >= 8 {
		if x := binary.LittleEndian.Uint64(a) ^ binary.LittleEndian.Uint64(b); x != 0 {
			return n + bits.TrailingZeros64(x)/8
		}
		a, b, n = a[8:], b[8:], n+8
	}
	for len(a) > 0 && len(b) > 0 && a[0] == b[0] {
		a, b, n = a[1:], b[1:], n+1
	}
	return n
}

// lzDecode appends what src's tokens say to dst. Whatever src holds, it
// reads nothing outside src and dict, and writes at most 66 bytes per
// byte of src.
func lzDecode(dst, src, dict []byte) ([]byte, error) {
	base := len(dst)
	for i := 0; i < len(src); {
		c := src[i]
		i++
		if c < 0x80 {
			n := int(c) + 1
			if n > len(src)-i {
				return nil, errPacked
			}
			dst = append(dst, src[i:i+n]...)
			i += n
			continue
		}
		n := int(c&0x7f) + lzMinMatch
		d, k := binary.Uvarint(src[i:])
		if k <= 0 {
			return nil, errPacked
		}
		i += k
		out := uint64(len(dst) - base)
		switch {
		case d == 0:
			return nil, errPacked
		case d <= out:
			p := len(dst) - int(d)
			if int(d) >= n {
				dst = append(dst, dst[p:p+n]...)
				continue
			}
			for j := range n { // overlapping: a run
				dst = append(dst, dst[p+j])
			}
		case d-out <= uint64(len(dict)):
			p := len(dict) - int(d-out)
			if p+n > len(dict) {
				return nil, errPacked
			}
			dst = append(dst, dict[p:p+n]...)
		default:
			return nil, errPacked
		}
	}
	return dst, nil
}

package chunk

import (
	"encoding/binary"
	"errors"
)

var errShort = errors.New("msgpack: truncated")
var errInvalid = errors.New("msgpack: invalid byte")

// skip returns the offset just past the msgpack object starting at off.
// It is iterative (a count of objects still to skip instead of recursion),
// so nesting depth costs no stack, and it decides each object from its
// lead byte alone, which makes framing a record a few nanoseconds per
// element: the walk every record pays, quarantine or not.
func skip(b []byte, off int) (int, error) {
	// pending may exceed the bytes left for hostile headers (a map32 that
	// claims four billion entries); every object takes at least one byte,
	// so such input runs out of bytes after len(b) steps at most.
	pending := 1
	for pending > 0 {
		if off >= len(b) {
			return off, errShort
		}
		c := b[off]
		if c&0xe0 == 0xa0 {
			// fixstr, most of a CloudTrail record (every key, most values):
			// its size from the byte itself, one load off the chain.
			off += 1 + int(c&0x1f)
			pending--
			continue
		}
		if sp := specs[c]; sp.size != 0 {
			// One table load decides the common objects: fixints, fixstr,
			// fixmap and fixarray headers, fixed-size scalars.
			off += int(sp.size)
			pending += int(sp.children) - 1
			continue
		}
		var n int
		var err error
		if off, n, err = skipLong(b, off, c); err != nil {
			return off, err
		}
		pending += n - 1
	}
	if off > len(b) {
		return len(b), errShort
	}
	return off, nil
}

// spec is what a lead byte alone says: the object's whole size when fixed
// (0 when a length follows), and how many child objects follow it.
type spec struct {
	size     uint8
	children uint8
}

var specs = func() (t [256]spec) {
	for c := 0; c < 256; c++ {
		switch {
		case c <= 0x7f, c >= 0xe0: // fixint
			t[c] = spec{1, 0}
		case c <= 0x8f: // fixmap
			t[c] = spec{1, uint8(2 * (c & 0x0f))}
		case c <= 0x9f: // fixarray
			t[c] = spec{1, uint8(c & 0x0f)}
		case c <= 0xbf: // fixstr
			t[c] = spec{uint8(1 + c&0x1f), 0}
		}
	}
	for c, size := range map[byte]uint8{
		0xc0: 1, 0xc2: 1, 0xc3: 1, // nil, false, true
		0xcc: 2, 0xd0: 2, // uint8, int8
		0xcd: 3, 0xd1: 3, 0xd4: 3, // uint16, int16, fixext1
		0xd5: 4,                   // fixext2
		0xca: 5, 0xce: 5, 0xd2: 5, // float32, uint32, int32
		0xd6: 6,                   // fixext4
		0xcb: 9, 0xcf: 9, 0xd3: 9, // float64, uint64, int64
		0xd7: 10, // fixext8: Fluent Bit's EventTime
		0xd8: 18, // fixext16
	} {
		t[c] = spec{size, 0}
	}
	return t
}()

// skipLong handles the lead bytes followed by a length: it returns the
// offset past the object's header and payload, and how many child objects
// follow.
func skipLong(b []byte, off int, c byte) (int, int, error) {
	need := func(n int) bool { return off+n <= len(b) }
	switch c {
	case 0xc4, 0xd9: // bin8, str8
		if !need(2) {
			return off, 0, errShort
		}
		return off + 2 + int(b[off+1]), 0, nil
	case 0xc5, 0xda: // bin16, str16
		if !need(3) {
			return off, 0, errShort
		}
		return off + 3 + int(binary.BigEndian.Uint16(b[off+1:])), 0, nil
	case 0xc6, 0xdb: // bin32, str32
		if !need(5) {
			return off, 0, errShort
		}
		return off + 5 + int(binary.BigEndian.Uint32(b[off+1:])), 0, nil
	case 0xc7: // ext8: length, type, data
		if !need(2) {
			return off, 0, errShort
		}
		return off + 3 + int(b[off+1]), 0, nil
	case 0xc8: // ext16
		if !need(3) {
			return off, 0, errShort
		}
		return off + 4 + int(binary.BigEndian.Uint16(b[off+1:])), 0, nil
	case 0xc9: // ext32
		if !need(5) {
			return off, 0, errShort
		}
		return off + 6 + int(binary.BigEndian.Uint32(b[off+1:])), 0, nil
	case 0xdc: // array16
		if !need(3) {
			return off, 0, errShort
		}
		return off + 3, int(binary.BigEndian.Uint16(b[off+1:])), nil
	case 0xdd: // array32
		if !need(5) {
			return off, 0, errShort
		}
		return off + 5, int(binary.BigEndian.Uint32(b[off+1:])), nil
	case 0xde: // map16
		if !need(3) {
			return off, 0, errShort
		}
		return off + 3, 2 * int(binary.BigEndian.Uint16(b[off+1:])), nil
	case 0xdf: // map32
		if !need(5) {
			return off, 0, errShort
		}
		return off + 5, 2 * int(binary.BigEndian.Uint32(b[off+1:])), nil
	}
	return off, 0, errInvalid // 0xc1 is never used
}

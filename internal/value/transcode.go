package value

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"
)

// Transcoder writes JSON text as msgpack in one pass, without building
// values: what `cloudtrail-quarantine ship` does to every event it sends,
// so unlike FromJSON it is on a hot path. Its output decodes (FromMsgpack)
// to what FromJSON gives for the same text, except that an object's keys
// keep their order and a repeated key is kept twice (FromJSON keeps the
// first); FuzzTranscodeAgrees holds the two to that.
type Transcoder struct {
	// Extra is how many entries the caller appends to the top-level
	// object after Append returns: its map header counts them.
	Extra int
	// Top, when set, sees each string member of the top-level object,
	// unescaped; both slices are only valid during the call.
	Top func(key, value []byte)

	src     []byte
	pos     int
	scratch []byte
}

// ErrNotObject: Extra entries need a top-level object to go in.
var ErrNotObject = errors.New("not a JSON object")

// Append appends the msgpack form of the one JSON value src holds.
func (t *Transcoder) Append(dst, src []byte) ([]byte, error) {
	t.src, t.pos = src, 0
	t.space()
	if t.Extra > 0 && (t.pos == len(src) || src[t.pos] != '{') {
		return dst, ErrNotObject
	}
	start := len(dst)
	out, err := t.value(dst, 0)
	if err == nil {
		if t.space(); t.pos != len(src) {
			err = errors.New("trailing data after JSON value")
		}
	}
	t.src = nil
	if err != nil {
		return dst[:start], err
	}
	return out, nil
}

func (t *Transcoder) space() {
	for t.pos < len(t.src) {
		switch t.src[t.pos] {
		case ' ', '\t', '\n', '\r':
			t.pos++
		default:
			return
		}
	}
}

func (t *Transcoder) errorf(format string, a ...any) error {
	return fmt.Errorf("JSON at byte %d: %s", t.pos, fmt.Sprintf(format, a...))
}

func (t *Transcoder) value(dst []byte, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return dst, ErrTooDeep
	}
	if t.pos >= len(t.src) {
		return dst, t.errorf("unexpected end")
	}
	switch c := t.src[t.pos]; {
	case c == '{':
		return t.object(dst, depth)
	case c == '[':
		return t.array(dst, depth)
	case c == '"':
		out, _, err := t.str(dst)
		return out, err
	case c == '-' || c >= '0' && c <= '9':
		return t.number(dst)
	case c == 't':
		return t.literal(dst, "true", msgp.AppendBool(dst, true))
	case c == 'f':
		return t.literal(dst, "false", msgp.AppendBool(dst, false))
	case c == 'n':
		return t.literal(dst, "null", msgp.AppendNil(dst))
	default:
		return dst, t.errorf("unexpected %q", c)
	}
}

func (t *Transcoder) literal(dst []byte, word string, out []byte) ([]byte, error) {
	if !bytes.HasPrefix(t.src[t.pos:], []byte(word)) {
		return dst, t.errorf("bad literal")
	}
	t.pos += len(word)
	return out, nil
}

// A container's entry count is known only at its end: its header is
// written as the 3-byte form and fixed then (shrunk to the 1-byte form
// for fewer than 16 entries, grown to the 5-byte one past 65535).
const (
	fixMap, map16, map32       = 0x80, 0xde, 0xdf
	fixArray, array16, array32 = 0x90, 0xdc, 0xdd
)

func header(dst []byte, at, n int, fix, b16, b32 byte) []byte {
	switch {
	case n < 16:
		dst[at] = fix | byte(n)
		copy(dst[at+1:], dst[at+3:])
		return dst[:len(dst)-2]
	case n <= math.MaxUint16:
		dst[at] = b16
		binary.BigEndian.PutUint16(dst[at+1:], uint16(n))
		return dst
	}
	dst = append(dst, 0, 0)
	copy(dst[at+5:], dst[at+3:len(dst)-2])
	dst[at] = b32
	binary.BigEndian.PutUint32(dst[at+1:], uint32(n))
	return dst
}

func (t *Transcoder) object(dst []byte, depth int) ([]byte, error) {
	at := len(dst)
	dst = append(dst, map16, 0, 0)
	t.pos++ // '{'
	n := 0
	top := depth == 0
	for {
		t.space()
		if t.pos < len(t.src) && t.src[t.pos] == '}' && n == 0 {
			t.pos++
			break
		}
		if t.pos >= len(t.src) || t.src[t.pos] != '"' {
			return dst, t.errorf("expected a key")
		}
		var err error
		var key []byte
		if dst, key, err = t.str(dst); err != nil {
			return dst, err
		}
		keyAt, keyLen := len(dst)-len(key), len(key)
		t.space()
		if t.pos >= len(t.src) || t.src[t.pos] != ':' {
			return dst, t.errorf("expected ':'")
		}
		t.pos++
		t.space()
		if top && t.Top != nil && t.pos < len(t.src) && t.src[t.pos] == '"' {
			var v []byte
			if dst, v, err = t.str(dst); err != nil {
				return dst, err
			}
			// Writing the value may have moved dst: find the key again.
			t.Top(dst[keyAt:keyAt+keyLen], v)
		} else if dst, err = t.value(dst, depth+1); err != nil {
			return dst, err
		}
		n++
		t.space()
		if t.pos >= len(t.src) {
			return dst, t.errorf("unexpected end in an object")
		}
		if t.src[t.pos] == '}' {
			t.pos++
			break
		}
		if t.src[t.pos] != ',' {
			return dst, t.errorf("expected ',' or '}'")
		}
		t.pos++
	}
	if top {
		n += t.Extra
	}
	return header(dst, at, n, fixMap, map16, map32), nil
}

func (t *Transcoder) array(dst []byte, depth int) ([]byte, error) {
	at := len(dst)
	dst = append(dst, array16, 0, 0)
	t.pos++ // '['
	n := 0
	for {
		t.space()
		if t.pos < len(t.src) && t.src[t.pos] == ']' && n == 0 {
			t.pos++
			break
		}
		var err error
		if dst, err = t.value(dst, depth+1); err != nil {
			return dst, err
		}
		n++
		t.space()
		if t.pos >= len(t.src) {
			return dst, t.errorf("unexpected end in an array")
		}
		if t.src[t.pos] == ']' {
			t.pos++
			break
		}
		if t.src[t.pos] != ',' {
			return dst, t.errorf("expected ',' or ']'")
		}
		t.pos++
	}
	return header(dst, at, n, fixArray, array16, array32), nil
}

// str appends the string at t.pos and returns its unescaped bytes (a
// slice of the returned dst).
func (t *Transcoder) str(dst []byte) ([]byte, []byte, error) {
	t.pos++ // '"'
	start := t.pos
	// Fast path: no escape before the closing quote.
	for i := start; i < len(t.src); i++ {
		switch c := t.src[i]; {
		case c == '"':
			t.pos = i + 1
			dst = msgp.AppendStringFromBytes(dst, t.src[start:i])
			return dst, dst[len(dst)-(i-start):], nil
		case c == '\\':
			return t.escaped(dst, start)
		case c < 0x20:
			t.pos = i
			return dst, nil, t.errorf("control character in a string")
		}
	}
	t.pos = len(t.src)
	return dst, nil, t.errorf("unterminated string")
}

func (t *Transcoder) escaped(dst []byte, start int) ([]byte, []byte, error) {
	s := t.scratch[:0]
	i := start
	for i < len(t.src) {
		c := t.src[i]
		switch {
		case c == '"':
			t.pos = i + 1
			t.scratch = s
			dst = msgp.AppendStringFromBytes(dst, s)
			return dst, dst[len(dst)-len(s):], nil
		case c < 0x20:
			t.pos = i
			return dst, nil, t.errorf("control character in a string")
		case c != '\\':
			s = append(s, c)
			i++
			continue
		}
		if i+1 >= len(t.src) {
			break
		}
		switch e := t.src[i+1]; e {
		case '"', '\\', '/':
			s = append(s, e)
		case 'b':
			s = append(s, '\b')
		case 'f':
			s = append(s, '\f')
		case 'n':
			s = append(s, '\n')
		case 'r':
			s = append(s, '\r')
		case 't':
			s = append(s, '\t')
		case 'u':
			r, ok := hex4(t.src[i+2:])
			if !ok {
				t.pos = i
				return dst, nil, t.errorf("bad \\u escape")
			}
			i += 6
			if utf16.IsSurrogate(r) {
				// A pair makes one rune; a lone half is U+FFFD, as
				// encoding/json and jsoniter read it.
				if lo, ok := hex4(t.src[min(i+2, len(t.src)):]); ok && i+1 < len(t.src) && t.src[i] == '\\' && t.src[i+1] == 'u' {
					if p := utf16.DecodeRune(r, lo); p != utf8.RuneError {
						s = utf8.AppendRune(s, p)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			s = utf8.AppendRune(s, r)
			continue
		default:
			t.pos = i
			return dst, nil, t.errorf("bad escape")
		}
		i += 2
	}
	t.pos = len(t.src)
	t.scratch = s
	return dst, nil, t.errorf("unterminated string")
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number writes an integer that fits int64 as one, anything else as a
// float64, as FromJSON does.
func (t *Transcoder) number(dst []byte) ([]byte, error) {
	start := t.pos
	i := start
	digits := func() int {
		n := 0
		for i < len(t.src) && t.src[i] >= '0' && t.src[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if t.src[i] == '-' {
		i++
	}
	intStart := i
	if digits() == 0 || t.src[intStart] == '0' && i-intStart > 1 {
		t.pos = i
		return dst, t.errorf("bad number")
	}
	integer := true
	if i < len(t.src) && t.src[i] == '.' {
		i++
		integer = false
		if digits() == 0 {
			t.pos = i
			return dst, t.errorf("bad number")
		}
	}
	if i < len(t.src) && (t.src[i] == 'e' || t.src[i] == 'E') {
		i++
		integer = false
		if i < len(t.src) && (t.src[i] == '+' || t.src[i] == '-') {
			i++
		}
		if digits() == 0 {
			t.pos = i
			return dst, t.errorf("bad number")
		}
	}
	t.pos = i
	text := t.src[start:i]
	if integer {
		if n, err := strconv.ParseInt(string(text), 10, 64); err == nil {
			return msgp.AppendInt64(dst, n), nil
		}
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil {
		return dst, t.errorf("bad number %s", text)
	}
	return msgp.AppendFloat64(dst, f), nil
}

package value

import (
	"bytes"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"
)

// AppendJSON transcodes one msgpack object to JSON, keeping map key order;
// of duplicate keys the first wins, as everywhere in this project. str and
// bin both become JSON strings (Fluent Bit writes text as either);
// invalid UTF-8 becomes U+FFFD; NaN, infinities and extensions become null,
// and so does anything nested deeper than MaxDepth: an alert must not be
// lost because some unrelated field of its event is absurdly deep. It is
// how an alert carries the original event without decoding it into a map.
func AppendJSON(dst, b []byte) ([]byte, error) {
	dst, _, err := appendJSON(dst, b, 0)
	return dst, err
}

// keySet tells the first of a map's keys from later duplicates: a scan of
// the few keys an event's maps have, a hash set for a hostile map of
// thousands.
type keySet struct {
	n     int
	small [][]byte
	large map[string]struct{}
}

// add reports whether k is new, and remembers it.
func (s *keySet) add(k []byte) bool {
	if s.large != nil {
		if _, dup := s.large[string(k)]; dup {
			return false
		}
		s.large[string(k)] = struct{}{}
		s.n++
		return true
	}
	if slices.ContainsFunc(s.small, func(o []byte) bool { return bytes.Equal(o, k) }) {
		return false
	}
	s.small = append(s.small, k)
	s.n++
	if len(s.small) > 32 {
		s.large = make(map[string]struct{}, 64)
		for _, o := range s.small {
			s.large[string(o)] = struct{}{}
		}
		s.small = nil
	}
	return true
}

// mapKeyText reads a map key as text: a string as it is, any other
// scalar as its JSON text.
func mapKeyText(b []byte, depth int) (text, rest []byte, err error) {
	if k, rest, err := ReadText(b); err == nil {
		return k, rest, nil
	}
	return appendJSON(nil, b, depth+1)
}

// Canonical rewrites one msgpack object the way the map path would write
// it back: of duplicate keys the first wins, keys and bin values become
// str, extensions and what is nested deeper than MaxDepth become nil. An
// alert carries its event this way, so an event read in place and the same
// event decoded into a map give one alert.
func Canonical(b []byte) ([]byte, error) {
	dst, _, err := appendCanonical(nil, b, 0)
	return dst, err
}

func appendCanonical(dst, b []byte, depth int) ([]byte, []byte, error) {
	if depth > MaxDepth {
		rest, err := msgp.Skip(b)
		return msgp.AppendNil(dst), rest, err
	}
	switch msgp.NextType(b) {
	case msgp.MapType:
		n, b, err := msgp.ReadMapHeaderBytes(b)
		if err != nil {
			return dst, b, err
		}
		type entry struct{ k, v []byte }
		var entries []entry
		var seen keySet
		for range n {
			var k []byte
			if k, b, err = mapKeyText(b, depth); err != nil {
				return dst, b, err
			}
			end, err := msgp.Skip(b)
			if err != nil {
				return dst, b, err
			}
			if seen.add(k) {
				entries = append(entries, entry{k, b[:len(b)-len(end)]})
			}
			b = end
		}
		dst = msgp.AppendMapHeader(dst, uint32(len(entries)))
		for _, e := range entries {
			dst = msgp.AppendStringFromBytes(dst, e.k)
			if dst, _, err = appendCanonical(dst, e.v, depth+1); err != nil {
				return dst, b, err
			}
		}
		return dst, b, nil
	case msgp.ArrayType:
		n, b, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil {
			return dst, b, err
		}
		dst = msgp.AppendArrayHeader(dst, n)
		for range n {
			if dst, b, err = appendCanonical(dst, b, depth+1); err != nil {
				return dst, b, err
			}
		}
		return dst, b, nil
	case msgp.StrType, msgp.BinType:
		s, rest, err := ReadText(b)
		return msgp.AppendStringFromBytes(dst, s), rest, err
	case msgp.IntType, msgp.UintType, msgp.Float32Type, msgp.Float64Type, msgp.BoolType, msgp.NilType:
		rest, err := msgp.Skip(b)
		return append(dst, b[:len(b)-len(rest)]...), rest, err
	default: // extensions
		rest, err := msgp.Skip(b)
		return msgp.AppendNil(dst), rest, err
	}
}

func appendJSON(dst, b []byte, depth int) ([]byte, []byte, error) {
	if depth > MaxDepth {
		rest, err := msgp.Skip(b)
		return append(dst, "null"...), rest, err
	}
	var err error
	switch msgp.NextType(b) {
	case msgp.MapType:
		var n uint32
		if n, b, err = msgp.ReadMapHeaderBytes(b); err != nil {
			return dst, b, err
		}
		dst = append(dst, '{')
		var seen keySet
		for range n {
			var k []byte
			if k, b, err = mapKeyText(b, depth); err != nil {
				return dst, b, err
			}
			if !seen.add(k) {
				if b, err = msgp.Skip(b); err != nil {
					return dst, b, err
				}
				continue
			}
			if seen.n > 1 {
				dst = append(dst, ',')
			}
			dst = AppendJSONString(dst, k)
			dst = append(dst, ':')
			if dst, b, err = appendJSON(dst, b, depth+1); err != nil {
				return dst, b, err
			}
		}
		return append(dst, '}'), b, nil
	case msgp.ArrayType:
		var n uint32
		if n, b, err = msgp.ReadArrayHeaderBytes(b); err != nil {
			return dst, b, err
		}
		dst = append(dst, '[')
		for i := range n {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, b, err = appendJSON(dst, b, depth+1); err != nil {
				return dst, b, err
			}
		}
		return append(dst, ']'), b, nil
	case msgp.StrType, msgp.BinType:
		var s []byte
		s, b, err = ReadText(b)
		return AppendJSONString(dst, s), b, err
	case msgp.IntType:
		var i int64
		i, b, err = msgp.ReadInt64Bytes(b)
		return strconv.AppendInt(dst, i, 10), b, err
	case msgp.UintType:
		var u uint64
		u, b, err = msgp.ReadUint64Bytes(b)
		return strconv.AppendUint(dst, u, 10), b, err
	case msgp.Float32Type, msgp.Float64Type:
		var f float64
		if f, b, err = msgp.ReadFloat64Bytes(b); err != nil {
			return dst, b, err
		}
		return appendFloat(dst, f), b, nil
	case msgp.BoolType:
		var v bool
		v, b, err = msgp.ReadBoolBytes(b)
		return strconv.AppendBool(dst, v), b, err
	default: // nil, extensions
		rest, err := msgp.Skip(b)
		return append(dst, "null"...), rest, err
	}
}

const hex = "0123456789abcdef"

// plain marks the bytes a JSON string may hold as they are.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// needsEscape reports whether any byte of w is below 0x20, a quote, a
// backslash or non-ASCII.
func needsEscape(w uint64) bool {
	zero := func(x uint64) uint64 { return (x - ones) &^ x & highs }
	return (w&highs)|((w-0x20*ones)&^w&highs)|zero(w^('"'*ones))|zero(w^('\\'*ones)) != 0
}

// AppendJSONString appends s as a JSON string literal. Words of eight
// plain bytes are copied at once; only quotes, backslashes, control bytes
// and non-ASCII bytes (checked for valid UTF-8) take the slow path.
func AppendJSONString[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) {
			w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
				uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
			if !needsEscape(w) {
				i += 8
				continue
			}
		}
		// Byte by byte to the end of this word, so text dense with escapes
		// does not retest a word at every byte.
		for end := min(i+8, len(s)); i < end; {
			c := s[i]
			if plain[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
				i++
			case c == '\n':
				dst = append(dst, '\\', 'n')
				i++
			case c == '\r':
				dst = append(dst, '\\', 'r')
				i++
			case c == '\t':
				dst = append(dst, '\\', 't')
				i++
			case c < utf8.RuneSelf:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
				i++
			default:
				r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
				if r == utf8.RuneError && size == 1 {
					dst = append(dst, "\ufffd"...)
				} else {
					dst = append(dst, s[i:i+size]...)
				}
				i += size
			}
			start = i
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

package detect

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/jsonblock"
)

// Span is one record the Splitter found: the bytes [Start, End) of the
// buffer it was given. Element marks an event of a CloudTrail log file's
// Records array, read on its own; any other record is a whole body (a
// line of JSON lines, a value of a top-level array, an object that is not
// a log file).
type Span struct {
	Start, End int
	Element    bool
}

// Splitter finds the records of JSON text handed to it piece by piece, so
// a log file of any size is read one event at a time: the caller keeps
// only the bytes from Keep on. It frames values without decoding or
// validating them (that is the decoder's job, for the rare candidates):
// its cost is one pass over the bytes, most of it bytes.IndexByte inside
// strings. A log file is an object whose first key is "Records" with an
// array value, as AWS writes them; an object with Records elsewhere is
// read whole, and the resolver still finds its events.
type Splitter struct {
	state               splitState
	pos                 int // the next byte to look at
	start, key, element int // where the object, its first key and the element being read start
	inRecords, begun    bool
	value               skipper
}

type splitState uint8

const (
	atTop       splitState = iota // between top-level values
	firstKey                      // after a top-level '{'
	inKey                         // reading the first key
	afterKey                      // before the first key's ':'
	beforeValue                   // before the first key's value
	wholeObject                   // skipping an object read whole
	between                       // between the elements of Records or of a top-level array
	inElement                     // skipping one element
	restOfFile                    // after Records' ']', up to the log file's '}'
	topScalar                     // skipping a top-level value that is no object or array
)

// ErrTruncated is returned at the end of the text when a record is still
// open: a file cut short.
var ErrTruncated = errors.New("unexpected end of JSON (truncated file?)")

// Reset starts over, for a new text.
func (s *Splitter) Reset() { *s = Splitter{} }

// Keep is the first byte of the buffer the Splitter still needs: the
// caller may drop the bytes before it (and then call Shift).
func (s *Splitter) Keep() int {
	switch s.state {
	case firstKey, inKey, afterKey, beforeValue, wholeObject:
		return s.start
	case inElement:
		return s.element
	}
	return s.pos
}

// Shift tells the Splitter the caller dropped the first n bytes.
func (s *Splitter) Shift(n int) {
	s.pos -= n
	s.start -= n
	s.key -= n
	s.element -= n
}

// Next returns the next record of data, which holds every byte from Keep
// on. ok false with no error means data holds no further whole record:
// give it more, or, with eof, the text ended cleanly.
func (s *Splitter) Next(data []byte, eof bool) (sp Span, ok bool, err error) {
	for {
		switch s.state {
		case atTop:
			if !s.begun {
				// A byte order mark may open the text.
				if rest := data[s.pos:]; len(rest) < len(utf8BOM) && bytes.HasPrefix(utf8BOM, rest) && !eof {
					return Span{}, false, nil
				}
				if bytes.HasPrefix(data[s.pos:], utf8BOM) {
					s.pos += len(utf8BOM)
				}
				s.begun = true
			}
			i := skipSpace(data, s.pos)
			s.pos = i
			if i == len(data) {
				return Span{}, false, nil
			}
			switch c := data[i]; c {
			case '{':
				s.start, s.pos, s.state = i, i+1, firstKey
			case '[':
				s.pos, s.state, s.inRecords = i+1, between, false
			default:
				if c != '"' && !scalarStart(c) {
					return Span{}, false, malformed(c)
				}
				s.value = skipper{}
				s.state = topScalar
			}
		case firstKey:
			i := skipSpace(data, s.pos)
			if s.pos = i; i == len(data) {
				return s.more(eof)
			}
			switch c := data[i]; c {
			case '}':
				s.pos, s.state = i+1, atTop
				return Span{Start: s.start, End: i + 1}, true, nil
			case '"':
				s.key, s.pos, s.state = i+1, i+1, inKey
				s.value = skipper{begun: true, str: true}
			default:
				return Span{}, false, malformed(c)
			}
		case inKey:
			end, done := s.value.run(data, s.pos, eof)
			if s.pos = end; !done {
				return s.more(eof)
			}
			s.inRecords = string(data[s.key:end-1]) == "Records"
			s.state = afterKey
		case afterKey:
			i := skipSpace(data, s.pos)
			if s.pos = i; i == len(data) {
				return s.more(eof)
			}
			if data[i] != ':' {
				return Span{}, false, malformed(data[i])
			}
			s.pos, s.state = i+1, beforeValue
		case beforeValue:
			i := skipSpace(data, s.pos)
			if s.pos = i; i == len(data) {
				return s.more(eof)
			}
			if s.inRecords && data[i] == '[' {
				s.pos, s.state = i+1, between
				continue
			}
			// The rest of the object, from inside it.
			s.value = skipper{begun: true, depth: 1}
			s.state = wholeObject
		case wholeObject:
			end, done := s.value.run(data, s.pos, eof)
			if s.pos = end; !done {
				return s.more(eof)
			}
			s.state = atTop
			return Span{Start: s.start, End: end}, true, nil
		case between:
			i := skipSpace(data, s.pos)
			for i < len(data) && data[i] == ',' {
				i = skipSpace(data, i+1)
			}
			if s.pos = i; i == len(data) {
				return s.more(eof)
			}
			switch c := data[i]; {
			case c == ']' && s.inRecords:
				s.pos, s.state = i+1, restOfFile
				s.value = skipper{begun: true, depth: 1}
			case c == ']':
				s.pos, s.state = i+1, atTop
			case c == '{' || c == '[' || c == '"' || scalarStart(c):
				s.element, s.state = i, inElement
				s.value = skipper{}
			default:
				return Span{}, false, malformed(c)
			}
		case inElement:
			end, done := s.value.run(data, s.pos, eof)
			if s.pos = end; !done {
				return s.more(eof)
			}
			s.state = between
			if data[s.element] == '{' {
				return Span{Start: s.element, End: end, Element: s.inRecords}, true, nil
			}
		case restOfFile, topScalar:
			end, done := s.value.run(data, s.pos, eof)
			if s.pos = end; !done {
				return s.more(eof)
			}
			s.state = atTop
		}
	}
}

// more is "no record yet": at the end of the text, a record left open is
// a truncated file.
func (s *Splitter) more(eof bool) (Span, bool, error) {
	if eof {
		return Span{}, false, ErrTruncated
	}
	return Span{}, false, nil
}

func malformed(c byte) error {
	return fmt.Errorf("not JSON: unexpected %q", c)
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\n', '\r', '\t':
			i++
		default:
			return i
		}
	}
	return i
}

// scalarStart: a number or a literal (true, false, null) starts so.
func scalarStart(c byte) bool {
	return c == '-' || c >= '0' && c <= '9' || c == 't' || c == 'f' || c == 'n'
}

// skipper skips one JSON value, resumably: run stops at the end of the
// buffer and goes on where it stopped when given more.
type skipper struct {
	begun  bool
	depth  int
	str    bool // inside a string
	esc    bool // the buffer ended on the backslash of an escape
	scalar bool
}

// blocks: the skipper skips a block (jsonblock.Size bytes) at a time from
// its bits where the build classifies them vectorised (jsonblock.Fast;
// tests turn it on and off to hold the two ways against each other).
var blocks = jsonblock.Fast

// run skips from data[i:] and returns where it stopped and whether the
// value is done (its end is then the returned index). Inside an object
// or array, a block without a backslash is skipped from its bits (a
// backslash, rare in CloudTrail, needs the escape rules: its block goes
// a byte at a time).
func (v *skipper) run(data []byte, i int, eof bool) (int, bool) {
	if !v.begun {
		v.begun = true
		switch data[i] {
		case '{', '[':
			v.depth = 1
		case '"':
			v.str = true
		default:
			v.scalar = true
		}
		i++
	}
	for i < len(data) {
		limit := len(data)
		if blocks && v.depth > 0 {
			if !v.esc {
				st := jsonblock.State{Depth: v.depth, InString: v.str}
				end, done := jsonblock.Skip(data, i, &st)
				if done {
					return end, true
				}
				i, v.depth, v.str = end, st.Depth, st.InString
			}
			// A block with a backslash, or the last bytes.
			limit = min(i+jsonblock.Size, len(data))
		}
		var done bool
		if i, done = v.bytes(data, i, limit); done {
			return i, true
		}
	}
	return len(data), v.scalar && eof
}

// bytes skips a byte at a time from data[i:] up to limit; it stops at
// limit as at the end of the buffer, the state kept for what follows.
func (v *skipper) bytes(data []byte, i, limit int) (int, bool) {
	for i < limit {
		switch {
		case v.esc:
			v.esc = false
			i++
		case v.str:
			q := bytes.IndexByte(data[i:limit], '"')
			if q < 0 {
				v.esc = trailingBackslashes(data[i:limit])%2 == 1
				return limit, false
			}
			q += i
			escaped := trailingBackslashes(data[i:q])%2 == 1
			i = q + 1
			if !escaped {
				v.str = false
				if v.depth == 0 {
					return i, true
				}
			}
		case v.scalar:
			for ; i < limit; i++ {
				switch data[i] {
				case ' ', '\n', '\r', '\t', ',', ']', '}', ':', '{', '[', '"':
					return i, true
				}
			}
		default:
			switch data[i] {
			case '"':
				v.str = true
			case '{', '[':
				v.depth++
			case '}', ']':
				if v.depth--; v.depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
	}
	return limit, false
}

func trailingBackslashes(b []byte) int {
	n := 0
	for n < len(b) && b[len(b)-1-n] == '\\' {
		n++
	}
	return n
}

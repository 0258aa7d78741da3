// Package jsonblock skips JSON text 64 bytes at a time: a block's quotes,
// backslashes and brackets are found as bits, and the brackets outside
// strings move the depth. The Splitter frames records so instead of a
// byte at a time (a CloudTrail record holds a quote every few bytes, and
// a call of bytes.IndexByte for each string cost more than the string).
//
// Vectorised when the build has Go's SIMD experiment (GOEXPERIMENT=simd,
// as the Makefile builds) on an amd64 CPU with AVX2; Fast says so.
// Without it the Splitter goes a byte at a time, as it always did, and
// Skip classifies a block with a plain loop (for the tests).
package jsonblock

import "math/bits"

// Size is the bytes a block holds.
const Size = 64

// Fast reports whether Skip runs vectorised.
var Fast = fast

// State is where a skip stands between blocks: the depth of brackets
// open, and whether the next byte lies inside a string.
type State struct {
	Depth    int
	InString bool
}

// Skip skips whole blocks of data from i on while they hold no
// backslash (an escape needs the rules a byte at a time), st moved by
// each. It returns where it stopped, and done when the depth came to
// zero: the returned index is then just after the closing bracket.
func Skip(data []byte, i int, st *State) (int, bool) {
	if Fast {
		return skip(data, i, st)
	}
	return skipLoop(data, i, st)
}

// skipLoop is Skip with each block classified a byte at a time: the
// vectorised one's oracle.
func skipLoop(data []byte, i int, st *State) (int, bool) {
	for ; len(data)-i >= Size; i += Size {
		m := ofLoop(data[i : i+Size])
		if m.backslashes != 0 {
			return i, false
		}
		if j, done := st.move(m); done {
			return i + j + 1, true
		}
	}
	return i, false
}

// masks are a block's bits, bit j for byte j.
type masks struct {
	quotes, backslashes, opens, closes uint64
}

// ofLoop classifies a block a byte at a time.
func ofLoop(block []byte) masks {
	var m masks
	for j, c := range block {
		bit := uint64(1) << j
		switch c {
		case '"':
			m.quotes |= bit
		case '\\':
			m.backslashes |= bit
		case '{', '[':
			m.opens |= bit
		case '}', ']':
			m.closes |= bit
		}
	}
	return m
}

// move moves st over a block without escapes: each quote toggles in and
// out of a string, and the brackets outside strings move the depth. done:
// the depth came to zero at byte j.
func (st *State) move(m masks) (j int, done bool) {
	// Prefix XOR of the quotes: 1 from an opening quote up to its
	// closing one (the closing quote itself 0).
	in := m.quotes
	in ^= in << 1
	in ^= in << 2
	in ^= in << 4
	in ^= in << 8
	in ^= in << 16
	in ^= in << 32
	if st.InString {
		in = ^in
	}
	for s := (m.opens | m.closes) &^ in; s != 0; s &= s - 1 {
		j := bits.TrailingZeros64(s)
		if m.opens>>j&1 != 0 {
			st.Depth++
		} else if st.Depth--; st.Depth == 0 {
			return j, true
		}
	}
	st.InString = in>>63 != 0
	return 0, false
}

// Package pairs finds the first place in a text where one of a few byte
// pairs stands: two bytes of a pattern that together are rare, next to
// each other, or one pair a few bytes apart. One sweep looks for all of
// them at once, where hopping with bytes.IndexByte over each pattern's
// byte takes a sweep per byte and stops at every one of them ('x' is a
// fifth of a percent of CloudTrail's bytes, 'x' then 'p' a twentieth of
// that).
//
// The sweep is vectorised when the build has Go's SIMD experiment
// (GOEXPERIMENT=simd, as the Makefile builds) on an amd64 CPU with AVX2;
// Fast says so. Without it Index is a plain loop, much slower than
// hopping, so callers hop instead when Fast is false.
package pairs

// MaxAdjacent is the most pairs of neighbouring bytes a Set holds; it
// holds one pair farther apart besides, at most MaxGap bytes.
const (
	MaxAdjacent = 8
	MaxGap      = 15
)

// Set is the pairs looked for.
type Set struct {
	first, second [MaxAdjacent]byte
	n             int
	// The pair farther apart: farFirst, then farSecond farGap bytes on;
	// farGap 0: none.
	farFirst, farSecond byte
	farGap              int
	// The neighbouring pairs as the vectorised sweep looks them up: for
	// each nibble, a bit for each pair whose byte has that nibble, in
	// both 16-byte halves of a vector.
	firstLo, firstHi, secondLo, secondHi [32]byte
}

// Add puts the pair a, then b gap bytes after it, in the set; it reports
// false when there is no room for it: a ninth neighbouring pair, a
// second pair farther apart, a gap not within 1..MaxGap. A pair already
// in the set is not added twice.
func (s *Set) Add(a, b byte, gap int) bool {
	switch {
	case gap == 1:
		for i := range s.n {
			if s.first[i] == a && s.second[i] == b {
				return true
			}
		}
		if s.n == MaxAdjacent {
			return false
		}
		s.first[s.n], s.second[s.n] = a, b
		bit := byte(1) << s.n
		for half := 0; half < 32; half += 16 {
			s.firstLo[half+int(a&15)] |= bit
			s.firstHi[half+int(a>>4)] |= bit
			s.secondLo[half+int(b&15)] |= bit
			s.secondHi[half+int(b>>4)] |= bit
		}
		s.n++
		return true
	case gap < 1 || gap > MaxGap:
		return false
	case s.farGap == 0:
		s.farFirst, s.farSecond, s.farGap = a, b, gap
		return true
	}
	return s.farFirst == a && s.farSecond == b && s.farGap == gap
}

// Len is how many pairs the set holds.
func (s *Set) Len() int {
	if s.farGap != 0 {
		return s.n + 1
	}
	return s.n
}

// Fast reports whether Index runs vectorised.
var Fast = fast

// Index returns the first i where a pair of s starts (data[i] is its
// first byte, data[i+gap] its second), or -1.
func Index(data []byte, s *Set) int {
	if Fast {
		return indexFast(data, s)
	}
	return indexLoop(data, s)
}

// indexLoop is Index a byte at a time: the vectorised sweep's tail, and
// its oracle in the tests.
func indexLoop(data []byte, s *Set) int {
	for i, c := range data {
		if i+1 < len(data) {
			for k := range s.n {
				if c == s.first[k] && data[i+1] == s.second[k] {
					return i
				}
			}
		}
		if s.farGap != 0 && c == s.farFirst && i+s.farGap < len(data) && data[i+s.farGap] == s.farSecond {
			return i
		}
	}
	return -1
}

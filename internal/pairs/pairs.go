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
// Fast says so. Without it Hits is a plain loop, much slower than
// hopping, so callers hop instead when Fast is false.
package pairs

import "math/bits"

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
// false when there is no room for it (a ninth neighbouring pair, a
// second pair farther apart, a gap not within 1..MaxGap), or when it
// holds a zero byte, which pads a text's last bytes. A pair already in
// the set is not added twice.
func (s *Set) Add(a, b byte, gap int) bool {
	switch {
	case a == 0 || b == 0:
		return false
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

// Fast reports whether the sweep runs vectorised.
var Fast = fast

// vectorised: Hits sweeps with the vectors (tests turn it off to hold
// the two against each other).
var vectorised = Fast

// Hits walks the places in a text where a pair of s starts (data[i] is
// its first byte, data[i+gap] its second), in order. The vectors look at
// 32 bytes at a time and keep what they found in the block, so a text
// dense with pairs is swept once, not again from each pair on.
type Hits struct {
	data []byte
	s    *Set
	base int    // the block mask is of
	mask uint64 // the pairs found in it not given yet, a bit each
	next int    // the first place not looked at yet
}

// Reset starts a walk over data from offset from.
func (h *Hits) Reset(data []byte, s *Set, from int) {
	*h = Hits{data: data, s: s, next: from}
}

// Seek skips the pairs before from; a from behind the walk changes
// nothing (the walk only goes forward).
func (h *Hits) Seek(from int) {
	if from >= h.next {
		h.mask, h.next = 0, from
		return
	}
	if d := from - h.base; d > 0 && d < 64 {
		h.mask &^= 1<<uint(d) - 1
	}
}

// Next returns the next place a pair starts, or -1.
func (h *Hits) Next() int {
	for {
		if h.mask != 0 {
			j := bits.TrailingZeros64(h.mask)
			h.mask &= h.mask - 1
			return h.base + j
		}
		if h.next >= len(h.data) || h.s.Len() == 0 {
			return -1
		}
		// The blocks end where the farthest second byte can still be read;
		// the last bytes (under 48) are swept in a copy with zeros after
		// them, which no pair holds.
		if end := len(h.data) - MaxGap - 32; vectorised {
			if h.next <= end {
				h.base, h.mask, h.next = sweep(h.data, h.next, end, h.s)
			} else {
				h.base, h.mask, h.next = h.next, h.tail(h.data[h.next:]), len(h.data)
			}
			continue
		}
		i := h.next
		h.next++
		if h.s.at(h.data, i) {
			return i
		}
	}
}

// tail is the pairs of the last bytes of a text (under two blocks), as
// bits: swept in a copy padded with zeros for the blocks to read.
func (h *Hits) tail(last []byte) uint64 {
	var pad [2*32 + MaxGap + 1]byte
	n := copy(pad[:], last)
	var m uint64
	for blk := 0; blk < n; blk += 32 {
		if base, mask, _ := sweep(pad[:], blk, blk, h.s); mask != 0 {
			m |= mask << base
		}
	}
	return m & (1<<n - 1)
}

// at reports whether a pair of s starts at data[i]: the walk without
// the vectors.
func (s *Set) at(data []byte, i int) bool {
	c := data[i]
	if i+1 < len(data) {
		for k := range s.n {
			if c == s.first[k] && data[i+1] == s.second[k] {
				return true
			}
		}
	}
	return s.farGap != 0 && c == s.farFirst && i+s.farGap < len(data) && data[i+s.farGap] == s.farSecond
}

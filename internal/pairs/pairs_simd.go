//go:build goexperiment.simd && amd64

package pairs

import "simd/archsimd"

var fast = archsimd.X86.AVX2()

func load(b []byte) archsimd.Uint8x32 {
	return archsimd.LoadUint8x32((*[32]byte)(b))
}

// sweep looks at 32 bytes at a time from i, the neighbouring pairs as
// Teddy does: a shuffle of each byte's low nibble and one of its high
// nibble into tables with a bit per pair give the pairs whose first byte
// it is (both nibbles must agree, so exactly); the same for the byte
// after it and the pairs' second bytes; a byte left non-zero in both is
// a pair. So a sweep costs the same for one pair as for eight. The far
// pair is compared byte for byte. Two blocks are looked at together
// while both are up to end, and tested for a pair at once. It returns
// the first blocks up to end holding a pair, their pairs as bits, and
// where the next block starts; or, with no pair, where the blocks up to
// end stop.
func sweep(data []byte, i, end int, s *Set) (base int, mask uint64, next int) {
	nibble := archsimd.BroadcastUint8x32(15)
	fLo, fHi := archsimd.LoadUint8x32(&s.firstLo), archsimd.LoadUint8x32(&s.firstHi)
	sLo, sHi := archsimd.LoadUint8x32(&s.secondLo), archsimd.LoadUint8x32(&s.secondHi)
	far, gap := s.farGap != 0, s.farGap&MaxGap
	farFirst, farSecond := archsimd.BroadcastUint8x32(s.farFirst), archsimd.BroadcastUint8x32(s.farSecond)
	ones, zero := archsimd.BroadcastUint8x32(0xff), archsimd.Uint8x32{}
	for ; i+32 <= end; i += 64 {
		q := (*[64 + MaxGap]byte)(data[i : i+64+MaxGap])
		v0, v1 := load(q[0:32]), load(q[32:64])
		h0, h1 := pairsAt(v0, load(q[1:33]), nibble, fLo, fHi, sLo, sHi), pairsAt(v1, load(q[33:65]), nibble, fLo, fHi, sLo, sHi)
		if far {
			h0 = h0.Or(ones.Masked(v0.Equal(farFirst).And(load(q[gap : gap+32]).Equal(farSecond))))
			h1 = h1.Or(ones.Masked(v1.Equal(farFirst).And(load(q[gap+32 : gap+64]).Equal(farSecond))))
		}
		if !h0.Or(h1).IsZero() {
			return i, uint64(^h0.Equal(zero).ToBits()) | uint64(^h1.Equal(zero).ToBits())<<32, i + 64
		}
	}
	if i <= end {
		q := (*[32 + MaxGap]byte)(data[i : i+32+MaxGap])
		v := load(q[0:32])
		h := pairsAt(v, load(q[1:33]), nibble, fLo, fHi, sLo, sHi)
		if far {
			h = h.Or(ones.Masked(v.Equal(farFirst).And(load(q[gap : gap+32]).Equal(farSecond))))
		}
		if !h.IsZero() {
			return i, uint64(^h.Equal(zero).ToBits()), i + 32
		}
		i += 32
	}
	return i, 0, i
}

// pairsAt is a byte for each of v's (whose next bytes are w's): non-zero
// where a neighbouring pair starts, by the Set's tables.
func pairsAt(v, w, nibble, fLo, fHi, sLo, sHi archsimd.Uint8x32) archsimd.Uint8x32 {
	a := fLo.PermuteOrZeroGrouped(v.And(nibble).AsInt8x32()).
		And(fHi.PermuteOrZeroGrouped(v.AsUint16x16().ShiftAllRight(4).AsUint8x32().And(nibble).AsInt8x32()))
	b := sLo.PermuteOrZeroGrouped(w.And(nibble).AsInt8x32()).
		And(sHi.PermuteOrZeroGrouped(w.AsUint16x16().ShiftAllRight(4).AsUint8x32().And(nibble).AsInt8x32()))
	return a.And(b)
}

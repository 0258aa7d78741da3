//go:build goexperiment.simd && amd64

package pairs

import "simd/archsimd"

var fast = archsimd.X86.AVX2()

func load(data []byte, i int) archsimd.Uint8x32 {
	return archsimd.LoadUint8x32((*[32]byte)(data[i : i+32]))
}

// sweep looks at 32 bytes at a time from i, the neighbouring pairs as
// Teddy does: a shuffle of each byte's low nibble and one of its high
// nibble into tables with a bit per pair give the pairs whose first byte
// it is (both nibbles must agree, so exactly); the same for the byte
// after it and the pairs' second bytes; a bit left in both is a pair. So
// a sweep costs the same for one pair as for eight. The far pair is
// compared byte for byte. It returns the first block up to end holding a
// pair, its pairs as bits, and where the next block starts; or, with no
// pair, where the blocks up to end stop.
func sweep(data []byte, i, end int, s *Set) (base int, mask uint32, next int) {
	nibble := archsimd.BroadcastUint8x32(15)
	firstLo, firstHi := archsimd.LoadUint8x32(&s.firstLo), archsimd.LoadUint8x32(&s.firstHi)
	secondLo, secondHi := archsimd.LoadUint8x32(&s.secondLo), archsimd.LoadUint8x32(&s.secondHi)
	far, gap := s.farGap != 0, max(s.farGap, 1)
	farFirst, farSecond := archsimd.BroadcastUint8x32(s.farFirst), archsimd.BroadcastUint8x32(s.farSecond)
	zero := archsimd.Uint8x32{}
	for ; i <= end; i += 32 {
		v, w := load(data, i), load(data, i+1)
		a := firstLo.PermuteOrZeroGrouped(v.And(nibble).AsInt8x32()).
			And(firstHi.PermuteOrZeroGrouped(v.AsUint16x16().ShiftAllRight(4).AsUint8x32().And(nibble).AsInt8x32()))
		b := secondLo.PermuteOrZeroGrouped(w.And(nibble).AsInt8x32()).
			And(secondHi.PermuteOrZeroGrouped(w.AsUint16x16().ShiftAllRight(4).AsUint8x32().And(nibble).AsInt8x32()))
		m := a.And(b).NotEqual(zero)
		if far {
			m = m.Or(v.Equal(farFirst).And(load(data, i+gap).Equal(farSecond)))
		}
		if found := m.ToBits(); found != 0 {
			return i, found, i + 32
		}
	}
	return i, 0, i
}

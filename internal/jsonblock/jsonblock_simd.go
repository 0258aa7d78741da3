//go:build goexperiment.simd && amd64

package jsonblock

import "simd/archsimd"

var fast = archsimd.X86.AVX2()

// skip is Skip with a block's bits found by comparing its two vectors
// of 32 bytes with each byte looked for; { and [ (and } and ]) differ in
// one bit, 0x20, so one comparison of the block with that bit set finds
// both.
func skip(data []byte, i int, st *State) (int, bool) {
	quote, backslash := archsimd.BroadcastUint8x32('"'), archsimd.BroadcastUint8x32('\\')
	bit, opening, closing := archsimd.BroadcastUint8x32(0x20), archsimd.BroadcastUint8x32('{'), archsimd.BroadcastUint8x32('}')
	for ; len(data)-i >= Size; i += Size {
		v := archsimd.LoadUint8x32((*[32]byte)(data[i : i+32]))
		u := archsimd.LoadUint8x32((*[32]byte)(data[i+32 : i+64]))
		if v.Equal(backslash).Or(u.Equal(backslash)).ToBits() != 0 {
			return i, false
		}
		w, x := v.Or(bit), u.Or(bit)
		m := masks{
			quotes: uint64(v.Equal(quote).ToBits()) | uint64(u.Equal(quote).ToBits())<<32,
			opens:  uint64(w.Equal(opening).ToBits()) | uint64(x.Equal(opening).ToBits())<<32,
			closes: uint64(w.Equal(closing).ToBits()) | uint64(x.Equal(closing).ToBits())<<32,
		}
		if j, done := st.move(m); done {
			return i + j + 1, true
		}
	}
	return i, false
}

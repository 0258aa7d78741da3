//go:build !(goexperiment.simd && amd64)

package jsonblock

const fast = false

// skip is never called: Fast is false.
func skip(data []byte, i int, st *State) (int, bool) { panic("jsonblock: no vectors") }

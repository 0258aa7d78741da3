//go:build !(goexperiment.simd && amd64)

package pairs

const fast = false

// sweep without the vectors looks at a block a byte at a time. Hits
// calls it only when a test turns vectorised on: the tests then run the
// same walk both ways on any machine.
func sweep(data []byte, i, end int, s *Set) (base int, mask uint64, next int) {
	for ; i <= end; i += 32 {
		for j := range 32 {
			if s.at(data, i+j) {
				mask |= 1 << j
			}
		}
		if mask != 0 {
			return i, mask, i + 32
		}
	}
	return i, 0, i
}

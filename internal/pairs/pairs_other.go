//go:build !(goexperiment.simd && amd64)

package pairs

const fast = false

func indexFast(data []byte, s *Set) int { return indexLoop(data, s) }

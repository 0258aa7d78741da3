// Package alternate times a benchmark's work with a fast way on and off
// in the same run, so that a neighbour's load on a shared machine falls
// on both ways alike.
package alternate

import (
	"testing"
	"time"
)

// Ratio runs run with the fast way on and then off (use turns it so
// until the func it returns restores it) in each iteration, and returns
// how many times longer it took off.
func Ratio(b *testing.B, use func(on bool) (restore func()), run func()) float64 {
	var took [2]time.Duration // on, off
	for b.Loop() {
		for k, on := range []bool{true, false} {
			restore := use(on)
			start := time.Now()
			run()
			took[k] += time.Since(start)
			restore()
		}
	}
	return float64(took[1]) / float64(took[0])
}

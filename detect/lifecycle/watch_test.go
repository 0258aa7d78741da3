package lifecycle

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/alternate"
)

// The hints answer "not watched" without the lock only when that is the
// map's answer too: keys and users put on, taken off and put on again,
// looked up from other goroutines while the list changes.
func TestWatchHintsNeverHideAnEntry(t *testing.T) {
	w := newWatch()
	key := func(i int) string { return fmt.Sprintf("AKIA%016d", i) }
	user := func(i int) (string, string) { return fmt.Sprintf("%012d", 100000000000+i%7), fmt.Sprintf("user-%d", i) }
	const n = 5000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				w.Key([]byte(key(n + 1)))
				a, u := user(n + 1)
				w.User([]byte(a), []byte(u))
			}
		})
	}
	check := func(i int, want bool) {
		t.Helper()
		a, u := user(i)
		if w.Key([]byte(key(i))) != want || w.User([]byte(a), []byte(u)) != want {
			t.Fatalf("entry %d: watched %v/%v, want %v", i, w.Key([]byte(key(i))), w.User([]byte(a), []byte(u)), want)
		}
	}
	for i := range n {
		a, u := user(i)
		w.add(w.keys, key(i), false)
		w.add(w.keyless, userKey(a, u), true)
		check(i, true)
	}
	for i := range n {
		if i%2 == 0 {
			a, u := user(i)
			w.remove(w.keys, key(i), false)
			w.remove(w.keyless, userKey(a, u), true)
		}
	}
	for i := range n {
		check(i, i%2 == 1)
		check(n+2+i, false)
	}
	for i := 0; i < n; i += 2 {
		a, u := user(i)
		w.add(w.keys, key(i), false)
		w.add(w.keyless, userKey(a, u), true)
		check(i, true)
	}
	close(stop)
	wg.Wait()
	// Most lookups of what was never on the list stop at the hint.
	clear := 0
	for i := range 10000 {
		if !w.keyHints.may([]byte(key(10*n + i))) {
			clear++
		}
	}
	if clear < 5000 {
		t.Fatalf("%d of 10,000 unwatched keys stopped at the hint, with %d keys watched", clear, n)
	}
}

// BenchmarkWatchLookup looks up an access key id that is not watched, with
// 22 keys watched (the worst case's archive watches one user's key in each
// of 22 accounts), from one goroutine and from every core at once, with
// the hints and without (the lock alone), alternating in one run: x-lock
// is the lock alone's time over the hints'.
func BenchmarkWatchLookup(b *testing.B) {
	w := newWatch()
	for i := range 22 {
		w.add(w.keys, fmt.Sprintf("AKIA%016d", i), false)
	}
	probe := []byte("AKIAIOSFODNN7EXAMPLE")
	for _, parallel := range []bool{false, true} {
		name := "one-goroutine"
		if parallel {
			name = "every-core"
		}
		b.Run(name, func(b *testing.B) {
			useHints := func(on bool) func() {
				old := hinted
				hinted = on
				return func() { hinted = old }
			}
			b.ReportMetric(alternate.Ratio(b, useHints, func() { lookups(w, probe, parallel) }), "x-lock")
		})
	}
}

// lookups looks probe up 100,000 times, on one goroutine or split over
// every core.
func lookups(w *Watch, probe []byte, parallel bool) {
	const n = 100000
	if !parallel {
		for range n {
			w.Key(probe)
		}
		return
	}
	var wg sync.WaitGroup
	cores := runtime.GOMAXPROCS(0)
	for range cores {
		wg.Go(func() {
			for range n / cores {
				w.Key(probe)
			}
		})
	}
	wg.Wait()
}

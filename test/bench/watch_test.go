package bench

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
)

// watchOf is the lifecycle engine's own watch list holding keys access
// keys and users watched without a key, loaded as a restart loads them.
func watchOf(keys, users int) detect.Watch {
	e := lifecycle.New(lifecycle.Options{MaxKeys: keys + users + 1, WatchTTL: 365 * 24 * time.Hour})
	cases := make([]*lifecycle.Case, 0, keys+users)
	at := t0.UnixNano()
	for i := range keys {
		cases = append(cases, &lifecycle.Case{Key: watchedKey(i), User: fmt.Sprintf("watched-%d", i), Account: "111122223333",
			FirstSeen: at, LastSeen: at, Strong: true})
	}
	for i := range users {
		cases = append(cases, &lifecycle.Case{User: fmt.Sprintf("keyless-%d", i), Account: "111122223333",
			FirstSeen: at, LastSeen: at, Strong: true})
	}
	e.Load(cases, at, time.Time{})
	if got := e.Watch().Len(); got != keys+users {
		panic(fmt.Sprintf("watch list holds %d entries, want %d", got, keys+users))
	}
	return e.Watch()
}

// watchedKey is a well-formed access key id that no corpus event holds.
func watchedKey(i int) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := []byte("AKIAWATCHED000000000")
	for j := len(b) - 1; i > 0; j-- {
		b[j] = digits[i%36]
		i /= 36
	}
	return string(b)
}

// BenchmarkWatchList: a chunk with no candidate while the lifecycle rules
// watch 0 (empty list), 1, 1,000 and 100,000 keys, against one
// bytes.Contains pass over the same chunk (issue #9: at most 2x, 0
// allocations per record). keyless: 1,000 keys and 1,000 users watched
// without a key, which also makes calls by IAM users and calls naming an
// access key candidates; its chunk keeps only the events that stay no
// candidates (the rest are decoded and decided by the engine).
func BenchmarkWatchList(b *testing.B) {
	d := mustLoad(b)
	needle := []byte("AWSExposedCredentialPolicy_DO_NOT_REMOVE")
	for _, s := range []shape{{"v2", chunkV2}, {"logfile", chunkLogFiles}} {
		c := s.encode(d.stream(false))
		for _, n := range []int{0, 1, 1000, 100000} {
			watchScan(b, fmt.Sprintf("%s/keys-%d", s.name, n), c, streamLen, watchOf(n, 0))
		}
		watchContains(b, s.name+"/contains", c, streamLen, needle)
	}
	w := watchOf(1000, 1000)
	det := newDetector()
	var kept []any
	for _, e := range d.clean {
		if _, st := det.Scan(chunkV2([]any{e}), w, nil); st.Candidates == 0 {
			kept = append(kept, e)
		}
	}
	stream := make([]any, 0, streamLen)
	for i := 0; len(stream) < streamLen; i++ {
		stream = append(stream, kept[i%len(kept)])
	}
	c := chunkV2(stream)
	watchScan(b, "keyless/keys-1000-users-1000", c, streamLen, w)
	watchContains(b, "keyless/contains", c, streamLen, needle)
}

func watchScan(b *testing.B, name string, c []byte, n int, w detect.Watch) {
	b.Run(name, func(b *testing.B) {
		det := newDetector()
		b.ReportAllocs()
		for b.Loop() {
			if _, st := det.Scan(c, w, nil); st.Candidates != 0 {
				b.Fatalf("%d candidates in a clean chunk", st.Candidates)
			}
		}
		reportRecords(b, len(c), n)
	})
}

func watchContains(b *testing.B, name string, c []byte, n int, needle []byte) {
	b.Run(name, func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if bytes.Contains(c, needle) {
				b.Fatal("needle in a clean chunk")
			}
		}
		reportRecords(b, len(c), n)
	})
}

func reportRecords(b *testing.B, chunkLen, n int) {
	b.SetBytes(int64(chunkLen))
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

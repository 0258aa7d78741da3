package scan

import (
	"slices"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
)

func at(mins ...int) []tagged {
	var out []tagged
	for _, m := range mins {
		out = append(out, tagged{Observed: detect.Observed{Time: time.Unix(int64(m)*60, 0)}})
	}
	return out
}

func batches(bs ...[]tagged) func(func([]tagged) bool) {
	return func(yield func([]tagged) bool) {
		for _, b := range bs {
			if !yield(b) {
				return
			}
		}
	}
}

func minutes(next func() (tagged, bool)) []int {
	var out []int
	for t, ok := next(); ok; t, ok = next() {
		out = append(out, int(t.Time.Unix()/60))
	}
	return out
}

// A stream holds its current batch and the next: an event of the next
// file earlier than the current one's last comes in order; one two files
// late comes where it is (late). Streams merge by time.
func TestStreamsMergeInTime(t *testing.T) {
	s := newStream(batches(at(5, 1, 3), at(2, 8), at(4), nil, at(9)))
	if got, want := minutes(merge([]*stream{s})), []int{1, 2, 3, 5, 4, 8, 9}; !slices.Equal(got, want) {
		t.Errorf("one stream: %v, want %v", got, want)
	}
	a := newStream(batches(at(1, 4), at(7)))
	b := newStream(batches(at(2), at(3, 9)))
	c := newStream(batches())
	if got, want := minutes(merge([]*stream{a, b, c})), []int{1, 2, 3, 4, 7, 9}; !slices.Equal(got, want) {
		t.Errorf("three streams: %v, want %v", got, want)
	}
}

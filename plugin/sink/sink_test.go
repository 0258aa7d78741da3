package sink

import (
	"slices"
	"testing"
)

func TestCutStaysUnderTheLimit(t *testing.T) {
	var alerts []Alert
	for _, n := range []int{3, 3, 3, 9, 1, 12, 2, 2} {
		alerts = append(alerts, Alert{Doc: make([]byte, n)})
	}
	var got [][]int
	for _, b := range Cut(alerts, 8, func(a Alert) int { return len(a.Doc) }) {
		var run []int
		for _, a := range b {
			run = append(run, len(a.Doc))
		}
		got = append(got, run)
	}
	want := [][]int{{3, 3}, {3}, {9}, {1}, {12}, {2, 2}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if Cut(nil, 8, func(Alert) int { return 1 }) != nil {
		t.Fatal("no alerts, no batch")
	}
}

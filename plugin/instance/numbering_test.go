package instance

import (
	"slices"
	"testing"
)

// Two instances, one failing to start after them, a hot reload (all exit,
// two start), then one exits while the other runs: the numbers start over
// only when none runs.
func TestNumberingStartsOverWhenNoneRuns(t *testing.T) {
	var n Numbering
	got := []int{n.Start(), n.Start(), n.Start()}
	n.Exit() // the third failed to start
	n.Exit()
	n.Exit()
	got = append(got, n.Start(), n.Start())
	n.Exit()
	got = append(got, n.Start())
	if want := []int{0, 1, 2, 0, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("numbers %v, want %v", got, want)
	}
}

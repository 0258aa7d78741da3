package detect_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
)

// TestByteShareIsTheCorpus: the table the walk picks a watched name's
// rarest bytes by is the corpus's events as JSON, counted again here; on
// a change of the corpus, the failure prints the table to paste.
func TestByteShareIsTheCorpus(t *testing.T) {
	var counts [256]int
	total := 0
	for _, e := range corpus.Panther(t) {
		for _, c := range value.ToJSON(e) {
			counts[c]++
			total++
		}
	}
	var want [256]uint16
	for c, n := range counts {
		want[c] = uint16(n * 100000 / total)
	}
	if got := detect.ByteShare(); got != want {
		var b strings.Builder
		for i := 0; i < 256; i += 16 {
			for _, v := range want[i : i+16] {
				fmt.Fprintf(&b, "%d, ", v)
			}
			b.WriteString("\n")
		}
		t.Fatalf("byteShare differs from the corpus's; it is now:\n%s", b.String())
	}
}

package detect_test

import (
	"os"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// corpusChunk is the corpus repeated to about n records, v2 format.
func corpusChunk(b *testing.B, n int) ([]byte, int) {
	f, err := os.Open(paths.Corpus("panther_cloudtrail_tests.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	events, err := fbchunk.Lines(f)
	if err != nil {
		b.Fatal(err)
	}
	var bodies []any
	for len(bodies) < n {
		bodies = append(bodies, events...)
	}
	return fbchunk.FromValues(t0, bodies[:n]), n
}

func BenchmarkScanCorpus(b *testing.B) {
	chunk, n := corpusChunk(b, 10000)
	d := detect.New(detect.Options{EventKeys: []string{"log", "message"}})
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	var alerts []detect.Alert
	for b.Loop() {
		alerts, _ = d.Scan(chunk, alerts[:0])
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

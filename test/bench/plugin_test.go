package bench

import (
	"bytes"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
)

// chunk2MB is clean corpus events (v2 records) up to about 2 MB, Fluent
// Bit's usual chunk size, and how many records it holds.
func chunk2MB(b *testing.B) ([]byte, int) {
	d := mustLoad(b)
	var c []byte
	n := 0
	for len(c) < 2<<20 {
		c = fbchunk.AppendV2(c, t0, nil, d.clean[n%len(d.clean)])
		n++
	}
	return c, n
}

// runPlugin flushes chunk loops times through the real .so in the harness
// (stdout sink, nothing to send) and returns its summary.
func runPlugin(b *testing.B, chunk []byte, loops int) map[string]int64 {
	res := harness.Run(b, harness.Options{
		Instances: [][]harness.KV{nil},
		Flushes:   []harness.Flush{{Tag: "aws.cloudtrail.events", Data: chunk}},
		Loops:     loops,
		Quiet:     true,
	})
	if res.ExitCode != 0 || res.Summary["ok"] != int64(loops) {
		b.Fatalf("exit %d, summary %v\n%s", res.ExitCode, res.Summary, res.Stderr)
	}
	return res.Summary
}

// BenchmarkPlugin2MBChunks: records/s through the cgo boundary, timed
// inside the flush calls only (not the harness's own chunk copies).
func BenchmarkPlugin2MBChunks(b *testing.B) {
	c, n := chunk2MB(b)
	sum := runPlugin(b, c, b.N)
	b.SetBytes(int64(len(c)))
	ns := float64(sum["flush_ns"])
	b.ReportMetric(float64(n)*float64(b.N)/(ns/1e9), "records/s")
	b.ReportMetric(ns/float64(b.N), "ns/flush")
}

// BenchmarkPluginFlushOverhead: a one-record chunk with nothing to send,
// i.e. the cost of crossing the cgo boundary into the plugin and back.
func BenchmarkPluginFlushOverhead(b *testing.B) {
	c := fbchunk.AppendV2(nil, t0, nil, map[string]any{"eventName": "GetObject"})
	sum := runPlugin(b, c, b.N)
	b.ReportMetric(float64(sum["flush_ns"])/float64(b.N), "ns/flush")
}

// BenchmarkPluginMemory10M: resident memory of the harness with the .so
// after 10 million records (run with -benchtime 1x).
func BenchmarkPluginMemory10M(b *testing.B) {
	c, n := chunk2MB(b)
	loops := (10_000_000 + n - 1) / n
	for b.Loop() {
		sum := runPlugin(b, c, loops)
		b.ReportMetric(float64(sum["maxrss_kb"])/1024, "maxrss_MB")
		b.ReportMetric(float64(n*loops), "records")
	}
}

// BenchmarkPluginAllQuarantine: the worst case through the real .so, with
// everything production does per alert: detection, de-duplication, JSON
// encoding, delivery to the stdout sink. One process flushes 10,000
// distinct quarantine events in chunks of 1,000 (about 1.3 MB, near Fluent
// Bit's 2 MB chunk size) five times over; Dedup_Cache_Size 1 makes every
// pass alert again, so the later passes show the steady state of a
// long-running Fluent Bit rather than a fresh process's first touch of
// its memory.
func BenchmarkPluginAllQuarantine(b *testing.B) {
	const loops = 5
	events := mustLoad(b).allQuarantine()
	flushes := flushesOf(events)
	var flushNS float64
	for b.Loop() {
		var lines lineCounter
		res := harness.Run(b, harness.Options{
			Instances: [][]harness.KV{{{Key: "Dedup_Cache_Size", Value: "1"}}},
			Flushes:   flushes,
			Loops:     loops,
			Quiet:     true,
			Stdout:    &lines,
		})
		if res.ExitCode != 0 || res.Summary["ok"] != int64(loops*len(flushes)) {
			b.Fatalf("exit %d, summary %v\n%s", res.ExitCode, res.Summary, res.Stderr)
		}
		// Dedup_Cache_Size 1 still remembers the last key of each chunk.
		if got, want := int(lines), loops*streamLen-(loops-1)*len(flushes); got < want {
			b.Fatalf("%d alerts printed, want at least %d", got, want)
		}
		flushNS += float64(res.Summary["flush_ns"])
	}
	b.ReportMetric(float64(loops*streamLen)*float64(b.N)/(flushNS/1e9), "alerts/s")
}

// lineCounter counts the alert lines written to it and keeps nothing.
type lineCounter int

func (c *lineCounter) Write(p []byte) (int, error) {
	*c += lineCounter(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}

// BenchmarkPluginDurable: the worst case again, with State_Dir: each
// flush's alerts are written to the store in one transaction and fsync'd
// before the flush returns (a background sender then delivers them to
// stdout). Timed inside the flush calls, as BenchmarkPluginAllQuarantine,
// which is the in-memory path beside it.
func BenchmarkPluginDurable(b *testing.B) {
	events := mustLoad(b).allQuarantine()
	flushes := flushesOf(events)
	var flushNS float64
	for b.Loop() {
		var lines lineCounter
		res := harness.Run(b, harness.Options{
			Instances: [][]harness.KV{{{Key: "State_Dir", Value: b.TempDir()}}},
			Flushes:   flushes,
			Quiet:     true,
			Stdout:    &lines,
		})
		if res.ExitCode != 0 || res.Summary["ok"] != int64(len(flushes)) || int(lines) != streamLen {
			b.Fatalf("exit %d, %d alerts, summary %v\n%s", res.ExitCode, lines, res.Summary, res.Stderr)
		}
		flushNS += float64(res.Summary["flush_ns"])
	}
	b.ReportMetric(float64(streamLen)*float64(b.N)/(flushNS/1e9), "alerts/s")
}

// flushesOf sends events in Fluent Bit-sized chunks of 1,000 records.
func flushesOf(events []any) []harness.Flush {
	var flushes []harness.Flush
	for i := 0; i < len(events); i += 1000 {
		flushes = append(flushes, harness.Flush{Tag: "aws.cloudtrail.events", Data: chunkV2(events[i:min(i+1000, len(events))])})
	}
	return flushes
}

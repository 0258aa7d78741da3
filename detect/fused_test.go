package detect_test

import (
	"slices"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/pairs"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/alternate"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
)

// The fused pass (one vectorised sweep for every pattern's pair of
// bytes) and the hopping passes (bytes.IndexByte over each pattern's
// rarest byte) must let the same records through, for JSON text and for
// chunks, with each state of the watch list.

// fusedWatches are the watch list's states: nothing, a key, and users
// watched without a key (one of them the user of the seeds' calls).
var fusedWatches = []detect.Watch{
	nil,
	watch{keys: map[string]bool{"AKIAIOSFODNN7EXAMPLE": true}},
	watch{keys: map[string]bool{"AKIAIOSFODNN7EXAMPLE": true}, users: map[string]bool{"123456789012/alice": true, "111122223333/someone": true}},
}

// verdicts are which records of text the prefilter lets through (by the
// Splitter's framing, as far as it frames), and which chunk records.
func verdicts(text []byte, w detect.Watch) (out []bool) {
	var f detect.Filter
	out = append(out, f.Reset(text, w), detect.RecordCandidate(text, w))
	var s detect.Splitter
	for {
		sp, ok, err := s.Next(text, true)
		if err != nil || !ok {
			break
		}
		out = append(out, f.Candidate(sp.Start, sp.End))
	}
	return out
}

func chunkCandidates(d *detect.Detector, chunk []byte, w detect.Watch) int {
	_, st := d.Scan(chunk, w, nil)
	return st.Candidates
}

func checkFusedAgrees(t *testing.T, d *detect.Detector, text, chunk []byte) {
	t.Helper()
	for i, w := range fusedWatches {
		restore := detect.UseFused(false)
		hopJSON, hopChunk := verdicts(text, w), chunkCandidates(d, chunk, w)
		restore()
		restore = detect.UseFused(true)
		fusedJSON, fusedChunk := verdicts(text, w), chunkCandidates(d, chunk, w)
		restore()
		if !slices.Equal(hopJSON, fusedJSON) || hopChunk != fusedChunk {
			t.Fatalf("watch %d: hopping %v (chunk %d), fused %v (chunk %d), text %q", i, hopJSON, hopChunk, fusedJSON, fusedChunk, text)
		}
	}
}

// Where the fused pass cannot run the two ways are one, and the tests say
// so: the Makefile builds with GOEXPERIMENT=simd, and internal/pairs fails
// a test binary without it on a CPU that could run it.
func sayIfNotFused(t testing.TB) {
	if !pairs.Fast {
		t.Log("no vectorised sweep in this build: the fused pass is the hopping one")
	}
}

func TestFusedPassAgreesOnCorpus(t *testing.T) {
	sayIfNotFused(t)
	d := detect.New(detect.Options{EventKeys: []string{"log"}})
	var all []any
	for _, ex := range corpus.Examples(t) {
		all = append(all, ex.Event)
		checkFusedAgrees(t, d, value.ToJSON(ex.Event), fbchunk.AppendV2(nil, t0, nil, ex.Event))
	}
	for _, e := range corpus.Panther(t) {
		all = append(all, e)
	}
	logFile := map[string]any{"Records": all}
	checkFusedAgrees(t, d, value.ToJSON(logFile), fbchunk.AppendV2(nil, t0, nil, logFile))
}

// FuzzFusedPassAgrees: any text, both ways, the same records through.
func FuzzFusedPassAgrees(f *testing.F) {
	sayIfNotFused(f)
	ev := use(f)
	for _, s := range []string{
		`{"eventName":"CreateAccessKey","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/alice"}}`,
		`{"a":"\u0051uarantine"}{"b":"AccessKey alice"}{"c":"\/DeleteUser"}`,
		`{"x":"AWSExposedCredentialPolicy_DO_NOT_REMOVE","y":"AWS_RISK_CREDENTIALS_EXPOSED"}`,
		`{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/path/someone"} {"k":"AKIAIOSFODNN7EXAMPLE"}`,
	} {
		f.Add([]byte(s))
	}
	f.Add(value.ToJSON(map[string]any{"Records": []any{ev, ev}}))
	d := detect.New(detect.Options{EventKeys: []string{"log"}})
	f.Fuzz(func(t *testing.T, text []byte) {
		checkFusedAgrees(t, d, text, fbchunk.AppendV2(nil, t0, nil, map[string]any{"log": string(text)}))
	})
}

// BenchmarkPrefilterSweep is the prefilter over a text of the corpus's
// events (a log file of them, repeated to 8 MiB), fused and hopping
// alternately, with each state of the watch list, every record asked
// about as a scan asks: x-hop is hopping's time over the sweep's.
func BenchmarkPrefilterSweep(b *testing.B) {
	var text []byte
	for len(text) < 8<<20 {
		text = append(text, value.ToJSON(map[string]any{"Records": corpus.Panther(b)})...)
	}
	var spans []detect.Span
	var s detect.Splitter
	for {
		sp, ok, err := s.Next(text, true)
		if err != nil || !ok {
			break
		}
		spans = append(spans, sp)
	}
	for i, name := range []string{"empty", "keys", "keyless"} {
		w := fusedWatches[i]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportMetric(alternate.Ratio(b, detect.UseFused, func() {
				var f detect.Filter
				f.Reset(text, w)
				for _, sp := range spans {
					f.Candidate(sp.Start, sp.End)
				}
			}), "x-hop")
		})
	}
}

package detect_test

import (
	"slices"
	"strings"
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

// fusedWatches are the watch list's states: nothing, a key, users
// watched without a key (one of them the user of the seeds' calls), and
// one such user, whose name the walk looks for (anchorWatches).
var fusedWatches = []detect.Watch{
	nil,
	watch{keys: map[string]bool{"AKIAIOSFODNN7EXAMPLE": true}},
	watch{keys: map[string]bool{"AKIAIOSFODNN7EXAMPLE": true}, users: map[string]bool{"123456789012/alice": true, "111122223333/someone": true}},
	anchorWatches[0],
}

// anchorWatches each watch one user without a key: the walk looks for its
// name where it would look for every IAMUser.
var anchorWatches = []detect.Watch{
	watch{users: map[string]bool{"123456789012/alice": true}},
	watch{keys: map[string]bool{"AKIAIOSFODNN7EXAMPLE": true}, users: map[string]bool{"111122223333/ci-deployer": true}},
	watch{users: map[string]bool{"111122223333/Ops.Admin@2026": true}},
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

// checkAnchorAgrees: looking for the one watched name gives each record
// and each chunk the verdict that looking for every IAMUser gives, fused
// and hopping. The text's own verdict (Filter.Reset) may differ: it only
// says whether there is anything to frame, and each way's covers its
// records'.
func checkAnchorAgrees(t *testing.T, d *detect.Detector, text, chunk []byte) {
	t.Helper()
	for _, fused := range []bool{false, true} {
		restoreFused := detect.UseFused(fused)
		for i, w := range anchorWatches {
			restore := detect.UseAnchor(false)
			typeJSON, typeChunk := verdicts(text, w)[1:], chunkCandidates(d, chunk, w)
			restore()
			nameJSON, nameChunk := verdicts(text, w)[1:], chunkCandidates(d, chunk, w)
			if !slices.Equal(typeJSON, nameJSON) || typeChunk != nameChunk {
				restoreFused()
				t.Fatalf("fused %v, watch %d: by IAMUser %v (chunk %d), by the name %v (chunk %d), text %q", fused, i, typeJSON, typeChunk, nameJSON, nameChunk, text)
			}
		}
		restoreFused()
	}
}

func TestNameAnchorAgreesOnCorpus(t *testing.T) {
	d := detect.New(detect.Options{EventKeys: []string{"log"}})
	var all []any
	for _, ex := range corpus.Examples(t) {
		all = append(all, ex.Event)
		checkAnchorAgrees(t, d, value.ToJSON(ex.Event), fbchunk.AppendV2(nil, t0, nil, ex.Event))
	}
	all = append(all, corpus.Panther(t)...)
	logFile := map[string]any{"Records": all}
	checkAnchorAgrees(t, d, value.ToJSON(logFile), fbchunk.AppendV2(nil, t0, nil, logFile))
}

// FuzzNameAnchorAgrees: any text, the watched name or every IAMUser
// looked for, the same records through.
func FuzzNameAnchorAgrees(f *testing.F) {
	for _, s := range []string{
		`{"eventName":"GetUser","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/alice"}}`,
		`{"userIdentity":{"type":"IAMUser","accountId":"111122223333","userName":"ci-deployer"},"userAgent":"arn:aws:iam::123456789012:user/bob"}`,
		`{"a":"arn:aws:iam::123456789012:user/alice"}{"userIdentity":{"type":"IAMUser","userName":"alice","accountId":"123456789012"}}`,
		`{"userIdentity":{"type":"IAMUser"},"x":"` + strings.Repeat("y", 500) + `","requestParameters":{"userName":"alice"}}`,
		`{"Records":[{"userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/Ops.Admin@2026"}},{"n":"Ops.Admin@2026"}]}`,
		`{"type":"IAMUser","userName":"ali\u0063e"}{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/path/alice"}`,
	} {
		f.Add([]byte(s))
	}
	f.Add(value.ToJSON(map[string]any{"Records": []any{use(f), use(f)}}))
	d := detect.New(detect.Options{EventKeys: []string{"log"}})
	f.Fuzz(func(t *testing.T, text []byte) {
		checkAnchorAgrees(t, d, text, fbchunk.AppendV2(nil, t0, nil, map[string]any{"log": string(text)}))
	})
}

// BenchmarkNameAnchor is the prefilter over the corpus's events as a log
// file (8 MiB), with one user watched without a key, looking for its name
// and for every IAMUser alternately: x-type is the second's time over
// the first's.
func BenchmarkNameAnchor(b *testing.B) {
	text, spans := sweepText(b)
	b.SetBytes(int64(len(text)))
	b.ReportMetric(alternate.Ratio(b, detect.UseAnchor, func() {
		var f detect.Filter
		f.Reset(text, anchorWatches[1])
		for _, sp := range spans {
			f.Candidate(sp.Start, sp.End)
		}
	}), "x-type")
}

// BenchmarkPrefilterSweep is the prefilter over a text of the corpus's
// events (a log file of them, repeated to 8 MiB), fused and hopping
// alternately, with each state of the watch list, every record asked
// about as a scan asks: x-hop is hopping's time over the sweep's.
func BenchmarkPrefilterSweep(b *testing.B) {
	text, spans := sweepText(b)
	for i, name := range []string{"empty", "keys", "keyless", "keyless-one"} {
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

// sweepText is the corpus's events as log files, repeated to 8 MiB, and
// their records.
func sweepText(b *testing.B) ([]byte, []detect.Span) {
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
	return text, spans
}

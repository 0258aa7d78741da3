package lifegen

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

// Sequence is a delivery of the scenario as a sequence of steps: the
// chunks, a restart of the collector after each chunk restartAfter says,
// and a silence at the end (Grace, Delay and more) so every wait is
// decided.
func (s Scenario) Sequence(o sequence.Options, chunks [][]Record, rng *rand.Rand, restartAfter func(int) bool) sequence.Sequence {
	seq := sequence.Sequence{Name: "generated", Options: o}
	for i, c := range chunks {
		var step sequence.Step
		for _, r := range c {
			rec := sequence.Record{File: len(r) > 1}
			if body := s.Body(r, rng); rec.File {
				for _, e := range body["Records"].([]any) {
					rec.Events = append(rec.Events, e.(map[string]any))
				}
			} else {
				rec.Events = []map[string]any{body}
			}
			step.Chunk = append(step.Chunk, rec)
		}
		seq.Steps = append(seq.Steps, step)
		if restartAfter != nil && restartAfter(i) {
			seq.Steps = append(seq.Steps, sequence.Step{Restart: true})
		}
	}
	seq.Steps = append(seq.Steps, sequence.Step{Silence: o.Grace + o.Delay + time.Hour})
	return seq
}

// InOrder is the scenario delivered in event-time order, an event a
// chunk: the reference every other delivery must agree with.
func (s Scenario) InOrder() [][]Record {
	chunks := make([][]Record, len(s.Events))
	for i := range s.Events {
		chunks[i] = []Record{{i}}
	}
	return chunks
}

// Reference is the alerts (their keys) of the scenario's events in
// event-time order, an event a chunk, through the detector and the
// engine as the plugin runs them: what every other delivery must give.
func (s Scenario) Reference(t testing.TB, o sequence.Options) map[string]bool {
	want := map[string]bool{}
	sequence.Play(t, s.Sequence(o, s.InOrder(), nil, nil), func(f detect.Finding) { want[f.Key] = true })
	return want
}

// Diff says how got differs from want, a line an alert key ("" when not).
func Diff[V comparable](want map[string]bool, got map[string]V) string {
	var zero V
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if v, ok := got[k]; !ok || v == zero {
			fmt.Fprintf(&b, "\n  missing %s", k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if !want[k] && got[k] != zero {
			fmt.Fprintf(&b, "\n  extra   %s", k)
		}
	}
	return b.String()
}

package lifegen

import (
	"math/rand/v2"
	"time"

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

package lifegen

import (
	"math/rand/v2"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
)

// Delivery is a scenario delivered as a collector may: the chunks of an
// arrival order shuffled within delay, cut at random points, runs merged
// into log file records, and repaired (see Repair).
type Delivery struct {
	Chunks            [][]Record
	Unwatched, Before int // what Repair moved
}

// Deliver makes the delivery of the scenario that rng picks.
func (s Scenario) Deliver(rng *rand.Rand, delay time.Duration) Delivery {
	d := Delivery{Chunks: s.Chunks(rng, s.Arrival(rng, delay))}
	d.Unwatched, d.Before = s.Repair(d.Chunks)
	return d
}

// FluentBit is the delivery as Fluent Bit chunks (records stamped at, as
// tail stamps what it reads).
func (s Scenario) FluentBit(d Delivery, rng *rand.Rand, at time.Time) [][]byte {
	out := make([][]byte, len(d.Chunks))
	for i, c := range d.Chunks {
		for _, r := range c {
			out[i] = fbchunk.AppendV2(out[i], at, nil, s.Body(r, rng))
		}
	}
	return out
}

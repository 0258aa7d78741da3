package lifegen_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/lifegen"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

var options = sequence.Options{Grace: 15 * time.Minute, Delay: 15 * time.Minute, Window: time.Hour, TTL: 30 * 24 * time.Hour}

// alerts plays a delivery and returns its alerts: their keys (a key
// names what the alert is about: the event, the caller key and window of a
// use, the key and stretch of a retirement, the exposure of a wait).
func alerts(t *testing.T, s sequence.Sequence) map[string]bool {
	out := map[string]bool{}
	sequence.Play(t, s, func(f detect.Finding) { out[f.Key] = true })
	return out
}

// Order does not matter: for each generated scenario of one to three keys'
// lives, the alerts of the events in event-time order, an event a chunk,
// are the alerts of the same events arriving shuffled within Event_Delay,
// cut into chunks at random points, several merged into one log file
// record (its Records shuffled), and the collector restarted at random
// points over its store. The one order that must change the result, a
// call arriving before any signal of its key or user (nothing watched it
// when it passed), is repaired out of the permutations and counted.
func TestOrderDoesNotMatter(t *testing.T) {
	const scenarios, perms = 300, 8
	checked, unwatched, unknown, events := 0, 0, 0, 0
	kinds := map[string]int{}
	first := uint64(1)
	if s := os.Getenv("LIFEGEN_FIRST_SEED"); s != "" {
		// Hunting: another stretch of seeds than make test's.
		f, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		first = f
	}
	for seed := first; seed < first+scenarios; seed++ {
		sc := lifegen.Generate(seed)
		events += len(sc.Events)
		want := sc.Reference(t, options)
		for k := range want {
			kinds[strings.SplitN(k, "/", 2)[0]]++
		}
		rng := rand.New(rand.NewPCG(seed, 0xa11))
		for p := range perms {
			chunks := sc.Chunks(rng, sc.Arrival(rng, options.Delay))
			u, k := sc.Repair(chunks)
			unwatched, unknown = unwatched+u, unknown+k
			restart := func(int) bool { return p%2 == 1 && rng.IntN(4) == 0 }
			got := alerts(t, sc.Sequence(options, chunks, rng, restart))
			checked++
			if d := lifegen.Diff(want, got); d != "" {
				t.Fatalf("seed %d, permutation %d (%s): alerts differ from event-time order:%s", seed, p, sc.About, d)
			}
		}
	}
	t.Logf("%d scenarios (%d events), %d deliveries each: %d checked; moved after a signal: %d events nothing watched yet, %d calls of another key before the notice naming the exposed key; alerts by rule in event-time order: %v",
		scenarios, events, perms, checked, unwatched, unknown, kinds)
	fmt.Printf("lifecycle order property: %d scenarios, %d deliveries checked (shuffled within Event_Delay, re-chunked, merged into log files, restarted); repaired: %d events arriving before any signal of their key or user, %d calls of another key arriving before the notice naming the exposed key\n",
		scenarios, checked, unwatched, unknown)
}

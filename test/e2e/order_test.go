package e2e

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/bulkrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/lifegen"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

// The order property through the built .so: generated key lives, each
// delivered shuffled within Event_Delay, cut into chunks, runs merged into
// log file records, through the plugin restarted, or SIGKILLed at seeded
// random points, over one State_Dir (a run resumes at the first chunk
// Fluent Bit had not seen acknowledged, as filesystem buffering does),
// give exactly the alerts of the same events in event-time order, each
// stored once in an Elasticsearch-like receiver under its alert key.
func TestOrderThroughThePlugin(t *testing.T) {
	const scenarios = 16
	opts := sequence.Options{Grace: 15 * time.Minute, Delay: 15 * time.Minute, Window: time.Hour, TTL: 30 * 24 * time.Hour}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	kills, restarts, checked := 0, 0, 0
	for n := range uint64(scenarios) {
		sc := lifegen.Generate(n + 1)
		want := sc.Reference(t, opts)
		rng := rand.New(rand.NewPCG(seed, n))
		chunks := sc.FluentBit(sc.Deliver(rng, opts.Delay), rng, time.Now())
		es := bulkrecv.Start(t)
		props := kv("Alert_Output", "http", "HTTP_Format", "es_bulk", "HTTP_URL", es.URL+"/_bulk", "HTTP_Timeout", "2s", "State_Dir", t.TempDir(),
			"Include_Event", "off", "Quarantine_Grace", opts.Grace.String(), "Event_Delay", opts.Delay.String(), "Use_Alert_Window", opts.Window.String())
		for done := 0; done < len(chunks); {
			var flushes []harness.Flush
			for _, c := range chunks[done:] {
				flushes = append(flushes, harness.Flush{Tag: tag, Data: c})
			}
			// Half the runs crash: at a chunk the seed picks, between the
			// plugin's answer and the engine's (that chunk comes again),
			// or at a time in the middle of a flush or a delivery.
			o := harness.Options{Instances: [][]harness.KV{props}, Flushes: flushes, PauseMS: 5, LingerMS: 300}
			kill := rng.IntN(2) == 0
			if kill && rng.IntN(2) == 0 {
				o.KillAfter = 1 + rng.IntN(len(flushes))
			}
			p := harness.Start(t, o)
			if kill && o.KillAfter == 0 {
				time.Sleep(time.Duration(50+rng.IntN(5*len(flushes)+150)) * time.Millisecond)
				p.Kill()
			}
			res := p.Wait()
			ok := 0
			for _, a := range res.Attempts {
				if a.RC == 1 {
					ok++
				}
			}
			switch {
			case res.ExitCode == -1:
				kills++
			case res.ExitCode != 0:
				t.Fatalf("scenario %d: exit %d\n%s", n+1, res.ExitCode, tail(res.Stderr))
			case ok < len(flushes):
				t.Fatalf("scenario %d: %d of %d chunks done in a run that was not killed\n%s", n+1, ok, len(flushes), tail(res.Stderr))
			}
			if ok > 0 && done+ok < len(chunks) {
				restarts++
			}
			done += ok
		}
		// A last run with nothing to read: what the store still holds goes.
		harness.Run(t, harness.Options{Instances: [][]harness.KV{props}, LingerMS: 500, Quiet: true})
		got := map[string]int{}
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			clear(got)
			for _, id := range es.IDs() {
				got[id]++
			}
			if len(got) >= len(want) {
				break
			}
		}
		if d := lifegen.Diff(want, got); d != "" {
			t.Fatalf("scenario %d (%s), seed %d: the plugin's alerts differ from event-time order:%s", n+1, sc.About, seed, d)
		}
		checked++
	}
	fmt.Printf("lifecycle order property through the .so: %d scenarios, %d SIGKILLs and %d resumptions over one State_Dir, every alert as in event-time order\n", checked, kills, restarts)
}

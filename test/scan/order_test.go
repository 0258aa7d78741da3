package scan_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/lifegen"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

// The order property through the scan: the generated key lives of the
// plugin's property test, laid out as a trail writes them (each account's
// and region's events in five-minute log files, delivered up to five
// minutes after the last of their events, the files' Records in no order;
// the Health notices in a JSON lines export), give the scan exactly the
// alerts the plugin gives the same events in event-time order. The scan
// reads in event time, so it needs none of the plugin's repairs: it also
// sees the calls that reach a collector before any signal of their key.
func TestOrderThroughTheScan(t *testing.T) {
	const scenarios = 150
	opts := sequence.Options{Grace: 15 * time.Minute, Delay: 15 * time.Minute, Window: time.Hour, TTL: 30 * 24 * time.Hour}
	files := 0
	for n := range uint64(scenarios) {
		sc := lifegen.Generate(n + 1)
		want := sc.Reference(t, opts)
		objs := trail(sc, rand.New(rand.NewPCG(n, 0x7a11)))
		files += len(objs)
		res, err := scan.Run(context.Background(), scan.Options{Objects: objs, Workers: 2,
			Lifecycle: lifecycle.Options{WatchTTL: opts.TTL, MaxKeys: 100000, UseWindow: opts.Window, Grace: opts.Grace, Delay: opts.Delay}})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, f := range res.Findings {
			got[f.Key] = true
		}
		if d := lifegen.Diff(want, got); d != "" {
			t.Fatalf("scenario %d (%s): the scan's alerts differ from the plugin's in event-time order:%s", n+1, sc.About, d)
		}
	}
	fmt.Printf("lifecycle order property through the scan: %d scenarios in %d files, the plugin's alerts in event-time order\n", scenarios, files)
}

// trail lays a scenario's events out as CloudTrail and an EventBridge
// export of AWS Health would.
func trail(sc lifegen.Scenario, rng *rand.Rand) []source.Object {
	type file struct {
		account, region string
		bucket          time.Time
	}
	byFile := map[file][]any{}
	var last = map[file]time.Time{}
	var health []byte
	for _, e := range sc.Events {
		if e.Health {
			health = append(append(health, value.ToJSON(e.Body)...), '\n')
			continue
		}
		f := file{e.Account, e.Region, e.At.Truncate(5 * time.Minute)}
		byFile[f] = append(byFile[f], e.Body)
		if e.At.After(last[f]) {
			last[f] = e.At
		}
	}
	var out []source.Object
	for _, f := range slices.SortedFunc(maps.Keys(byFile), func(a, b file) int { return a.bucket.Compare(b.bucket) }) {
		recs := byFile[f]
		rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
		stamp := last[f].Add(time.Duration(rng.IntN(300)) * time.Second)
		name := archive.LogFile(f.account, f.region, stamp, fmt.Sprintf("%08x", rng.Uint32()))
		out = append(out, source.Memory(name, archive.Gzip(archive.Records(recs))))
	}
	if health != nil {
		out = append(out, source.Memory("exports/health.jsonl", health))
	}
	return out
}

package e2e

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/bulkrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
)

// quarantines are n distinct quarantine events (an attacker replaying one,
// or a backfill), in chunks of perChunk records as Fluent Bit's tail makes
// them, and the alert keys they must give.
func quarantines(t *testing.T, prefix string, n, perChunk int) ([]harness.Flush, map[string]bool) {
	t.Helper()
	base := quarantineApplied(t)
	var flushes []harness.Flush
	want := map[string]bool{}
	var bodies []any
	for i := range n {
		e := maps.Clone(base)
		id := fmt.Sprintf("%s-%06d", prefix, i)
		e["eventID"] = id
		want["aws.iam.quarantine_applied/"+id] = true
		bodies = append(bodies, e)
		if len(bodies) == perChunk || i == n-1 {
			flushes = append(flushes, harness.Flush{Tag: tag, Data: fbchunk.FromValues(t0, bodies)})
			bodies = nil
		}
	}
	return flushes, want
}

// arrivals counts each alert key a forward receiver got.
func arrivals(entries []forwardrecv.Entry) map[string]int {
	seen := map[string]int{}
	for _, e := range entries {
		rule, _ := e.Record["rule"].(map[string]any)
		seen[fmt.Sprint(rule["id"], "/", e.Record["event_id"])]++
	}
	return seen
}

// missing lists the wanted keys that never arrived.
func missing(want map[string]bool, seen map[string]int) []string {
	var out []string
	for k := range want {
		if seen[k] == 0 {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// A burst of 20,000 distinct quarantine events, in chunks of about 2 MB,
// to a receiver that enforces in_forward's default buffer_max_size: every
// alert arrives exactly once, with and without State_Dir. (Sent as one
// message per chunk, about 8 MB, none would.)
func TestBurstArrivesOnce(t *testing.T) {
	flushes, want := quarantines(t, "burst", 20000, 1500)
	if len(flushes[0].Data) < 1<<20 {
		t.Fatalf("chunks of %d bytes are not Fluent Bit-sized", len(flushes[0].Data))
	}
	for _, durable := range []bool{false, true} {
		t.Run(map[bool]string{false: "in memory", true: "State_Dir"}[durable], func(t *testing.T) {
			srv := forwardrecv.Start(t, forwardrecv.Options{})
			props := kv("Alert_Output", "forward", "Forward_Port", strconv.Itoa(srv.Port()))
			if durable {
				props = append(props, kv("State_Dir", t.TempDir())...)
			}
			// The collector runs on after the burst (its sender delivers what
			// the store holds) until it is stopped, once everything arrived.
			p := harness.Start(t, harness.Options{Instances: [][]harness.KV{props}, Flushes: flushes, Workers: 1, Retries: 5, Quiet: true,
				LingerMS: 100000, Timeout: 180 * time.Second})
			seen := arrivals(srv.WaitEntries(t, len(want), 120*time.Second))
			p.Terminate()
			res := p.Wait()
			if res.ExitCode != 0 || res.Summary["dropped"] != 0 {
				t.Fatalf("exit %d, %v\n%s", res.ExitCode, res.Summary, tail(res.Stderr))
			}
			time.Sleep(100 * time.Millisecond)
			seen = arrivals(srv.Entries())
			if m := missing(want, seen); len(m) > 0 {
				t.Fatalf("%d alerts missing, e.g. %s", len(m), m[0])
			}
			for k, n := range seen {
				if n != 1 {
					t.Fatalf("%s arrived %d times", k, n)
				}
			}
			if srv.Oversized() != 0 {
				t.Fatalf("%d messages over the receiver's buffer_max_size", srv.Oversized())
			}
			t.Logf("%d alerts in %d messages, at most %d in one", len(seen), srv.Messages(), srv.LargestBatch())
		})
	}
}

// The same file read three times by a collector restarted in between (tail
// without a DB re-reads it from the head): each alert arrives once.
func TestRestartsOverTheSameInput(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{})
	dir := t.TempDir()
	flushes, want := quarantines(t, "reread", 300, 50)
	for run := range 3 {
		res := harness.Run(t, harness.Options{Instances: [][]harness.KV{storeProps(srv.Port(), dir)}, Flushes: flushes, Quiet: true})
		if res.ExitCode != 0 {
			t.Fatalf("run %d: exit %d\n%s", run, res.ExitCode, tail(res.Stderr))
		}
	}
	seen := arrivals(srv.WaitEntries(t, len(want), 10*time.Second))
	time.Sleep(200 * time.Millisecond) // a late duplicate would show now
	seen = arrivals(srv.Entries())
	if m := missing(want, seen); len(m) > 0 || len(seen) != len(want) {
		t.Fatalf("%d distinct alerts, %d missing", len(seen), len(m))
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("%s arrived %d times over three runs", k, n)
		}
	}
}

// crashRounds SIGKILLs the harness at seeded random points while it
// streams alerts and the receiver goes down and comes back; the input is
// read again from the start by every run, as by a collector without a tail
// DB, or Fluent Bit re-delivering its filesystem chunks. A last run goes to
// the end with the receiver up. It reports how many runs were killed.
func crashRounds(t *testing.T, rounds int, props []harness.KV, flushes []harness.Flush, setDown func(bool)) int {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	kills := 0
	for round := range rounds {
		setDown(rng.IntN(3) == 0)
		p := harness.Start(t, harness.Options{Instances: [][]harness.KV{props}, Flushes: flushes, PauseMS: 30, Quiet: true})
		at := time.Duration(20+rng.IntN(900)) * time.Millisecond
		flipDown := rng.IntN(2) == 0
		flip := time.AfterFunc(at/2, func() { setDown(flipDown) })
		time.Sleep(at)
		p.Kill()
		flip.Stop()
		if res := p.Wait(); res.ExitCode != -1 {
			t.Logf("round %d: the run ended (exit %d) before the kill at %v", round, res.ExitCode, at)
			continue
		}
		kills++
	}
	setDown(false)
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{props}, Flushes: flushes, Quiet: true, Timeout: 120 * time.Second})
	if res.ExitCode != 0 {
		t.Fatalf("last run: exit %d\n%s", res.ExitCode, tail(res.Stderr))
	}
	return kills
}

// Crash injection: every alert arrives in the end. Over forward a kill
// between the receiver's ack and the store's commit repeats that one batch,
// so duplicates are at most one batch per kill; over es_bulk the alert key
// is the document _id, so none is stored twice.
func TestCrashInjection(t *testing.T) {
	flushes, want := quarantines(t, "crash", 600, 20)
	t.Run("forward", func(t *testing.T) {
		srv := forwardrecv.Start(t, forwardrecv.Options{})
		kills := crashRounds(t, 20, storeProps(srv.Port(), t.TempDir()), flushes, srv.SetDown)
		waitComplete(t, want, func() map[string]int { return arrivals(srv.Entries()) })
		seen := arrivals(srv.Entries())
		dups := 0
		for _, n := range seen {
			dups += n - 1
		}
		largest := srv.LargestBatch()
		t.Logf("forward: %d kills, %d alerts, %d duplicates (largest batch %d)", kills, len(seen), dups, largest)
		fmt.Printf("crash injection, forward: %d kills, %d of %d alerts arrived, %d duplicates, largest batch %d\n", kills, len(seen), len(want), dups, largest)
		if m := missing(want, seen); len(m) > 0 {
			t.Fatalf("%d alerts never arrived, e.g. %s", len(m), m[0])
		}
		if dups > kills*largest {
			t.Fatalf("%d duplicates after %d kills: more than one batch (%d) per kill", dups, kills, largest)
		}
	})
	t.Run("es_bulk", func(t *testing.T) {
		es := bulkrecv.Start(t)
		props := kv("Alert_Output", "http", "HTTP_Format", "es_bulk", "HTTP_URL", es.URL+"/_bulk", "HTTP_Timeout", "1s", "State_Dir", t.TempDir())
		kills := crashRounds(t, 20, props, flushes, es.SetDown)
		docs := func() map[string]int {
			seen := map[string]int{}
			for _, d := range es.Docs() {
				rule, _ := d["rule"].(map[string]any)
				seen[fmt.Sprint(rule["id"], "/", d["event_id"])]++
			}
			return seen
		}
		waitComplete(t, want, docs)
		seen := docs()
		dups := 0
		for _, n := range seen {
			dups += n - 1
		}
		creates, conflicts, _ := es.Counts()
		t.Logf("es_bulk: %d kills, %d documents, %d duplicates, %d creates of which %d conflicts", kills, len(seen), dups, creates, conflicts)
		fmt.Printf("crash injection, es_bulk: %d kills, %d of %d alerts stored, %d duplicates (%d re-sent and refused as conflicts)\n", kills, len(seen), len(want), dups, conflicts)
		if m := missing(want, seen); len(m) > 0 {
			t.Fatalf("%d alerts never stored, e.g. %s", len(m), m[0])
		}
		if dups != 0 {
			t.Fatalf("%d alerts stored twice", dups)
		}
	})
}

// waitComplete waits until every wanted key has arrived.
func waitComplete(t *testing.T, want map[string]bool, seen func() map[string]int) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); ; {
		m := missing(want, seen())
		if len(m) == 0 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%d alerts still missing, e.g. %s", len(m), m[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

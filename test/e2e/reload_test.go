package e2e

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/loopback"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/promscrape"
)

// A hot reload exits every instance and starts them again in the same
// process, where the .so stays loaded: the instances keep their names
// (cloudtrail_quarantine.0 and .1, not .2 and .3), in the log lines and
// in the metrics' name label, which a scrape during the second run shows.
func TestInstanceNamesSurviveAHotReload(t *testing.T) {
	listen := loopback.FreeAddr(t)
	props := kv("Alert_Output", "stdout", "Metrics_Listen", listen)
	p := harness.Start(t, harness.Options{Instances: [][]harness.KV{props, props}, Reloads: 2, LingerMS: 1500,
		Flushes: []harness.Flush{{Instance: 0, Tag: tag, Data: chunkOf(quarantineApplied(t))}, {Instance: 1, Tag: tag, Data: chunkOf(quarantineApplied(t))}}})
	// Scrape through the runs: each lingers 1.5 s, so scrapes that span
	// more than 3 s have seen the later runs.
	var mu sync.Mutex
	labels := map[string]bool{}
	var first, last time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			fams, _, err := promscrape.Get("http://" + listen + "/metrics")
			mu.Lock()
			if err == nil {
				for _, l := range fams.LabelValues("cloudtrail_quarantine_records_total", "name") {
					labels[l] = true
				}
				if first.IsZero() {
					first = time.Now()
				}
				last = time.Now()
			} else if !last.IsZero() && time.Since(last) > time.Second {
				mu.Unlock()
				return // the harness is gone
			}
			mu.Unlock()
		}
	}()
	res := p.Wait()
	<-done
	if res.ExitCode != 0 || strings.Count(res.Stderr, "harness: hot reload") != 2 {
		t.Fatalf("exit %d\n%s", res.ExitCode, tail(res.Stderr))
	}
	names := map[string]int{}
	for _, m := range regexp.MustCompile(`\[output:cloudtrail_quarantine:(\S+)\] exit:`).FindAllStringSubmatch(res.Stderr, -1) {
		names[m[1]]++
	}
	if names["cloudtrail_quarantine.0"] != 3 || names["cloudtrail_quarantine.1"] != 3 || len(names) != 2 {
		t.Errorf("instances exiting: %v, want .0 and .1 three times each", names)
	}
	mu.Lock()
	defer mu.Unlock()
	if last.Sub(first) < 3*time.Second {
		t.Fatalf("scraped for %v only: not through the reloads", last.Sub(first))
	}
	if got := slices.Sorted(maps.Keys(labels)); !slices.Equal(got, []string{"cloudtrail_quarantine.0", "cloudtrail_quarantine.1"}) {
		t.Errorf("metrics labels over the reloads: %v", got)
	}
}

// Fluent Bit's hot reload makes a new context, whose flb_config_init
// ignores SIGPIPE again, over the Go runtime's handler: a closed stdout
// then fails a write without any signal, and the runtime would still kill
// the process after the EPIPE. It does not.
func TestBrokenStdoutAfterAHotReload(t *testing.T) {
	w := harness.ClosedPipe(t)
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{kv("Alert_Output", "stdout")}, Flushes: pipeChunks(t, 1), Reloads: 1, Stdout: w})
	if res.Signal != 0 || res.ExitCode != 0 || strings.Count(res.Stderr, "write /dev/stdout: broken pipe") != 4 {
		t.Fatalf("signal %v, exit %d\n%s", res.Signal, res.ExitCode, tail(res.Stderr))
	}
}

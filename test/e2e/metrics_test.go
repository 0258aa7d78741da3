package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/loopback"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/promscrape"
)

// gate is an HTTP receiver whose first request waits for the test: while
// it waits, the flush that sent it holds Fluent Bit's engine thread, so
// the test scrapes a run that stands still.
type gate struct {
	arrived chan int // alerts in the first request
	release chan struct{}
	once    sync.Once
	first   sync.Once
}

func newGate() *gate { return &gate{arrived: make(chan int, 1), release: make(chan struct{})} }

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := 0
	for sc := bufio.NewScanner(r.Body); sc.Scan(); {
		if strings.TrimSpace(sc.Text()) != "" {
			n++
		}
	}
	io.Copy(io.Discard, r.Body)
	g.first.Do(func() {
		g.arrived <- n
		<-g.release
	})
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// statsRe is an instance's exit line: the counters the stats line prints.
// statsRe is anchored at the start of a line: a record's value quoted in
// a log line may hold a forged "... exit: ..." of its own.
var statsRe = regexp.MustCompile(`(?m)^\[[0-9/: ]+\] \[ info\] \[output:cloudtrail_quarantine:(cloudtrail_quarantine\.\d+)\] exit: (.*)$`)

// statsMetric names, for each key of the stats line, the metric that
// shows it: every key must have one.
var statsMetric = map[string][]string{
	"flushes":             {"cloudtrail_quarantine_flushes_total"},
	"records":             {"cloudtrail_quarantine_records_total"},
	"candidates":          {"cloudtrail_quarantine_candidates_total"},
	"events":              {"cloudtrail_quarantine_events_total"},
	"delivered":           {"cloudtrail_quarantine_alerts_delivered_total"},
	"queued":              {"cloudtrail_quarantine_alerts_stored_total"},
	"duplicates_dropped":  {"cloudtrail_quarantine_duplicates_dropped_total"},
	"retries":             {"cloudtrail_quarantine_retries_total"},
	"delivery_failures":   {"cloudtrail_quarantine_delivery_failures_total"},
	"dead_letter":         {"cloudtrail_quarantine_dead_letter_total"},
	"skipped_malformed":   {"cloudtrail_quarantine_skipped_records_total", "reason", "malformed"},
	"skipped_not_map":     {"cloudtrail_quarantine_skipped_records_total", "reason", "not_map"},
	"skipped_truncated":   {"cloudtrail_quarantine_skipped_records_total", "reason", "truncated"},
	"skipped_undecodable": {"cloudtrail_quarantine_skipped_records_total", "reason", "undecodable"},
	"skipped_events":      {"cloudtrail_quarantine_skipped_records_total", "reason", "bad_event"},
	"oversized_values":    {"cloudtrail_quarantine_oversized_values_total"},
	"log_write_errors":    {"cloudtrail_quarantine_log_write_errors_total"},
	"ignored_account_ids": {"cloudtrail_quarantine_ignored_account_ids_total"},
	"group_markers":       {"cloudtrail_quarantine_group_markers_total"},
	"encode_errors":       {"cloudtrail_quarantine_unreadable_alerts_dropped_total"},
	"own_alert_chunks":    {"cloudtrail_quarantine_own_alert_chunks_total"},
	"panics":              {"cloudtrail_quarantine_panics_total"},
	"watched_keys":        {"cloudtrail_quarantine_watched_keys"},
	"uses_suppressed":     {"cloudtrail_quarantine_uses_suppressed_total"},
	"watch_evicted":       {"cloudtrail_quarantine_watch_evicted_total"},
	"watch_expired":       {"cloudtrail_quarantine_watch_expired_total"},
}

// scraped is what the scrape says for one stats key of instance inst.
func scraped(t *testing.T, fams promscrape.Families, inst, key string) float64 {
	t.Helper()
	switch {
	case key == "alerts":
		sum := 0.0
		for _, rule := range fams.LabelValues("cloudtrail_quarantine_alerts_total", "rule") {
			v, _ := fams.Value("cloudtrail_quarantine_alerts_total", "name", inst, "rule", rule)
			sum += v
		}
		return sum
	case strings.HasPrefix(key, "alerts_by_rule:"):
		v, ok := fams.Value("cloudtrail_quarantine_alerts_total", "name", inst, "rule", strings.TrimPrefix(key, "alerts_by_rule:"))
		if !ok {
			t.Errorf("%s: no alerts_total for %s", inst, key)
		}
		return v
	}
	m, ok := statsMetric[key]
	if !ok {
		t.Errorf("the stats line's %q has no metric", key)
		return -1
	}
	v, ok := fams.Value(m[0], append([]string{"name", inst}, m[1:]...)...)
	if !ok {
		t.Errorf("%s: no %v in the scrape", inst, m)
	}
	return v
}

// exitStats reads every instance's exit line into key -> value, with
// alerts_by_rule spread into alerts_by_rule:<rule> keys.
func exitStats(t *testing.T, stderr string) map[string]map[string]float64 {
	t.Helper()
	out := map[string]map[string]float64{}
	for _, m := range statsRe.FindAllStringSubmatch(stderr, -1) {
		kv := map[string]float64{}
		for _, field := range strings.Fields(m[2]) {
			k, v, _ := strings.Cut(field, "=")
			if k == "alerts_by_rule" {
				for _, pair := range strings.Split(v, ",") {
					rule, n, _ := strings.Cut(pair, ":")
					kv["alerts_by_rule:"+rule], _ = strconv.ParseFloat(n, 64)
				}
				continue
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("stats field %q: %v", field, err)
			}
			kv[k] = f
		}
		out[m[1]] = kv
	}
	return out
}

// Two instances in one process, scraped while the run stands still: one
// listener serves both (the second address is warned about and not
// bound), each instance's numbers are what it did, they equal its stats
// line, and no secret shows.
func TestMetricsScrapedDuringARun(t *testing.T) {
	g := newGate()
	srv := httptest.NewServer(g)
	defer srv.Close()
	defer g.open() // a failing test must not leave the harness waiting

	listen, other := loopback.FreeAddr(t), loopback.FreeAddr(t)
	const token = "metrics-test-bearer-token-5e3f"

	// Instance 0 (durable, stdout): 3 quarantines, an AWS Health exposure
	// notice (its key is watched from then on), a record that is not a map
	// and a truncated tail, flushed twice (the second time all duplicates). Instance 1 (in the flush, HTTP): 4 removals and 3 failed
	// attempts, held at the gate.
	var applied []any
	for _, f := range fixtures(t, "aws.iam.quarantine_applied", "positive")[:3] {
		applied = append(applied, f)
	}
	applied = append(applied, fixtureEvent(t, "events/health_exposed"))
	chunk0 := fbchunk.FromValues(t0, append(applied, "not a map"))
	tail := fbchunk.FromValues(t0, applied[:1])
	chunk0 = append(chunk0, tail[:len(tail)/2]...)
	var others []any
	for _, rule := range []string{"aws.iam.quarantine_removed", "aws.iam.quarantine_attempt_failed"} {
		for _, f := range fixtures(t, rule, "positive") {
			others = append(others, f)
		}
	}
	if len(others) != 7 {
		t.Fatalf("fixtures changed: %d removals and failures, the test counts 7", len(others))
	}
	// And an AWS Health notice whose affectedAccount holds a key id: one
	// account field ignored.
	others = append(others, corpus.Fixture(t, "aws.health.credentials_exposed", "positive", "affected_account_holds_the_key"))

	p := harness.Start(t, harness.Options{
		Instances: [][]harness.KV{
			kv("Alert_Output", "stdout", "State_Dir", t.TempDir(), "Metrics_Listen", listen),
			kv("Alert_Output", "http", "HTTP_URL", srv.URL+"/alerts", "HTTP_Format", "ndjson", "HTTP_Timeout", "60s",
				"HTTP_Bearer_Token", token, "Metrics_Listen", other),
		},
		Flushes: []harness.Flush{
			{Instance: 0, Tag: tag, Data: chunk0},
			{Instance: 0, Tag: tag, Data: chunk0},
			{Instance: 1, Tag: tag, Data: chunkOf(others...)},
		},
		Timeout: 90 * time.Second,
	})

	select {
	case n := <-g.arrived:
		if n != 8 {
			t.Errorf("the receiver got %d alerts, want 8", n)
		}
	case <-time.After(60 * time.Second):
		g.open()
		t.Fatalf("instance 1 never delivered\n%s", p.Wait().Stderr)
	}
	// Instance 0's sender delivers in the background: wait for it.
	url := "http://" + listen + "/metrics"
	var fams promscrape.Families
	var body []byte
	for end := time.Now().Add(20 * time.Second); ; {
		var err error
		fams, body, err = promscrape.Get(url)
		if err != nil {
			g.open()
			t.Fatalf("scrape: %v\n%s", err, p.Wait().Stderr)
		}
		d, _ := fams.Value("cloudtrail_quarantine_alerts_delivered_total", "name", "cloudtrail_quarantine.0")
		if d == 4 || time.Now().After(end) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ln, err := net.Listen("tcp", other); err != nil {
		t.Errorf("the second instance's address %s is taken: %v", other, err)
	} else {
		ln.Close()
	}
	if bytes := string(body); strings.Contains(bytes, token) || strings.Contains(bytes, srv.URL) {
		t.Error("the scrape shows configuration")
	}
	if got := fams.LabelValues("cloudtrail_quarantine_records_total", "name"); !slices.Equal(got, []string{"cloudtrail_quarantine.0", "cloudtrail_quarantine.1"}) {
		t.Fatalf("instances in the scrape: %v", got)
	}
	want := []struct {
		inst, metric string
		labels       []string
		v            float64
	}{
		{"cloudtrail_quarantine.0", "flushes_total", nil, 2},
		{"cloudtrail_quarantine.0", "alerts_total", []string{"rule", "aws.iam.quarantine_applied"}, 6},
		{"cloudtrail_quarantine.0", "alerts_total", []string{"rule", "aws.iam.quarantine_removed"}, 0},
		{"cloudtrail_quarantine.0", "alerts_total", []string{"rule", "aws.health.credentials_exposed"}, 2},
		{"cloudtrail_quarantine.0", "alerts_stored_total", nil, 4},
		{"cloudtrail_quarantine.0", "alerts_delivered_total", nil, 4},
		{"cloudtrail_quarantine.0", "duplicates_dropped_total", nil, 4},
		{"cloudtrail_quarantine.0", "skipped_records_total", []string{"reason", "not_map"}, 2},
		{"cloudtrail_quarantine.0", "skipped_records_total", []string{"reason", "truncated"}, 2},
		{"cloudtrail_quarantine.0", "pending_alerts", nil, 0},
		{"cloudtrail_quarantine.0", "watched_keys", nil, 2}, // the notice's key, and its user ci-deployer (quarantined), watched call by call
		{"cloudtrail_quarantine.1", "watched_keys", nil, 4}, // the users of the failed attempts and of the notice, watched call by call, and their keys
		{"cloudtrail_quarantine.1", "flushes_total", nil, 1},
		{"cloudtrail_quarantine.1", "records_total", nil, 8},
		{"cloudtrail_quarantine.1", "events_total", nil, 8},
		{"cloudtrail_quarantine.1", "ignored_account_ids_total", nil, 1},
		{"cloudtrail_quarantine.0", "ignored_account_ids_total", nil, 0},
		{"cloudtrail_quarantine.1", "alerts_total", []string{"rule", "aws.iam.quarantine_removed"}, 4},
		{"cloudtrail_quarantine.1", "alerts_total", []string{"rule", "aws.iam.quarantine_attempt_failed"}, 3},
		{"cloudtrail_quarantine.1", "alerts_delivered_total", nil, 0}, // at the gate
		{"cloudtrail_quarantine.1", "skipped_records_total", []string{"reason", "not_map"}, 0},
	}
	for _, w := range want {
		got, ok := fams.Value("cloudtrail_quarantine_"+w.metric, append([]string{"name", w.inst}, w.labels...)...)
		if !ok || got != w.v {
			t.Errorf("%s %s%v = %v (found %v), want %v", w.inst, w.metric, w.labels, got, ok, w.v)
		}
	}
	if v, ok := fams.Value("cloudtrail_quarantine_store_bytes", "name", "cloudtrail_quarantine.0"); !ok || v <= 0 {
		t.Errorf("store_bytes of the durable instance: %v %v", v, ok)
	}
	if _, ok := fams.Value("cloudtrail_quarantine_pending_alerts", "name", "cloudtrail_quarantine.1"); ok {
		t.Error("pending alerts shown for the instance without State_Dir")
	}
	lat0, _ := fams.Histogram("cloudtrail_quarantine_delivery_latency_seconds", "name", "cloudtrail_quarantine.0")
	lat1, _ := fams.Histogram("cloudtrail_quarantine_delivery_latency_seconds", "name", "cloudtrail_quarantine.1")
	fl0, _ := fams.Histogram("cloudtrail_quarantine_flush_duration_seconds", "name", "cloudtrail_quarantine.0")
	fl1, _ := fams.Histogram("cloudtrail_quarantine_flush_duration_seconds", "name", "cloudtrail_quarantine.1")
	if lat0.GetSampleCount() != 4 || lat1.GetSampleCount() != 0 || fl0.GetSampleCount() != 2 || fl1.GetSampleCount() != 0 {
		t.Errorf("histogram counts: latency %d/%d, flushes %d/%d; want 4/0 and 2/0 (instance 1 is still in its flush)",
			lat0.GetSampleCount(), lat1.GetSampleCount(), fl0.GetSampleCount(), fl1.GetSampleCount())
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	checkREADMEAlertRules(t, fams)

	g.open()
	res := p.Wait()
	if res.ExitCode != 0 {
		t.Fatalf("exit %d\n%s", res.ExitCode, res.Stderr)
	}
	warn := fmt.Sprintf("[ warn] [output:cloudtrail_quarantine:cloudtrail_quarantine.1] Metrics_Listen %s: the plugin's metrics are already served at %s", other, listen)
	if !strings.Contains(res.Stderr, warn) || strings.Count(res.Stderr, "serving Prometheus metrics at") != 1 {
		t.Errorf("want one listener and the warning %q in:\n%s", warn, res.Stderr)
	}
	if strings.Count(res.Stderr, "closed the metrics listener") != 1 {
		t.Errorf("the listener was not closed once at exit:\n%s", res.Stderr)
	}

	// The scrape and the stats line are one source: instance 0 was done
	// when scraped, so every number matches; instance 1 delivered after.
	stats := exitStats(t, res.Stderr)
	if len(stats) != 2 {
		t.Fatalf("exit lines: %v\n%s", stats, res.Stderr)
	}
	for inst, kv := range stats {
		for key, v := range kv {
			got := scraped(t, fams, inst, key)
			if inst == "cloudtrail_quarantine.1" && key == "delivered" {
				if got != 0 || v != 8 {
					t.Errorf("%s delivered: %v at the gate, %v at exit; want 0 and 8", inst, got, v)
				}
				continue
			}
			if got != v {
				t.Errorf("%s %s: scrape %v, stats line %v", inst, key, got, v)
			}
		}
	}
}

// checkREADMEAlertRules: every metric the README's Prometheus alert rules
// name is one a scrape shows.
func checkREADMEAlertRules(t *testing.T, fams promscrape.Families) {
	t.Helper()
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	for _, m := range fenceRe.FindAllStringSubmatch(readme(t), -1) {
		if strings.HasPrefix(m[1], "groups:") {
			if err := yaml.Unmarshal([]byte(m[1]), &doc); err != nil {
				t.Fatalf("the README's alert rules: %v", err)
			}
		}
	}
	n := 0
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			for _, name := range regexp.MustCompile(`cloudtrail_quarantine_[a-z_]+`).FindAllString(r.Expr, -1) {
				n++
				if _, ok := fams[name]; !ok {
					t.Errorf("README alert %s uses %s, which the scrape does not show", r.Alert, name)
				}
			}
		}
	}
	if n < 4 {
		t.Errorf("the README's alert rules name %d metrics, want at least 4", n)
	}
}

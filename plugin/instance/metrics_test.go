package instance

import (
	"regexp"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/promscrape"
)

var servingRe = regexp.MustCompile(`serving Prometheus metrics at (http://\S+/metrics)`)

// metricsInstance is an instance with its own name (the other tests' all
// share one), and the scrape URL when it opened the listener.
func metricsInstance(t *testing.T, name string, f *flaky, keys ...string) (*Instance, string) {
	t.Helper()
	in, log := namedInstance(t, name, f, append([]string{"Metrics_Listen", "127.0.0.1:0"}, keys...)...)
	if m := servingRe.FindStringSubmatch(log.String()); m != nil {
		return in, m[1]
	}
	return in, ""
}

func scrapeOf(t *testing.T, url string) promscrape.Families {
	t.Helper()
	fams, body, err := promscrape.Get(url)
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	return fams
}

func gauge(fams promscrape.Families, name, inst string) float64 {
	v, _ := fams.Value("cloudtrail_quarantine_"+name, "name", inst)
	return v
}

// The scrape shows the counters the stats line prints, and both delivery
// paths record latency (the memory path in the flush, the durable one in
// the sender).
func TestMetricsFollowTheCounters(t *testing.T) {
	mem, url := metricsInstance(t, "metrics.mem", &flaky{})
	defer mem.Close()
	if url == "" {
		t.Fatal("the first instance did not open the listener")
	}
	if r := mem.Flush(positives(t), "aws.cloudtrail"); r != OK {
		t.Fatalf("flush: %v", r)
	}
	mem.Flush(positives(t), "aws.cloudtrail") // all duplicates now

	down := &flaky{down: true}
	dur, _ := metricsInstance(t, "metrics.durable", down, "State_Dir", t.TempDir())
	defer dur.Close()
	if r := dur.Flush(positives(t), "aws.cloudtrail"); r != OK {
		t.Fatalf("durable flush: %v", r)
	}

	fams := scrapeOf(t, url)
	c := &mem.Counters
	for name, want := range map[string]int64{
		"records_total": c.Records.Load(), "events_total": c.Events.Load(), "flushes_total": c.Flushes.Load(),
		"alerts_delivered_total": c.Delivered.Load(), "duplicates_dropped_total": c.Duplicates.Load(),
	} {
		if got := gauge(fams, name, "metrics.mem"); got != float64(want) {
			t.Errorf("%s = %v, counters say %d", name, got, want)
		}
	}
	if c.Delivered.Load() != 3 || c.Duplicates.Load() != 3 {
		t.Fatalf("run: %s", c.Summary())
	}
	if got, _ := fams.Value("cloudtrail_quarantine_alerts_total", "name", "metrics.mem", "rule", "aws.iam.quarantine_applied"); got != 6 {
		t.Errorf("alerts_total{quarantine_applied} = %v, want 6 (before de-duplication)", got)
	}
	if h, ok := fams.Histogram("cloudtrail_quarantine_delivery_latency_seconds", "name", "metrics.mem"); !ok || h.GetSampleCount() != 3 {
		t.Errorf("memory path latency: %v", h)
	}
	if h, ok := fams.Histogram("cloudtrail_quarantine_flush_duration_seconds", "name", "metrics.mem"); !ok || h.GetSampleCount() != 2 {
		t.Errorf("flush durations: %v", h)
	}
	if _, ok := fams.Value("cloudtrail_quarantine_pending_alerts", "name", "metrics.mem"); ok {
		t.Error("pending alerts shown without State_Dir")
	}

	// Durable, receiver down: three alerts wait in the store.
	if got := gauge(fams, "pending_alerts", "metrics.durable"); got != 3 {
		t.Errorf("pending_alerts = %v, want 3", got)
	}
	if gauge(fams, "pending_alert_bytes", "metrics.durable") <= 0 || gauge(fams, "store_bytes", "metrics.durable") <= 0 {
		t.Errorf("pending bytes %v, store bytes %v", gauge(fams, "pending_alert_bytes", "metrics.durable"), gauge(fams, "store_bytes", "metrics.durable"))
	}
	if h, ok := fams.Histogram("cloudtrail_quarantine_delivery_latency_seconds", "name", "metrics.durable"); !ok || h.GetSampleCount() != 0 {
		t.Errorf("latency before any delivery: %v", h)
	}

	down.set(func(f *flaky) { f.down = false })
	select {
	case dur.wake <- struct{}{}:
	default:
	}
	waitFor(t, "the sender", func() bool { return dur.Counters.Delivered.Load() == 3 })
	fams = scrapeOf(t, url)
	if got := gauge(fams, "pending_alerts", "metrics.durable"); got != 0 {
		t.Errorf("pending_alerts after delivery = %v", got)
	}
	if h, ok := fams.Histogram("cloudtrail_quarantine_delivery_latency_seconds", "name", "metrics.durable"); !ok || h.GetSampleCount() != 3 {
		t.Errorf("durable path latency: %v", h)
	}
	if got := gauge(fams, "alerts_stored_total", "metrics.durable"); got != 3 {
		t.Errorf("alerts_stored_total = %v", got)
	}
}

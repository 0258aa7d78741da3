package metrics

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/logx"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/logbuf"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/loopback"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/promscrape"
)

// fake is a Source whose sample the test sets.
type fake struct {
	mu     sync.Mutex
	s      Sample
	panics bool
}

func (f *fake) Sample() Sample {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panics {
		var m map[string]int64
		m["boom"]++ // the kind of bug a scrape must survive
	}
	return f.s
}

func logger(name string) (*logx.Logger, *logbuf.Buffer) {
	buf := &logbuf.Buffer{}
	return logx.NewTo(buf, name), buf
}

func open(t *testing.T, h *hub, name, listen string) (*Output, *logbuf.Buffer) {
	t.Helper()
	log, buf := logger(name)
	o, err := h.open(name, listen, log)
	if err != nil {
		t.Fatalf("open %s on %q: %v", name, listen, err)
	}
	return o, buf
}

func scrape(t *testing.T, h *hub) promscrape.Families {
	t.Helper()
	addr := h.listening()
	if addr == nil {
		t.Fatal("no listener")
	}
	fams, body, err := promscrape.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	return fams
}

func value(t *testing.T, fams promscrape.Families, name string, labels ...string) float64 {
	t.Helper()
	v, ok := fams.Value(name, labels...)
	if !ok {
		t.Fatalf("no single %s%v in the scrape", name, labels)
	}
	return v
}

func sample(base int64) Sample {
	return Sample{
		Flushes: base + 1, Records: base + 2, Candidates: base + 3, Events: base + 4,
		AlertsByRule: map[string]int64{"aws.iam.quarantine_applied": base + 5, "aws.iam.quarantine_removed": base + 6},
		Stored:       base + 7, Delivered: base + 8, Duplicates: base + 9, Retries: base + 10,
		Skipped:      Skipped{Malformed: base + 11, NotMap: base + 12, Truncated: base + 13, Undecodable: base + 14, BadEvents: base + 15},
		GroupMarkers: base + 16, EncodeErrors: base + 17, OwnAlertChunks: base + 18, Panics: base + 19,
		WatchedKeys: base + 20, UsesSuppressed: base + 21, WatchEvicted: base + 22, WatchExpired: base + 23, DeliveryFailures: base + 24,
		Oversized: base + 25, LogWriteErrors: base + 26,
	}
}

// Every number of a Sample reaches the scrape under its own name and
// labels, per instance, and the store gauges only where there is a store.
func TestScrapeShowsEachSample(t *testing.T) {
	h := newHub()
	a, _ := open(t, h, "cloudtrail_quarantine.0", "127.0.0.1:0")
	defer a.Close()
	b, _ := open(t, h, "cloudtrail_quarantine.1", "")
	defer b.Close()
	withStore := sample(100)
	withStore.Store = &Store{FileBytes: 32768, PendingAlerts: 3, PendingBytes: 4100}
	a.Publish(&fake{s: sample(0)})
	b.Publish(&fake{s: withStore})

	fams := scrape(t, h)
	for i, base := range []int64{0, 100} {
		inst := fmt.Sprintf("cloudtrail_quarantine.%d", i)
		want := map[string]int64{
			"flushes_total": 1, "records_total": 2, "candidates_total": 3, "events_total": 4,
			"alerts_stored_total": 7, "alerts_delivered_total": 8, "duplicates_dropped_total": 9, "retries_total": 10,
			"group_markers_total": 16, "unreadable_alerts_dropped_total": 17, "own_alert_chunks_total": 18, "panics_total": 19,
			"watched_keys": 20, "uses_suppressed_total": 21, "watch_evicted_total": 22, "watch_expired_total": 23, "delivery_failures_total": 24,
			"oversized_values_total": 25, "log_write_errors_total": 26,
		}
		for name, n := range want {
			if got := value(t, fams, namespace+"_"+name, "name", inst); got != float64(base+n) {
				t.Errorf("%s{name=%s} = %v, want %d", name, inst, got, base+n)
			}
		}
		for rule, n := range map[string]int64{"aws.iam.quarantine_applied": 5, "aws.iam.quarantine_removed": 6} {
			if got := value(t, fams, namespace+"_alerts_total", "name", inst, "rule", rule); got != float64(base+n) {
				t.Errorf("alerts_total{%s,%s} = %v, want %d", inst, rule, got, base+n)
			}
		}
		for reason, n := range map[string]int64{"malformed": 11, "not_map": 12, "truncated": 13, "undecodable": 14, "bad_event": 15} {
			if got := value(t, fams, namespace+"_skipped_records_total", "name", inst, "reason", reason); got != float64(base+n) {
				t.Errorf("skipped_records_total{%s,%s} = %v, want %d", inst, reason, got, base+n)
			}
		}
	}
	for name, want := range map[string]float64{"store_bytes": 32768, "pending_alerts": 3, "pending_alert_bytes": 4100} {
		if got := value(t, fams, namespace+"_"+name, "name", "cloudtrail_quarantine.1"); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
		if _, ok := fams.Value(namespace+"_"+name, "name", "cloudtrail_quarantine.0"); ok {
			t.Errorf("%s shown for an instance without a store", name)
		}
	}
	if fams[namespace+"_records_total"].GetType().String() != "COUNTER" || fams[namespace+"_pending_alerts"].GetType().String() != "GAUGE" {
		t.Errorf("types: records %v, pending %v", fams[namespace+"_records_total"].GetType(), fams[namespace+"_pending_alerts"].GetType())
	}
	// The Go runtime and the process it runs in come with the plugin's own.
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
}

// A scrape reads the counters as they are at that moment, not a copy
// made earlier.
func TestScrapeReadsAtScrapeTime(t *testing.T) {
	h := newHub()
	o, _ := open(t, h, "x", "127.0.0.1:0")
	defer o.Close()
	src := &fake{s: sample(0)}
	o.Publish(src)
	first := value(t, scrape(t, h), namespace+"_alerts_delivered_total", "name", "x")
	src.mu.Lock()
	src.s.Delivered = 1234
	src.mu.Unlock()
	if second := value(t, scrape(t, h), namespace+"_alerts_delivered_total", "name", "x"); first != 8 || second != 1234 {
		t.Fatalf("delivered %v then %v, want 8 then 1234", first, second)
	}
}

// promlint is the Prometheus project's check of metric names, units, help
// and types.
func TestNamesFollowPrometheusConventions(t *testing.T) {
	h := newHub()
	o, _ := open(t, h, "x", "")
	defer o.Close()
	s := sample(0)
	s.Store = &Store{}
	o.Publish(&fake{s: s})
	o.ObserveFlush(time.Millisecond)
	o.ObserveDelivery(time.Unix(1000, 0), time.Unix(1100, 0))
	problems, err := testutil.CollectAndLint(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	if n := testutil.CollectAndCount(h); n < 25 {
		t.Errorf("linted %d series: the collector did not show the instance", n)
	}
}

func TestHistograms(t *testing.T) {
	h := newHub()
	o, _ := open(t, h, "x", "127.0.0.1:0")
	defer o.Close()
	o.Publish(&fake{})
	delivered := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	o.ObserveDelivery(delivered.Add(-90*time.Second), delivered) // CloudTrail's usual delay
	o.ObserveDelivery(delivered.Add(-3*time.Hour), delivered)    // a replay
	o.ObserveDelivery(delivered.Add(time.Minute), delivered)     // the event's clock runs ahead
	o.ObserveDelivery(time.Time{}, delivered)                    // no time at all: not a delay
	o.ObserveFlush(3 * time.Millisecond)

	fams := scrape(t, h)
	lat, ok := fams.Histogram(namespace+"_delivery_latency_seconds", "name", "x")
	if !ok {
		t.Fatal("no delivery latency histogram")
	}
	if lat.GetSampleCount() != 3 || lat.GetSampleSum() != 90+3*3600 {
		t.Errorf("latency count %d sum %v, want 3 and %d", lat.GetSampleCount(), lat.GetSampleSum(), 90+3*3600)
	}
	cumulative := map[float64]uint64{}
	for _, b := range lat.GetBucket() {
		cumulative[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	for le, want := range map[float64]uint64{1: 1, 60: 1, 120: 2, 7200: 2, 21600: 3} {
		if cumulative[le] != want {
			t.Errorf("latency le=%v: %d, want %d", le, cumulative[le], want)
		}
	}
	fl, ok := fams.Histogram(namespace+"_flush_duration_seconds", "name", "x")
	if !ok || fl.GetSampleCount() != 1 {
		t.Fatalf("flush histogram %v", fl)
	}
	for _, b := range fl.GetBucket() {
		if want := uint64(map[bool]int{true: 1}[b.GetUpperBound() >= .005]); b.GetCumulativeCount() != want {
			t.Errorf("flush le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}

	// A closed instance leaves no series behind, its histograms included.
	p, _ := open(t, h, "y", "")
	defer p.Close()
	o.Close()
	fams = scrape(t, h)
	if _, ok := fams.Histogram(namespace+"_delivery_latency_seconds", "name", "x"); ok {
		t.Error("latency of a closed instance still shown")
	}
	if _, ok := fams.Value(namespace+"_records_total", "name", "x"); ok {
		t.Error("records of a closed instance still shown")
	}

	var none *Output // what an instance built without Open holds
	none.ObserveFlush(time.Second)
	none.ObserveDelivery(delivered, delivered)
	none.Publish(&fake{})
	none.Close()
}

// One listener per process: the first address wins, a second one is
// warned about and served by the first, the last Close frees the port,
// and a later Open (Fluent Bit's reload) listens again.
func TestOneListenerPerProcess(t *testing.T) {
	h := newHub()
	a, logA := open(t, h, "cloudtrail_quarantine.0", "127.0.0.1:0")
	addr := h.listening()
	if !strings.Contains(logA.String(), "serving Prometheus metrics at http://"+addr.String()+"/metrics") {
		t.Errorf("no line naming the address:\n%s", logA)
	}
	// Another free port, so that a second listener, were one opened,
	// would succeed and the test would see it.
	other := loopback.FreeAddr(t)
	b, logB := open(t, h, "cloudtrail_quarantine.1", other)
	c, logC := open(t, h, "cloudtrail_quarantine.2", "127.0.0.1:0")
	if h.listening().String() != addr.String() {
		t.Fatalf("listener moved from %v to %v", addr, h.listening())
	}
	if w := logB.String(); !strings.Contains(w, "[ warn]") || !strings.Contains(w, "Metrics_Listen "+other) || !strings.Contains(w, "already served at "+addr.String()) {
		t.Errorf("second address: want a warning naming both, got:\n%s", w)
	}
	if strings.Contains(logC.String(), "warn") {
		t.Errorf("same address as the first: no warning expected:\n%s", logC)
	}
	if ln, err := net.Listen("tcp", other); err != nil {
		t.Errorf("the second address was bound: %v", err)
	} else {
		ln.Close()
	}
	for _, o := range []*Output{a, b, c} {
		o.Publish(&fake{s: sample(0)})
	}
	if got := scrape(t, h).LabelValues(namespace+"_records_total", "name"); strings.Join(got, " ") != "cloudtrail_quarantine.0 cloudtrail_quarantine.1 cloudtrail_quarantine.2" {
		t.Errorf("instances in the scrape: %v", got)
	}

	a.Close() // the opener goes first: the others still are served
	if got := scrape(t, h).LabelValues(namespace+"_records_total", "name"); strings.Join(got, " ") != "cloudtrail_quarantine.1 cloudtrail_quarantine.2" {
		t.Errorf("after closing .0: %v", got)
	}
	b.Close()
	c.Close()
	c.Close() // twice is once
	if h.listening() != nil {
		t.Fatal("listener still open after the last Close")
	}
	if _, _, err := promscrape.Get("http://" + addr.String() + "/metrics"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("scrape after the last Close: %v, want connection refused", err)
	}
	if ln, err := net.Listen("tcp", addr.String()); err != nil {
		t.Errorf("port not freed: %v", err)
	} else {
		ln.Close()
	}

	d, _ := open(t, h, "cloudtrail_quarantine.3", addr.String())
	defer d.Close()
	d.Publish(&fake{s: sample(0)})
	if got := scrape(t, h).LabelValues(namespace+"_records_total", "name"); strings.Join(got, " ") != "cloudtrail_quarantine.3" {
		t.Errorf("after reopening: %v", got)
	}
}

// A port that cannot be bound is an error of that Open, and leaves the
// hub as it was: the next Open may listen.
func TestBindFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	h := newHub()
	log, _ := logger("x")
	if o, err := h.open("x", busy.Addr().String(), log); err == nil || !errors.Is(err, syscall.EADDRINUSE) || o != nil {
		t.Fatalf("open on a busy port: %v, %v", o, err)
	}
	if h.listening() != nil || h.users != 0 {
		t.Fatalf("failed open left state: listener %v, users %d", h.listening(), h.users)
	}
	o, _ := open(t, h, "y", "127.0.0.1:0")
	o.Publish(&fake{s: sample(0)})
	value(t, scrape(t, h), namespace+"_records_total", "name", "y")
	o.Close()
	if h.listening() != nil {
		t.Error("listener left open")
	}
}

// A panicking instance costs only its own series: the scrape serves the
// rest, the histograms included, and the panic is logged once however
// often it repeats.
func TestPanicInSourceIsContained(t *testing.T) {
	h := newHub()
	good, _ := open(t, h, "good", "127.0.0.1:0")
	defer good.Close()
	bad, badLog := open(t, h, "bad", "")
	defer bad.Close()
	good.Publish(&fake{s: sample(0)})
	bad.Publish(&fake{panics: true})
	good.ObserveFlush(time.Millisecond)
	for range 3 {
		fams := scrape(t, h)
		if got := value(t, fams, namespace+"_records_total", "name", "good"); got != 2 {
			t.Fatalf("good instance: records %v", got)
		}
		if got := fams.LabelValues(namespace+"_records_total", "name"); strings.Join(got, " ") != "good" {
			t.Fatalf("instances shown: %v", got)
		}
		if _, ok := fams.Histogram(namespace+"_flush_duration_seconds", "name", "good"); !ok {
			t.Fatal("the histograms are missing")
		}
		if _, ok := fams["go_goroutines"]; !ok {
			t.Fatal("the rest of the scrape is missing")
		}
	}
	if n := strings.Count(badLog.String(), "panic reading the instance for metrics"); n != 1 {
		t.Errorf("panic logged %d times, want once:\n%s", n, badLog)
	}
}

// Scrapes, flushes and instances coming and going at once (run with -race).
func TestConcurrentUse(t *testing.T) {
	h := newHub()
	keep, _ := open(t, h, "keep", "127.0.0.1:0")
	defer keep.Close()
	keep.Publish(&fake{s: sample(0)})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20 {
				log, _ := logger("w")
				o, err := h.open(fmt.Sprintf("w%d.%d", w, i), "127.0.0.1:0", log)
				if err != nil {
					t.Error(err)
					return
				}
				o.Publish(&fake{s: sample(int64(i))})
				o.ObserveFlush(time.Millisecond)
				o.ObserveDelivery(time.Unix(0, 0), time.Unix(60, 0))
				o.Close()
			}
		})
	}
	for range 10 {
		value(t, scrape(t, h), namespace+"_records_total", "name", "keep")
	}
	wg.Wait()
	if got := scrape(t, h).LabelValues(namespace+"_records_total", "name"); strings.Join(got, " ") != "keep" {
		t.Errorf("left behind: %v", got)
	}
}

// Package metrics serves the plugin's Prometheus metrics. Fluent Bit gives
// a Go plugin no way to publish metrics of its own, and loads the .so once
// per process for every output instance, so this package keeps one
// registry and at most one HTTP listener per process: each instance is an
// Output in it, and the listener lives as long as any Output is open.
//
// Counters are not kept here: the collector reads each instance's own
// counters (the ones its stats line prints) when Prometheus scrapes, so
// the two can never disagree. Only the two histograms, which nothing else
// keeps, live here.
package metrics

import (
	"errors"
	"fmt"
	"log"
	"maps"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/logx"
)

// Sample is one instance's counters, read when Prometheus scrapes.
type Sample struct {
	Flushes, Records, Candidates, Events int64
	AlertsByRule                         map[string]int64 // found, before de-duplication
	Stored, Delivered, Duplicates        int64
	Retries, DeliveryFailures            int64
	DeadLetter                           int64 // refused for good: set aside, or dropped without a store
	Skipped                              Skipped
	Oversized                            int64 // values past their bound, cut
	GroupMarkers, EncodeErrors           int64
	OwnAlertChunks, Panics               int64
	LogWriteErrors                       int64 // log lines lost: stderr closed
	// IgnoredAccounts counts account fields that held no account id.
	IgnoredAccounts int64
	// Lifecycle: keys watched now; calls folded into an earlier alert;
	// cases pushed out by Watch_Max_Keys or past Watch_TTL.
	WatchedKeys                                int64
	UsesSuppressed, WatchEvicted, WatchExpired int64
	// Store is nil without State_Dir (or when the store cannot be read):
	// its gauges are then left out rather than shown as 0.
	Store *Store
}

// Skipped counts what was passed over unread, by reason.
type Skipped struct {
	Malformed, NotMap, Truncated, Undecodable int64
	BadEvents                                 int64 // events inside a record's Records
}

// Store is the state of an instance's State_Dir.
type Store struct {
	FileBytes                   int64
	PendingAlerts, PendingBytes int64
	DeadLetters                 int64 // alerts set aside, kept for Dead_Letter_TTL
}

// Source is an instance as the collector sees it.
type Source interface {
	Sample() Sample
}

// Output is one instance's place in the process's metrics. Its methods
// are safe on a nil Output, which records nothing.
type Output struct {
	hub             *hub
	name            string
	log             *logx.Logger
	flush, latency  prometheus.Observer
	src             Source
	closeOnce       sync.Once
	collectPanicked sync.Once
}

// Open adds the named instance to the process's metrics and, when listen
// is set and nothing listens yet, opens the listener on it. The instance
// is scraped only once it calls Publish.
func Open(name, listen string, log *logx.Logger) (*Output, error) {
	return process.open(name, listen, log)
}

// Publish makes src part of every scrape from now on.
func (o *Output) Publish(src Source) {
	if o == nil {
		return
	}
	o.hub.mu.Lock()
	defer o.hub.mu.Unlock()
	o.src = src
	o.hub.outputs[o] = struct{}{}
}

// ObserveFlush records how long Fluent Bit's flush of one chunk took.
func (o *Output) ObserveFlush(d time.Duration) {
	if o != nil {
		o.flush.Observe(d.Seconds())
	}
}

// ObserveDelivery records the delay from an event to the delivery of its
// alert. An event whose clock runs ahead of ours counts as no delay.
func (o *Output) ObserveDelivery(event, delivered time.Time) {
	if o == nil || event.IsZero() {
		return
	}
	o.latency.Observe(max(delivered.Sub(event).Seconds(), 0))
}

// Close takes the instance out of the metrics; the last one to close
// closes the listener, so a reload (or a test) can open it again.
func (o *Output) Close() {
	if o != nil {
		o.closeOnce.Do(func() { o.hub.close(o) })
	}
}

// process is the one hub of the loaded .so.
var process = newHub()

type hub struct {
	reg            *prometheus.Registry
	flush, latency *prometheus.HistogramVec

	mu      sync.Mutex
	outputs map[*Output]struct{} // published
	users   int                  // open Outputs, published or not
	srv     *http.Server
	addr    string // as the instance that opened it wrote it
	bound   net.Addr
}

func newHub() *hub {
	h := &hub{
		reg:     prometheus.NewRegistry(),
		outputs: map[*Output]struct{}{},
		flush: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    namespace + "_flush_duration_seconds",
			Help:    "Time the instance took over one chunk Fluent Bit flushed to it; without State_Dir this includes delivering its alerts.",
			Buckets: flushBuckets,
		}, []string{labelName}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    namespace + "_delivery_latency_seconds",
			Help:    "Delay from an event's eventTime (or its record's time) to the delivery of its alert.",
			Buckets: latencyBuckets,
		}, []string{labelName}),
	}
	// The Go collector describes the plugin's own Go runtime (its heap,
	// goroutines and GC); the process collector describes the whole Fluent
	// Bit process the .so runs in, which is what an operator watching
	// memory and file descriptors wants from the one endpoint they have.
	h.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), h)
	return h
}

var (
	// Flushes take microseconds to scan and, without State_Dir, up to a
	// delivery timeout (10 s by default) when the receiver is slow.
	flushBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	// CloudTrail delivers events minutes after they happen (EventBridge in
	// seconds); a replay of old log files delivers alerts hours or days
	// late, which the top buckets keep apart from a slow pipeline.
	latencyBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 21600, 86400}
)

func (h *hub) open(name, listen string, log *logx.Logger) (*Output, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case listen == "":
	case h.srv == nil:
		if err := h.listen(listen, log); err != nil {
			return nil, err
		}
	case listen != h.addr:
		log.Warnf("Metrics_Listen %s: the plugin's metrics are already served at %s, opened by an earlier instance; one listener serves every instance of the process, so this one is served there too", listen, h.bound)
	}
	h.users++
	return &Output{
		hub:     h,
		name:    name,
		log:     log,
		flush:   h.flush.WithLabelValues(name),
		latency: h.latency.WithLabelValues(name),
	}, nil
}

// scrapeTimeout bounds one scrape, so a stuck collector cannot pile up
// connections in the log collector's process.
const scrapeTimeout = 10 * time.Second

func (h *hub) listen(addr string, lg *logx.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	errs := lineLogger{lg}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{
		ErrorLog:            errs,
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             scrapeTimeout,
	}))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      scrapeTimeout + 5*time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          log.New(errs, "", 0),
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			lg.Errorf("metrics listener on %s stopped: %v", ln.Addr(), err)
		}
	}()
	h.srv, h.addr, h.bound = srv, addr, ln.Addr()
	lg.Infof("serving Prometheus metrics at http://%s/metrics", ln.Addr())
	return nil
}

func (h *hub) close(o *Output) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.outputs, o)
	h.flush.DeleteLabelValues(o.name)
	h.latency.DeleteLabelValues(o.name)
	h.users--
	if h.users == 0 && h.srv != nil {
		h.srv.Close() //nolint:errcheck // closing the listener is all that can fail, and it is going away
		o.log.Infof("closed the metrics listener on %s", h.bound)
		h.srv, h.addr, h.bound = nil, "", nil
	}
}

// listening is the bound address, nil when none.
func (h *hub) listening() net.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bound
}

// Describe and Collect make the hub the collector of every published
// Output.
func (h *hub) Describe(ch chan<- *prometheus.Desc) {
	describe(ch)
	h.flush.Describe(ch)
	h.latency.Describe(ch)
}

func (h *hub) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	outs := slices.Collect(maps.Keys(h.outputs))
	h.mu.Unlock()
	for _, o := range outs {
		o.collect(ch)
	}
	h.flush.Collect(ch)
	h.latency.Collect(ch)
}

// collect sends the Output's metrics. The registry recovers a panicking
// collector, but then loses all it would have sent: every instance and
// the histograms. So a bug in reading one instance costs only that
// instance's series, logged once rather than at every scrape.
func (o *Output) collect(ch chan<- prometheus.Metric) {
	defer func() {
		if r := recover(); r != nil {
			o.collectPanicked.Do(func() {
				o.log.Errorf("panic reading the instance for metrics, its series are left out (bug, please report): %v %s", r, strings.ReplaceAll(string(debug.Stack()), "\n", " "))
			})
		}
	}()
	for _, m := range metricsOf(o.name, o.src) {
		ch <- m
	}
}

// lineLogger carries the listener's and the handler's errors to the
// instance log, one line each.
type lineLogger struct{ log *logx.Logger }

func (l lineLogger) Write(p []byte) (int, error) {
	l.log.Warnf("metrics: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

func (l lineLogger) Println(v ...any) {
	l.log.Warnf("metrics: %s", strings.TrimSpace(fmt.Sprintln(v...)))
}

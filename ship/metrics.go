package ship

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// counters are what `ship` has done; the Prometheus endpoint and the
// stats line read the same atomics.
type counters struct {
	MessagesReceived, MessagesDeleted, MessagesSkipped, MessagesFailed, MessagesRedrive atomic.Int64
	VisibilityExtensions, MessagesReleased                                              atomic.Int64
	Objects, ObjectsFailed                                                              atomic.Int64
	Events, BadEvents, Bytes                                                            atomic.Int64
	Acks, AckWaitNanos, Retries                                                         atomic.Int64
	Polls                                                                               atomic.Int64
	MessagesInFlight, ObjectsInFlight                                                   atomic.Int64
	// NewestEvent is the latest event time (Unix nanoseconds) among the
	// events acknowledged: the lag is now minus it.
	NewestEvent atomic.Int64

	mu      sync.Mutex
	skipped map[string]int64 // objects (or test events) left out, by reason
}

func (c *counters) skip(reason string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.skipped == nil {
		c.skipped = map[string]int64{}
	}
	c.skipped[reason] += n
}

func (c *counters) skips() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.skipped))
	for k, v := range c.skipped {
		out[k] = v
	}
	return out
}

func (c *counters) shipped(newest time.Time) {
	n := newest.UnixNano()
	for {
		old := c.NewestEvent.Load()
		if n <= old || c.NewestEvent.CompareAndSwap(old, n) {
			return
		}
	}
}

// lag is now minus the newest event time shipped, 0 before any.
func (c *counters) lag(now time.Time) time.Duration {
	n := c.NewestEvent.Load()
	if n == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, n))
}

const namespace = "cloudtrail_quarantine_ship"

// register exposes the counters (and the in-flight gauges) on reg.
func (c *counters) register(reg *prometheus.Registry) {
	counter := func(name, help string, v *atomic.Int64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help},
			func() float64 { return float64(v.Load()) }))
	}
	counter("messages_received_total", "SQS messages received (a message received again after its visibility timeout counts again).", &c.MessagesReceived)
	counter("messages_deleted_total", "SQS messages deleted: every event of their objects was acknowledged by Fluent Bit (or they announced nothing to ship).", &c.MessagesDeleted)
	counter("messages_skipped_total", "SQS messages that announced nothing to ship (test events, digest or Insights files only), deleted.", &c.MessagesSkipped)
	counter("messages_failed_total", "SQS messages not deleted because an object could not be read or the message not understood; each comes back after its visibility timeout.", &c.MessagesFailed)
	counter("messages_left_for_redrive_total", "Failed SQS messages on the last receive the queue's redrive policy allows: the queue moves them to its dead-letter queue.", &c.MessagesRedrive)
	counter("messages_released_total", "SQS messages given back unfinished at shutdown (visibility set to 0), to be received again.", &c.MessagesReleased)
	counter("visibility_extensions_total", "Visibility timeouts extended for messages still in flight.", &c.VisibilityExtensions)
	counter("objects_total", "Objects (log files) whose every event was acknowledged.", &c.Objects)
	counter("objects_failed_total", "Objects that could not be read whole (missing, denied, corrupt or cut short).", &c.ObjectsFailed)
	counter("events_total", "Events sent and acknowledged by Fluent Bit (a repeat after a retry counts again).", &c.Events)
	counter("bad_events_total", "Events skipped because their JSON could not be read (the rest of the object is shipped).", &c.BadEvents)
	counter("bytes_total", "Bytes of objects read, as stored (compressed).", &c.Bytes)
	counter("acks_total", "Forward messages acknowledged by Fluent Bit.", &c.Acks)
	counter("retries_total", "Forward messages sent again after a failure or a missing acknowledgement.", &c.Retries)
	counter("polls_total", "Listings of the bucket in --follow mode.", &c.Polls)
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "ack_wait_seconds_total",
		Help: "Time spent waiting for Fluent Bit's acknowledgements, summed over forward messages."},
		func() float64 { return float64(c.AckWaitNanos.Load()) / 1e9 }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "lag_seconds",
		Help: "Now minus the time of the newest event acknowledged (0 before any)."},
		func() float64 { return c.lag(time.Now()).Seconds() }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "messages_in_flight",
		Help: "SQS messages received and not yet deleted or given up."}, func() float64 { return float64(c.MessagesInFlight.Load()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "objects_in_flight",
		Help: "Objects being read or waiting for their events' acknowledgements."}, func() float64 { return float64(c.ObjectsInFlight.Load()) }))
	reg.MustRegister(skipCollector{c})
}

// skipCollector renders objects_skipped_total by reason.
type skipCollector struct{ c *counters }

var descSkipped = prometheus.NewDesc(namespace+"_objects_skipped_total",
	"Announced or listed objects left out, by reason (test_event counts s3:TestEvent messages).", []string{"reason"}, nil)

func (s skipCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descSkipped }
func (s skipCollector) Collect(ch chan<- prometheus.Metric) {
	for reason, n := range s.c.skips() {
		ch <- prometheus.MustNewConstMetric(descSkipped, prometheus.CounterValue, float64(n), reason)
	}
}

// line is the stats line.
func (c *counters) line(now time.Time, sqsMode bool) string {
	var b strings.Builder
	if sqsMode {
		fmt.Fprintf(&b, "messages %d (deleted %d, failed %d, left for redrive %d), ", c.MessagesReceived.Load(),
			c.MessagesDeleted.Load(), c.MessagesFailed.Load(), c.MessagesRedrive.Load())
	}
	fmt.Fprintf(&b, "objects %d (failed %d), events %d (bad %d), %s read, acks %d (waited %s), retries %d",
		c.Objects.Load(), c.ObjectsFailed.Load(), c.Events.Load(), c.BadEvents.Load(), sizeText(c.Bytes.Load()),
		c.Acks.Load(), time.Duration(c.AckWaitNanos.Load()).Round(time.Millisecond), c.Retries.Load())
	if lag := c.lag(now); lag > 0 {
		fmt.Fprintf(&b, ", lag %s", lag.Round(time.Second))
	}
	if hwm := peakMemory(); hwm != "" {
		fmt.Fprintf(&b, ", peak memory %s (VmHWM)", hwm)
	}
	return b.String()
}

func sizeText(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// peakMemory is the process's peak resident size (Linux), for the bound
// the README states.
func peakMemory() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil || math.IsNaN(kb) {
				return ""
			}
			return fmt.Sprintf("%.1f MB", kb/1e3)
		}
	}
	return ""
}

// Package instance is one configured output instance: it scans each chunk,
// drops alerts already delivered, and either delivers the rest now (the
// flush says whether Fluent Bit should retry the chunk) or, with
// State_Dir, keeps them in the durable store for a background sender.
// Pure Go, so it is tested without cgo; the plugin's exports only
// translate its Result.
package instance

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/config"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/dedup"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/logx"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/metrics"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/state"
)

// Result is the outcome of a flush, in Fluent Bit's terms.
type Result int

const (
	OK    Result = iota // chunk done
	Retry               // deliver the same chunk again later
	Error               // drop the chunk
)

// ExitBudget bounds Close: what is not delivered by then stays in the
// store for the next start. Fluent Bit waits Grace (5 s by default) for
// its outputs at shutdown; this leaves it room.
const ExitBudget = 3 * time.Second

// Instance is safe for concurrent flushes (Fluent Bit's `workers`).
type Instance struct {
	Name   string
	cfg    *config.Config
	det    *detect.Detector
	sink   sink.Sink
	log    *logx.Logger
	format alert.Format

	// Without a store: deliverMu makes "not yet delivered? send, then
	// remember" one step, so two workers flushing the same event cannot
	// both send it.
	deliverMu sync.Mutex
	delivered *dedup.Set

	// With State_Dir: the store, and a nudge for its sender.
	store *state.Store
	wake  chan struct{}

	// The lifecycle's engine, one flush (or timer round) at a time.
	lifeMu  sync.Mutex
	life    *lifecycle.Engine
	evicted int64 // evictions already warned of

	// stop is closed by Close: background loops end after what they are
	// doing. ctx is the deliveries' context, cancelled when Close's budget
	// runs out, so a delivery in flight may finish (and be recorded) first.
	stop       chan struct{}
	ctx        context.Context
	cancel     context.CancelFunc
	background sync.WaitGroup

	ownAlertsOnce sync.Once
	Counters      Counters
	metrics       *metrics.Output
}

// New builds the instance, its sink and, with State_Dir, its store.
func New(name string, cfg *config.Config, log *logx.Logger) (*Instance, error) {
	s, err := newSink(cfg)
	if err != nil {
		return nil, err
	}
	m, err := metrics.Open(name, cfg.MetricsListen, log)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("Metrics_Listen: %v", err)
	}
	in := &Instance{
		Name:   name,
		cfg:    cfg,
		det:    detect.New(detect.Options{EventKeys: cfg.EventKey}),
		sink:   s,
		log:    log,
		format: formats[cfg.AlertFormat],
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
	in.metrics = m
	in.Counters.init()
	in.ctx, in.cancel = context.WithCancel(context.Background())
	in.life = lifecycle.New(lifecycle.Options{WatchTTL: cfg.WatchTTL, MaxKeys: cfg.WatchMaxKeys, UseWindow: cfg.UseAlertWindow,
		Grace: cfg.QuarantineGrace, Delay: cfg.EventDelay, Persist: cfg.StateDir != ""})
	if cfg.StateDir == "" {
		in.delivered = dedup.New(cfg.DedupCacheSize, cfg.DedupTTL)
	} else if err := in.openStore(); err != nil {
		s.Close()
		m.Close()
		return nil, fmt.Errorf("State_Dir: %v", err)
	}
	in.goSafe("lifecycle timer", in.timers)
	if cfg.StatsInterval > 0 {
		in.goSafe("stats logger", in.logStats)
	}
	m.Publish(in)
	return in, nil
}

var formats = map[string]alert.Format{"native": alert.Native, "ecs": alert.ECS, "ocsf": alert.OCSF}

// maxLoggedKeys bounds the delivery log line: a replay of thousands of
// quarantine events must not flood Fluent Bit's log.
const maxLoggedKeys = 10

// Flush processes one chunk carrying tag.
func (in *Instance) Flush(data []byte, tag string) Result {
	defer in.timeFlush(time.Now())
	if tag == in.cfg.AlertTag {
		// Our own alerts came back: `Match aws.cloudtrail*` also matches the
		// default alert tag. Scanning them is pointless and, were an alert
		// ever to look like an event, a loop.
		in.Counters.OwnAlerts.Add(1)
		in.ownAlertsOnce.Do(func() {
			in.log.Warnf("this output's Match also matches Alert_Tag %q: those chunks are passed over; narrow Match to silence this", tag)
		})
		return OK
	}
	// The lifecycle sees every candidate event in order, one flush at a
	// time, as the scan finds it: what it puts on the watch list counts
	// for the rest of the chunk. With a store, what it learnt is kept with
	// the flush's alerts.
	var findings []detect.Finding
	locked := false
	defer func() {
		if locked { // also when a bug panics mid-scan: the flush recovers
			in.lifeMu.Unlock()
		}
	}()
	wall := time.Now()
	st := in.det.ScanEach(data, in.life.Watch(), func(o detect.Observed) {
		if !locked {
			in.lifeMu.Lock()
			locked = true
		}
		findings = append(findings, in.life.Observe(o, wall)...)
	})
	in.count(st)
	if n := st.Skipped.Malformed + st.Skipped.NotMap + st.Skipped.Truncated + st.Undecodable + st.SkippedEvents; n > 0 {
		in.log.Warnf("skipped %d bad records or events in a chunk of %d bytes (malformed=%d not_map=%d truncated=%d undecodable=%d bad_events=%d)",
			n, len(data), st.Skipped.Malformed, st.Skipped.NotMap, st.Skipped.Truncated, st.Undecodable, st.SkippedEvents)
	}
	if !locked {
		in.lifeMu.Lock()
		locked = true
	}
	// The chunk's ordinary records moved event time too: what their time
	// ended is due now, as it would be had a candidate carried it.
	in.life.Advance(st.Last, wall)
	findings = append(findings, in.life.Due(wall)...)
	in.noteLifecycle()
	if len(findings) == 0 && in.store == nil {
		return OK
	}
	return in.take(findings)
}

// take turns the lifecycle's findings of a flush (or a timer round) into
// alerts and stores or delivers them; a wait whose alert was neither is
// due again. The caller holds lifeMu.
func (in *Instance) take(findings []detect.Finding) Result {
	alerts := in.alertsOf(findings)
	var r Result
	if in.store != nil {
		r = in.enqueue(alerts) // the watch list's changes go in the same transaction
	} else if len(alerts) == 0 {
		r = OK
	} else {
		r = in.deliverNow(alerts)
	}
	if r != OK {
		in.life.Unfire(findings)
	}
	return r
}

// alertsOf makes the findings' alerts, and counts them by rule.
func (in *Instance) alertsOf(findings []detect.Finding) []alert.Alert {
	alerts := make([]alert.Alert, len(findings))
	for i, f := range findings {
		alerts[i] = alert.New(f, in.cfg.IncludeEvent)
		in.Counters.AlertsByRule[f.Rule.ID].Add(1)
	}
	in.Counters.Alerts.Add(int64(len(findings)))
	return alerts
}

// deliverNow sends the alerts not delivered before; what the sink could
// not deliver makes Fluent Bit retry the chunk, which then sends only that.
func (in *Instance) deliverNow(alerts []alert.Alert) Result {
	in.deliverMu.Lock()
	defer in.deliverMu.Unlock()
	var fresh []alert.Alert
	inBatch := map[string]bool{}
	for _, a := range alerts {
		if inBatch[a.Key] || in.delivered.Has(a.Key) {
			in.Counters.Duplicates.Add(1)
			continue
		}
		inBatch[a.Key] = true
		fresh = append(fresh, a)
	}
	if len(fresh) == 0 {
		return OK
	}
	batch := in.encode(fresh)
	n, err := sink.Send(in.ctx, in.sink, batch, func(sent []sink.Alert) error {
		for _, a := range sent {
			in.delivered.Add(a.Key)
		}
		in.Counters.Delivered.Add(int64(len(sent)))
		in.observeDelivered(sent)
		in.logKeys("delivered", sent)
		return nil
	})
	if err != nil {
		in.Counters.Retries.Add(1)
		in.log.Warnf("could not deliver %d of %d alert(s), asking Fluent Bit to retry the chunk: %v", len(batch)-n, len(batch), err)
		return Retry
	}
	return OK
}

// encode writes each alert in the sink's encoding and the configured
// format, all into one buffer: one allocation for the batch instead of one
// per alert, which matters when a replay makes thousands of alerts.
func (in *Instance) encode(alerts []alert.Alert) []sink.Alert {
	size := 0
	for i := range alerts {
		size += alerts[i].SizeHint()
	}
	buf := make([]byte, 0, size)
	ends := make([]int, len(alerts))
	asMsgpack := in.sink.Encoding() == sink.Msgpack
	for i := range alerts {
		if asMsgpack {
			buf = alerts[i].AppendMsgpack(buf, in.format)
		} else {
			buf = alerts[i].AppendJSON(buf, in.format)
		}
		ends[i] = len(buf)
	}
	// Slices are cut only now: appending may have moved the buffer.
	out := make([]sink.Alert, len(alerts))
	start := 0
	for i, end := range ends {
		out[i] = sink.Alert{Time: alerts[i].Time, Key: alerts[i].Key, Doc: buf[start:end:end]}
		start = end
	}
	return out
}

// logKeys logs what was delivered (or stored), naming the first keys.
func (in *Instance) logKeys(what string, batch []sink.Alert) {
	if len(batch) == 0 {
		return
	}
	keys := make([]string, 0, min(len(batch), maxLoggedKeys))
	for _, a := range batch[:min(len(batch), maxLoggedKeys)] {
		keys = append(keys, a.Key)
	}
	more := ""
	if n := len(batch) - len(keys); n > 0 {
		more = fmt.Sprintf(" and %d more", n)
	}
	in.log.Infof("%s %d alert(s): %s%s", what, len(batch), strings.Join(keys, " "), more)
}

// Log is the instance's logger.
func (in *Instance) Log() *logx.Logger { return in.log }

// Close stops the background work, gives the store's queue what is left
// of ExitBudget to drain (the rest waits for the next start), releases the
// sink and logs the counters.
func (in *Instance) Close() error {
	defer in.metrics.Close() // last, so scrapes still see the drain
	deadline := time.Now().Add(ExitBudget)
	cut := time.AfterFunc(ExitBudget, in.cancel)
	defer cut.Stop()
	defer in.cancel()
	close(in.stop)
	in.background.Wait()
	if in.store != nil {
		in.drain(deadline)
		in.store.Close()
	}
	in.log.Infof("exit: %s", in.Counters.Summary())
	return in.sink.Close()
}

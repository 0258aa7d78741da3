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
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
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

// FlushBudget bounds a flush without State_Dir that waits on its
// receiver. Fluent Bit cannot stop while a flush runs (it joins the
// worker, then calls exit), and tells a plugin nothing when shutdown
// starts: a flush that waited Forward_Timeout would hold the shutdown past
// its Grace. Past the budget the flush returns RETRY and the delivery goes
// on alone until it ends or Close cuts it; what it delivers is not sent
// again.
const FlushBudget = ExitBudget

// Instance is safe for concurrent flushes (Fluent Bit's `workers`).
type Instance struct {
	Name   string
	cfg    *config.Config
	det    *detect.Detector
	sink   sink.Sink
	log    *logx.Logger
	format alert.Format

	// Without a store: delivering holds the one token of deliverTurn, which
	// makes "not yet delivered? send, then remember" one step, so two
	// workers flushing the same event cannot both send it; it is taken
	// with a deadline (FlushBudget). inflight counts the deliveries.
	// leftUntil (Unix ns, 0: none) is set when the delivery running now
	// outlived its flush's budget: later flushes wait for it, so that a
	// slow receiver does not use up Fluent Bit's retries, but only until
	// one more FlushBudget has passed, so that one receiver that never
	// answers holds Fluent Bit's shutdown (whose retries come at once, again
	// and again) for two budgets at most, not one per retry.
	deliverTurn chan struct{}
	inflight    sync.WaitGroup
	leftUntil   atomic.Int64
	delivered   *dedup.Set
	// strikes counts the refusals of alerts refused for good.
	strikes strikes

	// With State_Dir: the store, and a nudge for its sender. unrecorded is
	// a batch the sender delivered and the store could not record (the
	// sender's own: only it and, after it stopped, Close touch it);
	// senderFailing says its last round failed.
	store         *state.Store
	wake          chan struct{}
	unrecorded    []state.Entry
	senderFailing atomic.Bool

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

		deliverTurn: make(chan struct{}, 1),
	}
	in.metrics = m
	in.Counters.init(log)
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
	if st.Oversized > 0 {
		in.log.Warnf("cut %d value(s) past their bound in a chunk of %d bytes (forged or damaged records: see the bounds under Record shapes); their events were still read",
			st.Oversized, len(data))
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
// alerts and stores or delivers them, in the order they were found; a
// wait whose alert was neither is due again. What the engine found of
// itself (a wait that ended, a call judged again once an earlier signal
// came) would not come back with a retried chunk: with a store, the
// alerts up to the last such one are stored whole with the watch list's
// changes or not at all; the chunk's own alerts after them as they fit.
// The caller holds lifeMu.
func (in *Instance) take(findings []detect.Finding) Result {
	whole := 0
	for i, f := range findings {
		if f.Event != nil && f.Event.Shape == lifecycle.Kept {
			whole = i + 1
		}
	}
	alerts := in.alertsOf(findings)
	switch {
	case in.store != nil:
		r, kept := in.enqueueParts(alerts, whole)
		if !kept {
			in.life.Unfire(findings)
		}
		return r
	case len(alerts) == 0:
		return OK
	}
	r := in.deliverNow(alerts)
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
		alerts[i].SetRunbookBase(in.cfg.RunbookBaseURL)
		in.Counters.AlertsByRule[f.Rule.ID].Add(1)
	}
	in.Counters.Alerts.Add(int64(len(findings)))
	return alerts
}

// deliverNow sends the alerts not delivered before; what the sink could
// not deliver makes Fluent Bit retry the chunk, which then sends only that.
// It waits at most FlushBudget, for its turn and for the receiver.
func (in *Instance) deliverNow(alerts []alert.Alert) Result {
	budget := time.NewTimer(FlushBudget)
	defer budget.Stop()
	turnBy := time.Now().Add(FlushBudget)
	if until := in.leftUntil.Load(); until != 0 {
		turnBy = time.Unix(0, min(until, turnBy.UnixNano()))
	}
	turn := time.NewTimer(time.Until(turnBy))
	defer turn.Stop()
	select {
	case in.deliverTurn <- struct{}{}:
	case <-turn.C:
		in.Counters.Retries.Add(1)
		in.log.Warnf("the receiver has not answered an earlier delivery yet: asking Fluent Bit to retry the chunk")
		return Retry
	case <-in.ctx.Done():
		in.Counters.Retries.Add(1)
		return Retry
	}
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
		<-in.deliverTurn
		return OK
	}
	// Encoded now: the alerts may alias the chunk, which is Fluent Bit's
	// only until the flush returns.
	batch := in.encode(fresh)
	d := &delivery{done: make(chan Result, 1)}
	in.inflight.Add(1)
	go func() {
		defer in.inflight.Done()
		defer func() { <-in.deliverTurn }()
		defer d.end(in)
		defer func() {
			if r := recover(); r != nil {
				in.Counters.Panics.Add(1)
				in.log.Errorf("panic delivering alerts (bug, please report): %v %s", r, oneLine(debug.Stack()))
				d.done <- Retry
			}
		}()
		d.done <- in.sendNow(batch)
	}()
	select {
	case r := <-d.done:
		return r
	case <-budget.C:
	case <-in.ctx.Done():
	}
	if !d.leave(in) {
		return <-d.done // it ended just now
	}
	in.Counters.Retries.Add(1)
	in.log.Warnf("the receiver has not answered within %v: asking Fluent Bit to retry the chunk (the delivery goes on; what it delivers is not sent again)", FlushBudget)
	return Retry
}

// delivery is one delivery deliverNow runs; its flush may leave it running.
type delivery struct {
	done        chan Result // written once, before end
	mu          sync.Mutex
	ended, gone bool
}

// end marks the delivery over, and no longer left running.
func (d *delivery) end(in *Instance) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ended = true
	if d.gone {
		in.leftUntil.Store(0)
	}
}

// leave marks the delivery left running by its flush, unless it is over.
func (d *delivery) leave(in *Instance) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ended {
		return false
	}
	d.gone = true
	in.leftUntil.Store(time.Now().Add(FlushBudget).UnixNano())
	return true
}

// sendNow delivers a batch for deliverNow and remembers what went; an
// alert refused for good is dropped once its strikes are up (there is no
// store to set it aside in), so that it does not make Fluent Bit retry
// its chunk for ever.
func (in *Instance) sendNow(batch []sink.Alert) Result {
	var refused []sink.Refusal
	took := 0
	n, err := sink.Send(in.ctx, in.sink, batch, sink.Handler{
		Done: func(sent []sink.Alert) error {
			for _, a := range sent {
				in.delivered.Add(a.Key)
			}
			took += len(sent)
			in.strikes.forget(sent)
			in.Counters.Delivered.Add(int64(len(sent)))
			in.observeDelivered(sent)
			in.logKeys("delivered", sent)
			return nil
		},
		Refused: func(r sink.Refusal) error { refused = append(refused, r); return nil },
	})
	aside := in.strikes.refused(refused, took)
	for _, r := range aside {
		in.delivered.Add(r.Alert.Key)
		in.Counters.DeadLetter.Add(1)
		in.log.Errorf("dropped alert %s, which the receiver refuses for good (no State_Dir to set it aside in): %s", r.Alert.Key, r.Reason)
	}
	switch {
	case err != nil:
		in.Counters.Retries.Add(1)
		in.log.Warnf("could not deliver %d of %d alert(s), asking Fluent Bit to retry the chunk: %v", len(batch)-n-len(aside), len(batch), err)
		return Retry
	case len(refused) > len(aside):
		in.Counters.Retries.Add(1)
		in.log.Warnf("the receiver refused %d alert(s) (after %d refusals while it takes others, one is dropped), asking Fluent Bit to retry the chunk: %s",
			len(refused)-len(aside), poisonStrikes, refused[0].Reason)
		return Retry
	}
	return OK
}

// encode writes each alert in the sink's encoding and the configured
// format, all into one buffer: one allocation for the batch instead of one
// per alert, which matters when a replay makes thousands of alerts. An
// alert too big for the receiver is cut down (fitted).
func (in *Instance) encode(alerts []alert.Alert) []sink.Alert {
	size := 0
	for i := range alerts {
		size += alerts[i].SizeHint()
	}
	buf := make([]byte, 0, size)
	ends := make([]int, len(alerts))
	for i := range alerts {
		buf = in.appendAlert(buf, &alerts[i])
		ends[i] = len(buf)
	}
	// Slices are cut only now: appending may have moved the buffer.
	out := make([]sink.Alert, len(alerts))
	start := 0
	for i, end := range ends {
		out[i] = sink.Alert{Time: alerts[i].Time, Key: alerts[i].Key, Doc: in.fitted(&alerts[i], buf[start:end:end])}
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
// of ExitBudget to drain (the rest waits for the next start), cuts a
// delivery a flush left running (Fluent Bit retries its chunk), releases
// the sink and logs the counters.
func (in *Instance) Close() error {
	defer in.metrics.Close() // last, so scrapes still see the drain
	deadline := time.Now().Add(ExitBudget)
	cut := time.AfterFunc(ExitBudget, in.cancel)
	defer cut.Stop()
	close(in.stop)
	in.background.Wait()
	if in.store != nil {
		in.drain(deadline)
	}
	in.cancel()
	in.inflight.Wait()
	if in.store != nil {
		in.store.Close()
	}
	in.log.Infof("exit: %s", in.Counters.Summary())
	return in.sink.Close()
}

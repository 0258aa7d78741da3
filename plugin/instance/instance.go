// Package instance is one configured output instance: it scans each chunk,
// drops alerts already delivered, hands the rest to the sink and says
// whether Fluent Bit should retry the chunk. Pure Go, so it is tested
// without cgo; the plugin's exports only translate its Result.
package instance

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/config"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/dedup"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/logx"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/spool"
)

// Result is the outcome of a flush, in Fluent Bit's terms.
type Result int

const (
	OK    Result = iota // chunk done
	Retry               // deliver the same chunk again later
	Error               // drop the chunk
)

// Instance is safe for concurrent flushes (Fluent Bit's `workers`).
type Instance struct {
	Name string
	cfg  *config.Config
	det  *detect.Detector
	sink sink.Sink
	log  *logx.Logger

	// deliverMu makes "not yet delivered? send, then remember" one step, so
	// two workers flushing the same event cannot both send it.
	deliverMu sync.Mutex
	delivered *dedup.Set

	ownAlertsOnce sync.Once
	stop          chan struct{} // closed at Close: stops the stats logger and the spool sender
	background    sync.WaitGroup

	format    alert.Format
	spool     *spool.Spool // nil without Spool_Dir
	spoolWake chan struct{}

	Counters Counters
}

// Counters are cumulative per instance.
type Counters struct {
	Flushes, Records, Candidates, Events   atomic.Int64
	Alerts, Delivered, Duplicates, Retries atomic.Int64
	SkippedMalformed, SkippedNotMap        atomic.Int64
	SkippedTruncated, SkippedUndecodable   atomic.Int64
	GroupMarkers, EncodeErrors             atomic.Int64
	OwnAlerts                              atomic.Int64 // chunks tagged Alert_Tag, passed over
	Spooled, SpoolDelivered                atomic.Int64
	// AlertsByRule counts alerts found per rule id (before de-duplication).
	AlertsByRule map[string]*atomic.Int64
}

// New builds the instance and its sink.
func New(name string, cfg *config.Config, log *logx.Logger) (*Instance, error) {
	s, err := newSink(cfg)
	if err != nil {
		return nil, err
	}
	in := &Instance{
		Name:      name,
		cfg:       cfg,
		det:       detect.New(detect.Options{EventKeys: cfg.EventKey}),
		sink:      s,
		log:       log,
		delivered: dedup.New(cfg.DedupCacheSize),
		stop:      make(chan struct{}),
		spoolWake: make(chan struct{}, 1),
	}
	if cfg.AlertFormat == "ecs" {
		in.format = alert.ECS
	}
	if cfg.AlertFormat == "ocsf" {
		in.format = alert.OCSF
	}
	in.Counters.AlertsByRule = map[string]*atomic.Int64{}
	for _, r := range rules.All() {
		in.Counters.AlertsByRule[r.ID] = new(atomic.Int64)
	}
	if cfg.SpoolDir != "" {
		if in.spool, err = spool.Open(cfg.SpoolDir, int64(cfg.SpoolMaxSize)); err != nil {
			s.Close()
			return nil, fmt.Errorf("Spool_Dir: %v", err)
		}
		if n := in.spool.Pending(); n > 0 {
			log.Infof("spool holds %d bytes of undelivered alerts from an earlier run: delivering them", n)
		}
		in.background.Add(1)
		go in.sendSpooled()
	}
	if cfg.StatsInterval > 0 {
		in.background.Add(1)
		go in.logStats(cfg.StatsInterval)
	}
	return in, nil
}

// logStats logs the counters every interval, so an operator can see the
// instance is alive and what it dropped and why.
func (in *Instance) logStats(every time.Duration) {
	defer in.background.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			in.log.Infof("stats: %s", in.Counters.Summary())
		case <-in.stop:
			return
		}
	}
}

// maxLoggedKeys bounds the delivery log line: a replay of thousands of
// quarantine events must not flood Fluent Bit's log.
const maxLoggedKeys = 10

// Flush processes one chunk carrying tag.
func (in *Instance) Flush(data []byte, tag string) Result {
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
	findings, st := in.det.Scan(data, nil)
	in.count(st)
	alerts := make([]alert.Alert, len(findings))
	for i, f := range findings {
		alerts[i] = alert.New(f, in.cfg.IncludeEvent)
		in.Counters.AlertsByRule[f.Rule.ID].Add(1)
	}
	if n := st.Skipped.Malformed + st.Skipped.NotMap + st.Skipped.Truncated + st.Undecodable; n > 0 {
		in.log.Warnf("skipped %d bad records in a chunk of %d bytes (malformed=%d not_map=%d truncated=%d undecodable=%d)",
			n, len(data), st.Skipped.Malformed, st.Skipped.NotMap, st.Skipped.Truncated, st.Undecodable)
	}
	if len(alerts) == 0 {
		return OK
	}
	in.deliverMu.Lock()
	defer in.deliverMu.Unlock()
	batch := in.pending(alerts)
	if len(batch) == 0 {
		return OK
	}
	if in.spool != nil && in.spool.Pending() > 0 {
		// Older alerts wait in the spool: these go behind them, in order.
		return in.toSpool(batch, nil)
	}
	if err := in.sink.Deliver(batch); err != nil {
		if in.spool != nil {
			return in.toSpool(batch, err)
		}
		in.Counters.Retries.Add(1)
		in.log.Warnf("could not deliver %d alert(s), asking Fluent Bit to retry the chunk: %v", len(batch), err)
		return Retry
	}
	in.markDelivered(batch, "delivered")
	return OK
}

// markDelivered remembers the batch as done (delivered, or safe in the
// spool) and logs it.
func (in *Instance) markDelivered(batch []sink.Alert, what string) {
	keys := make([]string, 0, min(len(batch), maxLoggedKeys))
	for _, a := range batch {
		in.delivered.Add(a.Key)
		if len(keys) < maxLoggedKeys {
			keys = append(keys, a.Key)
		}
	}
	more := ""
	if n := len(batch) - len(keys); n > 0 {
		more = fmt.Sprintf(" and %d more", n)
	}
	in.log.Infof("%s %d alert(s): %s%s", what, len(batch), strings.Join(keys, " "), more)
	if what == "delivered" {
		in.Counters.Delivered.Add(int64(len(batch)))
	} else {
		in.Counters.Spooled.Add(int64(len(batch)))
	}
}

// toSpool keeps the batch on disk for the background sender; only when
// the spool cannot take it does Fluent Bit have to retry the chunk.
func (in *Instance) toSpool(batch []sink.Alert, cause error) Result {
	if err := in.spool.Append(batch); err != nil {
		in.Counters.Retries.Add(1)
		in.log.Warnf("could not deliver %d alert(s) (%v) nor spool them (%v): asking Fluent Bit to retry the chunk", len(batch), cause, err)
		return Retry
	}
	if cause != nil {
		in.log.Warnf("could not deliver %d alert(s) now (%v): spooled, delivery continues in the background", len(batch), cause)
	}
	in.markDelivered(batch, "spooled")
	select {
	case in.spoolWake <- struct{}{}:
	default:
	}
	return OK
}

// pending encodes the alerts not delivered before, each once.
func (in *Instance) pending(alerts []alert.Alert) []sink.Alert {
	var batch []sink.Alert
	var ends []int
	inBatch := map[string]bool{}
	// Every alert is encoded into one buffer: one allocation for the batch
	// instead of one per alert, which matters when a replay of quarantine
	// events makes thousands of alerts in a chunk.
	size := 0
	for i := range alerts {
		size += alerts[i].SizeHint()
	}
	buf := make([]byte, 0, size)
	asMsgpack := in.sink.Encoding() == sink.Msgpack
	for i := range alerts {
		a := &alerts[i]
		if inBatch[a.Key] || in.delivered.Has(a.Key) {
			in.Counters.Duplicates.Add(1)
			continue
		}
		start := len(buf)
		var err error
		if asMsgpack {
			buf, err = a.AppendMsgpack(buf, in.format)
		} else {
			buf, err = a.AppendJSON(buf, in.format)
		}
		if err != nil {
			// Retrying cannot fix an alert that does not encode.
			buf = buf[:start]
			in.Counters.EncodeErrors.Add(1)
			in.log.Errorf("cannot encode alert %s: %v", a.Key, err)
			continue
		}
		inBatch[a.Key] = true
		batch = append(batch, sink.Alert{Time: a.Time, Key: a.Key})
		ends = append(ends, len(buf))
	}
	// Slices are cut only now: appending may have moved the buffer.
	start := 0
	for i, end := range ends {
		if asMsgpack {
			batch[i].Msgpack = buf[start:end:end]
		} else {
			batch[i].JSON = buf[start:end:end]
		}
		start = end
	}
	return batch
}

func (in *Instance) count(st detect.Stats) {
	c := &in.Counters
	c.Flushes.Add(1)
	c.Records.Add(int64(st.Records))
	c.Candidates.Add(int64(st.Candidates))
	c.Events.Add(int64(st.Events))
	c.Alerts.Add(int64(st.Findings))
	c.SkippedMalformed.Add(int64(st.Skipped.Malformed))
	c.SkippedNotMap.Add(int64(st.Skipped.NotMap))
	c.SkippedTruncated.Add(int64(st.Skipped.Truncated))
	c.SkippedUndecodable.Add(int64(st.Undecodable))
	c.GroupMarkers.Add(int64(st.Skipped.Group))
}

// Summary renders the counters as one log line.
func (c *Counters) Summary() string {
	ids := slices.Sorted(maps.Keys(c.AlertsByRule))
	byRule := make([]string, len(ids))
	for i, id := range ids {
		byRule[i] = fmt.Sprintf("%s:%d", id, c.AlertsByRule[id].Load())
	}
	return fmt.Sprintf("flushes=%d records=%d candidates=%d events=%d alerts=%d delivered=%d duplicates_dropped=%d retries=%d skipped_malformed=%d skipped_not_map=%d skipped_truncated=%d skipped_undecodable=%d group_markers=%d encode_errors=%d own_alert_chunks=%d spooled=%d spool_delivered=%d alerts_by_rule=%s",
		c.Flushes.Load(), c.Records.Load(), c.Candidates.Load(), c.Events.Load(), c.Alerts.Load(), c.Delivered.Load(),
		c.Duplicates.Load(), c.Retries.Load(), c.SkippedMalformed.Load(), c.SkippedNotMap.Load(), c.SkippedTruncated.Load(),
		c.SkippedUndecodable.Load(), c.GroupMarkers.Load(), c.EncodeErrors.Load(), c.OwnAlerts.Load(), c.Spooled.Load(), c.SpoolDelivered.Load(), strings.Join(byRule, ","))
}

// Log is the instance's logger.
func (in *Instance) Log() *logx.Logger { return in.log }

// Close stops the background work, gives the spool a bounded time to
// drain (what is left stays on disk for the next start), releases the
// sink and logs the counters.
func (in *Instance) Close() error {
	close(in.stop)
	in.background.Wait()
	if in.spool != nil {
		in.drainSpool(time.Now().Add(drainTime))
		if n := in.spool.Pending(); n > 0 {
			in.log.Warnf("exit: %d bytes of alerts stay in the spool %s, delivered after the next start", n, in.cfg.SpoolDir)
		}
		in.spool.Close()
	}
	in.log.Infof("exit: %s", in.Counters.Summary())
	return in.sink.Close()
}

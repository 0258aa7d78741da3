package instance

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/logx"
)

// Counters are cumulative per instance.
type Counters struct {
	Flushes, Records, Candidates, Events   atomic.Int64
	Alerts, Delivered, Duplicates, Retries atomic.Int64
	Queued                                 atomic.Int64 // alerts kept in the store for the sender
	DeliveryFailures                       atomic.Int64 // the sender's rounds that failed (receiver down, say)
	DeadLetter                             atomic.Int64 // alerts refused for good, set aside (or, without a store, dropped)
	SkippedMalformed, SkippedNotMap        atomic.Int64
	SkippedTruncated, SkippedUndecodable   atomic.Int64
	SkippedEvents                          atomic.Int64 // bad events inside a record (a log file's Records)
	Oversized                              atomic.Int64 // values of events past their bound, cut (detect.Stats.Oversized)
	IgnoredAccounts                        atomic.Int64 // account fields that held no account id
	GroupMarkers, EncodeErrors, Panics     atomic.Int64
	OwnAlerts                              atomic.Int64 // chunks tagged Alert_Tag, passed over
	// The lifecycle: keys watched now, and calls folded into an earlier
	// alert, cases pushed out by Watch_Max_Keys or past Watch_TTL.
	Watched, UsesSuppressed, WatchEvicted, WatchExpired atomic.Int64
	// AlertsByRule counts alerts found per rule id (before de-duplication).
	AlertsByRule map[string]*atomic.Int64
	// LogWriteErrors counts the log lines that could not be written
	// (stderr gone); the logger keeps the count.
	LogWriteErrors func() int64
}

func (c *Counters) init(log *logx.Logger) {
	c.LogWriteErrors = log.WriteErrors
	c.AlertsByRule = map[string]*atomic.Int64{}
	for _, r := range rules.All() {
		c.AlertsByRule[r.ID] = new(atomic.Int64)
	}
}

func (in *Instance) count(st detect.Stats) {
	c := &in.Counters
	c.Flushes.Add(1)
	c.Records.Add(int64(st.Records))
	c.Candidates.Add(int64(st.Candidates))
	c.Events.Add(int64(st.Events))
	c.SkippedMalformed.Add(int64(st.Skipped.Malformed))
	c.SkippedNotMap.Add(int64(st.Skipped.NotMap))
	c.SkippedTruncated.Add(int64(st.Skipped.Truncated))
	c.SkippedUndecodable.Add(int64(st.Undecodable))
	c.SkippedEvents.Add(int64(st.SkippedEvents))
	c.Oversized.Add(int64(st.Oversized))
	c.IgnoredAccounts.Add(int64(st.IgnoredAccounts))
	c.GroupMarkers.Add(int64(st.Skipped.Group))
}

// Summary renders the counters as one log line.
func (c *Counters) Summary() string {
	ids := slices.Sorted(maps.Keys(c.AlertsByRule))
	byRule := make([]string, len(ids))
	for i, id := range ids {
		byRule[i] = fmt.Sprintf("%s:%d", id, c.AlertsByRule[id].Load())
	}
	return fmt.Sprintf("flushes=%d records=%d candidates=%d events=%d alerts=%d delivered=%d queued=%d delivery_failures=%d dead_letter=%d duplicates_dropped=%d retries=%d skipped_malformed=%d skipped_not_map=%d skipped_truncated=%d skipped_undecodable=%d skipped_events=%d oversized_values=%d ignored_account_ids=%d group_markers=%d encode_errors=%d own_alert_chunks=%d panics=%d log_write_errors=%d watched_keys=%d uses_suppressed=%d watch_evicted=%d watch_expired=%d alerts_by_rule=%s",
		c.Flushes.Load(), c.Records.Load(), c.Candidates.Load(), c.Events.Load(), c.Alerts.Load(), c.Delivered.Load(), c.Queued.Load(), c.DeliveryFailures.Load(), c.DeadLetter.Load(),
		c.Duplicates.Load(), c.Retries.Load(), c.SkippedMalformed.Load(), c.SkippedNotMap.Load(), c.SkippedTruncated.Load(),
		c.SkippedUndecodable.Load(), c.SkippedEvents.Load(), c.Oversized.Load(), c.IgnoredAccounts.Load(), c.GroupMarkers.Load(), c.EncodeErrors.Load(), c.OwnAlerts.Load(), c.Panics.Load(), c.LogWriteErrors(),
		c.Watched.Load(), c.UsesSuppressed.Load(), c.WatchEvicted.Load(), c.WatchExpired.Load(), strings.Join(byRule, ","))
}

// logStats logs the counters every interval, so an operator can see the
// instance is alive and what it dropped and why.
func (in *Instance) logStats(context.Context) {
	t := time.NewTicker(in.cfg.StatsInterval)
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

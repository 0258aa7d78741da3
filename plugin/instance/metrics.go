package instance

import (
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/metrics"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
)

// Sample reads the counters the stats line prints, for a Prometheus
// scrape: one source for both.
func (in *Instance) Sample() metrics.Sample {
	c := &in.Counters
	s := metrics.Sample{
		Flushes: c.Flushes.Load(), Records: c.Records.Load(), Candidates: c.Candidates.Load(), Events: c.Events.Load(),
		AlertsByRule: make(map[string]int64, len(c.AlertsByRule)),
		Stored:       c.Queued.Load(), Delivered: c.Delivered.Load(), Duplicates: c.Duplicates.Load(), Retries: c.Retries.Load(), DeliveryFailures: c.DeliveryFailures.Load(),
		DeadLetter: c.DeadLetter.Load(),
		Skipped: metrics.Skipped{
			Malformed: c.SkippedMalformed.Load(), NotMap: c.SkippedNotMap.Load(), Truncated: c.SkippedTruncated.Load(),
			Undecodable: c.SkippedUndecodable.Load(), BadEvents: c.SkippedEvents.Load(),
		},
		Oversized:       c.Oversized.Load(),
		IgnoredAccounts: c.IgnoredAccounts.Load(),
		GroupMarkers:    c.GroupMarkers.Load(), EncodeErrors: c.EncodeErrors.Load(),
		OwnAlertChunks: c.OwnAlerts.Load(), Panics: c.Panics.Load(), LogWriteErrors: c.LogWriteErrors(),
		WatchedKeys: c.Watched.Load(), UsesSuppressed: c.UsesSuppressed.Load(),
		WatchEvicted: c.WatchEvicted.Load(), WatchExpired: c.WatchExpired.Load(),
	}
	for id, n := range c.AlertsByRule {
		s.AlertsByRule[id] = n.Load()
	}
	if in.store != nil {
		// A store closed under a late scrape only errs: its gauges are left out.
		n, bytes, err := in.store.Pending()
		dead, _, derr := in.store.DeadLetters()
		if err == nil && derr == nil {
			s.Store = &metrics.Store{FileBytes: in.store.FileSize(), PendingAlerts: int64(n), PendingBytes: bytes, DeadLetters: int64(dead)}
		}
	}
	return s
}

// timeFlush records the flush that started at start.
func (in *Instance) timeFlush(start time.Time) { in.metrics.ObserveFlush(time.Since(start)) }

// observeDelivered records each delivered alert's delay from its event.
func (in *Instance) observeDelivered(sent []sink.Alert) {
	now := time.Now()
	for _, a := range sent {
		in.metrics.ObserveDelivery(a.Time, now)
	}
}

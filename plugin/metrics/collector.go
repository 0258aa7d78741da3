package metrics

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "cloudtrail_quarantine"

// labelName carries the instance's name (cloudtrail_quarantine.0, ...). It
// is not called "instance": Prometheus sets that label on every scraped
// series to the target's address, and renames a scraped one to
// exported_instance. Fluent Bit's own output metrics call it name too.
const labelName = "name"

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, append([]string{labelName}, labels...), nil)
}

// counter is one plain counter of a Sample.
type counter struct {
	desc  *prometheus.Desc
	value func(*Sample) int64
}

var (
	descRecords = newDesc("records_total", "Well-formed records read from the chunks Fluent Bit flushed.")
	counters    = []counter{
		{newDesc("flushes_total", "Chunks Fluent Bit flushed to the instance (a retried chunk counts again)."), func(s *Sample) int64 { return s.Flushes }},
		{descRecords, func(s *Sample) int64 { return s.Records }},
		{newDesc("candidates_total", "Records that name a quarantine policy, hence were decoded and read as events."), func(s *Sample) int64 { return s.Candidates }},
		{newDesc("events_total", "CloudTrail events found in candidate records."), func(s *Sample) int64 { return s.Events }},
		{newDesc("alerts_stored_total", "Alerts kept in State_Dir for the background sender (new ones only)."), func(s *Sample) int64 { return s.Stored }},
		{newDesc("alerts_delivered_total", "Alerts the receiver took (acknowledged, or answered with success)."), func(s *Sample) int64 { return s.Delivered }},
		{newDesc("duplicates_dropped_total", "Alerts dropped because they were delivered (or stored) before."), func(s *Sample) int64 { return s.Duplicates }},
		{newDesc("retries_total", "Chunks the instance asked Fluent Bit to retry: delivery failed in the flush (no State_Dir), or the store could not take the alerts."), func(s *Sample) int64 { return s.Retries }},
		{newDesc("delivery_failures_total", "Rounds of the background sender (State_Dir) that failed: the receiver was down or refused, or the store could not record the delivery. Each is retried with backoff."), func(s *Sample) int64 { return s.DeliveryFailures }},
		{newDesc("dead_letter_total", "Alerts the receiver refused for a reason a retry cannot fix, set aside in State_Dir's dead letters so that the others go on (without State_Dir: dropped). Each is logged with its key."), func(s *Sample) int64 { return s.DeadLetter }},
		{newDesc("oversized_values_total", "Values of events past their bound (README, Record shapes), cut or replaced by a digest; the events were still read. Forged or damaged records."), func(s *Sample) int64 { return s.Oversized }},
		{newDesc("ignored_account_ids_total", "Account fields of records (an AWS Health event's affectedAccount, say) that held no account id (12 digits) and were passed over for the next one (the envelope's account)."), func(s *Sample) int64 { return s.IgnoredAccounts }},
		{newDesc("group_markers_total", "OpenTelemetry group start and end records passed over."), func(s *Sample) int64 { return s.GroupMarkers }},
		{newDesc("unreadable_alerts_dropped_total", "Alerts in State_Dir that could not be read back, dropped so the rest could go."), func(s *Sample) int64 { return s.EncodeErrors }},
		{newDesc("own_alert_chunks_total", "Chunks tagged with the instance's own Alert_Tag, passed over (Match catches the alerts)."), func(s *Sample) int64 { return s.OwnAlertChunks }},
		{newDesc("uses_suppressed_total", "Calls with a watched key folded into an earlier alert of the same Use_Alert_Window."), func(s *Sample) int64 { return s.UsesSuppressed }},
		{newDesc("watch_evicted_total", "Lifecycle cases pushed out of the watch list by Watch_Max_Keys (oldest first)."), func(s *Sample) int64 { return s.WatchEvicted }},
		{newDesc("watch_expired_total", "Lifecycle cases dropped after Watch_TTL without a sign of the key."), func(s *Sample) int64 { return s.WatchExpired }},
		{newDesc("log_write_errors_total", "Log lines the instance could not write (stderr closed or its reader gone); the plugin goes on."), func(s *Sample) int64 { return s.LogWriteErrors }},
		{newDesc("panics_total", "Panics recovered in the instance's background work (bugs)."), func(s *Sample) int64 { return s.Panics }},
	}
	descAlerts  = newDesc("alerts_total", "Alerts found, by rule, before de-duplication.", "rule")
	descSkipped = newDesc("skipped_records_total", "Records skipped unread, by reason; bad_event counts events inside a CloudTrail log file's Records that could not be read.", "reason")
	descStore   = newDesc("store_bytes", "Size of the instance's State_Dir database file.")
	descPending = newDesc("pending_alerts", "Alerts in State_Dir waiting for delivery.")
	descPendB   = newDesc("pending_alert_bytes", "Bytes of the alerts in State_Dir waiting for delivery (what Queue_Max_Size caps).")
	descDead    = newDesc("dead_letter_alerts", "Alerts set aside in State_Dir's dead letters, kept for Dead_Letter_TTL.")
	descWatched = newDesc("watched_keys", "Exposed keys (and users of keyless exposures) the lifecycle rules watch.")
)

func describe(ch chan<- *prometheus.Desc) {
	for _, c := range counters {
		ch <- c.desc
	}
	for _, d := range []*prometheus.Desc{descAlerts, descSkipped, descStore, descPending, descPendB, descDead, descWatched} {
		ch <- d
	}
}

// metricsOf reads src once and renders what it read.
func metricsOf(name string, src Source) []prometheus.Metric {
	s := src.Sample()
	out := make([]prometheus.Metric, 0, len(counters)+len(s.AlertsByRule)+10)
	add := func(d *prometheus.Desc, t prometheus.ValueType, v int64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, t, float64(v), append([]string{name}, labels...)...))
	}
	for _, c := range counters {
		add(c.desc, prometheus.CounterValue, c.value(&s))
	}
	for _, rule := range slices.Sorted(maps.Keys(s.AlertsByRule)) {
		add(descAlerts, prometheus.CounterValue, s.AlertsByRule[rule], rule)
	}
	for _, r := range []struct {
		reason string
		n      int64
	}{
		{"malformed", s.Skipped.Malformed}, {"not_map", s.Skipped.NotMap}, {"truncated", s.Skipped.Truncated},
		{"undecodable", s.Skipped.Undecodable}, {"bad_event", s.Skipped.BadEvents},
	} {
		add(descSkipped, prometheus.CounterValue, r.n, r.reason)
	}
	if st := s.Store; st != nil {
		add(descStore, prometheus.GaugeValue, st.FileBytes)
		add(descPending, prometheus.GaugeValue, st.PendingAlerts)
		add(descPendB, prometheus.GaugeValue, st.PendingBytes)
		add(descDead, prometheus.GaugeValue, st.DeadLetters)
	}
	add(descWatched, prometheus.GaugeValue, s.WatchedKeys)
	return out
}

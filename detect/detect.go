// Package detect finds quarantine events in a Fluent Bit chunk and reports
// them as findings. It is pure Go with no I/O: the chunk is walked in place,
// records that cannot hold a quarantine event are ruled out from their raw
// bytes, and only the rare candidates are decoded, resolved into CloudTrail
// events and run through the rules.
package detect

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/chunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// Options configure a Detector.
type Options struct {
	// EventKeys name the record keys that may hold an event as a JSON string.
	EventKeys []string
}

// Finding is one rule firing on one event. Event.Raw may alias the
// scanned chunk: turn findings into alerts before the chunk is released.
type Finding struct {
	Rule  *rules.Rule
	Event *cloudtrail.Event
	Match rules.Finding
	// Time is the event's eventTime, or the record's time when eventTime
	// is missing or unreadable.
	Time time.Time
	// Key identifies the finding across re-deliveries: rule id and event id.
	Key string
}

// Detector is safe for concurrent use: it holds no per-chunk state.
type Detector struct {
	resolver cloudtrail.Resolver
	rules    []*rules.Rule
	keys     []string
}

// New returns a Detector running every rule.
func New(o Options) *Detector {
	return &Detector{
		resolver: cloudtrail.Resolver{EventKeys: o.EventKeys},
		rules:    rules.Stateless(),
		keys:     o.EventKeys,
	}
}

// Stats describe one Scan.
type Stats struct {
	Records    int // well-formed records
	Candidates int // records holding a quarantine policy name, hence decoded
	Events     int // CloudTrail events found in candidate records
	Findings   int
	Skipped    chunk.Skipped
	// Undecodable counts candidate records whose body could not be decoded
	// (too deep, say); they are skipped like malformed records.
	Undecodable int
	// SkippedEvents counts events of a log file's Records that could not
	// be read; the file's other events still are.
	SkippedEvents int
	// Oversized counts the values of events past their bound, cut or
	// replaced by a digest (cloudtrail's Max* constants); the events were
	// still read.
	Oversized int
	// IgnoredAccounts counts account fields that held no account id (12
	// digits) and were passed over for the next one.
	IgnoredAccounts int
	// Last is the event time of the chunk's last record, zero when it
	// carries none: the time ordinary records moved the stream to.
	Last time.Time
}

// Observed is one event of a candidate record, in the order of the chunk,
// with what the rules that decide from the event alone found in it. The
// lifecycle engine sees every observed event, findings or none: a call
// with a watched key is an event no such rule fires on.
type Observed struct {
	Event *cloudtrail.Event
	// Time is the event's eventTime, or the record's time when eventTime
	// is missing or unreadable.
	Time     time.Time
	Findings []Finding
}

// Scan appends the events of data's candidate records to dst. w is the
// lifecycle's watch list (nil: no lifecycle), which makes the records that
// name a watched key candidates too.
func (d *Detector) Scan(data []byte, w Watch, dst []Observed) ([]Observed, Stats) {
	st := d.ScanEach(data, w, func(o Observed) { dst = append(dst, o) })
	return dst, st
}

// ScanEach calls fn with each event of data's candidate records, in
// order, as it finds them (the events of one record, a log file's Records
// that AWS does not sort, in event-time order). When fn puts something on
// the watch list (the lifecycle engine observing an exposure), the
// records after it are looked at with the list as it is then: a key
// exposed early in a chunk and used later in the same chunk is seen used.
func (d *Detector) ScanEach(data []byte, w Watch, fn func(Observed)) Stats {
	var st Stats
	var r chunk.Reader
	r.Reset(data)
	var p prefilter
	p.reset(data, w, 0, false)
	var last []byte
	for r.Next() {
		rec := r.Record()
		last = rec.Body
		st.Records++
		end := rec.Offset + len(rec.Raw)
		if !p.candidate(rec.Offset, end) {
			continue
		}
		st.Candidates++
		if !d.scanRecord(rec, fn, &st) {
			st.Undecodable++
		}
		if p.watchChanged() {
			p.reset(data, w, end, false)
		}
	}
	st.Skipped = r.Skipped()
	if last != nil {
		st.Last = recordTime(last, d.keys)
	}
	return st
}

func (d *Detector) scanRecord(rec *chunk.Record, fn func(Observed), st *Stats) bool {
	var obs []Observed
	n, skipped, err := d.resolver.ResolveMsgpack(rec.Body, func(e *cloudtrail.Event) {
		o := d.Observe(e, rec.Time)
		st.Findings += len(o.Findings)
		st.Oversized += e.Oversized
		st.IgnoredAccounts += e.IgnoredAccounts
		obs = append(obs, o)
	})
	for _, o := range InTimeOrder(obs) {
		fn(o)
	}
	st.Events += n
	st.SkippedEvents += skipped
	return err == nil
}

// InTimeOrder sorts the events of one record by event time (and event key
// among equal times), so the lifecycle judges them as they happened.
func InTimeOrder(obs []Observed) []Observed {
	if len(obs) > 1 {
		slices.SortStableFunc(obs, func(a, b Observed) int {
			return cmp.Or(a.Time.Compare(b.Time), strings.Compare(EventKey(a.Event), EventKey(b.Event)))
		})
	}
	return obs
}

// Observe runs the rules that decide from the event alone on e;
// recordTime stands in for a missing or unreadable eventTime.
func (d *Detector) Observe(e *cloudtrail.Event, recordTime time.Time) Observed {
	o := Observed{Event: e, Time: recordTime}
	if t, err := time.Parse(time.RFC3339Nano, e.Time); err == nil {
		o.Time = t
	}
	for _, rule := range d.rules {
		if rule.Match == nil {
			continue
		}
		if m, ok := rule.Match(e); ok {
			o.Findings = append(o.Findings, Finding{Rule: rule, Event: e, Match: m, Time: o.Time, Key: rule.ID + "/" + EventKey(e)})
		}
	}
	return o
}

// Findings are all the findings of observed events, in order.
func Findings(obs []Observed) []Finding {
	var out []Finding
	for _, o := range obs {
		out = append(out, o.Findings...)
	}
	return out
}

// MaxEventKey bounds EventKey. Alert keys (store keys, Elasticsearch
// _ids, which may not pass 512 bytes) are built from it and from other
// bounded values (cloudtrail's Max* constants).
const MaxEventKey = 256

// EventKey identifies an event across re-deliveries: its eventID, or, for
// the rare event without one, a digest of its content. It is at most
// MaxEventKey bytes.
func EventKey(e *cloudtrail.Event) string {
	if x := e.Exposure; x != nil && x.Notice != "" {
		// AWS Health sends a backup copy of a notice to a second Region:
		// one notice, one alert. A notice id may be 1600 bytes long: a
		// long one is named by its digest.
		const prefix = "health:"
		notice := x.Notice
		if len(prefix)+len(e.Account)+1+len(notice) > MaxEventKey {
			notice = cloudtrail.Digest([]byte(notice))
		}
		return prefix + e.Account + ":" + notice
	}
	if e.ID != "" {
		return e.ID
	}
	// The digest of the event as sorted JSON, every part of it decoded:
	// the same whichever way the event was read (a part left undecoded
	// would keep its keys in their order).
	return cloudtrail.Digest(value.ToJSON(value.Decoded(e.Raw)))
}

// Package detect finds quarantine events in a Fluent Bit chunk and reports
// them as findings. It is pure Go with no I/O: the chunk is walked in place,
// records that cannot hold a quarantine event are ruled out from their raw
// bytes, and only the rare candidates are decoded, resolved into CloudTrail
// events and run through the rules.
package detect

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
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
}

// New returns a Detector running every rule.
func New(o Options) *Detector {
	return &Detector{
		resolver: cloudtrail.Resolver{EventKeys: o.EventKeys},
		rules:    rules.All(),
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
}

// Scan appends the findings in data to dst.
func (d *Detector) Scan(data []byte, dst []Finding) ([]Finding, Stats) {
	var st Stats
	var r chunk.Reader
	r.Reset(data)
	hit := nextHit(data, 0)
	for r.Next() {
		rec := r.Record()
		st.Records++
		if hit >= 0 && hit < rec.Offset {
			// The needle was in a record the reader skipped as malformed.
			hit = nextHit(data, rec.Offset)
		}
		end := rec.Offset + len(rec.Raw)
		if hit < 0 || hit >= end {
			continue
		}
		hit = nextHit(data, end)
		st.Candidates++
		before := len(dst)
		var ok bool
		if dst, ok = d.scanRecord(rec, dst, &st); !ok {
			st.Undecodable++
		}
		st.Findings += len(dst) - before
	}
	st.Skipped = r.Skipped()
	return dst, st
}

func (d *Detector) scanRecord(rec *chunk.Record, dst []Finding, st *Stats) ([]Finding, bool) {
	n, skipped, err := d.resolver.ResolveMsgpack(rec.Body, func(e *cloudtrail.Event) {
		for _, rule := range d.rules {
			if m, ok := rule.Match(e); ok {
				dst = append(dst, d.finding(rule, e, m, rec.Time))
			}
		}
	})
	st.Events += n
	st.SkippedEvents += skipped
	return dst, err == nil
}

// nextHit is the first position at or after from where any needle starts,
// or -1.
func nextHit(data []byte, from int) int {
	best := -1
	for _, n := range rules.Needles {
		limit := len(data)
		if best >= 0 {
			// Only a nearer match matters: search no further than best.
			limit = min(best+len(n), len(data))
		}
		if i := index(data[from:limit], n); i >= 0 {
			best = from + i
		}
	}
	return best
}

// index finds n in data by skipping with IndexByte from one occurrence of
// n's first byte to the next. Needles start with a byte that is rare in
// CloudTrail, so this runs at memchr speed; bytes.Index would give up on
// that after a few false starts in some texts (JSON strings full of 'x'
// in user agents) and fall back to a slower search.
func index(data, n []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(data[i:], n[0])
		if j < 0 {
			return -1
		}
		i += j
		if bytes.HasPrefix(data[i:], n) {
			return i
		}
		i++
	}
}

// finding records that rule fired on e.
func (d *Detector) finding(rule *rules.Rule, e *cloudtrail.Event, m rules.Finding, recordTime time.Time) Finding {
	f := Finding{Rule: rule, Event: e, Match: m, Time: recordTime, Key: rule.ID + "/" + eventKey(e)}
	if t, err := time.Parse(time.RFC3339Nano, e.Time); err == nil {
		f.Time = t
	}
	return f
}

// eventKey identifies an event across re-deliveries: its eventID, or, for
// the rare event without one, a digest of its content.
func eventKey(e *cloudtrail.Event) string {
	if e.ID != "" {
		return e.ID
	}
	var b []byte
	if raw, ok := e.Raw.(value.Raw); ok {
		b = raw
	} else {
		b = value.ToJSON(e.Raw)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:16])
}

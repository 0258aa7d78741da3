// Package detect finds quarantine events in a Fluent Bit chunk and turns
// them into alerts. It is pure Go with no I/O: the chunk is walked in place,
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
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/value"
)

// Options configure a Detector.
type Options struct {
	// EventKeys name the record keys that may hold an event as a JSON string.
	EventKeys []string
	// IncludeEvent copies the original event into each alert.
	IncludeEvent bool
}

// Detector is safe for concurrent use: it holds no per-chunk state.
type Detector struct {
	resolver cloudtrail.Resolver
	rules    []*rules.Rule
	refs     map[*rules.Rule]*RuleRef
	include  bool
}

// New returns a Detector running every rule.
func New(o Options) *Detector {
	d := &Detector{
		resolver: cloudtrail.Resolver{EventKeys: o.EventKeys},
		rules:    rules.All(),
		refs:     map[*rules.Rule]*RuleRef{},
		include:  o.IncludeEvent,
	}
	for _, r := range d.rules {
		d.refs[r] = newRuleRef(r)
	}
	return d
}

// Stats describe one Scan.
type Stats struct {
	Records    int // well-formed records
	Candidates int // records holding a quarantine policy name, hence decoded
	Events     int // CloudTrail events found in candidate records
	Alerts     int
	Skipped    chunk.Skipped
	// Undecodable counts candidate records whose body could not be decoded
	// (too deep, say); they are skipped like malformed records.
	Undecodable int
}

// Scan appends the alerts found in data to dst. An alert's Event may alias
// data: encode alerts before the chunk is released.
func (d *Detector) Scan(data []byte, dst []Alert) ([]Alert, Stats) {
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
		st.Alerts += len(dst) - before
	}
	st.Skipped = r.Skipped()
	return dst, st
}

func (d *Detector) scanRecord(rec *chunk.Record, dst []Alert, st *Stats) ([]Alert, bool) {
	n, err := d.resolver.ResolveMsgpack(rec.Body, func(e *cloudtrail.Event) {
		for _, rule := range d.rules {
			if f, ok := rule.Match(e); ok {
				dst = append(dst, d.alert(rule, e, f, rec.Time))
			}
		}
	})
	st.Events += n
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

func (d *Detector) alert(rule *rules.Rule, e *cloudtrail.Event, f rules.Finding, recordTime time.Time) Alert {
	a := Alert{
		Rule:        d.refs[rule],
		Title:       rule.Title(e, f),
		EventID:     e.ID,
		EventTime:   e.Time,
		AccountID:   e.Account,
		Region:      e.Region,
		EventName:   e.Name,
		EventSource: e.Source,
		SourceIP:    e.SourceIP,
		UserAgent:   e.UserAgent,
		Actor: Actor{
			Type:        e.Actor.Type,
			ARN:         e.Actor.ARN,
			UserName:    e.Actor.UserName,
			AccessKeyID: e.Actor.AccessKeyID,
		},
		Target:       f.Target,
		Policy:       f.Policy,
		ErrorCode:    e.ErrorCode,
		ErrorMessage: e.ErrorMessage,
		Shape:        string(e.Shape),
		Time:         recordTime,
	}
	if t, err := time.Parse(time.RFC3339Nano, e.Time); err == nil {
		a.Time = t
	}
	if d.include {
		a.Event = e.Raw
	}
	a.Key = rule.ID + "/" + eventKey(e)
	return a
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
		b, _ = value.ToJSON(e.Raw)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:16])
}

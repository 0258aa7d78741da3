package detect

import (
	"strings"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// JSON text (CloudTrail log files, JSON lines, EventBridge and AWS Health
// events, as archives hold them) is read the way a chunk is: the prefilter
// runs over the raw bytes, and only the records holding a pattern are
// decoded. In JSON a pattern could also hide behind an escape
// (\u0051uarantine); a record with such an escape is a candidate too.

// HasCandidate reports whether JSON text might hold a candidate record:
// false means no record of it can be one, so a file that holds no pattern
// costs one pass of the prefilter and nothing else. Patterns are short
// (under 64 bytes), so a text read in pieces is covered when each piece
// is checked with the last 64 bytes of the one before.
func HasCandidate(data []byte, w Watch) bool {
	var f Filter
	return f.Reset(data, w)
}

// RecordCandidate reports whether rec, one record, is a candidate with
// w, as ObserveJSON decides.
func RecordCandidate(rec []byte, w Watch) bool {
	var p prefilter
	p.reset(rec, w, 0, true)
	return p.candidate(0, len(rec))
}

// Filter is the prefilter run once over a text held whole: Reset says
// whether the text can hold a candidate at all (as HasCandidate), and
// Candidate then which of its records, framed after, are, in order. A
// record costs a comparison, a hit a search. Unlike ObserveJSON, which
// looks at a record alone, it looks for a user's ARN near "IAMUser"
// across the records' edges, as ScanEach does across a chunk's.
type Filter struct{ p prefilter }

// Reset runs the prefilter over data with w, as the list is now.
func (f *Filter) Reset(data []byte, w Watch) bool {
	f.p.reset(data, w, 0, true)
	for i := range f.p.n {
		if f.p.passes[i].next >= 0 {
			return true
		}
	}
	return false
}

// Candidate reports whether data[start:end], the next record, is a
// candidate; records are asked about in the order of the text.
func (f *Filter) Candidate(start, end int) bool { return f.p.candidate(start, end) }

// Overlap is how many bytes of the previous piece HasCandidate needs in
// front of the next one.
const Overlap = 64

var eventVersion = []byte(`"eventVersion"`)

// CountEvents counts the CloudTrail events in JSON text without decoding
// it, by the "eventVersion" key every CloudTrail event has (a Records
// element, a line, an EventBridge detail alike); it hops over 'V', which
// is rare in CloudTrail. A text read in pieces is counted exactly when
// each piece is counted with the last len(`"eventVersion"`)-1 bytes of
// the one before in front of it.
func CountEvents(data []byte) int {
	n := 0
	for i := nextEventVersion(data, 0); i >= 0; i = nextEventVersion(data, i+1) {
		n++
	}
	return n
}

// EventStarts appends to dst where each "eventVersion" key of data
// starting at or after from starts, the events CountEvents counts: a log
// file's records are framed from them (an event as AWS writes it starts
// with that key). A text read piece by piece is looked at as it grows,
// each time from where a key could start that did not fit before
// (NextFrom).
func EventStarts(data []byte, from int, dst []int) []int {
	for i := nextEventVersion(data, from); i >= 0; i = nextEventVersion(data, i+1) {
		dst = append(dst, i)
	}
	return dst
}

// nextEventVersion is where the first "eventVersion" at or after from
// starts, or -1; the V is rare in CloudTrail.
func nextEventVersion(data []byte, from int) int {
	return IndexHop(data, from, eventVersion, len(`"event`))
}

// NextFrom is where EventStarts looks from once data has grown past n
// bytes: a key starting before it fitted whole in those n bytes.
func NextFrom(n int) int { return max(0, n-CountOverlap) }

// CountOverlap is the bytes of the previous piece CountEvents needs.
const CountOverlap = len(`"eventVersion"`) - 1

// JSONStats describe what ObserveJSON and ScanJSON read.
type JSONStats struct {
	Records     int // records framed (log file events, lines, values)
	Candidates  int // records the prefilter let through, hence decoded
	Events      int // events found in the candidates
	Undecodable int // candidates that are not valid JSON (or too deep)
	Oversized   int // values of events past their bound (Stats.Oversized)
}

// Add accumulates o into s.
func (s *JSONStats) Add(o JSONStats) {
	s.Records += o.Records
	s.Candidates += o.Candidates
	s.Events += o.Events
	s.Undecodable += o.Undecodable
	s.Oversized += o.Oversized
}

// ObserveJSON decodes rec, one record a Splitter found, when the
// prefilter makes it a candidate, and appends its events; element says
// it is an event of a log file's Records. recordTime stands in for a
// missing eventTime.
func (d *Detector) ObserveJSON(rec []byte, element bool, w Watch, recordTime time.Time, dst []Observed, st *JSONStats) []Observed {
	st.Records++
	if !RecordCandidate(rec, w) {
		return dst
	}
	return d.DecodeJSON(rec, element, recordTime, dst, st)
}

// DecodeJSON decodes rec, a record the prefilter already let through (a
// Filter's candidate), and appends its events, as ObserveJSON does.
func (d *Detector) DecodeJSON(rec []byte, element bool, recordTime time.Time, dst []Observed, st *JSONStats) []Observed {
	st.Candidates++
	// As msgpack, the plugin's own view reads the event in place, without
	// a map of it; the event keeps the msgpack (value.Raw).
	var tc value.Transcoder
	body, err := tc.Append(make([]byte, 0, len(rec)), rec)
	if err != nil || msgp.NextType(body) != msgp.MapType {
		st.Undecodable++
		return dst
	}
	emit := func(e *cloudtrail.Event) {
		st.Events++
		st.Oversized += e.Oversized
		dst = append(dst, d.Observe(e, recordTime))
	}
	if element {
		_, err = d.resolver.ResolveRecordMsgpack(body, emit)
	} else {
		_, _, err = d.resolver.ResolveMsgpack(body, emit)
	}
	if err != nil {
		st.Undecodable++
	}
	return dst
}

// ObserveBody appends the events of a record body decoded by other
// means (a Parquet row rebuilt, say).
func (d *Detector) ObserveBody(body map[string]any, recordTime time.Time, dst []Observed) []Observed {
	d.resolver.Resolve(body, func(e *cloudtrail.Event) { dst = append(dst, d.Observe(e, recordTime)) })
	return dst
}

// ScanJSON reads JSON text held whole in memory: what HasCandidate rules
// out costs nothing more; otherwise it is split into records and each
// goes through ObserveJSON. The error says why the text ended badly
// (cut short, or not JSON); the events read before that are returned.
func (d *Detector) ScanJSON(data []byte, w Watch, recordTime time.Time, dst []Observed) ([]Observed, JSONStats, error) {
	var st JSONStats
	if !HasCandidate(data, w) {
		return dst, st, nil
	}
	var s Splitter
	for {
		sp, ok, err := s.Next(data, true)
		if err != nil {
			return dst, st, err
		}
		if !ok {
			return dst, st, nil
		}
		dst = d.ObserveJSON(data[sp.Start:sp.End], sp.Element, w, recordTime, dst, &st)
	}
}

// StaticWatch is a watch list fixed before a scan reads: the keys any
// lifecycle case could hold, and, with Users, every IAM user's call (the
// engine decides which users it watches). It asks more of the prefilter
// than the engine's own list ever does, so a scan that reads an archive
// again with it misses no event the engine would act on, whatever the
// order the engine learns things in. Relevant then drops, once decoded,
// the events the engine could not act on, so what a scan holds is the
// watched keys' and users' events, not every IAM user's.
type StaticWatch struct {
	Keys  map[string]bool
	Users bool
	// odd: a key of another length than 20 was learnt, which the
	// prefilter's 20 bytes after AKIA can never equal: then every AKIA is.
	odd   bool
	users map[string]bool // account + "\x00" + user name
}

func (w *StaticWatch) Empty() bool        { return len(w.Keys) == 0 && !w.Users }
func (w *StaticWatch) Key(id []byte) bool { return w.odd || w.Keys[string(id)] }
func (w *StaticWatch) KeylessUsers() bool { return w.Users }

// KeylessNames cannot say: every user's call is watched.
func (w *StaticWatch) KeylessNames() ([][]byte, bool) { return nil, false }

// Version is always 0: the list is fixed before a read (Learn comes
// between reads), so no scan has to look at it again.
func (w *StaticWatch) Version() uint64 { return 0 }

// User is every user: the prefilter's look at the ARN near a user's call
// is a guess a static list need not make.
func (w *StaticWatch) User(account, name []byte) bool { return true }

// Learn adds what an event names that a lifecycle case can be opened
// with: the caller's key and the keys of a Health notice, and, from a
// finding, the users a case could watch while their key is not known.
func (w *StaticWatch) Learn(o Observed) {
	if w.Keys == nil {
		w.Keys, w.users = map[string]bool{}, map[string]bool{}
	}
	e := o.Event
	// The engine watches any caller's key that starts so.
	if k := e.Actor.AccessKeyID; strings.HasPrefix(k, "AKIA") {
		w.Keys[k] = true
		w.odd = w.odd || len(k) != 20
	}
	if x := e.Exposure; x != nil {
		for _, k := range x.Keys {
			w.Keys[k] = true
		}
		w.AddUser(e.Account, x.User)
	}
	for _, f := range o.Findings {
		w.AddUser(e.Account, f.Match.Target.Name)
		w.AddUser(actorAccount(e), e.Actor.UserName)
	}
}

// AddUser adds a user a case may watch without a key.
func (w *StaticWatch) AddUser(account, user string) {
	if w.users == nil {
		w.users = map[string]bool{}
	}
	if user != "" {
		w.users[account+"\x00"+user] = true
	}
}

// Relevant reports whether a lifecycle engine watching no more than w
// could act on the event: it has findings, it is a call with a key or by
// a user w holds, or a call that retires keys.
func (w *StaticWatch) Relevant(o Observed) bool {
	e := o.Event
	switch {
	case len(o.Findings) > 0:
		return true
	case w.Keys[e.Actor.AccessKeyID] || w.odd && strings.HasPrefix(e.Actor.AccessKeyID, "AKIA"):
		return true
	case e.Actor.Type == "IAMUser" && w.users[actorAccount(e)+"\x00"+e.Actor.UserName]:
		return true
	}
	switch e.Name {
	case "DeleteAccessKey", "UpdateAccessKey", "DeleteUser":
		return true
	}
	return false
}

func actorAccount(e *cloudtrail.Event) string {
	if e.Actor.AccountID != "" {
		return e.Actor.AccountID
	}
	return e.Account
}

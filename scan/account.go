package scan

import (
	"cmp"
	"container/heap"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
)

// Each account has a lifecycle engine of its own (every rule is
// independent per account, and a shard holds whole accounts), fed one
// stream in event time: the account's log files of every region, read in
// the order of their stamps (CloudTrail stamps a file when it delivers
// it, minutes after its events), their events given in time order once
// every file stamped up to an event's time plus --delay is read. An event
// delivered later than that comes late: the engine still takes it (its
// windows and timers are in its own time) and the summary counts it.
// Before each event, time moves to the event's, so an exposure whose wait
// ended in a silence fires before what came after it, as it does in the
// plugin while the stream is silent. At the end, time moves to the end of
// the account's archive (the latest file stamp, or --until): an exposure
// still waiting then stays pending, and --state hands its timer to the
// plugin.
//
// The prefilter of a file read ahead ran with the watch list of that
// moment. When the engine puts something on the list, the text of every
// file the merge may still reach (read, and stamped less than
// clockSkew before the latest event given) is held: only the prefilter
// runs again over it, for the records not decoded yet, and the records
// kept aside from files outside the layout that name what is now watched
// are decoded (index.go). Their events at or after the latest one given
// join the stream; earlier ones were, in the stream's order, before the
// key was watched, as they would be for the plugin.

// account is one account's part of the scan.
type account struct {
	id   string
	jobs []*job // its layout files, in stamp order
	eng  *lifecycle.Engine
	// From files read whole before the merge (outside the layout,
	// Parquet, too large to hold), its events.
	plain []tagged
	end   time.Time // its latest file stamp
}

// tagged is an observation with where it was read. rec is the record's
// text when only a watch list made it a candidate: the list it was read
// with may not be the list at its place in the stream, so the prefilter
// looks at it again, with that list, before the engine does.
type tagged struct {
	detect.Observed
	place source.Place
	rec   []byte
	pos   uint64 // its file and place in it: a total order
}

// clockSkew: an event may carry a time a little after its file's stamp.
const clockSkew = 15 * time.Minute

// fileEnd is the latest time a file's place says its events have: its
// stamp, or the end of its directory's day.
func fileEnd(p source.Place) time.Time { return p.Time.Add(p.Span) }

type outcome struct {
	opened   bool // the engine opened a case at some point
	watched  int  // cases at the end
	findings []detect.Finding
	cases    []*lifecycle.Case
	wm       int64
	late     int64
	veryLate int64
	maxLate  time.Duration
	reread   int // held files the prefilter ran over again
	records  int // records it decoded
	added    int // events found by running it again or in kept records
}

// pending is a min-heap of events by time. Events of the same time (a
// second, as CloudTrail writes it) come in eventID order, then in the
// order of their files' names and their places in them, whatever worker
// gave them first: a scan gives the same alerts every time.
type pending []tagged

func (h pending) Len() int { return len(h) }
func (h pending) Less(i, j int) bool {
	return cmp.Or(h[i].Time.Compare(h[j].Time), strings.Compare(h[i].Event.ID, h[j].Event.ID), cmp.Compare(h[i].pos, h[j].pos)) < 0
}
func (h pending) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pending) Push(x any)   { *h = append(*h, x.(tagged)) }
func (h *pending) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// merger runs one account.
type merger struct {
	ctx    context.Context
	s      *scanner
	a      *account
	eng    *lifecycle.Engine
	w      *lifecycle.Watch
	ver    uint64
	heap   pending
	held   []*decoded
	latest time.Time
	fs     []detect.Finding
	done   map[int32]bool // kept records decoded
	out    outcome
	delay  time.Duration
	log    []growth // how the watch list grew, oldest first
	kind   [2]bool  // the list's Empty and KeylessUsers, as last seen
}

func (s *scanner) runAccount(ctx context.Context, a *account) outcome {
	m := &merger{ctx: ctx, s: s, a: a, eng: a.eng, w: a.eng.Watch(), done: map[int32]bool{}, delay: s.o.Lifecycle.Delay}
	m.ver = m.w.Version()
	m.kind = [2]bool{m.w.Empty(), m.w.KeylessUsers()}
	defer func() {
		for _, d := range m.held {
			s.sched.freed(s.rd.release(d))
		}
	}()
	for _, t := range a.plain {
		m.push(t)
	}
	for _, j := range a.jobs {
		d := s.sched.need(ctx, j)
		if d == nil {
			break
		}
		m.load(d)
		s.sched.given(j)
		// Every file stamped up to here is read: what came before this
		// stamp less --delay is in order.
		mark := fileEnd(j.obj.Place).Add(-m.delay)
		m.give(mark)
		m.release(mark)
	}
	m.give(time.Time{})
	end := m.s.end(a)
	if end.Before(m.latest) {
		end = m.latest
	}
	m.fire(end)
	m.out.findings, m.out.watched = m.fs, m.eng.Len()
	if s.o.Lifecycle.Persist {
		m.out.cases, _, m.out.wm = m.eng.Changes()
		slices.SortFunc(m.out.cases, func(a, b *lifecycle.Case) int { return cmp.Compare(a.ID(), b.ID()) })
	}
	return m.out
}

func (m *merger) push(t tagged) { heap.Push(&m.heap, t) }

// load takes a file the merge reached: its prefilter runs again if the
// watch list grew since it was read, its events wait in the heap, its
// text is held.
func (m *merger) load(d *decoded) {
	if d.text != nil && d.ver != m.w.Version() {
		m.out.added += m.again(d)
	}
	for i, o := range d.obs {
		if t, ok := m.s.take(d.obj.Place, o); ok && t == m.a.id {
			m.push(tagged{o, d.obj.Place, d.raw[i], d.pos[i]})
		}
	}
	d.obs, d.raw, d.pos = nil, nil, nil
	if d.text != nil {
		m.held = append(m.held, d)
	}
}

// give feeds the engine the events up to mark (zero: all).
func (m *merger) give(mark time.Time) {
	for len(m.heap) > 0 && (mark.IsZero() || !m.heap[0].Time.After(mark)) {
		m.observe(heap.Pop(&m.heap).(tagged))
	}
}

func (m *merger) observe(o tagged) {
	if o.rec != nil && !detect.RecordCandidate(o.rec, m.w) {
		// Read ahead with a watch list that held more than it holds at
		// this event's place in the stream: not a candidate here.
		return
	}
	if behind := m.latest.Sub(o.Time); behind > 0 {
		// Late: the engine still takes it (its windows and timers are
		// in the event's own time), and Event_Delay is how late an
		// event may be without changing an exposure's verdict.
		m.out.late++
		m.out.maxLate = max(m.out.maxLate, behind)
		if behind > m.delay {
			m.out.veryLate++
		}
	} else {
		m.latest = o.Time
	}
	// The scan's clock is event time: passing it as the wall clock moves
	// the engine's time on to this event before it is seen.
	m.fire(o.Time)
	m.fs = append(m.fs, m.eng.Observe(o.Observed, o.Time)...)
	m.out.opened = m.out.opened || m.eng.Len() > 0
	if v := m.w.Version(); v != m.ver {
		m.ver = v
		g := growth{ver: v}
		kind := [2]bool{m.w.Empty(), m.w.KeylessUsers()}
		g.names, g.full = namesOf(o.Observed)
		g.full = !g.full
		g.nonEmpty = m.kind[0] && !kind[0]
		g.keyless = !m.kind[1] && kind[1]
		m.kind = kind
		m.log = append(m.log, g)
		m.grew()
	}
}

// again runs the prefilter over a held file for what the list gained
// since the file was last looked at; it returns the events it added. A
// file read while the list was empty goes through the prefilter whole
// again: over it the sweeps for the names and for the new kinds'
// patterns cost as much, and what they find goes to the prefilter anyway
// (on 2 workers, files read ahead are most often of that sort).
func (m *merger) again(d *decoded) int {
	m.out.reread++
	c := d.st.Candidates
	defer func() { m.out.records += d.st.Candidates - c }()
	var names [][]byte
	var kind growth
	for _, g := range m.log {
		if g.ver <= d.ver {
			continue
		}
		if g.full || g.nonEmpty {
			n, _ := m.s.rd.refilter(d, m.w)
			return n
		}
		names = append(names, g.names...)
		kind.nonEmpty = kind.nonEmpty || g.nonEmpty
		kind.keyless = kind.keyless || g.keyless
	}
	return m.s.rd.refilterNames(d, m.w, names, kind)
}

func (m *merger) fire(at time.Time) {
	m.fs = append(m.fs, m.eng.Due(at)...)
}

// grew looks again, for what is now watched, at what the merge may still
// reach: the held files' text, the records kept aside.
func (m *merger) grew() {
	var found []tagged
	for _, d := range m.held {
		before := len(d.obs)
		if m.again(d) == 0 {
			continue
		}
		for i, o := range d.obs[before:] {
			found = append(found, tagged{o, d.obj.Place, d.raw[before+i], d.pos[before+i]})
		}
		d.obs, d.raw, d.pos = d.obs[:0], d.raw[:0], d.pos[:0]
	}
	if ids := m.s.idx.matches(m.a.id, m.w, m.done); len(ids) > 0 {
		obs, err := m.s.idx.decode(m.ctx, m.s.det, ids, m.w)
		if err != nil {
			m.s.fail("records kept aside", err)
		}
		found = append(found, obs...)
	}
	for _, t := range found {
		if a, ok := m.s.take(t.place, t.Observed); ok && a == m.a.id && !t.Time.Before(m.latest) {
			m.out.added++
			m.push(t)
		}
	}
}

// release lets go of the held files whose events all lie before mark.
func (m *merger) release(mark time.Time) {
	kept := m.held[:0]
	for _, d := range m.held {
		if fileEnd(d.obj.Place).Add(clockSkew).Before(mark) {
			m.s.sched.freed(m.s.rd.release(d))
			continue
		}
		kept = append(kept, d)
	}
	clear(m.held[len(kept):])
	m.held = kept
}

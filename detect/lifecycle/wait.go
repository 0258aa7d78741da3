package lifecycle

import (
	"cmp"
	"container/heap"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
)

// expose records an exposure signal of a case: it joins the wait of an
// exposure within Quarantine_Grace of it (one exposure, reported twice:
// a notice and its backup copy, a notice and the failed quarantine), or
// starts one. A wait is quoted by its earliest exposure until decided.
func (e *Engine) expose(c *Case, ref Ref, url string) {
	if url != "" {
		c.ExposedURL = cloudtrail.Cut(url, urlText)
	}
	defer e.mark(c)
	grace := e.o.Grace.Nanoseconds()
	for _, w := range c.Waits {
		if d := ref.At - w.At; d <= grace && d >= -grace {
			if !w.Done && (ref.At < w.At || ref.At == w.At && ref.ID < w.ID) {
				w.Ref = ref
				e.schedule(c, w) // sooner now; the old entry is void
			}
			return
		}
	}
	w := &Wait{Ref: ref}
	c.Waits = append(c.Waits, w)
	e.schedule(c, w)
	slices.SortFunc(c.Waits, func(a, b *Wait) int { return cmp.Compare(a.At, b.At) })
	for len(c.Waits) > MaxWaits {
		// The oldest decided wait goes first; an undecided one only when
		// a flood of far-apart exposures of one case fills the list.
		i := slices.IndexFunc(c.Waits, func(w *Wait) bool { return w.Done })
		c.Waits = slices.Delete(c.Waits, max(i, 0), max(i, 0)+1)
	}
}

// Due returns the findings of the waits that are over, in the engine's
// time at wall, and drops the cases past WatchTTL. A fired wait is taken
// as alerted; Unfire takes that back when what its finding was given to
// failed.
func (e *Engine) Due(wall time.Time) []detect.Finding { return e.decide(e.Now(wall)) }

// decide settles what is due at now: each wait Grace plus Delay after its
// exposure (in the order they end), with every fact then known: a
// quarantine of the user within Grace of the exposure, either side, or
// the key (or user) retired before the wait ended, closes it without an
// alert. Floods of denied calls are reported when their window is over,
// and cases past WatchTTL dropped.
func (e *Engine) decide(now int64) []detect.Finding {
	grace, delay := e.o.Grace.Nanoseconds(), e.o.Delay.Nanoseconds()
	var out []detect.Finding
	for len(e.dues) > 0 && e.dues[0].at <= now {
		d := heap.Pop(&e.dues).(due)
		if d.c.dropped || d.w.Done || d.at != d.w.At+grace+delay || !slices.Contains(d.c.Waits, d.w) {
			continue // void: decided, re-scheduled sooner, or gone
		}
		d.w.Done = true
		if !e.quarantinedNear(d.c, d.w.At) && !e.retiredBy(d.c, d.w.At+grace) {
			d.w.Fired = true
			out = append(out, e.waitFinding(d.c, d.w))
		}
		e.mark(d.c)
	}
	out = append(out, e.floodsOver(now)...)
	e.expire(now)
	return out
}

// userFacts is the case that holds a case's user facts (quarantines,
// deletion) as a wait ending at end may use them: its own for a user
// case; for a key, its user's when an event up to end named the user
// (what came after may not have arrived when the wait is decided).
func (e *Engine) userFacts(c *Case, end int64) *Case {
	if c.Key == "" {
		return c
	}
	if c.UserAt == 0 || c.UserAt > end {
		return nil
	}
	return e.userOf(c)
}

// quarantinedNear: a quarantine of the case's user applied within Grace of
// at, before or after.
func (e *Engine) quarantinedNear(c *Case, at int64) bool {
	u := e.userFacts(c, at+e.o.Grace.Nanoseconds())
	if u == nil {
		return false
	}
	grace := e.o.Grace.Nanoseconds()
	return slices.ContainsFunc(u.Quarantines, func(q int64) bool { return q >= at-grace && q <= at+grace })
}

// retiredBy: nothing is left to quarantine at end: the user was deleted,
// or its exposed keys (the key, for a key's case) were retired.
func (e *Engine) retiredBy(c *Case, end int64) bool {
	u := e.userFacts(c, end)
	if u != nil && !u.activeAt(0, end) {
		return true
	}
	if c.Key != "" {
		return !c.activeAt(e.keyStart(c), end)
	}
	if len(c.ExposedKeys) == 0 {
		return false
	}
	named := false
	for _, k := range c.ExposedKeys {
		kc := e.keys[k]
		if kc == nil || kc.FirstSeen > end {
			continue // named after the wait ended: not a fact of it
		}
		if kc.activeAt(e.keyStart(kc), end) {
			return false
		}
		named = true
	}
	return named
}

func (e *Engine) waitFinding(c *Case, w *Wait) detect.Finding {
	grace := e.o.Grace.Nanoseconds()
	k := e.context(c)
	k.Waited = e.o.Grace
	ev := &cloudtrail.Event{Name: w.Name, ID: w.ID, Time: t(w.At).Format(time.RFC3339Nano), Account: c.Account, Region: w.Region,
		Actor: cloudtrail.Actor{UserName: k.User, AccessKeyID: k.ID, AccountID: c.Account}, Shape: Kept}
	return detect.Finding{Rule: e.notQuarantined, Event: ev, Time: t(w.At + grace), Key: e.notQuarantined.ID + "/" + c.ID() + "/" + w.ID,
		Match: rules.Finding{Target: rules.Target{Type: "user", Name: k.User}, Key: k}}
}

// Unfire takes back the waits (and floods) of findings that could not be
// delivered or kept: they are due again at the next call.
func (e *Engine) Unfire(fs []detect.Finding) {
	for _, f := range fs {
		switch f.Rule {
		case e.notQuarantined:
			caseID, waitID, _ := strings.Cut(strings.TrimPrefix(f.Key, f.Rule.ID+"/"), "/")
			c := e.byID(caseID)
			if c == nil {
				continue
			}
			for _, w := range c.Waits {
				if w.ID == waitID && w.Fired {
					w.Fired, w.Done = false, false
					e.schedule(c, w)
					e.mark(c)
				}
			}
		case e.denied:
			if fl := e.floods[strings.TrimPrefix(f.Key, f.Rule.ID+"/")]; fl != nil && f.Match.Flood {
				fl.done = false
			}
		}
	}
}

// floodAll bounds the new keys of all accounts watched from denied calls
// per window.
const floodAll = 10 * FloodKeys

// flood counts, per account and window, the denied calls of keys never
// seen before: past FloodKeys such keys, their calls are folded into one
// alert at the window's end, and their keys are not watched.
type flood struct {
	account string
	start   int64
	keys    int   // new keys watched this window
	calls   int64 // denied calls folded
	first   Ref   // the first call folded, quoted
	policy  rules.Policy
	done    bool
}

func floodID(account string, start int64) string {
	return fmt.Sprintf("flood:%s/%d", account, start)
}

// flooded counts a denied call of a new key and says whether it is folded:
// past FloodKeys new keys of its account in the window, or past
// floodAll of all accounts (forged records can name any account), into
// the account's flood, or then the window's flood of every account.
func (e *Engine) flooded(f detect.Finding, account string, at int64) bool {
	start := e.windowStart(at)
	fl := e.floods[floodID(account, start)]
	if fl == nil && e.floodNew[start] >= floodAll {
		account = "*"
		fl = e.floods[floodID(account, start)]
	}
	if fl == nil {
		fl = &flood{account: account, start: start}
		id := floodID(account, start)
		e.floods[id] = fl
		e.floodOrder = append(e.floodOrder, id)
	}
	if account != "*" && fl.keys < FloodKeys && e.floodNew[start] < floodAll {
		fl.keys++
		e.floodNew[start]++
		return false
	}
	if fl.calls == 0 {
		fl.first, fl.policy = refOf(f.Event, at), f.Match.Policy // the event's chunk is gone by the window's end
	}
	fl.calls++
	e.Stats.Flooded++
	return true
}

// floodsOver reports the floods whose window ended Event_Delay ago, and
// forgets them a window later (kept that long for Unfire).
func (e *Engine) floodsOver(now int64) []detect.Finding {
	w, delay := max(e.o.UseWindow.Nanoseconds(), 1), e.o.Delay.Nanoseconds()
	var out []detect.Finding
	for i := 0; i < len(e.floodOrder); i++ {
		id := e.floodOrder[i]
		fl := e.floods[id]
		end := fl.start + w + delay
		if now < end {
			break // the rest are no older (a late window waits behind a newer one)
		}
		if fl.calls > 0 && !fl.done {
			fl.done = true
			ev := fl.first.event(fl.account)
			out = append(out, detect.Finding{Rule: e.denied, Event: ev, Time: t(end - delay), Key: e.denied.ID + "/" + id,
				Match: rules.Finding{Policy: fl.policy, Target: rules.Target{Type: "user", Name: ev.Actor.UserName}, Flood: true,
					Use: &rules.Use{Calls: fl.calls, Total: fl.calls, WindowStart: t(fl.start)}, Key: &rules.Key{Account: fl.account}}})
		}
		if now >= end+w && fl.done == (fl.calls > 0) {
			delete(e.floods, id)
			delete(e.floodNew, fl.start)
			e.floodOrder = slices.Delete(e.floodOrder, i, i+1)
			i--
		}
	}
	return out
}

// due is a wait scheduled to be decided at at (its end plus Event_Delay).
// Entries are never removed: one made void (the wait decided, its
// exposure found earlier, its case dropped) is passed over when it comes
// up, so deciding costs nothing while nothing is due.
type due struct {
	at int64
	c  *Case
	w  *Wait
}

type dueHeap []due

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.at != b.at {
		return a.at < b.at
	}
	return cmp.Or(strings.Compare(a.c.ID(), b.c.ID()), strings.Compare(a.w.ID, b.w.ID)) < 0
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(due)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (e *Engine) schedule(c *Case, w *Wait) {
	if !w.Done {
		heap.Push(&e.dues, due{at: w.At + e.o.Grace.Nanoseconds() + e.o.Delay.Nanoseconds(), c: c, w: w})
	}
}

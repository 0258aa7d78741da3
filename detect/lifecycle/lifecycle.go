// Package lifecycle follows an exposed access key through its life as the
// events stream by: the exposure (an AWS Health notice, or a quarantine
// AWS failed to apply), the quarantine, every later use of the key, an
// exposure no quarantine follows, the key's retirement and its
// re-activation. It is a pure state machine: Observe takes the events
// detect found and the wall clock, and returns the findings; Changes says
// what to persist.
//
// Every decision is made in event time, never in arrival order: a case
// keeps facts (the earliest signal, the set of quarantines, the status
// changes in time order), and each verdict is built from them when it is
// due. A wait for a quarantine is decided Event_Delay after it ends, when
// every event up to then has arrived; a call is a use when it is later
// than the earliest signal of its key, however late that signal arrives.
// What arrival order still decides is said where it is decided: a call
// that arrives before any signal of its key is not seen (nothing watched
// it), and an alert that stands for a window of calls quotes the first to
// arrive. The wall clock only moves time on while the stream is silent.
// An Engine is not safe for concurrent use: the caller serialises it; its
// Watch is, for the prefilter.
package lifecycle

import (
	"cmp"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
)

// Options bound and time the engine.
type Options struct {
	// WatchTTL is how long a case stays on the list after its key (or
	// user) was last seen; MaxKeys how many cases it holds, least recently
	// seen out first (weak cases, opened by denied calls alone, before
	// strong ones, and never more than WeakShare of MaxKeys).
	WatchTTL time.Duration
	MaxKeys  int
	// UseWindow groups the uses of a key: one alert per caller key,
	// service, action and outcome per window (windows start at multiples
	// of UseWindow since the epoch, so they are the same in any replay).
	UseWindow time.Duration
	// Grace is how far apart an exposure and a quarantine may be; Delay
	// how late an event may arrive, so a wait is decided only Delay after
	// Grace.
	Grace, Delay time.Duration
	// Persist keeps a record of the cases that change, for Changes.
	Persist bool
}

// Kept is the record shape of an event a finding quotes from what the
// engine kept of it (its chunk is long gone): a wait's exposure, a call
// judged again, a status change that alerted late. Such a finding does
// not come back when Fluent Bit retries a chunk.
const Kept cloudtrail.Shape = "lifecycle"

// WeakShare is the share of MaxKeys that cases opened by denied calls
// alone may take: a flood of forged denied calls cannot push a key
// watched since its Health notice off the list.
const WeakShare = 5 // one fifth

// futureSlack: an event time this far past the wall clock is a broken
// clock or a forged record, and must not move time (and fire every wait
// at once). Clocks of collectors and of AWS agree far closer than this.
const futureSlack = 5 * time.Minute

// FloodKeys is how many keys never seen before a quarantine may be seen
// denying per account and window, each alerting on its own; past it, the
// window's denied calls of further new keys are folded into one alert
// with their count, and their keys are not watched.
const FloodKeys = rules.FloodKeys

// Stats count what the engine did that no alert shows.
type Stats struct {
	Suppressed int64 // uses and denied calls folded into an earlier alert
	Evicted    int64 // cases pushed out by MaxKeys
	Expired    int64 // cases past WatchTTL
	Flooded    int64 // denied calls of new keys folded into a flood alert
}

// Engine is the watch list and its rules.
type Engine struct {
	o       Options
	keys    map[string]*Case   // key cases
	users   map[string]*Case   // user cases, by userKey
	byUser  map[string][]*Case // key cases by their user's userKey
	n       int
	nWeak   int
	intern  map[string]string
	dues    dueHeap            // undecided waits, by when they are decided
	keyless map[*Case]struct{} // user cases whose every call is watched
	callers map[string]*Case   // access keys watched users were seen calling with
	earlyOn map[string]*Case   // access keys a user case keeps early events of
	watch   *Watch
	lru     [2]list // strong, weak: least recently seen first

	watermark  int64     // the latest event time seen
	advancedAt time.Time // the wall clock when it was

	floods     map[string]*flood // by account and window
	floodOrder []string          // their ids, oldest first
	floodNew   map[int64]int     // new keys watched from denied calls, by window

	rejudging map[*Case]struct{} // cases whose early calls may now be uses
	late      []detect.Finding   // alerts an event's facts made due, sent after its own

	changed map[string]*Case
	deleted map[string]bool
	Stats   Stats

	used, notQuarantined, retired, reactivated, denied *rules.Rule
}

// New returns an empty engine.
func New(o Options) *Engine {
	return &Engine{
		o: o, keys: map[string]*Case{}, users: map[string]*Case{}, byUser: map[string][]*Case{}, intern: map[string]string{},
		keyless: map[*Case]struct{}{}, callers: map[string]*Case{}, earlyOn: map[string]*Case{}, watch: newWatch(), floods: map[string]*flood{}, floodNew: map[int64]int{},
		changed: map[string]*Case{}, deleted: map[string]bool{},
		used: rules.ByID(rules.QuarantinedKeyUsed), notQuarantined: rules.ByID(rules.ExposedNotQuarantined),
		retired: rules.ByID(rules.ExposedKeyRetired), reactivated: rules.ByID(rules.ExposedKeyReactivated),
		denied: rules.ByID(rules.QuarantineDeniedCall),
	}
}

// Watch is the watch list, for the prefilter.
func (e *Engine) Watch() *Watch { return e.watch }

// Len is the number of cases (keys and users), retired ones included.
func (e *Engine) Len() int { return e.n }

// Load puts back cases and the event-time watermark a store kept; wall is
// when, so a silence is counted from the restart.
func (e *Engine) Load(cases []*Case, watermark int64, wall time.Time) {
	slices.SortFunc(cases, func(a, b *Case) int {
		return cmp.Or(cmp.Compare(a.LastSeen, b.LastSeen), strings.Compare(a.ID(), b.ID()))
	})
	var migrated []*Case
	for _, c := range cases {
		if e.lookup(c.Key, c.Account, c.User) != nil {
			continue
		}
		e.insert(c)
		if c.v1 && c.Key != "" && c.User != "" {
			migrated = append(migrated, c)
		}
	}
	for _, c := range migrated {
		// An earlier version's case held its user's facts: they are the
		// user's.
		u := e.userCase(c.Account, c.User, c.FirstSeen, true)
		u.FirstSeen = lower(u.FirstSeen, c.FirstSeen)
		u.KeyKnownAt = lower(u.KeyKnownAt, c.FirstSeen)
		u.ExposedKeys = appendKey(u.ExposedKeys, c.Key)
		for _, q := range c.Quarantines {
			u.Quarantines = addTime(u.Quarantines, q, MaxQuarantines)
		}
		u.Waits, c.Waits, c.Quarantines = append(u.Waits, c.Waits...), nil, nil
		e.mark(c)
		e.mark(u)
	}
	e.watermark, e.advancedAt = watermark, wall
	for c := range e.all() {
		e.track(c)
		for _, w := range c.Waits {
			e.schedule(c, w)
		}
	}
}

func (e *Engine) all() func(func(*Case) bool) {
	return func(yield func(*Case) bool) {
		for _, l := range e.lru {
			for c := l.head; c != nil; c = c.next {
				if !yield(c) {
					return
				}
			}
		}
	}
}

// Now is the engine's time: the latest event time, moved on by the wall
// clock while no later event arrives. A zero wall (a replay) is event
// time alone.
func (e *Engine) Now(wall time.Time) int64 {
	if wall.IsZero() || e.advancedAt.IsZero() {
		return e.watermark
	}
	return e.watermark + max(0, wall.Sub(e.advancedAt).Nanoseconds())
}

// Advance moves event time to at, a record's time that no rule needs to
// see: ordinary CloudTrail moves the clock as the calls of watched keys
// do, so a replay decides what the live stream decided.
func (e *Engine) Advance(at, wall time.Time) {
	if !at.IsZero() {
		e.advance(at.UnixNano(), wall)
	}
}

func (e *Engine) advance(at int64, wall time.Time) {
	if !wall.IsZero() && at > wall.Add(futureSlack).UnixNano() {
		return
	}
	if at > e.watermark {
		e.watermark, e.advancedAt = at, wall
	}
}

// Observe takes one event detect found, with its findings, and returns the
// findings to alert on: the waits its time ended, those of the stateless
// rules (with what the engine knows of the key, and denied calls folded
// into their window), and the engine's own.
func (e *Engine) Observe(o detect.Observed, wall time.Time) []detect.Finding {
	ev := o.Event
	at := o.Time.UnixNano()
	e.advance(at, wall)
	// What was due before this event is decided before it is judged: a
	// retirement after a wait ended does not cancel the wait's alert.
	out := e.decide(e.Now(wall))
	signal := false // a notice or a quarantine call: no use of the key
	for _, f := range o.Findings {
		switch f.Rule.ID {
		case rules.CredentialsExposed:
			signal = true
			if c := e.notice(ev, at); c != nil {
				f.Match.Key = e.context(c)
			}
		case rules.QuarantineApplied, rules.QuarantineAttemptFailed:
			signal = true
			if f.Match.Target.Type == "user" && f.Match.Target.Name != "" {
				f.Match.Key = e.context(e.quarantine(ev, f.Match.Target.Name, f.Rule.ID == rules.QuarantineApplied, at))
			}
		case rules.QuarantineRemoved:
			signal = true
			if f.Match.Target.Type == "user" {
				if u := e.users[userKey(ev.Account, f.Match.Target.Name)]; u != nil {
					u.Removed = max(u.Removed, at)
					e.touch(u, at)
					f.Match.Key = e.context(u)
				}
			}
		case rules.QuarantineDeniedCall:
			signal = true
			var keep bool
			if f, keep = e.deniedCall(ev, f, at); !keep {
				continue
			}
		}
		out = append(out, f)
	}
	if !signal && !awsInternal(ev) {
		if f, ok := e.use(ev, o.Time, at); ok {
			out = append(out, f)
		}
	}
	if ev.ErrorCode == "" && (ev.Source == "" || ev.Source == "iam.amazonaws.com") {
		out = append(out, e.status(ev, at)...)
	}
	// What the event's facts changed for events seen before it.
	out = append(out, e.rejudge()...)
	out = append(out, e.late...)
	e.late = e.late[:0]
	return out
}

// notice watches what a Health notice names and starts its wait for a
// quarantine: the user's when it names the user, else each key's. It
// returns the case the alert describes.
func (e *Engine) notice(ev *cloudtrail.Event, at int64) *Case {
	x := ev.Exposure
	ref := refOf(ev, at)
	var keys []*Case
	for _, k := range x.Keys {
		if isAccessKey(k) {
			kc := e.keyCase(k, ev.Account, x.User, at, true)
			e.signal(kc, at)
			keys = append(keys, kc)
		}
	}
	if x.User == "" {
		for _, kc := range keys {
			e.expose(kc, ref, x.URL)
		}
		if len(keys) == 0 {
			return nil
		}
		return keys[0]
	}
	u := e.userCase(ev.Account, x.User, at, true)
	e.signal(u, at)
	for _, kc := range keys {
		e.knowKey(u, kc.Key, at)
	}
	e.expose(u, ref, x.URL)
	if len(keys) > 0 {
		return keys[0]
	}
	return u
}

// quarantine records a quarantine of user (applied, or attempted and
// failed: an exposure) and, in legacy events where AWS acts as the user
// with the exposed key, that key.
func (e *Engine) quarantine(ev *cloudtrail.Event, user string, applied bool, at int64) *Case {
	u := e.userCase(ev.Account, user, at, true)
	e.signal(u, at)
	var kc *Case
	if k := quarantinedKey(ev, user); k != "" {
		kc = e.keyCase(k, ev.Account, user, at, true)
		e.signal(kc, at)
		e.knowKey(u, k, at)
	}
	if applied {
		u.Quarantines = addTime(u.Quarantines, at, MaxQuarantines)
	} else {
		e.expose(u, refOf(ev, at), "")
	}
	if kc != nil {
		return kc
	}
	return u
}

// quarantinedKey is the exposed key a quarantine event shows: in legacy
// events AWS acts as the exposed user itself, with the exposed key.
func quarantinedKey(ev *cloudtrail.Event, user string) string {
	if ev.Actor.UserName == user && isAccessKey(ev.Actor.AccessKeyID) {
		return ev.Actor.AccessKeyID
	}
	return ""
}

// isAccessKey: a long-term access key id, the only kind AWS reports
// exposed (session keys start ASIA and die on their own).
func isAccessKey(k string) bool { return strings.HasPrefix(k, "AKIA") }

func actorAccount(ev *cloudtrail.Event) string {
	if ev.Actor.AccountID != "" {
		return ev.Actor.AccountID
	}
	return ev.Account
}

// awsInternal: AWS acting as the user (to apply the quarantine, say) is no
// use of the key.
func awsInternal(ev *cloudtrail.Event) bool {
	return ev.SourceIP == "AWS Internal" || ev.UserAgent == "AWS Internal" || strings.HasPrefix(strings.ToLower(ev.UserAgent), "aws-internal")
}

// signal records an exposure signal naming the case: calls after the
// earliest are uses.
func (e *Engine) signal(c *Case, at int64) {
	if c.FirstSeen == 0 || at < c.FirstSeen {
		c.FirstSeen = at
		e.track(c)
		e.mayRejudge(c)
		if c.Key == "" {
			e.relink(c)
			for _, k := range c.Callers {
				if kc := e.keys[k.Key]; kc != nil {
					e.learnFromCallers(kc)
				}
			}
		} else {
			e.learnFromCallers(c)
			if u := e.earlyOn[c.Key]; u != nil && !u.dropped {
				e.rejudgeEarly(u)
			}
		}
		if c.User != "" {
			e.redecideDeletion(c.Account, c.User)
			if u := e.userOf(c); u != nil && c.Key != "" {
				e.rejudgeEarly(u) // the user's calls with this key may be uses now
			}
		}
	}
	e.touch(c, at)
}

// relink: a status change of a user's key made while the user was
// watched with no key known names it as the user's exposed key, also
// when the change arrived before the signal that started that time.
func (e *Engine) relink(u *Case) {
	for _, kc := range e.byUser[u.userKey()] {
		for _, s := range kc.Status {
			if keylessAt(u, s.At) {
				e.signal(kc, s.At)
				e.knowKey(u, kc.Key, s.At)
				e.setUser(kc, u.User, s.At)
			}
		}
	}
}

// mayRejudge notes that the calls a case kept as early may now be uses:
// its signals (or its user's) start earlier than when they arrived.
func (e *Engine) mayRejudge(c *Case) {
	e.rejudgeEarly(c)
	if c.Key == "" {
		for _, k := range c.ExposedKeys {
			if kc := e.keys[k]; kc != nil {
				e.rejudgeEarly(kc)
			}
		}
		for _, kc := range e.byUser[c.userKey()] {
			e.rejudgeEarly(kc) // the user's calls may fall in its key-less time now
		}
	}
}

func (e *Engine) rejudgeEarly(c *Case) {
	if len(c.Early) == 0 && (c.Key == "" || len(c.Status) == 0) {
		return
	}
	if e.rejudging == nil {
		e.rejudging = map[*Case]struct{}{}
	}
	e.rejudging[c] = struct{}{}
}

// remember keeps a call (or, given status, a status change of one of the
// user's keys) that came no later than its key's (its user's) earliest
// signal so far, while an earlier signal may still arrive: up to
// Event_Delay behind the latest event time.
func (e *Engine) remember(c *Case, ev *cloudtrail.Event, at int64, status *Early) {
	horizon := e.watermark - e.o.Delay.Nanoseconds()
	if at <= horizon {
		return
	}
	x := Early{Ref: refOf(ev, at)}
	if status != nil {
		x.Status, x.Active, x.Key = true, status.Active, status.Key
	}
	e.forgetEarly(c)
	c.Early = slices.DeleteFunc(c.Early, func(y Early) bool { return y.At <= horizon || y.ID == x.ID })
	i, _ := slices.BinarySearchFunc(c.Early, x, func(a, b Early) int { return cmp.Compare(a.At, b.At) })
	c.Early = slices.Insert(c.Early, i, x)
	if len(c.Early) > MaxEarly {
		c.Early = c.Early[len(c.Early)-MaxEarly:] // the latest are the likeliest uses
	}
	e.indexEarly(c)
	e.mark(c)
}

// indexEarly: a user's case keeps early events of access keys, which a
// case of such a key, opened or found earlier later, judges again.
func (e *Engine) indexEarly(u *Case) {
	if u.Key != "" {
		return
	}
	for _, x := range u.Early {
		if k := earlyKey(x); isAccessKey(k) {
			e.earlyOn[k] = u
		}
	}
}

// forgetEarly takes a user's case's early events out of the index.
func (e *Engine) forgetEarly(u *Case) {
	for _, x := range u.Early {
		if k := earlyKey(x); e.earlyOn[k] == u {
			delete(e.earlyOn, k)
		}
	}
}

// earlyKey is the access key an early event is about.
func earlyKey(x Early) string { return cmp.Or(x.Key, x.ActorKey) }

// rejudge judges again the early calls of the cases whose signals moved
// earlier: those now later than their key's first signal are uses, in
// event-time order.
func (e *Engine) rejudge() []detect.Finding {
	if len(e.rejudging) == 0 {
		return nil
	}
	type early struct {
		Early
		c *Case
	}
	var events []early
	var statuses []*Case
	for c := range e.rejudging {
		for _, x := range c.Early {
			events = append(events, early{x, c})
		}
		if len(c.Early) > 0 {
			e.forgetEarly(c)
			c.Early = nil
			e.mark(c)
		}
		if c.Key != "" && len(c.Status) > 0 {
			statuses = append(statuses, c)
		}
	}
	clear(e.rejudging)
	slices.SortFunc(events, func(a, b early) int { return cmp.Or(cmp.Compare(a.At, b.At), strings.Compare(a.ID, b.ID)) })
	slices.SortFunc(statuses, func(a, b *Case) int { return strings.Compare(a.Key, b.Key) })
	var out []detect.Finding
	for _, c := range statuses {
		out = append(out, e.statusAlerts(c, nil, nil)...)
	}
	seen := map[string]bool{}
	for _, x := range events {
		if seen[x.ID] {
			continue // kept by the key's case and its user's
		}
		seen[x.ID] = true
		ev := x.event(x.c.Account)
		if !x.Status {
			if f, ok := e.use(ev, t(x.At), x.At); ok {
				out = append(out, f)
			}
			continue
		}
		status := "Inactive"
		if x.Active {
			status = "Active"
		}
		ev.Params = map[string]any{"userName": x.c.User, "accessKeyId": x.Key, "status": status}
		out = append(out, e.status(ev, x.At)...)
	}
	return out
}

// knowKey records that a signal at at named key as user u's exposed key:
// from then on the user's other keys' calls are not uses, and the key's
// calls are from the user's first signal on.
func (e *Engine) knowKey(u *Case, key string, at int64) {
	if !slices.Contains(u.ExposedKeys, key) {
		if kc := e.keys[key]; kc != nil {
			e.rejudgeEarly(kc)
		}
	}
	u.ExposedKeys = appendKey(u.ExposedKeys, key)
	if u.KeyKnownAt == 0 || at < u.KeyKnownAt {
		u.KeyKnownAt = at
	}
	e.track(u)
	e.mark(u)
}

func appendKey(ks []string, k string) []string {
	if slices.Contains(ks, k) || len(ks) >= MaxExposedKeys {
		return ks
	}
	return append(ks, k)
}

// keyStart is when a key's calls start to be uses: its earliest signal,
// or its user's when the key is the user's exposed key.
func (e *Engine) keyStart(kc *Case) int64 {
	start := kc.FirstSeen
	if u := e.userOf(kc); u != nil && slices.Contains(u.ExposedKeys, kc.Key) {
		start = lower(start, u.FirstSeen)
	}
	return start
}

// keylessAt: at falls in the time the user was watched while its
// exposed key was not known, when every call of the user is a use (a
// call in the same instant as the signal that named the key is too, in
// whichever order the two are read).
func keylessAt(u *Case, at int64) bool {
	return u.FirstSeen != 0 && at > u.FirstSeen && (u.KeyKnownAt == 0 || at <= u.KeyKnownAt)
}

func (e *Engine) userOf(kc *Case) *Case {
	if kc.User == "" {
		return nil
	}
	return e.users[kc.userKey()]
}

// use is the finding of a call made with a watched key (or by a user while
// its exposed key is not known), unless its window already alerted.
func (e *Engine) use(ev *cloudtrail.Event, when time.Time, at int64) (detect.Finding, bool) {
	key := ev.Actor.AccessKeyID
	var c *Case
	var early []*Case // cases whose earlier signal, arriving late, would make the call a use
	if kc := e.keys[key]; kc != nil && key != "" && !e.expiredAt(kc, at) {
		// A call before the key was watched teaches nothing yet: in time
		// order, nothing would have seen it.
		if at > e.keyStart(kc) {
			e.learnUser(kc, ev, at)
			c = kc
		} else {
			early = append(early, kc)
			if ev.Actor.AccessKeyID == kc.Key {
				e.setUser(kc, ev.Actor.UserName, 0) // whose key it is, if not yet as of when
			}
		}
	}
	if c == nil && ev.Actor.Type == "IAMUser" && ev.Actor.UserName != "" {
		if u := e.users[userKey(actorAccount(ev), ev.Actor.UserName)]; u != nil && !e.expiredAt(u, at) {
			e.noteCaller(u, key, at)
			if keylessAt(u, at) {
				c = u
			} else {
				early = append(early, u) // a signal of the caller's key may yet arrive
			}
		}
	}
	if c == nil {
		for _, ec := range early {
			e.remember(ec, ev, at, nil)
		}
		return detect.Finding{}, false
	}
	caller := callerOf(ev)
	u, start, ok := e.window(c, caller+"|"+group(ev), at, detect.EventKey(ev))
	if !ok {
		return detect.Finding{}, false
	}
	sev := "high"
	if ev.ErrorCode != "" && ev.Name != "GetCallerIdentity" {
		sev = "medium"
	}
	return detect.Finding{Rule: e.used, Event: ev, Time: when, Key: windowKey(e.used.ID, caller, group(ev), start),
		Match: rules.Finding{Target: rules.Target{Type: "user", Name: c.User}, Key: e.context(c), Severity: sev, Use: u}}, true
}

// noteCaller records that a watched user called with an access key: a
// case of that key (a notice naming only the key) learns its user from
// it, as of the earliest such call a collector would have seen in time
// order (once the key or the user was watched).
func (e *Engine) noteCaller(u *Case, key string, at int64) {
	if !isAccessKey(key) {
		return
	}
	i := slices.IndexFunc(u.Callers, func(k Caller) bool { return k.Key == key })
	if i < 0 {
		if len(u.Callers) >= MaxCallers {
			return
		}
		u.Callers = append(u.Callers, Caller{Key: key})
		i = len(u.Callers) - 1
		e.callers[key] = u
	}
	u.Callers[i].Times = addTime(u.Callers[i].Times, at, MaxCallTimes)
	e.mark(u)
	if kc := e.keys[key]; kc != nil {
		e.learnFromCallers(kc)
	}
}

// learnFromCallers gives a key the user a watched user's calls show it
// belongs to, as of the earliest of them after the key or the user was
// first watched.
func (e *Engine) learnFromCallers(kc *Case) {
	u := e.callers[kc.Key]
	if u == nil || u.dropped || u.Account != kc.Account {
		return
	}
	from := kc.FirstSeen
	if u.FirstSeen != 0 && (from == 0 || u.FirstSeen < from) {
		from = u.FirstSeen
	}
	for _, k := range u.Callers {
		if k.Key != kc.Key {
			continue
		}
		for _, at := range k.Times {
			if at > from {
				e.setUser(kc, u.User, at)
				return
			}
		}
	}
}

// callerOf names who made a call, for the identity of its window: its
// key, or its user when it came with none.
func callerOf(ev *cloudtrail.Event) string {
	if ev.Actor.AccessKeyID != "" {
		return ev.Actor.AccessKeyID
	}
	return "user:" + userKey(actorAccount(ev), ev.Actor.UserName)
}

// windowKey identifies a window's alert by what it is about (the caller,
// the group, the window), not by which of its calls arrived first.
func windowKey(rule, caller, group string, start int64) string {
	return strings.Join([]string{rule, caller, group, t(start).Format(time.RFC3339Nano)}, "/")
}

// learnUser: a call made with a key names the key's user.
func (e *Engine) learnUser(kc *Case, ev *cloudtrail.Event, at int64) {
	if ev.Actor.AccessKeyID == kc.Key {
		e.setUser(kc, ev.Actor.UserName, at)
	}
}

// group is the window a call counts in: service, action and outcome.
func group(ev *cloudtrail.Event) string {
	outcome := "success"
	if ev.ErrorCode != "" {
		outcome = "failure"
	}
	return ev.Source + "|" + ev.Name + "|" + outcome
}

// windowStart is the window a time falls in.
func (e *Engine) windowStart(at int64) int64 {
	w := e.o.UseWindow.Nanoseconds()
	if w <= 0 {
		return at
	}
	return at - ((at%w)+w)%w
}

// window counts the call in its group and says whether it alerts: the
// first call of a window to arrive does (and does again when it arrives
// again: a chunk Fluent Bit delivers twice), the others are folded in.
func (e *Engine) window(c *Case, g string, at int64, evKey string) (*rules.Use, int64, bool) {
	start := e.windowStart(at)
	g = short(g)
	first := hashKey(evKey)
	e.touch(c, at)
	gr := c.Groups[g]
	if gr == nil {
		if len(c.Groups) >= MaxGroups {
			forgetOldestGroup(c)
		}
		if c.Groups == nil {
			c.Groups = map[string]*Group{}
		}
		gr = &Group{}
		c.Groups[g] = gr
	}
	for _, w := range gr.Alerted {
		if w.Start == start {
			if w.First == first {
				return &rules.Use{Calls: gr.Since + 1, Total: gr.Total, WindowStart: t(start)}, start, true
			}
			gr.Since++
			gr.Total++
			e.Stats.Suppressed++
			return nil, 0, false
		}
	}
	if len(gr.Alerted) >= WindowsKept && start < gr.Alerted[len(gr.Alerted)-1].Start || e.useAlerts(c, start) >= MaxUseAlerts {
		// Later than every window kept, or past the window's budget of
		// alerts for this case: counted, not alerted.
		gr.Since++
		gr.Total++
		e.Stats.Suppressed++
		return nil, 0, false
	}
	gr.Total++
	u := &rules.Use{Calls: gr.Since + 1, Total: gr.Total, WindowStart: t(start)}
	gr.Since = 0
	i, _ := slices.BinarySearchFunc(gr.Alerted, start, func(w Window, s int64) int { return cmp.Compare(s, w.Start) })
	gr.Alerted = slices.Insert(gr.Alerted, i, Window{Start: start, First: first})
	if len(gr.Alerted) > WindowsKept {
		gr.Alerted = gr.Alerted[:WindowsKept]
	}
	return u, start, true
}

// forgetOldestGroup makes room for a group: the one whose last alert is
// the oldest goes.
func forgetOldestGroup(c *Case) {
	oldest, at := "", int64(math.MaxInt64)
	for k, g := range c.Groups {
		last := int64(math.MinInt64)
		if len(g.Alerted) > 0 {
			last = g.Alerted[0].Start
		}
		if last < at || last == at && k < oldest {
			oldest, at = k, last
		}
	}
	delete(c.Groups, oldest)
}

// hashKey is what a window keeps of the event key of the call that
// alerted: enough to know the call when a retried chunk brings it again.
func hashKey(evKey string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(evKey))
	return h.Sum64()
}

// useAlerts counts the groups of a case that alerted in a window.
func (e *Engine) useAlerts(c *Case, start int64) int {
	n := 0
	for _, g := range c.Groups {
		for _, w := range g.Alerted {
			if w.Start == start {
				n++
			}
		}
	}
	return n
}

// deniedCall watches the key a quarantine denied (its own case: the
// quarantine of its user is working, whichever key this is) and folds the
// call into its window.
func (e *Engine) deniedCall(ev *cloudtrail.Event, f detect.Finding, at int64) (detect.Finding, bool) {
	key, user, account := ev.Actor.AccessKeyID, ev.Actor.UserName, actorAccount(ev)
	var c *Case
	switch {
	case isAccessKey(key):
		if c = e.keys[key]; c == nil {
			if e.flooded(f, account, at) {
				return f, false
			}
			c = e.keyCase(key, account, user, at, false)
		}
		e.learnUser(c, ev, at)
	case user != "":
		c = e.userCase(account, user, at, false)
	default:
		return f, true // nothing to watch
	}
	e.signal(c, at)
	caller := callerOf(ev)
	g := "denied|" + group(ev)
	use, start, ok := e.window(c, caller+"|"+g, at, detect.EventKey(ev))
	if !ok {
		return f, false
	}
	f.Match.Use, f.Match.Key = use, e.context(c)
	f.Key = windowKey(f.Rule.ID, caller, g, start)
	return f, true
}

// status judges a call that may retire a watched key (DeleteAccessKey,
// UpdateAccessKey to Inactive, DeleteUser) or make it active again, and
// returns the alerts the key's status changes now call for.
func (e *Engine) status(ev *cloudtrail.Event, at int64) []detect.Finding {
	user := ev.Param("userName")
	if user == "" {
		user = ev.Actor.UserName // a user's call on its own keys names no user
	}
	active := false
	switch ev.Name {
	case "UpdateAccessKey":
		switch {
		case strings.EqualFold(ev.Param("status"), "Active"):
			active = true
		case !strings.EqualFold(ev.Param("status"), "Inactive"):
			return nil
		}
	case "DeleteAccessKey":
	case "DeleteUser":
		if name := ev.Param("userName"); name != "" {
			return e.userDeleted(ev, name, at)
		}
		return nil
	default:
		return nil
	}
	key := ev.Param("accessKeyId")
	if key == "" {
		return nil
	}
	kc := e.keys[key]
	if u := e.users[userKey(ev.Account, user)]; u != nil {
		switch {
		case keylessAt(u, at):
			// A key-less user's key retired (or made active) while its
			// exposed key was not known: the change names it.
			kc = e.keyCase(key, ev.Account, user, at, true)
			e.signal(kc, at)
			e.knowKey(u, key, at)
		case kc == nil && at <= u.FirstSeen:
			e.remember(u, ev, at, &Early{Status: true, Active: active, Key: key})
		}
	}
	if kc == nil {
		return nil
	}
	seen := at
	if at < e.keyStart(kc) {
		seen = 0 // nothing watched the key then (yet)
	}
	e.setUser(kc, user, seen) // the call names the key's user
	return e.changeStatus(kc, ev, at, active)
}

// changeStatus records a status change of a case and returns the alerts
// its status history now calls for. The history is judged in event time:
// the first retirement of each stretch the key was active alerts (once,
// quoting whichever of its retirements arrived first), and so does each
// re-activation that follows a retirement, also when the retirement
// arrives after it.
func (e *Engine) changeStatus(c *Case, ev *cloudtrail.Event, at int64, active bool) []detect.Finding {
	evKey := detect.EventKey(ev)
	e.touch(c, at)
	var this *Status
	for _, s := range c.Status {
		if s.ID == evKey {
			this = s
		}
	}
	if this == nil {
		this = &Status{Ref: refOf(ev, at), Active: active}
		this.ID = evKey
		c.addStatus(this)
	}
	e.mark(c)
	return e.statusAlerts(c, ev, this)
}

// statusAlerts are the alerts a key's status history calls for, as far as
// it is seen: from when the key was watched (a change before its first
// signal is kept, and counts if an earlier signal arrives). this is the
// change being observed (nil when re-judging), quoted whole as ev.
func (e *Engine) statusAlerts(c *Case, ev *cloudtrail.Event, this *Status) []detect.Finding {
	from := e.keyStart(c)
	// The history in stretches of activity: the first from the start, the
	// others each begun by a re-activation; the retirements that ended
	// each.
	type stretch struct {
		start *Status
		rets  []*Status
	}
	stretches := []stretch{{}}
	for _, s := range c.Status {
		if s.At < from {
			continue
		}
		if s.Active {
			stretches = append(stretches, stretch{start: s})
		} else {
			stretches[len(stretches)-1].rets = append(stretches[len(stretches)-1].rets, s)
		}
	}
	var out []detect.Finding
	for i, st := range stretches {
		if a := st.start; a != nil && len(stretches[i-1].rets) > 0 && (!a.quotedFor("+") || a == this) {
			if !a.quotedFor("+") {
				a.Quoted = append(a.Quoted, "+")
			}
			out = append(out, e.statusFinding(e.reactivated, c, a, ev, this, e.reactivated.ID+"/"+c.ID()+"/"+a.ID))
		}
		if len(st.rets) == 0 {
			continue
		}
		id := ""
		if st.start != nil {
			id = st.start.ID
		}
		var quoted *Status
		for _, s := range c.Status {
			if !s.Active && s.quotedFor(id) {
				quoted = s
			}
		}
		switch {
		case quoted == nil:
			quoted = st.rets[0]
			if slices.Contains(st.rets, this) {
				quoted = this
			}
			quoted.Quoted = append(quoted.Quoted, id)
		case quoted != this:
			continue
		}
		out = append(out, e.statusFinding(e.retired, c, quoted, ev, this, retirementKey(e.retired.ID, c, st.start)))
		e.mark(c)
	}
	return out
}

// userDeleted records a user's deletion in its case (opened for it, as a
// weak case, when there is none: a case of the user may still show up
// from a signal that arrives later but happened before) and returns its
// alert when a watched case of the user predates it.
func (e *Engine) userDeleted(ev *cloudtrail.Event, user string, at int64) []detect.Finding {
	u := e.userCase(ev.Account, user, at, false)
	evKey := detect.EventKey(ev)
	if !slices.ContainsFunc(u.Status, func(s *Status) bool { return s.ID == evKey }) {
		s := &Status{Ref: refOf(ev, at)}
		s.ID = evKey
		u.addStatus(s)
	}
	e.mark(u)
	return e.deletion(u, ev)
}

// deletion is the alert of a user's deletion, once per user: quoting the
// first deletion to arrive after which, in event time, a case of the
// user was watched (the user's own, from its first signal; a key's, once
// it was watched and known to be the user's). ev, when it is one of the
// deletions, is quoted whole; the others as the case kept them.
func (e *Engine) deletion(u *Case, ev *cloudtrail.Event) []detect.Finding {
	var evKey string
	if ev != nil {
		evKey = detect.EventKey(ev)
	}
	var quoted *Status
	for _, s := range u.Status {
		if s.quotedFor("") {
			if s.ID != evKey {
				return nil // alerted before, by another deletion
			}
			quoted = s
		}
	}
	if quoted == nil {
		for _, s := range u.Status {
			if !s.Active && e.watchedBefore(u, s.At) && (quoted == nil || s.ID == evKey) {
				quoted = s
			}
		}
		if quoted == nil {
			return nil
		}
		quoted.Quoted = append(quoted.Quoted, "")
		e.mark(u)
	}
	c := u
	if u.FirstSeen == 0 || u.FirstSeen > quoted.At {
		for _, kc := range e.byUser[u.userKey()] {
			if kc.FirstSeen <= quoted.At && kc.UserAt != 0 && kc.UserAt <= quoted.At {
				c = kc
				break
			}
		}
	}
	f := e.statusFinding(e.retired, c, quoted, ev, nil, e.retired.ID+"/"+u.ID())
	if quoted.ID == evKey {
		f.Event = ev
	}
	return []detect.Finding{f}
}

// watchedBefore: a case of user u was on the watch list at at.
func (e *Engine) watchedBefore(u *Case, at int64) bool {
	if u.FirstSeen != 0 && u.FirstSeen <= at {
		return true
	}
	return slices.ContainsFunc(e.byUser[u.userKey()], func(kc *Case) bool {
		return kc.FirstSeen != 0 && kc.FirstSeen <= at && kc.UserAt != 0 && kc.UserAt <= at
	})
}

// redecideDeletion: what is known of a user's cases changed (a signal
// earlier than what was known, a key found to be the user's), so a
// deletion that arrived before may now alert, at the end of this event.
func (e *Engine) redecideDeletion(account, user string) {
	if u := e.users[userKey(account, user)]; u != nil && len(u.Status) > 0 {
		e.late = append(e.late, e.deletion(u, nil)...)
	}
}

// retirementKey identifies a retirement's alert by the key and the
// stretch it was active in, not by which of its retirements came first.
func retirementKey(rule string, c *Case, stretch *Status) string {
	k := rule + "/" + c.ID()
	if stretch != nil {
		k += "/" + stretch.ID
	}
	return k
}

// statusFinding is the alert of a status change: of the event being
// observed when it is that change, else of what the case kept of it.
func (e *Engine) statusFinding(rule *rules.Rule, c *Case, s *Status, ev *cloudtrail.Event, this *Status, key string) detect.Finding {
	k := e.context(c)
	if !s.Active {
		k.RetiredAt = t(s.At)
	}
	if s != this || ev == nil {
		ev = s.event(c.Account)
	}
	return detect.Finding{Rule: rule, Event: ev, Time: t(s.At), Key: key,
		Match: rules.Finding{Target: rules.Target{Type: "user", Name: cmp.Or(c.User, ev.Actor.UserName)}, Key: k}}
}

// event is the event a ref stands for, as far as it was kept.
func (r *Ref) event(account string) *cloudtrail.Event {
	return &cloudtrail.Event{Name: r.Name, Source: r.Source, ID: r.ID, Time: t(r.At).Format(time.RFC3339Nano), Account: account,
		Region: r.Region, SourceIP: r.SourceIP, UserAgent: r.UserAgent, ErrorCode: r.ErrorCode,
		Actor: cloudtrail.Actor{Type: r.ActorType, ARN: r.ActorARN, UserName: r.ActorUser, AccessKeyID: r.ActorKey, AccountID: account},
		Shape: Kept}
}

// refOf is what a case keeps of an event: its identity, and enough to
// describe it in an alert, the long free texts cut shorter than an
// event's own bounds (a case keeps up to MaxWaits + MaxStatus + MaxEarly of
// them).
func refOf(ev *cloudtrail.Event, at int64) Ref {
	return Ref{At: at, ID: detect.EventKey(ev), Name: ev.Name, Source: ev.Source, Region: ev.Region,
		SourceIP: cloudtrail.Cut(ev.SourceIP, refShort), UserAgent: cloudtrail.Cut(ev.UserAgent, refText),
		ActorType: cloudtrail.Cut(ev.Actor.Type, refShort), ActorARN: cloudtrail.Cut(ev.Actor.ARN, refText), ActorUser: ev.Actor.UserName,
		ActorKey: ev.Actor.AccessKeyID, ErrorCode: cloudtrail.Cut(ev.ErrorCode, refShort)}
}

// The cuts of what a case keeps: a kept event's user agent and ARN, its
// source address, caller type and error code, an exposure's URL; and the length past which a group's
// name, or an event key kept to spot a re-delivery, is kept as a digest.
const (
	refText  = 160
	refShort = 64
	urlText  = 512
	shortKey = 64
)

// short is s, or its digest when it is longer than shortKey.
func short(s string) string {
	if len(s) <= shortKey {
		return s
	}
	return cloudtrail.Digest([]byte(s))
}

// addStatus puts a status change at its place in event time, keeping the
// latest MaxStatus.
func (c *Case) addStatus(s *Status) {
	i, _ := slices.BinarySearchFunc(c.Status, s, func(a, b *Status) int { return cmp.Or(cmp.Compare(a.At, b.At), strings.Compare(a.ID, b.ID)) })
	c.Status = slices.Insert(c.Status, i, s)
	if len(c.Status) > MaxStatus {
		c.Status = c.Status[len(c.Status)-MaxStatus:]
	}
}

// activeAt says whether a case's key was active at at, by its status
// history from from on (a user's: whether it still existed).
func (c *Case) activeAt(from, at int64) bool {
	active := true
	for _, s := range c.Status {
		if s.At > at {
			break
		}
		if s.At >= from {
			active = s.Active
		}
	}
	return active
}

// context is what the engine knows of a case, for an alert.
func (e *Engine) context(c *Case) *rules.Key {
	k := &rules.Key{ID: c.Key, User: c.User, Account: c.Account, ExposedURL: c.ExposedURL, FirstSeen: t(c.FirstSeen)}
	if c.Key == "" && len(c.ExposedKeys) > 0 {
		k.ID = c.ExposedKeys[0] // a user's case: its exposed key, once a signal named it
	}
	u := c
	if c.Key != "" {
		k.FirstSeen = t(e.keyStart(c))
		u = e.userOf(c)
	}
	var exposed int64
	for _, w := range c.Waits {
		exposed = lower(exposed, w.At)
	}
	if u != nil {
		for _, w := range u.Waits {
			exposed = lower(exposed, w.At)
		}
		if len(u.Quarantines) > 0 {
			k.QuarantinedAt = t(u.Quarantines[0])
		}
		if k.ExposedURL == "" {
			k.ExposedURL = u.ExposedURL
		}
	}
	k.ExposedAt = t(exposed)
	for _, s := range c.Status {
		if !s.Active {
			k.RetiredAt = t(s.At)
			break
		}
	}
	return k
}

// Package lifecycle follows an exposed access key through its life as the
// events stream by: the exposure (an AWS Health notice, or a quarantine
// AWS failed to apply), the quarantine, every later use of the key, an
// exposure no quarantine follows, and the key's retirement. It is a pure
// state machine: Observe takes the events detect found (in the order they
// arrive) and the wall clock, and returns the findings; Changes says what
// to persist. All timing is in event time, so a replay gives the alerts
// the live stream gave; the wall clock only moves time on while the
// stream is silent. An Engine is not safe for concurrent use: the caller
// serialises it; its Watch is, for the prefilter.
package lifecycle

import (
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
	// seen out first.
	WatchTTL time.Duration
	MaxKeys  int
	// UseWindow groups the uses of a key: one alert per service, action
	// and outcome per window.
	UseWindow time.Duration
	// Grace is how long an exposure waits for a quarantine; Delay how late
	// an event may arrive, so the wait ends only Delay after Grace.
	Grace, Delay time.Duration
	// Persist keeps a record of the cases that change, for Changes.
	Persist bool
}

// futureSlack: an event time this far past the wall clock is a broken
// clock, and must not fire every timer at once.
const futureSlack = time.Hour

// Stats count what the engine did that no alert shows.
type Stats struct {
	Suppressed int64 // uses and denied calls folded into an earlier alert
	Evicted    int64 // cases pushed out by MaxKeys
	Expired    int64 // cases past WatchTTL
}

// Engine is the watch list and its rules.
type Engine struct {
	o       Options
	byKey   map[string]*Case // cases whose key is known
	keyless map[string]*Case // by userKey: users watched while their key is not
	n       int
	intern  map[string]string // accounts and user names, shared by their cases
	byUser  map[string][]*Case
	pending map[*Case]struct{} // cases whose exposure waits for a quarantine
	watch   *Watch

	lruHead, lruTail *Case // least recently seen first

	watermark  int64     // the latest event time seen
	advancedAt time.Time // the wall clock when it was

	changed map[string]*Case
	deleted map[string]bool
	Stats   Stats

	used, notQuarantined, retired *rules.Rule
}

// New returns an empty engine.
func New(o Options) *Engine {
	return &Engine{
		o: o, byKey: map[string]*Case{}, keyless: map[string]*Case{}, intern: map[string]string{}, byUser: map[string][]*Case{}, pending: map[*Case]struct{}{}, watch: newWatch(),
		changed: map[string]*Case{}, deleted: map[string]bool{},
		used: rules.ByID(rules.QuarantinedKeyUsed), notQuarantined: rules.ByID(rules.ExposedNotQuarantined), retired: rules.ByID(rules.ExposedKeyRetired),
	}
}

// Watch is the watch list, for the prefilter.
func (e *Engine) Watch() *Watch { return e.watch }

// Len is the number of cases, retired ones included.
func (e *Engine) Len() int { return e.n }

// Load puts back cases and the event-time watermark a store kept; wall is
// when, so a silence is counted from the restart.
func (e *Engine) Load(cases []*Case, watermark int64, wall time.Time) {
	for _, c := range cases {
		if e.lookup(c.Key, c.Account, c.User) != nil {
			continue
		}
		e.insert(c)
		if c.Due != 0 && !c.Fired {
			e.pending[c] = struct{}{}
		}
	}
	e.watermark, e.advancedAt = watermark, wall
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

func (e *Engine) advance(at int64, wall time.Time) {
	if !wall.IsZero() && at > wall.Add(futureSlack).UnixNano() {
		return
	}
	if at > e.watermark {
		e.watermark, e.advancedAt = at, wall
	}
}

// Observe takes one event detect found, with its findings, and returns the
// findings to alert on: those of the stateless rules (with what the engine
// knows of the key, and denied calls folded into their window), and the
// engine's own.
func (e *Engine) Observe(o detect.Observed, wall time.Time) []detect.Finding {
	ev := o.Event
	at := o.Time.UnixNano()
	e.advance(at, wall)
	var out []detect.Finding
	notUse := false // the event is a notice or a quarantine call, not a use of the key
	for _, f := range o.Findings {
		keep := true
		switch f.Rule.ID {
		case rules.CredentialsExposed:
			notUse = true
			if c := e.exposedByNotice(ev, at); c != nil {
				f.Match.Key = e.context(c)
			}
		case rules.QuarantineApplied, rules.QuarantineAttemptFailed:
			notUse = true
			if f.Match.Target.Type == "user" && f.Match.Target.Name != "" {
				c := e.caseFor(quarantinedKey(ev, f.Match.Target.Name), f.Match.Target.Name, ev.Account, at)
				for _, uc := range e.casesOf(ev.Account, f.Match.Target.Name) {
					if f.Rule.ID == rules.QuarantineApplied {
						e.quarantine(uc, at)
					} else {
						e.expose(uc, at, ev, "")
					}
				}
				f.Match.Key = e.context(c)
			}
		case rules.QuarantineRemoved:
			notUse = true
			for _, c := range e.casesOf(ev.Account, f.Match.Target.Name) {
				c.Removed = max(c.Removed, at)
				e.touch(c, at)
				f.Match.Key = e.context(c)
			}
		case rules.QuarantineDeniedCall:
			notUse = true
			key := ev.Actor.AccessKeyID
			if !strings.HasPrefix(key, "AKIA") {
				key = ""
			}
			if key == "" && ev.Actor.UserName == "" {
				break
			}
			c := e.caseFor(key, ev.Actor.UserName, actorAccount(ev), at)
			var use *rules.Use
			if use, keep = e.window(c, "denied|"+group(ev), at, detect.EventKey(ev)); keep {
				f.Match.Use = use
				f.Match.Key = e.context(c)
			}
		}
		if keep {
			out = append(out, f)
		}
	}
	if !notUse && !awsInternal(ev) {
		if c := e.watchedActor(ev); c != nil && at > c.FirstSeen && c.Retired == 0 {
			if f, ok := e.use(c, ev, o.Time, at); ok {
				out = append(out, f)
			}
		}
	}
	if ev.ErrorCode == "" && (ev.Source == "" || ev.Source == "iam.amazonaws.com") {
		out = append(out, e.retirements(ev, o.Time, at)...)
	}
	return out
}

// exposedByNotice watches what a Health notice names and starts its wait
// for a quarantine; it returns the first case.
func (e *Engine) exposedByNotice(ev *cloudtrail.Event, at int64) *Case {
	x := ev.Exposure
	var first *Case
	add := func(c *Case) {
		e.expose(c, at, ev, x.URL)
		if first == nil {
			first = c
		}
	}
	for _, k := range x.Keys {
		if strings.HasPrefix(k, "AKIA") {
			add(e.caseFor(k, x.User, ev.Account, at))
		}
	}
	if first == nil && x.User != "" {
		add(e.caseFor("", x.User, ev.Account, at))
	}
	return first
}

// quarantinedKey is the exposed key a quarantine event shows: in legacy
// events AWS acts as the exposed user itself, with the exposed key.
func quarantinedKey(ev *cloudtrail.Event, user string) string {
	if ev.Actor.UserName == user && strings.HasPrefix(ev.Actor.AccessKeyID, "AKIA") {
		return ev.Actor.AccessKeyID
	}
	return ""
}

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

// watchedActor is the case of the key the call was made with, or of its
// user while that user's key is not known.
func (e *Engine) watchedActor(ev *cloudtrail.Event) *Case {
	if k := ev.Actor.AccessKeyID; k != "" {
		if c := e.byKey[k]; c != nil {
			return c
		}
	}
	if ev.Actor.Type == "IAMUser" && ev.Actor.UserName != "" {
		if c := e.keyless[userKey(actorAccount(ev), ev.Actor.UserName)]; c != nil {
			return c
		}
	}
	return nil
}

// use is the finding of a call made with a watched key, unless its window
// already alerted.
func (e *Engine) use(c *Case, ev *cloudtrail.Event, when time.Time, at int64) (detect.Finding, bool) {
	u, ok := e.window(c, group(ev), at, detect.EventKey(ev))
	if !ok {
		return detect.Finding{}, false
	}
	sev := "high"
	if ev.ErrorCode != "" && ev.Name != "GetCallerIdentity" {
		sev = "medium"
	}
	key := strings.Join([]string{e.used.ID, c.ID(), group(ev), time.Unix(0, u.WindowStart.UnixNano()).UTC().Format(time.RFC3339Nano)}, "/")
	return detect.Finding{Rule: e.used, Event: ev, Time: when, Key: key,
		Match: rules.Finding{Target: rules.Target{Type: "user", Name: c.User}, Key: e.context(c), Severity: sev, Use: u}}, true
}

// group is the window a call counts in: service, action and outcome.
func group(ev *cloudtrail.Event) string {
	outcome := "success"
	if ev.ErrorCode != "" {
		outcome = "failure"
	}
	return ev.Source + "|" + ev.Name + "|" + outcome
}

// window counts the call in its group and says whether it alerts: the
// first call of a window does (and does again when seen again: a chunk
// Fluent Bit delivers twice), the others are folded into it.
func (e *Engine) window(c *Case, g string, at int64, evKey string) (*rules.Use, bool) {
	w := c.Windows[g]
	e.touch(c, at)
	switch {
	case w == nil:
		if len(c.Windows) >= maxWindows {
			e.Stats.Suppressed++
			return nil, false
		}
		if c.Windows == nil {
			c.Windows = map[string]*Window{}
		}
		w = &Window{Start: at, First: evKey, Calls: 1, Total: 1}
		c.Windows[g] = w
	case w.First == evKey:
		// The alerting call again: the same alert again.
	case at >= w.Start+e.o.UseWindow.Nanoseconds():
		*w = Window{Start: at, First: evKey, Calls: 1, Total: w.Total + 1, Before: w.Calls - 1}
	default:
		w.Calls++
		w.Total++
		e.Stats.Suppressed++
		return nil, false
	}
	return &rules.Use{Calls: w.Before + 1, Total: w.Total, WindowStart: t(w.Start)}, true
}

// retirements are the findings of a call that retires watched keys:
// DeleteAccessKey, UpdateAccessKey to Inactive, DeleteUser.
func (e *Engine) retirements(ev *cloudtrail.Event, when time.Time, at int64) []detect.Finding {
	var cases []*Case
	user := ev.Param("userName")
	if user == "" {
		user = ev.Actor.UserName // a user's call on its own keys names no user
	}
	switch ev.Name {
	case "UpdateAccessKey":
		if !strings.EqualFold(ev.Param("status"), "Inactive") {
			return nil
		}
		fallthrough
	case "DeleteAccessKey":
		key := ev.Param("accessKeyId")
		if c := e.byKey[key]; c != nil {
			cases = append(cases, c)
		} else if c := e.keyless[userKey(ev.Account, user)]; c != nil && key != "" {
			e.learnKey(c, key)
			cases = append(cases, c)
		}
	case "DeleteUser":
		cases = e.casesOf(ev.Account, ev.Param("userName"))
	default:
		return nil
	}
	evKey := detect.EventKey(ev)
	var out []detect.Finding
	for _, c := range cases {
		switch {
		case c.Retired == 0:
			c.Retired, c.RetiredBy, c.RetiredEvent = at, ev.Name, evKey
			if c.Due != 0 && !c.Fired {
				c.Due = 0
				delete(e.pending, c)
			}
			e.touch(c, at)
		case c.RetiredEvent != evKey:
			continue // retired before, by another call
		}
		out = append(out, detect.Finding{Rule: e.retired, Event: ev, Time: when, Key: e.retired.ID + "/" + c.ID() + "/" + evKey,
			Match: rules.Finding{Target: rules.Target{Type: "user", Name: c.User}, Key: e.context(c)}})
	}
	return out
}

// expose records an exposure signal and starts the wait for a quarantine,
// unless one came shortly before (AWS often quarantines first) or the
// key's wait already ended.
func (e *Engine) expose(c *Case, at int64, ev *cloudtrail.Event, url string) {
	if c.ExposedAt == 0 || at < c.ExposedAt {
		c.ExposedAt = at
	}
	if url != "" {
		c.ExposedURL = url
	}
	e.touch(c, at)
	grace := e.o.Grace.Nanoseconds()
	if c.Fired || c.Due != 0 || c.Retired != 0 || (c.Quarantined != 0 && c.Quarantined >= at-grace) {
		return
	}
	c.Due = at + grace
	c.ExposureEvent, c.ExposureName, c.ExposureRegion = detect.EventKey(ev), ev.Name, ev.Region
	e.pending[c] = struct{}{}
}

// quarantine records a successful quarantine; in time, it ends the wait.
func (e *Engine) quarantine(c *Case, at int64) {
	if c.Quarantined == 0 || at < c.Quarantined {
		c.Quarantined = at
	}
	e.touch(c, at)
	if c.Due != 0 && !c.Fired && at <= c.Due {
		c.Due = 0
		delete(e.pending, c)
	}
}

// Due returns the findings of the exposures whose wait for a quarantine
// is over: Grace plus Delay past the exposure, in the engine's time at
// wall. They fire again at every call until Fired says they were taken
// (delivered or stored), so a failed delivery loses nothing. Due also
// drops the cases past WatchTTL.
func (e *Engine) Due(wall time.Time) []detect.Finding {
	now := e.Now(wall)
	e.expire(now)
	var fired []*Case
	for c := range e.pending {
		if now >= c.Due+e.o.Delay.Nanoseconds() {
			fired = append(fired, c)
		}
	}
	slices.SortFunc(fired, func(a, b *Case) int { return strings.Compare(a.ID(), b.ID()) })
	var out []detect.Finding
	for _, c := range fired {
		ev := &cloudtrail.Event{Name: c.ExposureName, ID: c.ExposureEvent, Time: t(c.ExposedAt).Format(time.RFC3339Nano),
			Account: c.Account, Region: c.ExposureRegion, Actor: cloudtrail.Actor{UserName: c.User, AccessKeyID: c.Key, AccountID: c.Account},
			Shape: "lifecycle"}
		k := e.context(c)
		k.Waited = time.Duration(c.Due - c.ExposedAt)
		out = append(out, detect.Finding{Rule: e.notQuarantined, Event: ev, Time: t(c.Due), Key: e.notQuarantined.ID + "/" + c.ID() + "/" + c.ExposureEvent,
			Match: rules.Finding{Target: rules.Target{Type: "user", Name: c.User}, Key: k}})
	}
	return out
}

// Fired marks the exposures of Due's findings as alerted: one alert a key.
func (e *Engine) Fired(fs []detect.Finding) {
	for _, f := range fs {
		if f.Rule != e.notQuarantined || f.Match.Key == nil {
			continue
		}
		if c := e.lookup(f.Match.Key.ID, f.Match.Key.Account, f.Match.Key.User); c != nil {
			c.Fired = true
			delete(e.pending, c)
			e.mark(c)
		}
	}
}

// Unfire takes back Fired, when what the findings were given to failed.
func (e *Engine) Unfire(fs []detect.Finding) {
	for _, f := range fs {
		if f.Rule != e.notQuarantined || f.Match.Key == nil {
			continue
		}
		if c := e.lookup(f.Match.Key.ID, f.Match.Key.Account, f.Match.Key.User); c != nil && c.Fired && c.Due != 0 {
			c.Fired = false
			e.pending[c] = struct{}{}
		}
	}
}

// context is what the engine knows of a case, for an alert.
func (e *Engine) context(c *Case) *rules.Key {
	return &rules.Key{ID: c.Key, User: c.User, Account: c.Account, ExposedURL: c.ExposedURL,
		FirstSeen: t(c.FirstSeen), ExposedAt: t(c.ExposedAt), QuarantinedAt: t(c.Quarantined), RetiredAt: t(c.Retired)}
}

// caseFor finds or opens the case of a key (with its user), or of a user
// while no key is known. A user watched without a key learns it here.
func (e *Engine) caseFor(key, user, account string, at int64) *Case {
	if key != "" {
		if c := e.byKey[key]; c != nil {
			e.touch(c, at)
			return c
		}
		if c := e.keyless[userKey(account, user)]; c != nil && user != "" {
			e.learnKey(c, key)
			e.touch(c, at)
			return c
		}
	} else if cs := e.casesOf(account, user); len(cs) > 0 {
		e.touch(cs[0], at)
		return cs[0]
	}
	c := &Case{Key: key, User: e.shared(user), Account: e.shared(account), FirstSeen: at, LastSeen: at}
	e.insert(c)
	e.mark(c)
	for e.n > e.o.MaxKeys && e.lruHead != nil && e.lruHead != c {
		e.Stats.Evicted++
		e.drop(e.lruHead)
	}
	return c
}

// casesOf are the cases of a user of an account.
func (e *Engine) casesOf(account, user string) []*Case {
	if user == "" {
		return nil
	}
	return e.byUser[userKey(account, user)]
}

func (e *Engine) learnKey(c *Case, key string) {
	e.unindex(c)
	delete(e.changed, c.ID())
	if e.o.Persist {
		e.deleted[c.ID()] = true
	}
	c.Key = key
	e.index(c)
	e.mark(c)
}

// shared keeps one copy of a string many cases hold (an account id).
func (e *Engine) shared(s string) string {
	if v, ok := e.intern[s]; ok {
		return v
	}
	if len(e.intern) < 1<<16 {
		e.intern[s] = s
	}
	return s
}

// lookup is the case of a key, or of a user while no key is known.
func (e *Engine) lookup(key, account, user string) *Case {
	if key != "" {
		return e.byKey[key]
	}
	return e.keyless[userKey(account, user)]
}

func (e *Engine) insert(c *Case) {
	e.index(c)
	e.lruPush(c)
}

func (e *Engine) index(c *Case) {
	e.n++
	if c.Key != "" {
		e.byKey[c.Key] = c
	} else {
		e.keyless[userKey(c.Account, c.User)] = c
	}
	if c.User != "" {
		uk := userKey(c.Account, c.User)
		e.byUser[uk] = append(e.byUser[uk], c)
	}
	if c.Key != "" {
		e.watch.add(e.watch.keys, c.Key, false)
	} else {
		e.watch.add(e.watch.keyless, userKey(c.Account, c.User), true)
	}
}

func (e *Engine) unindex(c *Case) {
	e.n--
	if c.Key != "" {
		delete(e.byKey, c.Key)
	} else {
		delete(e.keyless, userKey(c.Account, c.User))
	}
	if c.User != "" {
		uk := userKey(c.Account, c.User)
		e.byUser[uk] = slices.DeleteFunc(e.byUser[uk], func(o *Case) bool { return o == c })
		if len(e.byUser[uk]) == 0 {
			delete(e.byUser, uk)
		}
	}
	if c.Key != "" {
		e.watch.remove(e.watch.keys, c.Key, false)
	} else {
		e.watch.remove(e.watch.keyless, userKey(c.Account, c.User), true)
	}
}

// drop takes a case off the list for good.
func (e *Engine) drop(c *Case) {
	e.unindex(c)
	e.lruRemove(c)
	delete(e.pending, c)
	delete(e.changed, c.ID())
	if e.o.Persist {
		e.deleted[c.ID()] = true
	}
}

// expire drops the cases last seen more than WatchTTL before now, but not
// one whose exposure still waits.
func (e *Engine) expire(now int64) {
	ttl := e.o.WatchTTL.Nanoseconds()
	for c := e.lruHead; c != nil && now-c.LastSeen > ttl; {
		next := c.next
		if _, waiting := e.pending[c]; !waiting {
			e.Stats.Expired++
			e.drop(c)
		}
		c = next
	}
}

// touch marks the case seen at at (the latest of its times) and changed.
func (e *Engine) touch(c *Case, at int64) {
	if at > c.LastSeen {
		c.LastSeen = at
		e.lruRemove(c)
		e.lruPush(c)
	}
	e.mark(c)
}

func (e *Engine) mark(c *Case) {
	if e.o.Persist {
		e.changed[c.ID()] = c
		delete(e.deleted, c.ID())
	}
}

// Changes returns the cases changed and dropped since Committed was last
// called, and the watermark: what a store keeps.
func (e *Engine) Changes() (changed []*Case, deleted []string, watermark int64) {
	for _, c := range e.changed {
		changed = append(changed, c)
	}
	for id := range e.deleted {
		deleted = append(deleted, id)
	}
	return changed, deleted, e.watermark
}

// Committed says the changes Changes returned are kept.
func (e *Engine) Committed() {
	clear(e.changed)
	clear(e.deleted)
}

// The least recently seen list: cases ordered by LastSeen as they were
// touched (events arrive roughly in time order; an older event does not
// move its case).
func (e *Engine) lruPush(c *Case) {
	c.prev, c.next = e.lruTail, nil
	if e.lruTail != nil {
		e.lruTail.next = c
	} else {
		e.lruHead = c
	}
	e.lruTail = c
}

func (e *Engine) lruRemove(c *Case) {
	if c.prev != nil {
		c.prev.next = c.next
	} else if e.lruHead == c {
		e.lruHead = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else if e.lruTail == c {
		e.lruTail = c.prev
	}
	c.prev, c.next = nil, nil
}

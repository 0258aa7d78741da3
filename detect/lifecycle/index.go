package lifecycle

import (
	"slices"
)

// keyCase finds or opens the case of an access key; a user named with it
// is the key's user.
func (e *Engine) keyCase(key, account, user string, at int64, strong bool) *Case {
	if c := e.keys[key]; c != nil {
		e.setUser(c, user, at)
		if strong && !c.Strong {
			e.promote(c)
		}
		e.touch(c, at)
		return c
	}
	c := &Case{Key: key, User: e.shared(user), Account: e.shared(account), Strong: strong, LastSeen: at}
	if user != "" {
		c.UserAt = at
	}
	return e.open(c)
}

// userCase finds or opens the case of a user of an account.
func (e *Engine) userCase(account, user string, at int64, strong bool) *Case {
	if c := e.users[userKey(account, user)]; c != nil {
		if strong && !c.Strong {
			e.promote(c)
		}
		e.touch(c, at)
		return c
	}
	return e.open(&Case{User: e.shared(user), Account: e.shared(account), Strong: strong, LastSeen: at})
}

func (e *Engine) open(c *Case) *Case {
	e.insert(c)
	e.mark(c)
	e.evict(c)
	return c
}

// setUser records that an event at at named the key's user (the first
// name a key is seen with stays: a key has one user). at 0: an event
// nothing would have seen in time order named it; the key is the user's,
// but no wait may count on it yet.
func (e *Engine) setUser(c *Case, user string, at int64) {
	switch {
	case user == "":
		return
	case c.User == "":
		c.User = e.shared(user)
		uk := c.userKey()
		e.byUser[uk] = append(e.byUser[uk], c)
	case c.User != user:
		return
	}
	if at != 0 && (c.UserAt == 0 || at < c.UserAt) {
		c.UserAt = at
		e.redecideDeletion(c.Account, c.User)
		if u := e.userOf(c); u != nil {
			e.rejudgeEarly(u)
			e.relink(u)
		}
	}
	e.mark(c)
}

// evict keeps the weak cases within their share of MaxKeys and all cases
// within MaxKeys, least recently seen first, the weak before the strong;
// keep (just opened) stays.
func (e *Engine) evict(keep *Case) {
	weakCap := max(1, e.o.MaxKeys/WeakShare)
	for e.nWeak > weakCap && e.dropHead(1, keep) {
	}
	for e.n > e.o.MaxKeys && (e.dropHead(1, keep) || e.dropHead(0, keep)) {
	}
}

func (e *Engine) dropHead(class int, keep *Case) bool {
	c := e.lru[class].head
	if c == keep {
		c = c.next
	}
	if c == nil {
		return false
	}
	e.Stats.Evicted++
	e.drop(c)
	return true
}

// class is the case's LRU list: 0 the strong, 1 the weak.
func (c *Case) class() int {
	if c.Strong {
		return 0
	}
	return 1
}

// promote moves a weak case to the strong: something has now named it as
// exposed.
func (e *Engine) promote(c *Case) {
	e.lru[1].remove(c)
	e.nWeak--
	c.Strong = true
	e.lru[0].insert(c)
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

// lookup is the case of a key, or of a user when no key is given.
func (e *Engine) lookup(key, account, user string) *Case {
	if key != "" {
		return e.keys[key]
	}
	return e.users[userKey(account, user)]
}

// byID is the case of a store id.
func (e *Engine) byID(id string) *Case {
	switch {
	case len(id) > 4 && id[:4] == "key:":
		return e.keys[id[4:]]
	case len(id) > 5 && id[:5] == "user:":
		return e.users[id[5:]]
	}
	return nil
}

func (e *Engine) insert(c *Case) {
	e.n++
	if c.Key != "" {
		e.keys[c.Key] = c
		e.watch.add(e.watch.keys, c.Key, false)
		if c.User != "" {
			uk := c.userKey()
			e.byUser[uk] = append(e.byUser[uk], c)
		}
	} else {
		e.users[c.userKey()] = c
		for _, k := range c.Callers {
			e.callers[k.Key] = c
		}
		e.indexEarly(c)
	}
	if !c.Strong {
		e.nWeak++
	}
	e.lru[c.class()].insert(c)
}

// drop takes a case off the list for good.
func (e *Engine) drop(c *Case) {
	e.n--
	if c.Key != "" {
		delete(e.keys, c.Key)
		e.watch.remove(e.watch.keys, c.Key, false)
		if c.User != "" {
			uk := c.userKey()
			e.byUser[uk] = slices.DeleteFunc(e.byUser[uk], func(o *Case) bool { return o == c })
			if len(e.byUser[uk]) == 0 {
				delete(e.byUser, uk)
			}
		}
	} else {
		delete(e.users, c.userKey())
		for _, k := range c.Callers {
			if e.callers[k.Key] == c {
				delete(e.callers, k.Key)
			}
		}
		e.forgetEarly(c)
	}
	if _, ok := e.keyless[c]; ok {
		delete(e.keyless, c)
		e.watch.remove(e.watch.keyless, c.userKey(), true)
	}
	if !c.Strong {
		e.nWeak--
	}
	e.lru[c.class()].remove(c)
	c.dropped = true
	delete(e.changed, c.ID())
	if e.o.Persist {
		e.deleted[c.ID()] = true
	}
}

// undecided: the case has a wait not yet decided.
func undecided(c *Case) bool {
	return slices.ContainsFunc(c.Waits, func(w *Wait) bool { return !w.Done })
}

// track keeps the users watched call by call up to date with their
// facts.
func (e *Engine) track(c *Case) {
	if c.Key != "" {
		return
	}
	_, in := e.keyless[c]
	switch want := e.keylessWatched(c); {
	case want && !in:
		e.keyless[c] = struct{}{}
		e.watch.add(e.watch.keyless, c.userKey(), true)
	case !want && in:
		delete(e.keyless, c)
		e.watch.remove(e.watch.keyless, c.userKey(), true)
	}
}

// keylessWatched: the user's calls are looked at one by one from its
// first signal on: some fall in the time its exposed key was not known,
// and any may be a use once a signal of its key arrives (late).
func (e *Engine) keylessWatched(u *Case) bool { return u.FirstSeen != 0 }

// expire drops the cases last seen more than WatchTTL before now, but not
// one whose exposure still waits.
func (e *Engine) expire(now int64) {
	ttl := e.o.WatchTTL.Nanoseconds()
	for class := range e.lru {
		for c := e.lru[class].head; c != nil && now-c.LastSeen > ttl; {
			next := c.next
			if !undecided(c) {
				e.Stats.Expired++
				e.drop(c)
			}
			c = next
		}
	}
}

// expiredAt: the case was last seen more than WatchTTL before at, so at
// finds it gone (it is dropped now, unless it waits).
func (e *Engine) expiredAt(c *Case, at int64) bool {
	if e.o.WatchTTL <= 0 || at-c.LastSeen <= e.o.WatchTTL.Nanoseconds() {
		return false
	}
	if !undecided(c) {
		e.Stats.Expired++
		e.drop(c)
	}
	return true
}

// touch marks the case seen at at (the latest of its times) and changed.
func (e *Engine) touch(c *Case, at int64) {
	if at > c.LastSeen {
		c.LastSeen = at
		l := &e.lru[c.class()]
		l.remove(c)
		l.insert(c)
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

// list is a class's cases ordered by LastSeen, least recent first.
type list struct{ head, tail *Case }

// insert puts c at its place by LastSeen, looking from the most recent
// end: cases are touched roughly in time order. The look is bounded, so a
// replay of old events costs no more than a live stream; a case put a
// little too late in the list only expires a little later.
func (l *list) insert(c *Case) {
	at := l.tail
	for n := 0; at != nil && at.LastSeen > c.LastSeen && n < 64; n++ {
		at = at.prev
	}
	c.prev = at
	if at == nil {
		c.next = l.head
		l.head = c
	} else {
		c.next = at.next
		at.next = c
	}
	if c.next != nil {
		c.next.prev = c
	} else {
		l.tail = c
	}
}

func (l *list) remove(c *Case) {
	if c.prev != nil {
		c.prev.next = c.next
	} else if l.head == c {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else if l.tail == c {
		l.tail = c.prev
	}
	c.prev, c.next = nil, nil
}

package lifecycle

import (
	"errors"
	"slices"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// Case is what the engine keeps of one access key (Key set) or of one IAM
// user of an account (Key empty). The two kinds live side by side: a key
// case holds what is true of the key (its signals, uses, retirements), a
// user case what is true of the user (its quarantines, the time its
// exposed key became known, a Health notice or failed quarantine that
// waits for a quarantine). Every time is an event time in unix
// nanoseconds, 0 when not (yet) seen; every field is a fact learnt from
// events (the earliest time of a kind, a set of times), never the order
// they arrived in, so the verdicts built from them do not depend on it.
type Case struct {
	Key, User, Account string
	ExposedURL         string

	// Strong cases were opened by what names an exposed key or its user
	// (a Health notice, a quarantine applied or attempted, the retirement
	// of a keyless user's key); weak ones only by calls a quarantine
	// denied. A flood of the weak kind never pushes out the strong.
	Strong bool

	// FirstSeen is the earliest signal naming the key (or the user);
	// LastSeen the latest event time of anything about it.
	FirstSeen, LastSeen int64

	// A key case: the earliest event that named its user.
	UserAt int64

	// A user case: the earliest signal that named the user's exposed key
	// (before it, every call of the user is a use), those keys, the
	// user's quarantines (applied) and their latest removal.
	KeyKnownAt  int64
	ExposedKeys []string
	Quarantines []int64
	Removed     int64
	// Callers are the user's access keys its calls were seen made with
	// (IAM allows a user two), and when: a key watched later learns its
	// user from the calls a collector would have seen in time order.
	Callers []Caller

	// Waits are exposures waiting for a quarantine: a user case's, or a
	// key case's when the notice named no user.
	Waits []*Wait

	// Status is the key's retirements and re-activations (a user case's:
	// its deletion), in event-time order.
	Status []*Status

	// Groups count the uses (and denied calls) per caller key, service,
	// action and outcome, in windows of Use_Alert_Window.
	Groups map[string]*Group

	// Early are calls with the key (by the user), and changes of the
	// user's keys' status, no later than its earliest signal when they
	// arrived: a signal earlier than them may still arrive (up to
	// Event_Delay late), and make them count.
	Early []Early

	uk         string // userKey(Account, User), once made
	dropped    bool   // off the list: its scheduled waits are void
	v1         bool   // read from the earlier engine's form: Load moves its user's facts
	prev, next *Case
}

// Ref is what a case keeps of an event it may have to alert on later.
type Ref struct {
	At                                       int64
	ID, Name, Source, Region                 string
	SourceIP, UserAgent                      string
	ActorType, ActorARN, ActorUser, ActorKey string
	ErrorCode                                string
}

// Caller is an access key seen calling as a user, at the earliest times.
type Caller struct {
	Key   string
	Times []int64
}

// Early is a call, or a status change of one of the user's keys, kept
// until a signal before it may no longer arrive.
type Early struct {
	Ref
	Status bool // a status change of Key (else a call)
	Active bool
	Key    string
}

// Wait is one exposure's wait for a quarantine: exposures of a case
// within Quarantine_Grace of each other are one wait, quoted by its
// earliest event.
type Wait struct {
	Ref
	Fired bool // alerted: no quarantine in time
	Done  bool // decided: quarantined or retired in time, or fired
}

// Status is one retirement (Active false) or re-activation of a key.
type Status struct {
	Ref
	Active bool
	// Quoted names the alerts that quoted this event: for a retirement,
	// the stretches of activity it was the retirement of ("" the first,
	// else the re-activation that began it: a stretch alerts once, and a
	// re-activation arriving late may split one); for a re-activation,
	// its own alert ("+"). A re-delivered event gives the same alerts.
	Quoted []string
}

// quotedFor: the event was quoted by the alert id names.
func (s *Status) quotedFor(id string) bool { return slices.Contains(s.Quoted, id) }

// Group is one caller key's calls of one service, action and outcome.
type Group struct {
	Since int64 // calls folded since the last alert
	Total int64
	// Alerted are the windows (their start) that alerted, newest first,
	// with the event that alerted in each.
	Alerted []Window
}

// Window is a use window that alerted.
type Window struct {
	Start int64
	First uint64 // a hash of the event key of the call that alerted
}

// WindowsKept bounds Group.Alerted: a call later than Event_Delay is
// rare, one later than this many windows is taken as folded.
const WindowsKept = 4

// Bounds of a case's lists: they hold what a real key's life has (a few
// quarantines, a retirement or two), never what a flood pushes.
const (
	MaxExposedKeys = 8
	MaxQuarantines = 8
	MaxWaits       = 4
	MaxStatus      = 8
	MaxEarly       = 8
	MaxCallers     = 4
	MaxCallTimes   = 8
	// MaxGroups bounds a case's groups of uses (past it, the group that
	// alerted longest ago is forgotten: seen again in the same window it
	// alerts again, with the same alert key, which the delivery drops), and
	// MaxUseAlerts how many groups alert in one window: a scanner trying
	// every API of every service must not grow a case, or the alerts,
	// without bound.
	MaxGroups    = 32
	MaxUseAlerts = 16
)

// MaxCaseBytes bounds the heap one case takes, its indexes included,
// whatever the records hold: every string at its bound and every list
// above full (TestHostileCasesMemory). The README's Scale section states
// it; a typical case takes about 1 KB.
const MaxCaseBytes = 48 << 10

// ID names the case in the store: its key, or its user.
func (c *Case) ID() string {
	if c.Key != "" {
		return "key:" + c.Key
	}
	return "user:" + c.userKey()
}

// userKey is the case's user's index key, made once.
func (c *Case) userKey() string {
	if c.uk == "" && c.User != "" {
		c.uk = userKey(c.Account, c.User)
	}
	return c.uk
}

func t(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// lower keeps the earliest of two event times, 0 being none.
func lower(have, at int64) int64 {
	if have == 0 || (at != 0 && at < have) {
		return at
	}
	return have
}

// addTime puts at into a sorted set of times, keeping the earliest n.
func addTime(ts []int64, at int64, n int) []int64 {
	i, found := slices.BinarySearch(ts, at)
	if found {
		return ts
	}
	ts = slices.Insert(ts, i, at)
	if len(ts) > n {
		ts = ts[:n]
	}
	return ts
}

// MarshalMsg writes the case as msgpack, for the store.
func (c *Case) MarshalMsg(b []byte) []byte {
	b = msgp.AppendMapHeader(b, 17)
	for _, f := range []struct{ k, v string }{{"key", c.Key}, {"user", c.User}, {"account", c.Account}, {"url", c.ExposedURL}} {
		b = msgp.AppendString(msgp.AppendString(b, f.k), f.v)
	}
	b = msgp.AppendBool(msgp.AppendString(b, "strong"), c.Strong)
	for _, f := range []struct {
		k string
		v int64
	}{{"first", c.FirstSeen}, {"last", c.LastSeen}, {"user_at", c.UserAt}, {"key_known", c.KeyKnownAt}, {"removed", c.Removed}} {
		b = msgp.AppendInt64(msgp.AppendString(b, f.k), f.v)
	}
	b = msgp.AppendArrayHeader(msgp.AppendString(b, "exposed_keys"), uint32(len(c.ExposedKeys)))
	for _, k := range c.ExposedKeys {
		b = msgp.AppendString(b, k)
	}
	b = msgp.AppendArrayHeader(msgp.AppendString(b, "quarantines"), uint32(len(c.Quarantines)))
	for _, q := range c.Quarantines {
		b = msgp.AppendInt64(b, q)
	}
	b = msgp.AppendArrayHeader(msgp.AppendString(b, "waits"), uint32(len(c.Waits)))
	for _, w := range c.Waits {
		b = msgp.AppendArrayHeader(b, 3)
		b = w.Ref.append(b)
		b = msgp.AppendBool(msgp.AppendBool(b, w.Fired), w.Done)
	}
	b = msgp.AppendArrayHeader(msgp.AppendString(b, "status"), uint32(len(c.Status)))
	for _, s := range c.Status {
		b = msgp.AppendArrayHeader(b, 3)
		b = s.Ref.append(b)
		b = msgp.AppendArrayHeader(msgp.AppendBool(b, s.Active), uint32(len(s.Quoted)))
		for _, q := range s.Quoted {
			b = msgp.AppendString(b, q)
		}
	}
	b = msgp.AppendArrayHeader(msgp.AppendString(b, "callers"), uint32(len(c.Callers)))
	for _, k := range c.Callers {
		b = msgp.AppendArrayHeader(msgp.AppendString(msgp.AppendArrayHeader(b, 2), k.Key), uint32(len(k.Times)))
		for _, at := range k.Times {
			b = msgp.AppendInt64(b, at)
		}
	}
	b = msgp.AppendArrayHeader(msgp.AppendString(b, "early"), uint32(len(c.Early)))
	for _, x := range c.Early {
		b = msgp.AppendArrayHeader(b, 4)
		b = x.Ref.append(b)
		b = msgp.AppendString(msgp.AppendBool(msgp.AppendBool(b, x.Status), x.Active), x.Key)
	}
	b = msgp.AppendMapHeader(msgp.AppendString(b, "groups"), uint32(len(c.Groups)))
	for _, k := range slices.Sorted(mapsKeys(c.Groups)) {
		g := c.Groups[k]
		b = msgp.AppendString(b, k)
		b = msgp.AppendArrayHeader(b, uint32(2+2*len(g.Alerted)))
		b = msgp.AppendInt64(msgp.AppendInt64(b, g.Since), g.Total)
		for _, w := range g.Alerted {
			b = msgp.AppendUint64(msgp.AppendInt64(b, w.Start), w.First)
		}
	}
	return b
}

func mapsKeys(m map[string]*Group) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// append writes the ref as an array: time, then its strings.
func (r *Ref) append(b []byte) []byte {
	s := r.strings()
	b = msgp.AppendArrayHeader(b, uint32(1+len(s)))
	b = msgp.AppendInt64(b, r.At)
	for _, p := range s {
		b = msgp.AppendString(b, *p)
	}
	return b
}

func (r *Ref) strings() []*string {
	return []*string{&r.ID, &r.Name, &r.Source, &r.Region, &r.SourceIP, &r.UserAgent, &r.ActorType, &r.ActorARN, &r.ActorUser, &r.ActorKey, &r.ErrorCode}
}

func (r *Ref) read(b []byte) ([]byte, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil || n == 0 {
		return b, cmpErr(err, "a ref is not [time, strings...]")
	}
	if r.At, b, err = msgp.ReadInt64Bytes(b); err != nil {
		return b, err
	}
	s := r.strings()
	for i := uint32(1); i < n; i++ {
		var v string
		if v, b, err = msgp.ReadStringBytes(b); err != nil {
			return b, err
		}
		if int(i-1) < len(s) {
			*s[i-1] = v
		}
	}
	return b, nil
}

func cmpErr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}

// UnmarshalCase reads a case MarshalMsg wrote, or one an earlier version
// of the engine wrote (a case that held both key and user, one wait and
// one retirement: read into today's fields).
func UnmarshalCase(b []byte) (*Case, error) {
	c := &Case{}
	var old struct {
		exposed, quarantined, retired, due int64
		fired                              bool
		exposureEvent, exposureName        string
		exposureRegion, retiredBy          string
		retiredEvent                       string
		v1                                 bool
	}
	strs := map[string]*string{"key": &c.Key, "user": &c.User, "account": &c.Account, "url": &c.ExposedURL,
		"exposure_event": &old.exposureEvent, "exposure_name": &old.exposureName, "exposure_region": &old.exposureRegion,
		"retired_by": &old.retiredBy, "retired_event": &old.retiredEvent}
	ints := map[string]*int64{"first": &c.FirstSeen, "last": &c.LastSeen, "user_at": &c.UserAt, "key_known": &c.KeyKnownAt, "removed": &c.Removed,
		"exposed": &old.exposed, "quarantined": &old.quarantined, "retired": &old.retired, "due": &old.due}
	n, b, err := msgp.ReadMapHeaderBytes(b)
	for i := uint32(0); i < n && err == nil; i++ {
		var k string
		if k, b, err = msgp.ReadStringBytes(b); err != nil {
			break
		}
		switch {
		case strs[k] != nil:
			*strs[k], b, err = msgp.ReadStringBytes(b)
		case ints[k] != nil:
			*ints[k], b, err = msgp.ReadInt64Bytes(b)
		case k == "strong":
			c.Strong, b, err = msgp.ReadBoolBytes(b)
		case k == "fired":
			old.v1 = true
			old.fired, b, err = msgp.ReadBoolBytes(b)
		case k == "exposed_keys":
			b, err = readList(b, &c.ExposedKeys, msgp.ReadStringBytes)
		case k == "quarantines":
			b, err = readList(b, &c.Quarantines, msgp.ReadInt64Bytes)
		case k == "waits":
			b, err = readArray(b, func(b []byte) ([]byte, error) {
				w := &Wait{}
				b, err := readTriple(b, &w.Ref, &w.Fired, &w.Done)
				c.Waits = append(c.Waits, w)
				return b, err
			})
		case k == "status":
			b, err = readArray(b, func(b []byte) ([]byte, error) {
				s := &Status{}
				n, b, err := msgp.ReadArrayHeaderBytes(b)
				if err != nil || n != 3 {
					return b, cmpErr(err, "a status is not [ref, active, quoted]")
				}
				if b, err = s.Ref.read(b); err != nil {
					return b, err
				}
				if s.Active, b, err = msgp.ReadBoolBytes(b); err != nil {
					return b, err
				}
				b, err = readList(b, &s.Quoted, msgp.ReadStringBytes)
				c.Status = append(c.Status, s)
				return b, err
			})
		case k == "callers":
			b, err = readArray(b, func(b []byte) ([]byte, error) {
				var k Caller
				n, b, err := msgp.ReadArrayHeaderBytes(b)
				if err != nil || n != 2 {
					return b, cmpErr(err, "a caller is not [key, times]")
				}
				if k.Key, b, err = msgp.ReadStringBytes(b); err == nil {
					b, err = readList(b, &k.Times, msgp.ReadInt64Bytes)
				}
				c.Callers = append(c.Callers, k)
				return b, err
			})
		case k == "early":
			b, err = readArray(b, func(b []byte) ([]byte, error) {
				var x Early
				n, b, err := msgp.ReadArrayHeaderBytes(b)
				if err != nil || n != 4 {
					return b, cmpErr(err, "an early event is not [ref, status, active, key]")
				}
				if b, err = x.Ref.read(b); err == nil {
					if x.Status, b, err = msgp.ReadBoolBytes(b); err == nil {
						if x.Active, b, err = msgp.ReadBoolBytes(b); err == nil {
							x.Key, b, err = msgp.ReadStringBytes(b)
						}
					}
				}
				c.Early = append(c.Early, x)
				return b, err
			})
		case k == "groups":
			b, err = readGroups(b, c)
		default: // the earlier version's windows among them: counts only
			b, err = msgp.Skip(b)
		}
	}
	if err != nil {
		return nil, err
	}
	if c.Key == "" && c.User == "" {
		return nil, errors.New("a case with neither key nor user")
	}
	if c.v1 = old.v1; c.v1 {
		c.fromV1(old.exposed, old.quarantined, old.retired, old.due, old.fired,
			Ref{ID: old.exposureEvent, Name: old.exposureName, Region: old.exposureRegion}, Ref{ID: old.retiredEvent, Name: old.retiredBy})
	}
	return c, nil
}

// fromV1 reads the earlier engine's fields: its cases were opened only by
// exposure signals (strong), and kept one wait and one retirement. A case
// that held both a key and its user keeps the user's facts here until
// Load moves them to the user's case.
func (c *Case) fromV1(exposed, quarantined, retired, due int64, fired bool, exposure, retirement Ref) {
	c.Strong = true
	if c.Key != "" && c.User != "" {
		c.UserAt = c.FirstSeen
	}
	if quarantined != 0 {
		c.Quarantines = []int64{quarantined}
	}
	if due != 0 || fired {
		exposure.At = exposed
		c.Waits = []*Wait{{Ref: exposure, Fired: fired, Done: fired}}
	}
	if retired != 0 {
		retirement.At = retired
		c.Status = []*Status{{Ref: retirement, Quoted: []string{""}}}
	}
}

func readTriple(b []byte, r *Ref, x, y *bool) ([]byte, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil || n != 3 {
		return b, cmpErr(err, "not [ref, bool, bool]")
	}
	if b, err = r.read(b); err != nil {
		return b, err
	}
	if *x, b, err = msgp.ReadBoolBytes(b); err != nil {
		return b, err
	}
	*y, b, err = msgp.ReadBoolBytes(b)
	return b, err
}

func readArray(b []byte, each func([]byte) ([]byte, error)) ([]byte, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	for i := uint32(0); i < n && err == nil; i++ {
		b, err = each(b)
	}
	return b, err
}

// readList appends each item of a msgpack array to dst.
func readList[T any](b []byte, dst *[]T, read func([]byte) (T, []byte, error)) ([]byte, error) {
	return readArray(b, func(b []byte) ([]byte, error) {
		v, b, err := read(b)
		*dst = append(*dst, v)
		return b, err
	})
}

func readGroups(b []byte, c *Case) ([]byte, error) {
	n, b, err := msgp.ReadMapHeaderBytes(b)
	for i := uint32(0); i < n && err == nil; i++ {
		var k string
		var m uint32
		if k, b, err = msgp.ReadStringBytes(b); err != nil {
			break
		}
		if m, b, err = msgp.ReadArrayHeaderBytes(b); err != nil || m < 2 || m%2 != 0 {
			return b, cmpErr(err, "a group is not [since, total, (start, first)...]")
		}
		g := &Group{}
		if g.Since, b, err = msgp.ReadInt64Bytes(b); err != nil {
			break
		}
		if g.Total, b, err = msgp.ReadInt64Bytes(b); err != nil {
			break
		}
		for j := uint32(2); j < m && err == nil; j += 2 {
			var w Window
			if w.Start, b, err = msgp.ReadInt64Bytes(b); err == nil {
				w.First, b, err = msgp.ReadUint64Bytes(b)
			}
			g.Alerted = append(g.Alerted, w)
		}
		if c.Groups == nil {
			c.Groups = map[string]*Group{}
		}
		c.Groups[k] = g
	}
	return b, err
}

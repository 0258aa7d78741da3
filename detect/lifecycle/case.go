package lifecycle

import (
	"errors"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// Case is one exposed key's file: the key (or, while none is known, its
// user), what happened to it and when. Times are event times in unix
// nanoseconds, 0 when not (yet) seen.
type Case struct {
	Key, User, Account string
	ExposedURL         string

	FirstSeen, LastSeen     int64
	ExposedAt, Quarantined  int64
	Removed, Retired        int64
	RetiredBy, RetiredEvent string // the retiring call's name and event key

	// The exposure that waits for a quarantine: due at Due (event time),
	// fired once. ExposureEvent names the event that started the wait.
	Due            int64
	Fired          bool
	ExposureEvent  string
	ExposureName   string
	ExposureRegion string

	// Windows group the uses of the key per service, action and outcome.
	Windows map[string]*Window

	prev, next *Case // least recently seen first, for Watch_Max_Keys
}

// Window counts one group's calls since its alert.
type Window struct {
	Start  int64  // event time of the call that opened it (and alerted)
	First  string // that call's event key: seen again, it alerts again
	Calls  int64  // calls in this window so far
	Total  int64  // calls of the group since the key was watched
	Before int64  // calls the previous windows suppressed, reported by this one's alert
}

// maxWindows bounds one case's groups: a scanner trying every API of
// every service must not grow a case without bound.
const maxWindows = 512

// ID names the case in the store: its key, or its user while no key is
// known.
func (c *Case) ID() string {
	if c.Key != "" {
		return "key:" + c.Key
	}
	return "user:" + userKey(c.Account, c.User)
}

func t(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// MarshalMsg writes the case as msgpack, for the store.
func (c *Case) MarshalMsg(b []byte) []byte {
	strs := []struct {
		k string
		v string
	}{{"key", c.Key}, {"user", c.User}, {"account", c.Account}, {"url", c.ExposedURL}, {"retired_by", c.RetiredBy},
		{"retired_event", c.RetiredEvent}, {"exposure_event", c.ExposureEvent}, {"exposure_name", c.ExposureName}, {"exposure_region", c.ExposureRegion}}
	ints := []struct {
		k string
		v int64
	}{{"first", c.FirstSeen}, {"last", c.LastSeen}, {"exposed", c.ExposedAt}, {"quarantined", c.Quarantined},
		{"removed", c.Removed}, {"retired", c.Retired}, {"due", c.Due}}
	b = msgp.AppendMapHeader(b, uint32(len(strs)+len(ints)+2))
	for _, f := range strs {
		b = msgp.AppendString(msgp.AppendString(b, f.k), f.v)
	}
	for _, f := range ints {
		b = msgp.AppendInt64(msgp.AppendString(b, f.k), f.v)
	}
	b = msgp.AppendBool(msgp.AppendString(b, "fired"), c.Fired)
	b = msgp.AppendMapHeader(msgp.AppendString(b, "windows"), uint32(len(c.Windows)))
	for k, w := range c.Windows {
		b = msgp.AppendString(b, k)
		b = msgp.AppendArrayHeader(b, 5)
		b = msgp.AppendInt64(b, w.Start)
		b = msgp.AppendString(b, w.First)
		b = msgp.AppendInt64(b, w.Calls)
		b = msgp.AppendInt64(b, w.Total)
		b = msgp.AppendInt64(b, w.Before)
	}
	return b
}

// UnmarshalCase reads a case MarshalMsg wrote.
func UnmarshalCase(b []byte) (*Case, error) {
	c := &Case{Windows: map[string]*Window{}}
	strs := map[string]*string{"key": &c.Key, "user": &c.User, "account": &c.Account, "url": &c.ExposedURL, "retired_by": &c.RetiredBy,
		"retired_event": &c.RetiredEvent, "exposure_event": &c.ExposureEvent, "exposure_name": &c.ExposureName, "exposure_region": &c.ExposureRegion}
	ints := map[string]*int64{"first": &c.FirstSeen, "last": &c.LastSeen, "exposed": &c.ExposedAt, "quarantined": &c.Quarantined,
		"removed": &c.Removed, "retired": &c.Retired, "due": &c.Due}
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
		case k == "fired":
			c.Fired, b, err = msgp.ReadBoolBytes(b)
		case k == "windows":
			b, err = readWindows(b, c.Windows)
		default:
			b, err = msgp.Skip(b)
		}
	}
	if err != nil {
		return nil, err
	}
	if c.Key == "" && c.User == "" {
		return nil, errors.New("a case with neither key nor user")
	}
	return c, nil
}

func readWindows(b []byte, into map[string]*Window) ([]byte, error) {
	n, b, err := msgp.ReadMapHeaderBytes(b)
	for i := uint32(0); i < n && err == nil; i++ {
		var k string
		var m uint32
		if k, b, err = msgp.ReadStringBytes(b); err != nil {
			break
		}
		if m, b, err = msgp.ReadArrayHeaderBytes(b); err != nil || m != 5 {
			return b, errors.New("a window is not [start, first, calls, total, before]")
		}
		w := &Window{}
		if w.Start, b, err = msgp.ReadInt64Bytes(b); err != nil {
			break
		}
		if w.First, b, err = msgp.ReadStringBytes(b); err != nil {
			break
		}
		if w.Calls, b, err = msgp.ReadInt64Bytes(b); err != nil {
			break
		}
		if w.Total, b, err = msgp.ReadInt64Bytes(b); err != nil {
			break
		}
		if w.Before, b, err = msgp.ReadInt64Bytes(b); err != nil {
			break
		}
		into[k] = w
	}
	return b, err
}

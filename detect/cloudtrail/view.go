package cloudtrail

import (
	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// ResolveMsgpack finds the events of a record body given as msgpack. The
// common shapes (a plain event, a log file's Records, an EventBridge
// detail) are read straight from the bytes, field by field, without
// building a map of the event; anything else (ECS, JSON strings, pipelines
// that lower-cased the keys) is decoded and resolved as a map. It reports
// the events found and the events of a log file it had to skip (one that
// cannot be read does not hide the rest of the file).
func (r *Resolver) ResolveMsgpack(body []byte, emit func(*Event)) (found, skipped int, err error) {
	emit = bounded(emit)
	var top struct {
		eventName, records, detail []byte
		named, sourced, health     bool
	}
	err = eachField(body, func(k string, v []byte) {
		// The first of duplicate keys wins, as in the map path.
		switch {
		case k == "eventName" && !top.named:
			top.named = true
			if msgp.NextType(v) != msgp.NilType { // null names no event, as in the map path
				top.eventName = v
			}
		case k == "Records" && top.records == nil:
			top.records = v
		case k == "detail" && top.detail == nil:
			top.detail = v
		case k == "source" && !top.sourced:
			// An AWS Health envelope is read as Health whatever its detail
			// holds, as in the map path.
			top.sourced = true
			top.health = value.TextMsgpack(v) == "aws.health"
		}
	})
	if err != nil {
		return 0, 0, err
	}
	// The same order as the map path: Records, then eventName, then detail.
	isArray := msgp.NextType(top.records) == msgp.ArrayType
	switch {
	case isArray && r.allEvents(top.records):
		n, rest, err := msgp.ReadArrayHeaderBytes(top.records)
		if err != nil {
			return 0, 0, err
		}
		for range n {
			end, err := msgp.Skip(rest)
			if err != nil {
				return found, skipped, err
			}
			if c, err := r.viewEvent(rest[:len(rest)-len(end)], ShapeLogFile, emit); err != nil {
				skipped++
			} else {
				found += c
			}
			rest = end
		}
		return found, skipped, nil
	case isArray:
		// Records with odd elements: the map path skips what is not an event.
	case top.eventName != nil:
		found, err = r.viewEvent(body, ShapeEvent, emit)
		return found, 0, err
	case top.detail != nil && !top.health:
		if found, ok, err := r.viewNamed(top.detail, ShapeEventBridge, emit); ok {
			return found, 0, err
		}
	}
	v, err := value.FromMsgpackSkipping(body, Unread)
	if err != nil {
		return 0, 0, err
	}
	m, _ := v.(map[string]any)
	return r.resolve(m, emit, true), 0, nil
}

// allEvents reports whether every element of a Records array is a map with
// eventName, so the fast path reads exactly what the map path would.
func (r *Resolver) allEvents(arr []byte) bool {
	n, rest, err := msgp.ReadArrayHeaderBytes(arr)
	for i := uint32(0); i < n && err == nil; i++ {
		end, serr := msgp.Skip(rest)
		if serr != nil || !hasEventName(rest[:len(rest)-len(end)]) {
			return false
		}
		rest = end
	}
	return err == nil
}

// ResolveRecordMsgpack reads one element of a CloudTrail log file's
// Records, given as msgpack, as ResolveRecord reads it decoded: an event
// straight from the bytes, anything else decoded.
func (r *Resolver) ResolveRecordMsgpack(rec []byte, emit func(*Event)) (int, error) {
	if n, ok, err := r.viewNamed(rec, ShapeLogFile, bounded(emit)); ok {
		return n, err
	}
	v, err := value.FromMsgpackSkipping(rec, Unread)
	if err != nil {
		return 0, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return 0, nil
	}
	return r.element(m, emit, true), nil
}

// hasEventName reports whether m is a map whose first eventName is not
// null: what the map path takes for an event.
func hasEventName(m []byte) bool {
	seen, found := false, false
	err := eachField(m, func(k string, v []byte) {
		if k == "eventName" && !seen {
			seen, found = true, msgp.NextType(v) != msgp.NilType
		}
	})
	return err == nil && found
}

// eachField calls fn for every string-keyed entry of a msgpack map; the key
// string is only valid during the call (it aliases b).
func eachField(b []byte, fn func(key string, val []byte)) error {
	n, rest, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return err
	}
	for range n {
		k, after, terr := value.ReadText(rest)
		if terr != nil {
			k = nil // a key that is not text names no CloudTrail field
			after, err = msgp.Skip(rest)
		}
		if err != nil {
			return err
		}
		rest = after
		end, err := msgp.Skip(rest)
		if err != nil {
			return err
		}
		if k != nil {
			fn(unsafeString(k), rest[:len(rest)-len(end)])
		}
		rest = end
	}
	return nil
}

// viewEvent builds an Event from a msgpack CloudTrail event.
func (r *Resolver) viewEvent(ev []byte, shape Shape, emit func(*Event)) (int, error) {
	n, _, err := r.view(ev, shape, emit, false)
	return n, err
}

// viewNamed is viewEvent for a map that may be no event: ok is false, and
// nothing is emitted, when its first eventName is missing or null (or the
// map cannot be walked): what hasEventName tells, found in the same walk.
func (r *Resolver) viewNamed(ev []byte, shape Shape, emit func(*Event)) (n int, ok bool, err error) {
	return r.view(ev, shape, emit, true)
}

func (r *Resolver) view(ev []byte, shape Shape, emit func(*Event), needName bool) (int, bool, error) {
	e := &Event{Shape: shape}
	var id, params []byte
	var seen, seenID firsts
	named := false
	err := eachField(ev, func(k string, v []byte) {
		switch k {
		case "eventName":
			if seen&1 == 0 {
				named = msgp.NextType(v) != msgp.NilType
			}
			seen.set(0, &e.Name, v)
		case "eventSource":
			seen.set(1, &e.Source, v)
		case "errorCode":
			seen.set(2, &e.ErrorCode, v)
		case "errorMessage":
			seen.set(3, &e.ErrorMessage, v)
		case "eventID":
			seen.set(4, &e.ID, v)
		case "eventTime":
			seen.set(5, &e.Time, v)
		case "awsRegion":
			seen.set(6, &e.Region, v)
		case "recipientAccountId":
			seen.set(7, &e.Account, v)
		case "sourceIPAddress":
			seen.set(8, &e.SourceIP, v)
		case "userAgent":
			seen.set(9, &e.UserAgent, v)
		case "userIdentity":
			if id == nil {
				id = v
			}
		case "requestParameters":
			if params == nil {
				params = v
			}
		}
	})
	if needName && (err != nil || !named) {
		return 0, false, nil
	}
	if err != nil {
		return 0, true, err
	}
	if id != nil {
		err = eachField(id, func(k string, v []byte) {
			switch k {
			case "type":
				seenID.set(0, &e.Actor.Type, v)
			case "arn":
				seenID.set(1, &e.Actor.ARN, v)
			case "userName":
				seenID.set(2, &e.Actor.UserName, v)
			case "accessKeyId":
				seenID.set(3, &e.Actor.AccessKeyID, v)
			case "accountId":
				seenID.set(4, &e.Actor.AccountID, v)
			}
		})
		if err != nil && msgp.NextType(id) == msgp.MapType {
			return 0, true, err
		}
	}
	if e.Account == "" {
		e.Account = e.Actor.AccountID
	}
	if params != nil {
		p, err := value.FromMsgpack(params)
		if err != nil {
			return 0, true, err
		}
		e.Params = toParams(p)
	}
	// Zero-copy: Raw aliases the chunk, which outlives every use of the
	// event (alerts are encoded before the flush returns).
	e.Raw = value.Raw(ev)
	emit(e)
	return 1, true, nil
}

// firsts keeps the first of duplicate keys, as the map path does: the
// field numbered i is set by its first key only, even when that key's
// value is null or empty.
type firsts uint32

func (f *firsts) set(i uint, dst *string, v []byte) {
	if *f&(1<<i) == 0 {
		*f |= 1 << i
		*dst = value.TextMsgpack(v)
	}
}

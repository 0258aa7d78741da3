package detect

import (
	"bytes"
	"time"
	"unsafe"

	"github.com/tinylib/msgp/msgp"
)

// The lifecycle decides in event time, and every record moves it, not
// only the rare candidates: a replay of two hours of ordinary CloudTrail
// must end the waits two hours of the live stream end. Reading every
// record's eventTime would cost a field walk per record; a chunk is
// minutes of one stream, so its last record's time stands for it, read in
// one small look. Fluent Bit's own record timestamps are no substitute:
// tail stamps a record when it reads the line, so a replay of last month
// would carry today's time and end every wait at once.

// recordTime is the event time a record body carries, without decoding
// it: the eventTime of a plain event, of the first event of a log file's
// Records, of an EventBridge detail (else the envelope's time), of an
// event held as a JSON string under one of keys, or an OCSF record's
// time. Zero when none reads.
func recordTime(body []byte, keys []string) time.Time {
	var at, envelope time.Time
	_ = eachTop(body, func(k []byte, v []byte) bool {
		switch string(k) {
		case "eventTime":
			at = parseTime(v)
		case "Records":
			at = firstRecordTime(v)
		case "detail":
			at = timeField(v, "eventTime")
		case "time":
			// An EventBridge envelope's (RFC 3339), or an OCSF record's
			// own (epoch milliseconds).
			if ms, _, err := msgp.ReadInt64Bytes(v); err == nil {
				at = time.UnixMilli(ms).UTC()
			} else {
				envelope = parseTime(v)
			}
		default:
			for _, key := range keys {
				if bytes.EqualFold(k, []byte(key)) {
					at = jsonTime(v)
				}
			}
		}
		return at.IsZero()
	})
	if at.IsZero() {
		return envelope
	}
	return at
}

// eachTop calls fn with the top-level keys of a msgpack map and what
// follows each (its value first: fn reads only what it needs of it, so a
// log file's Records are not walked) until fn returns false.
func eachTop(m []byte, fn func(k, v []byte) bool) error {
	n, b, err := msgp.ReadMapHeaderBytes(m)
	for i := uint32(0); i < n && err == nil; i++ {
		var k []byte
		if k, b, err = msgp.ReadStringZC(b); err != nil {
			return err
		}
		if !fn(k, b) {
			return nil
		}
		b, err = msgp.Skip(b)
	}
	return err
}

func timeField(m []byte, key string) time.Time {
	var at time.Time
	_ = eachTop(m, func(k, v []byte) bool {
		if string(k) == key {
			at = parseTime(v)
			return false
		}
		return true
	})
	return at
}

func firstRecordTime(arr []byte) time.Time {
	n, b, err := msgp.ReadArrayHeaderBytes(arr)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return timeField(b, "eventTime")
}

func parseTime(v []byte) time.Time {
	s, _, err := msgp.ReadStringZC(v)
	if err != nil || len(s) > 40 {
		return time.Time{}
	}
	return parseRFC3339(s)
}

// parseRFC3339 reads a time without copying its bytes: a chunk's every
// flush reads one, and allocates nothing for it.
func parseRFC3339(s []byte) time.Time {
	if len(s) < 20 || s[4] != '-' || s[10] != 'T' {
		return time.Time{} // time.Parse allocates its error
	}
	at, _ := time.Parse(time.RFC3339Nano, unsafe.String(unsafe.SliceData(s), len(s)))
	return at
}

// jsonTime finds eventTime in an event held as JSON text: its first
// occurrence, which in CloudTrail's field order comes before anything a
// caller writes (request parameters, user agent), and a JSON string
// cannot hold an unescaped quote.
func jsonTime(v []byte) time.Time {
	s, _, err := msgp.ReadStringZC(v)
	if err != nil {
		if s, _, err = msgp.ReadBytesZC(v); err != nil {
			return time.Time{}
		}
	}
	const key = `"eventTime":"`
	i := bytes.Index(s, []byte(key))
	if i < 0 {
		return time.Time{}
	}
	s = s[i+len(key):]
	end := bytes.IndexByte(s, '"')
	if end < 0 || end > 40 {
		return time.Time{}
	}
	return parseRFC3339(s[:end])
}

package value

import (
	"encoding/binary"
	"time"
)

// EventTimeExt is the msgpack extension type Fluent Bit and the forward
// protocol use for EventTime.
const EventTimeExt = 0

// AppendEventTime appends t as Fluent Bit's EventTime: msgpack fixext8 of
// type 0 holding big-endian uint32 seconds and nanoseconds.
func AppendEventTime(b []byte, t time.Time) []byte {
	b = append(b, 0xd7, EventTimeExt)
	b = binary.BigEndian.AppendUint32(b, uint32(t.Unix()))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

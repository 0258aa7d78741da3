// Package chunk walks a Fluent Bit chunk (the msgpack buffer handed to an
// output's flush callback) record by record, in place: no copy of the chunk
// and no allocation per record. fluent-bit-go's decoder copies the chunk,
// builds a map per record, returns group markers as records and stops at the
// first float timestamp; this reader does none of that.
package chunk

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// Record is one log record of a chunk. Its byte slices point into the chunk
// and are only valid while the chunk is.
type Record struct {
	Time time.Time
	// Meta is the raw msgpack metadata map of a v2 record, nil for legacy ones.
	Meta []byte
	// Body is the raw msgpack of the record body, always a map.
	Body []byte
	// Raw is the whole record, from its array header to its last byte.
	Raw []byte
	// Offset is where Raw starts in the chunk.
	Offset int
}

// Skipped counts records that were passed over, by reason.
type Skipped struct {
	Malformed int // not a [header, body] array, or a bad header or timestamp
	NotMap    int // the body is not a map
	Group     int // OpenTelemetry group start/end markers
	// Truncated is 1 when the chunk ended inside a record or held bytes that
	// are not msgpack: nothing after that point can be framed.
	Truncated int
}

// Total is the number of records (or unreadable tails) skipped.
func (s Skipped) Total() int { return s.Malformed + s.NotMap + s.Group + s.Truncated }

// Add accumulates another count into s.
func (s *Skipped) Add(o Skipped) {
	s.Malformed += o.Malformed
	s.NotMap += o.NotMap
	s.Group += o.Group
	s.Truncated += o.Truncated
}

// Group markers carry these EventTime seconds (-1 and -2 as int32).
const (
	groupStart = 0xFFFFFFFF
	groupEnd   = 0xFFFFFFFE
)

// eventTimeExt is the msgpack extension type Fluent Bit uses for EventTime.
const eventTimeExt = value.EventTimeExt

// Reader iterates over the records of one chunk. The zero value is empty;
// call Reset to start on a chunk. A Reader is cheap to keep by value.
type Reader struct {
	data    []byte
	off     int
	rec     Record
	skipped Skipped
}

// Reset starts reading data from its first record.
func (r *Reader) Reset(data []byte) {
	*r = Reader{data: data}
}

// Offset is the position of the next unread byte.
func (r *Reader) Offset() int { return r.off }

// Record returns the record found by the last successful Next.
func (r *Reader) Record() *Record { return &r.rec }

// Skipped reports what Next has passed over so far.
func (r *Reader) Skipped() Skipped { return r.skipped }

// Next advances to the next well-formed record, skipping (and counting)
// malformed ones, and reports whether there is one.
func (r *Reader) Next() bool {
	for r.off < len(r.data) {
		start := r.off
		end, err := skip(r.data, start)
		if err != nil {
			// Without a valid object we cannot find where the next record
			// starts, so the tail of the chunk is lost (and counted).
			r.skipped.Truncated++
			r.off = len(r.data)
			return false
		}
		r.off = end
		raw := r.data[start:end]
		switch r.parse(raw) {
		case ok:
			r.rec.Raw = raw
			r.rec.Offset = start
			return true
		case malformed:
			r.skipped.Malformed++
		case notMap:
			r.skipped.NotMap++
		case group:
			r.skipped.Group++
		}
	}
	return false
}

type verdict uint8

const (
	ok verdict = iota
	malformed
	notMap
	group
)

// parse reads one framed record. Framing already proved the bytes are
// complete msgpack, so the errors left are shape errors.
func (r *Reader) parse(raw []byte) verdict {
	n, b, err := msgp.ReadArrayHeaderBytes(raw)
	if err != nil || n != 2 {
		return malformed
	}
	r.rec.Meta = nil
	// v2 is [[time, metadata, ...], body]; legacy is [time, body].
	header, hn := b, uint32(1)
	if msgp.NextType(b) == msgp.ArrayType {
		if hn, header, err = msgp.ReadArrayHeaderBytes(b); err != nil || hn < 1 {
			return malformed
		}
	}
	t, isGroup, after, valid := readTime(header)
	switch {
	case !valid:
		return malformed
	case isGroup:
		return group
	}
	r.rec.Time = t
	for i := uint32(1); i < hn; i++ {
		end, err := skip(after, 0)
		if err != nil {
			return malformed
		}
		if i == 1 {
			r.rec.Meta = after[:end]
		}
		after = after[end:]
	}
	b = after
	if msgp.NextType(b) != msgp.MapType {
		return notMap
	}
	r.rec.Body = b
	return ok
}

// readTime decodes an EventTime extension, an integer or a float timestamp.
func readTime(b []byte) (t time.Time, isGroup bool, rest []byte, ok bool) {
	if len(b) == 0 {
		return time.Time{}, false, nil, false
	}
	switch msgp.NextType(b) {
	case msgp.ExtensionType:
		// fixext8 (0xd7) or ext8 with length 8 (0xc7 0x08): type 0, sec, nsec.
		var p []byte
		switch {
		case len(b) >= 10 && b[0] == 0xd7 && int8(b[1]) == eventTimeExt:
			p, rest = b[2:10], b[10:]
		case len(b) >= 11 && b[0] == 0xc7 && b[1] == 8 && int8(b[2]) == eventTimeExt:
			p, rest = b[3:11], b[11:]
		default:
			return time.Time{}, false, nil, false
		}
		sec := binary.BigEndian.Uint32(p)
		nsec := binary.BigEndian.Uint32(p[4:])
		if sec == groupStart || sec == groupEnd {
			return time.Time{}, true, rest, true
		}
		return time.Unix(int64(sec), int64(nsec)), false, rest, true
	case msgp.IntType, msgp.UintType:
		i, rest, err := msgp.ReadInt64Bytes(b)
		if err != nil {
			u, rest, err := msgp.ReadUint64Bytes(b)
			if err != nil || u > math.MaxInt64 {
				return time.Time{}, false, nil, false
			}
			return time.Unix(int64(u), 0), false, rest, true
		}
		return time.Unix(i, 0), false, rest, true
	case msgp.Float64Type, msgp.Float32Type:
		f, rest, err := msgp.ReadFloat64Bytes(b)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return time.Time{}, false, nil, false
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), false, rest, true
	}
	return time.Time{}, false, nil, false
}

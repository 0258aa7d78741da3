// Package fbchunk builds Fluent Bit chunks (the msgpack buffers Fluent Bit
// hands to an output's flush) for tests, benchmarks and `make run`: v2 and
// legacy records, every timestamp encoding, and group markers.
package fbchunk

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// AppendEventTime appends t as Fluent Bit's EventTime (fixext8, type 0).
func AppendEventTime(b []byte, t time.Time) []byte { return value.AppendEventTime(b, t) }

func appendEventTime(b []byte, sec, nsec uint32) []byte {
	b = append(b, 0xd7, 0x00)
	b = binary.BigEndian.AppendUint32(b, sec)
	return binary.BigEndian.AppendUint32(b, nsec)
}

// AppendV2 appends a record in Fluent Bit 2.1+ format:
// [[EventTime, metadata], body].
func AppendV2(b []byte, t time.Time, meta map[string]any, body any) []byte {
	b = msgp.AppendArrayHeader(b, 2)
	b = msgp.AppendArrayHeader(b, 2)
	b = AppendEventTime(b, t)
	if meta == nil {
		meta = map[string]any{}
	}
	return mustAppend(mustAppend(b, meta), body)
}

// AppendLegacy appends a [timestamp, body] record. ts may be a time.Time
// (written as EventTime), an int64 (seconds) or a float64.
func AppendLegacy(b []byte, ts any, body any) []byte {
	b = msgp.AppendArrayHeader(b, 2)
	switch ts := ts.(type) {
	case time.Time:
		b = AppendEventTime(b, ts)
	case int64:
		b = msgp.AppendInt64(b, ts)
	case float64:
		b = msgp.AppendFloat64(b, ts)
	default:
		panic(fmt.Sprintf("fbchunk: unsupported timestamp %T", ts))
	}
	return mustAppend(b, body)
}

// AppendGroupStart and AppendGroupEnd append OpenTelemetry group markers.
func AppendGroupStart(b []byte) []byte { return appendGroupMarker(b, 0xFFFFFFFF) }
func AppendGroupEnd(b []byte) []byte   { return appendGroupMarker(b, 0xFFFFFFFE) }

func appendGroupMarker(b []byte, sec uint32) []byte {
	b = msgp.AppendArrayHeader(b, 2)
	b = msgp.AppendArrayHeader(b, 2)
	b = appendEventTime(b, sec, 0)
	b = msgp.AppendMapHeader(b, 0)
	return mustAppend(b, map[string]any{"resource": map[string]any{}})
}

func mustAppend(b []byte, v any) []byte { return value.AppendMsgpack(b, v) }

// Lines reads JSON lines (blank lines skipped) into values.
func Lines(r io.Reader) ([]any, error) {
	var out []any
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		v, err := value.FromJSON(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, v)
	}
	return out, sc.Err()
}

// FromValues builds a v2 chunk with one record per value, as Fluent Bit's
// tail input with a JSON parser would, one second apart from start.
func FromValues(start time.Time, bodies []any) []byte {
	var b []byte
	for i, body := range bodies {
		b = AppendV2(b, start.Add(time.Duration(i)*time.Second), nil, body)
	}
	return b
}

package bench

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
)

// The benchmark stream: the corpus's 473 events that are not quarantines,
// cycled to 10,000 records, with one quarantine event in the middle (a
// rate of 1 in 10,000; real streams are rarer still).
const streamLen = 10000

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

var (
	loadOnce sync.Once
	loaded   dataset
)

// mustLoad splits the corpus into its two quarantine events and the rest.
func mustLoad(b testing.TB) dataset {
	loadOnce.Do(func() {
		for _, e := range corpus.Panther(b) {
			js := value.ToJSON(e)
			if containsNeedle(js) {
				loaded.quarantine = append(loaded.quarantine, e)
			} else {
				loaded.clean = append(loaded.clean, e)
			}
		}
	})
	if len(loaded.quarantine) != 2 {
		b.Fatalf("corpus holds %d quarantine events, want 2", len(loaded.quarantine))
	}
	return loaded
}

type dataset struct {
	clean      []any // events that are not quarantines
	quarantine []any // the corpus's two quarantine events
}

func containsNeedle(b []byte) bool {
	for _, n := range detect.Needles {
		if bytes.Contains(b, n) {
			return true
		}
	}
	return false
}

// stream is streamLen events with one quarantine in the middle, or none.
func (d dataset) stream(withQuarantine bool) []any {
	out := make([]any, 0, streamLen)
	for i := 0; len(out) < streamLen; i++ {
		if withQuarantine && len(out) == streamLen/2 {
			out = append(out, d.quarantine[0])
			continue
		}
		out = append(out, d.clean[i%len(d.clean)])
	}
	return out
}

// allQuarantine is streamLen quarantine events with distinct eventIDs, so
// nothing is de-duplicated away.
func (d dataset) allQuarantine() []any {
	out := make([]any, 0, streamLen)
	for i := range streamLen {
		src := d.quarantine[i%2].(map[string]any)
		e := make(map[string]any, len(src))
		for k, v := range src {
			e[k] = v
		}
		e["eventID"] = fmt.Sprintf("bench-%06d", i)
		out = append(out, e)
	}
	return out
}

// Chunk encodings of a stream, one per record format and shape.
func chunkV2(events []any) []byte { return fbchunk.FromValues(t0, events) }

func chunkLegacy(events []any) []byte {
	var b []byte
	for i, e := range events {
		b = fbchunk.AppendLegacy(b, t0.Add(time.Duration(i)*time.Second), e)
	}
	return b
}

// chunkLogFiles packs the events into CloudTrail log-file objects of 100.
func chunkLogFiles(events []any) []byte {
	var b []byte
	for i := 0; i < len(events); i += 100 {
		b = fbchunk.AppendV2(b, t0, nil, map[string]any{"Records": events[i:min(i+100, len(events))]})
	}
	return b
}

// chunkJSONString puts each event as a JSON string under "log", as tail
// without a parser does.
func chunkJSONString(events []any) []byte {
	var b []byte
	for _, e := range events {
		js := value.ToJSON(e)
		b = fbchunk.AppendV2(b, t0, nil, map[string]any{"log": string(js)})
	}
	return b
}

package bench

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/tinylib/msgp/msgp"
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

// cloudTrailOrder is the order CloudTrail writes an event's fields in (and
// its userIdentity's). Fluent Bit keeps the order of the JSON it parses, so
// the chunks are encoded in it (the corpus's lines are sorted by key).
// Layout matters to the baseline: bytes.Index hops from first byte to
// first byte and moves to a vector search only after enough false hits
// early in the data, so the same bytes in another order can take twice as
// long (seen: 2.4 ms against 1.1 ms for this stream in Go's random map
// order).
var cloudTrailOrder = map[string][]string{
	"": {"eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress",
		"userAgent", "errorCode", "errorMessage", "requestParameters", "responseElements", "additionalEventData",
		"requestID", "eventID", "readOnly", "resources", "eventType", "apiVersion", "managementEvent",
		"recipientAccountId", "sharedEventID", "vpcEndpointId", "eventCategory", "tlsDetails", "sessionCredentialFromConsole"},
	"userIdentity": {"type", "principalId", "arn", "accountId", "accessKeyId", "userName", "sessionContext", "invokedBy"},
}

// inOrder encodes each event as msgpack with its fields in CloudTrail's
// order, the rest after them by name.
func inOrder(events []any) []any {
	out := make([]any, len(events))
	for i, e := range events {
		out[i] = value.Raw(appendOrdered(nil, e, ""))
	}
	return out
}

func appendOrdered(b []byte, v any, key string) []byte {
	m, ok := v.(map[string]any)
	if !ok {
		return value.AppendMsgpack(b, v)
	}
	order := cloudTrailOrder[key]
	b = msgp.AppendMapHeader(b, uint32(len(m)))
	for _, k := range order {
		if fv, ok := m[k]; ok {
			b = appendOrdered(msgp.AppendString(b, k), fv, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(order, k) {
			b = value.AppendMsgpack(msgp.AppendString(b, k), m[k])
		}
	}
	return b
}

// Chunk encodings of a stream, one per record format and shape.
func chunkV2(events []any) []byte { return fbchunk.FromValues(t0, inOrder(events)) }

func chunkLegacy(events []any) []byte {
	var b []byte
	for i, e := range inOrder(events) {
		b = fbchunk.AppendLegacy(b, t0.Add(time.Duration(i)*time.Second), e)
	}
	return b
}

// chunkLogFiles packs the events into CloudTrail log-file objects of 100.
func chunkLogFiles(events []any) []byte {
	events = inOrder(events)
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
	for _, e := range inOrder(events) {
		js := value.ToJSON(e)
		b = fbchunk.AppendV2(b, t0, nil, map[string]any{"log": string(js)})
	}
	return b
}

// The archives are made once for the process and outlive any one
// benchmark, so their directories are removed when the process ends: a
// make bench leaves nothing in $TMPDIR (it used to leave every archive).
var tempDirs struct {
	sync.Mutex
	paths []string
}

func tempDir(b testing.TB, prefix string) string {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		b.Fatal(err)
	}
	tempDirs.Lock()
	tempDirs.paths = append(tempDirs.paths, dir)
	tempDirs.Unlock()
	return dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range tempDirs.paths {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// Package bench measures the plugin's detection against the decoding most
// Go Fluent Bit plugins use (fluent-bit-go's NewDecoder/GetRecord) on the
// same chunks, in the same run, so the ratios in the README are like for
// like. Run with `make bench`.
package bench

import (
	"bytes"
	"testing"
	"unsafe"

	jsoniter "github.com/json-iterator/go"

	"github.com/fluent/fluent-bit-go/output"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/chunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

type shape struct {
	name   string
	encode func([]any) []byte
}

var shapes = []shape{
	{"v2", chunkV2},
	{"legacy", chunkLegacy},
	{"logfile", chunkLogFiles},
	{"jsonstring", chunkJSONString},
}

func newDetector() *detect.Detector {
	return detect.New(detect.Options{EventKeys: []string{"log", "message"}})
}

// report sets MB/s and events/s for n events per op.
func report(b *testing.B, chunkLen, n int) {
	b.SetBytes(int64(chunkLen))
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkScan is the plugin's path: zero-copy walk, raw-byte prefilter,
// decode only candidates.
func BenchmarkScan(b *testing.B) {
	d := mustLoad(b)
	for _, s := range shapes {
		b.Run(s.name, func(b *testing.B) {
			c := s.encode(d.stream(true))
			det := newDetector()
			var alerts []detect.Observed
			b.ReportAllocs()
			for b.Loop() {
				var st detect.Stats
				alerts, st = det.Scan(c, nil, alerts[:0])
				if st.Findings != 1 {
					b.Fatalf("%d alerts", st.Findings)
				}
			}
			report(b, len(c), streamLen)
		})
	}
}

// BenchmarkNoCandidate: chunks without any quarantine event, in each
// shape, against the physical floor: one bytes.Contains pass over the same
// chunk for the rarest needle, a full policy name that never occurs.
func BenchmarkNoCandidate(b *testing.B) {
	d := mustLoad(b)
	needle := []byte("AWSExposedCredentialPolicy_DO_NOT_REMOVE")
	for _, s := range shapes {
		c := s.encode(d.stream(false))
		b.Run("scan-"+s.name, func(b *testing.B) {
			det := newDetector()
			b.ReportAllocs()
			for b.Loop() {
				if _, st := det.Scan(c, nil, nil); st.Candidates != 0 {
					b.Fatal("candidate in a clean chunk")
				}
			}
			report(b, len(c), streamLen)
		})
		b.Run("frame-"+s.name, func(b *testing.B) {
			// The chunk reader's walk alone: the floor of any scan that
			// delimits and counts records.
			var r chunk.Reader
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(c)
				for r.Next() {
				}
			}
			report(b, len(c), streamLen)
		})
		b.Run("contains-"+s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if bytes.Contains(c, needle) {
					b.Fatal("needle in a clean chunk")
				}
			}
			report(b, len(c), streamLen)
		})
	}
}

// BenchmarkAllQuarantine: the worst case, every record a quarantine event
// (an attacker replaying them), each finding made into an alert. Reports
// alerts/s and allocations per alert.
func BenchmarkAllQuarantine(b *testing.B) {
	c := chunkV2(mustLoad(b).allQuarantine())
	det := newDetector()
	var obs []detect.Observed
	alerts := make([]alert.Alert, 0, streamLen)
	b.ReportAllocs()
	for b.Loop() {
		var st detect.Stats
		obs, st = det.Scan(c, nil, obs[:0])
		if st.Findings != streamLen {
			b.Fatalf("%d alerts", st.Findings)
		}
		alerts = alerts[:0]
		for _, o := range obs {
			for _, f := range o.Findings {
				alerts = append(alerts, alert.New(f, true))
			}
		}
	}
	report(b, len(c), streamLen)
	b.ReportMetric(float64(streamLen)*float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
}

// BenchmarkBaseline runs last: it leaves the GC a heap of garbage that
// would slow whatever ran after it. It is the usual Go plugin: fluent-bit-go's decoder, every
// record decoded to a map, then the same resolver and rules. For the
// JSON-string shape the baseline is kinder: our zero-copy reader finds the
// string, and only jsoniter's decode of it into a map is the cost compared.
func BenchmarkBaseline(b *testing.B) {
	d := mustLoad(b)
	for _, s := range shapes {
		b.Run(s.name, func(b *testing.B) {
			c := s.encode(d.stream(true))
			var run func([]byte) int
			if s.name == "jsonstring" {
				run = jsoniterDetect
			} else {
				run = fluentBitGoDetect
			}
			b.ReportAllocs()
			for b.Loop() {
				if n := run(c); n != 1 {
					b.Fatalf("%d matches", n)
				}
			}
			report(b, len(c), streamLen)
		})
	}
}

var (
	resolver  = cloudtrail.Resolver{EventKeys: []string{"log", "message"}}
	ruleSet   = rules.Stateless()
	jsonIter  = jsoniter.ConfigCompatibleWithStandardLibrary
	emptyBody = map[string]any{}
)

func match(body map[string]any) int {
	n := 0
	resolver.Resolve(body, func(e *cloudtrail.Event) {
		for _, r := range ruleSet {
			if _, ok := r.Match(e); ok {
				n++
			}
		}
	})
	return n
}

func fluentBitGoDetect(c []byte) int {
	dec := output.NewDecoder(unsafe.Pointer(&c[0]), len(c))
	n := 0
	for {
		ret, _, rec := output.GetRecord(dec)
		if ret != 0 {
			return n
		}
		n += match(toStringMap(rec))
	}
}

func jsoniterDetect(c []byte) int {
	var r chunk.Reader
	r.Reset(c)
	n := 0
	for r.Next() {
		v, err := value.FromMsgpack(r.Record().Body)
		if err != nil {
			continue
		}
		log, _ := v.(map[string]any)["log"].(string)
		var m map[string]any
		if jsonIter.UnmarshalFromString(log, &m) == nil {
			n += match(m)
		}
	}
	return n
}

// toStringMap turns the decoder's map[interface{}]interface{} with []byte
// strings into the map[string]any the resolver reads, as plugins do.
func toStringMap(v any) map[string]any {
	m, _ := normalize(v).(map[string]any)
	if m == nil {
		return emptyBody
	}
	return m
}

func normalize(v any) any {
	switch v := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			ks, _ := normalize(k).(string)
			m[ks] = normalize(e)
		}
		return m
	case []any:
		for i := range v {
			v[i] = normalize(v[i])
		}
		return v
	case []byte:
		return string(v)
	}
	return v
}

package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
)

// quarantineWith is the applied fixture with a new eventID and extra fields.
func quarantineWith(t *testing.T, id string, extra map[string]any) map[string]any {
	e := maps.Clone(quarantineApplied(t))
	e["eventID"] = id
	maps.Copy(e, extra)
	return e
}

// rawRecord appends a v2 record whose body is given as raw msgpack.
func rawRecord(c, body []byte) []byte {
	c = msgp.AppendArrayHeader(c, 2)
	c = msgp.AppendArrayHeader(c, 2)
	c = fbchunk.AppendEventTime(c, t0)
	c = msgp.AppendMapHeader(c, 0)
	return append(c, body...)
}

// Hostile records, each holding a quarantine policy name so that it gets
// past the prefilter into the decoders, between good records: nothing
// panics, memory stays bounded, and every real event still alerts.
func TestHostileInputThroughThePlugin(t *testing.T) {
	var c []byte
	want := map[string]bool{}
	good := func(id string, extra map[string]any) {
		c = fbchunk.AppendV2(c, t0, nil, quarantineWith(t, id, extra))
		want[id] = true
	}
	good("first", nil)

	// 100,000 keys.
	wide := map[string]any{}
	for i := range 100_000 {
		wide[fmt.Sprintf("k%06d", i)] = "AWSCompromisedKeyQuarantineV2"
	}
	good("wide", wide)

	// Nested 10,000 deep in a field no rule reads, and as a whole record.
	var deep []byte
	for range 10_000 {
		deep = msgp.AppendArrayHeader(deep, 1)
	}
	deep = msgp.AppendString(deep, "AWSCompromisedKeyQuarantineV2")
	body := msgp.AppendMapHeader(nil, 1)
	body = msgp.AppendString(body, "deep")
	c = rawRecord(c, append(body, deep...))
	ev := value.AppendMsgpack(nil, quarantineWith(t, "deep-field", nil))
	_, evBody, _ := msgp.ReadMapHeaderBytes(ev)
	n := uint32(len(quarantineWith(t, "x", nil)))
	body = msgp.AppendMapHeader(nil, n+1)
	body = append(body, evBody...)
	body = msgp.AppendString(body, "deep")
	c = rawRecord(c, append(body, deep...))
	want["deep-field"] = true

	// 50 MB string.
	good("big", map[string]any{"padding": strings.Repeat("Quarantine ", 50<<20/11)})

	// Invalid UTF-8, non-string keys, duplicate keys.
	good("utf8", map[string]any{"userAgent": "bad \xff\xfe bytes", "sourceIPAddress": "\xc3\x28"})
	odd := msgp.AppendMapHeader(nil, 3)
	odd = msgp.AppendInt(odd, 7)
	odd = msgp.AppendString(odd, "AWSCompromisedKeyQuarantineV2")
	odd = msgp.AppendFloat64(odd, 1.5)
	odd = msgp.AppendNil(odd)
	odd = msgp.AppendString(odd, "log")
	odd = msgp.AppendString(odd, `{"eventName": 12, "requestParameters": "Quarantine"}`)
	c = rawRecord(c, odd)

	// A log file of 100,000 events, one of them a quarantine.
	records := make([]any, 0, 100_000)
	for i := range 100_000 {
		records = append(records, map[string]any{"eventName": "GetObject", "eventID": fmt.Sprint(i)})
	}
	records[77_777] = quarantineWith(t, "in-huge-log-file", nil)
	c = fbchunk.AppendV2(c, t0, nil, map[string]any{"Records": records})
	want["in-huge-log-file"] = true

	good("last", nil)
	goodEnd := len(c)

	// Garbage after the last good record: one byte msgpack never uses.
	c = append(c, 0xc1, 0x00, 0x01)

	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{nil}, Flushes: []harness.Flush{{Tag: tag, Data: c}}})
	if res.ExitCode != 0 || !slicesEqual(rcs(res), 1) {
		t.Fatalf("exit %d rcs %v\n%s", res.ExitCode, rcs(res), tail(res.Stderr))
	}
	got := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("alert is not valid JSON: %.200s", line)
		}
		var a alert
		json.Unmarshal([]byte(line), &a)
		got[a.EventID] = true
	}
	for id := range want {
		if !got[id] {
			t.Errorf("no alert for %q", id)
		}
	}
	if len(got) != len(want) {
		t.Errorf("alerts for %v, want %v", got, want)
	}
	if !strings.Contains(res.Stderr, "truncated=1 undecodable=1") {
		t.Errorf("garbage tail and the record nested 10,000 deep not counted:\n%s", tail(res.Stderr))
	}
	// The harness holds the chunk twice (read, and the copy it flushes),
	// the alert for "big" carries the 50 MB string (encoded, then joined
	// into the sink's write) and Go's GC lets the heap reach twice what is
	// live: memory stays within ten times the chunk, whatever the width
	// or nesting (measured: 260-490 MB for 56 MB).
	if rss := res.Summary["maxrss_kb"] / 1024; rss > 10*int64(goodEnd>>20)+100 {
		t.Errorf("maxrss %d MB for a %d MB chunk", rss, goodEnd>>20)
	}
}

func slicesEqual(got []int, want ...int) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func tail(s string) string {
	if len(s) > 3000 {
		return "..." + s[len(s)-3000:]
	}
	return s
}

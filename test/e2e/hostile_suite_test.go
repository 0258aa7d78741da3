package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/hostile"
)

// hostileLen is how long the suite blows each string up to.
const hostileLen = 1 << 20

// maxChunk is the size the suite's chunks stay near, as Fluent Bit's are
// (a record longer than that is a chunk of its own).
const maxChunk = 2 << 20

// rssBudget is how much more memory (bytes, the process's peak) the
// hostile run may take than a run of the legitimate examples alone:
// copies of the largest chunk in flight (Fluent Bit's, the decoded values,
// the bounded event, the warning line) and what every hostile event may
// leave behind: its alert in the store, and its share of the lifecycle
// cases the examples' keys and users open (a handful, each at most
// lifecycle.MaxCaseBytes whatever the strings: README, Scale). perEvent
// is that, measured: the suite's events share few cases.
func rssBudget(largestChunk, events int) int64 {
	const perEvent = 16 << 10
	const slack = 64 << 20 // the Go heap's growth target, bbolt's pages
	return 4*int64(largestChunk) + int64(events)*perEvent + slack
}

// chunks writes records into chunk files of about maxChunk bytes, which
// the harness reads only when it flushes them. A string marked by blowUp
// is written hostileLen bytes long as the file is written, so the suite's
// gigabyte is never built in memory (nor checked byte by byte by the race
// detector, which made building it take most of the suite's time).
type chunks struct {
	dir     string
	f       *os.File
	w       *bufio.Writer
	size    int
	rec     []byte
	flushes []harness.Flush
	largest int
	records int
	bytes   int64
}

// padMark brackets a string that blowUp marked.
const padMark = "\x00hostile-pad\x00"

// blowUp marks s to be written hostileLen bytes long: s, then padding.
func blowUp(s string) string { return padMark + s + padMark }

var padding = []byte(strings.Repeat("A", hostileLen))

func (c *chunks) add(t *testing.T, body any) {
	c.rec = fbchunk.AppendV2(c.rec[:0], t0, nil, body)
	size := len(c.rec) + bytes.Count(c.rec, []byte(padMark))/2*hostileLen // about
	if c.f != nil && c.size+size > maxChunk {
		c.flush(t)
	}
	if c.f == nil {
		path := filepath.Join(c.dir, fmt.Sprintf("chunk-%05d.bin", len(c.flushes)))
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		c.f, c.w, c.size = f, bufio.NewWriterSize(f, 1<<16), 0
		c.flushes = append(c.flushes, harness.Flush{Tag: tag, Path: path})
	}
	rec := c.rec
	for {
		i := bytes.Index(rec, []byte(padMark))
		if i < 0 {
			break
		}
		j := i + len(padMark) + bytes.Index(rec[i+len(padMark):], []byte(padMark))
		s := rec[i+len(padMark) : j]
		header := len(msgp.AppendString(nil, blowUp(string(s)))) - len(blowUp(string(s)))
		n := max(len(s), hostileLen)
		c.write(t, rec[:i-header], appendStrHeader(nil, n), s, padding[:n-len(s)])
		rec = rec[j+len(padMark):]
	}
	c.write(t, rec)
	c.records++
}

// appendStrHeader is a msgpack str32 header for n bytes.
func appendStrHeader(b []byte, n int) []byte {
	return append(b, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func (c *chunks) write(t *testing.T, parts ...[]byte) {
	for _, p := range parts {
		if _, err := c.w.Write(p); err != nil {
			t.Fatal(err)
		}
		c.size += len(p)
	}
}

func (c *chunks) flush(t *testing.T) {
	if c.f == nil {
		return
	}
	if err := c.w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := c.f.Close(); err != nil {
		t.Fatal(err)
	}
	c.largest = max(c.largest, c.size)
	c.bytes += int64(c.size)
	c.f = nil
}

// fresh gives a copy of ev identifiers of its own (event id, a Health
// notice's ids), so that its alerts, de-duplicated by them, stand for no
// other event's (the Health examples are copies of one notice).
func fresh(ev map[string]any, id string) map[string]any {
	e := maps.Clone(ev)
	// A notice SNS delivers is a JSON string in the envelope's Message
	// (Lambda's: in Records[].Sns.Message): fresh inside it.
	inner := func(msg any) any {
		s, ok := msg.(string)
		if !ok {
			return msg
		}
		var m map[string]any
		if json.Unmarshal([]byte(s), &m) != nil {
			return msg
		}
		b, _ := json.Marshal(fresh(m, id))
		return string(b)
	}
	if _, ok := e["Message"]; ok {
		e["Message"] = inner(e["Message"])
	}
	if recs, ok := e["Records"].([]any); ok {
		recs = slices.Clone(recs)
		for i, r := range recs {
			if rm, ok := r.(map[string]any); ok {
				if sns, ok := rm["Sns"].(map[string]any); ok {
					rm, sns = maps.Clone(rm), maps.Clone(sns)
					sns["Message"] = inner(sns["Message"])
					rm["Sns"] = sns
					recs[i] = rm
				}
			}
		}
		e["Records"] = recs
	}
	if _, ok := e["eventID"]; ok {
		e["eventID"] = id
	}
	if d, ok := e["detail"].(map[string]any); ok && e["source"] == "aws.health" {
		d = maps.Clone(d)
		for _, k := range []string{"communicationId", "eventArn"} {
			if _, ok := d[k]; ok {
				d[k] = id + "-" + k
			}
		}
		e["detail"], e["id"] = d, id
	}
	return e
}

// later moves an event's times by d.
func later(t *testing.T, ev map[string]any, d time.Duration) map[string]any {
	e := maps.Clone(ev)
	for _, k := range []string{"eventTime", "time"} {
		if s, ok := e[k].(string); ok {
			at, err := time.Parse(time.RFC3339, s)
			if err != nil {
				t.Fatalf("%s %q: %v", k, s, err)
			}
			e[k] = at.Add(d).Format(time.RFC3339)
		}
	}
	return e
}

// rewrite replaces strings throughout an event (its key, its user).
func rewrite(t *testing.T, ev map[string]any, pairs ...string) map[string]any {
	js := strings.NewReplacer(pairs...).Replace(string(value.ToJSON(ev)))
	v, err := value.FromJSON([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)
}

// The hostile-input suite, through the built .so: every string of every
// rule's example (and of the events the lifecycle's examples are made
// of) blown up to 1 MB and to control characters, one at a time and all
// together, each with ids of its own; then every rule's legitimate
// examples (a day later, each in a use window of its own), and a key's
// whole life under a key the flood never named. Every legitimate alert
// arrives, the store takes a restart and a new alert, no log line holds a
// raw control character, the oversized values are counted, and the
// process's peak memory stays within rssBudget of a run of the
// legitimate examples alone.
func TestHostileSuiteThroughThePlugin(t *testing.T) {
	examples := corpus.Examples(t)
	flood := &chunks{dir: t.TempDir()}
	n := 0
	next := func() string { n++; return fmt.Sprintf("hostile-%05d", n) }
	for _, ex := range examples {
		for _, path := range hostile.Leaves(ex.Event) {
			flood.add(t, hostile.With(fresh(ex.Event, next()), path, blowUp))
			flood.add(t, hostile.With(fresh(ex.Event, next()), path, hostile.Controls))
		}
		flood.add(t, hostile.All(fresh(ex.Event, next()), blowUp))
		flood.add(t, hostile.All(fresh(ex.Event, next()), hostile.Controls))
	}
	flood.flush(t)
	if flood.records < 1000 || flood.bytes < 1<<30 {
		t.Fatalf("the flood is %d records, %d bytes: the README says over a thousand and a gigabyte", flood.records, flood.bytes)
	}

	// The legitimate examples, each in a use window of its own.
	legit := &chunks{dir: t.TempDir()}
	want := map[string]bool{}
	for i, ex := range examples {
		if ex.Rule == "" {
			continue
		}
		e := fresh(later(t, ex.Event, 24*time.Hour+time.Duration(i)*2*time.Hour), fmt.Sprintf("legit-%03d", i))
		legit.add(t, e)
		id, _ := e["eventID"].(string)
		if ex.Rule == rules.CredentialsExposed {
			id = fmt.Sprintf("legit-%03d", i) // the notice's own id, wherever it is wrapped
		}
		want[ex.Rule+" "+id] = true
	}
	// A key's whole life, the key and user new to the plugin.
	const key, user = "AKIAPOSTFLOOD0000001", "post-flood-user"
	for _, name := range []string{"events/health_exposed", "rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline",
		"events/ec2_describe_instances_by_key", "events/iam_delete_access_key"} {
		e := rewrite(t, later(t, fixtureEvent(t, name), 10*24*time.Hour), "AKIAEXAMPLEEXPOSED01", key, "ci-deployer", user)
		legit.add(t, fresh(e, next()))
	}
	for _, id := range []string{rules.CredentialsExposed, rules.QuarantineApplied, rules.QuarantinedKeyUsed, rules.ExposedKeyRetired} {
		want[id+" key="+key] = true
	}
	legit.flush(t)

	props := func(dir string) []harness.KV {
		return kv("Alert_Output", "stdout", "State_Dir", dir, "Include_Event", "off")
	}
	start := time.Now()
	baseline := harness.Run(t, harness.Options{Instances: [][]harness.KV{props(t.TempDir())}, Flushes: legit.flushes, Quiet: true, LingerMS: 500})
	state := t.TempDir()
	run := harness.Run(t, harness.Options{Instances: [][]harness.KV{props(state)}, Flushes: append(flood.flushes, legit.flushes...),
		Quiet: true, LingerMS: 1000, Timeout: 5 * time.Minute})
	t.Logf("%d hostile records, %d MB in %d chunks (largest %d bytes), %d legitimate: %v", flood.records, flood.bytes>>20, len(flood.flushes),
		flood.largest, legit.records, time.Since(start))
	// The store after all that: a restart delivers what was left and a
	// new alert.
	restart := harness.Run(t, harness.Options{Instances: [][]harness.KV{props(state)},
		Flushes: []harness.Flush{{Tag: tag, Data: chunkOf(quarantineWith(t, "after-the-flood", nil))}}, LingerMS: 1000})
	want[rules.QuarantineApplied+" after-the-flood"] = true

	for name, res := range map[string]harness.Result{"baseline": baseline, "hostile": run, "restart": restart} {
		if res.ExitCode != 0 || strings.Contains(res.Stderr, "panic in") {
			t.Fatalf("%s run: exit %d\n%s", name, res.ExitCode, tail(res.Stderr))
		}
		for _, line := range strings.SplitAfter(res.Stderr, "\n") {
			if where, ok := safe(line); !ok && line != "" {
				t.Fatalf("%s run: a log line holds a raw control character near %q:\n%q", name, where, line[:min(len(line), 300)])
			}
		}
	}
	for _, bad := range []string{"cannot be read back", "was unreadable"} {
		if strings.Contains(restart.Stderr, bad) {
			t.Fatalf("the store after the flood: %s\n%s", bad, tail(restart.Stderr))
		}
	}
	got := map[string]bool{}
	for _, out := range []string{run.Stdout, restart.Stdout} {
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var a alert
			if err := json.Unmarshal([]byte(line), &a); err != nil {
				t.Fatalf("not an alert: %.200q", line)
			}
			got[a.Rule.ID+" "+a.EventID] = true
			if a.Key.ID == key {
				got[a.Rule.ID+" key="+key] = true
			}
		}
	}
	for w := range want {
		if !got[w] {
			t.Errorf("no alert for %s", w)
		}
	}

	st := exitStats(t, run.Stderr)["cloudtrail_quarantine.0"]
	if st["oversized_values"] < float64(flood.records)/4 || st["panics"] != 0 ||
		st["skipped_malformed"]+st["skipped_truncated"]+st["skipped_undecodable"]+st["skipped_events"] != 0 {
		t.Errorf("exit counters %v", st)
	}
	growth := (run.Summary["maxrss_kb"] - baseline.Summary["maxrss_kb"]) << 10
	budget := rssBudget(flood.largest, flood.records)
	t.Logf("peak memory %d MB, %d MB more than the legitimate examples alone (budget %d MB)", run.Summary["maxrss_kb"]>>10, growth>>20, budget>>20)
	if growth > budget {
		t.Errorf("the hostile records cost %d MB of memory, over the budget of %d MB", growth>>20, budget>>20)
	}
}

// safe reports where a log line (newline aside at its end) holds a
// character that a terminal or a log reader would act on: a C0 or C1
// control, DEL, a line separator, a bidi control, a byte that is not
// UTF-8.
func safe(line string) (string, bool) {
	body := strings.TrimSuffix(line, "\n")
	for i, r := range body {
		if r == utf8.RuneError && !strings.HasPrefix(body[i:], "\ufffd") || r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f || r == 0x2028 || r == 0x2029 || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 {
			return body[max(0, i-40):min(len(body), i+20)], false
		}
	}
	return "", true
}

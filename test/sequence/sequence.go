// Package sequence reads the examples of the lifecycle's rules: sequences
// of events (and of silences, and restarts of the collector) with the
// alerts they must give. Each lives in
// test/fixtures/rules/<rule>/{positive,negative}/<name>.json:
//
//	{
//	  "about": "why this sequence is here",
//	  "options": {"grace": "15m", "delay": "15m", "window": "1h"},
//	  "steps": [
//	    {"event": "events/health_exposed"},
//	    {"event": "events/s3_list_buckets_by_key", "set": {"eventTime": "2026-11-20T09:00:00Z", "eventID": "use-1"}},
//	    {"repeat": 3, "event": "...", "set": {...}},
//	    {"silence": "31m"},
//	    {"restart": true},
//	    {"chunk": [{"event": "..."}, {"file": [{"event": "..."}, {"event": "..."}]}]}
//	  ],
//	  "expect": {"aws.iam.quarantined_key_used": 1, "aws.iam.exposed_not_quarantined": 0}
//	}
//
// An event names a JSON file under test/fixtures (without .json); "set"
// overrides fields by dotted path, and with "repeat" each copy's eventID
// and eventTime get the copy's number ({n}) and n seconds. A "chunk" is
// several records in one chunk, each an event or a "file" (a CloudTrail
// log file object holding its events under Records, in the order given).
// "expect" counts the alerts of each rule it names over the whole
// sequence, exactly. Options: grace, delay, window (Use_Alert_Window) and
// ttl (Watch_TTL), as durations.
package sequence

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// Sequence is one example.
type Sequence struct {
	Name    string // rule/kind/file
	Rule    string
	Kind    string // positive or negative
	About   string
	Options Options
	Steps   []Step
	Expect  map[string]int
}

// Options are the lifecycle timings the example runs with.
type Options struct {
	Grace, Delay, Window, TTL time.Duration
}

// Step is one event (a chunk of one record), a chunk of several records,
// a silence of the stream, or a restart.
type Step struct {
	Event   map[string]any // nil unless an event
	Chunk   []Record       // nil unless a chunk of several records
	Silence time.Duration
	Restart bool
}

// Record is one record of a chunk: an event, or a CloudTrail log file
// object holding several.
type Record struct {
	Events []map[string]any
	File   bool
}

// Body is the record as Fluent Bit would carry it.
func (r Record) Body() map[string]any {
	if !r.File {
		return r.Events[0]
	}
	recs := make([]any, len(r.Events))
	for i, e := range r.Events {
		recs[i] = e
	}
	return map[string]any{"Records": recs}
}

// Bodies are the records of the step's chunk (none for a silence or a
// restart).
func (st Step) Bodies() []map[string]any {
	if st.Event != nil {
		return []map[string]any{st.Event}
	}
	var out []map[string]any
	for _, r := range st.Chunk {
		out = append(out, r.Body())
	}
	return out
}

// Events are the events the step carries, in order.
func (st Step) Events() []map[string]any {
	if st.Event != nil {
		return []map[string]any{st.Event}
	}
	var out []map[string]any
	for _, r := range st.Chunk {
		out = append(out, r.Events...)
	}
	return out
}

type eventRef struct {
	Event string         `json:"event"`
	Set   map[string]any `json:"set"`
}

type file struct {
	About   string            `json:"about"`
	Options map[string]string `json:"options"`
	Steps   []struct {
		eventRef
		Repeat  int    `json:"repeat"`
		Silence string `json:"silence"`
		Restart bool   `json:"restart"`
		Chunk   []struct {
			eventRef
			File []eventRef `json:"file"`
		} `json:"chunk"`
	} `json:"steps"`
	Expect map[string]int `json:"expect"`
}

// Load reads the examples of rule (positive and negative), failing the test
// on any that does not read.
func Load(t testing.TB, rule string) []Sequence {
	t.Helper()
	var out []Sequence
	for _, kind := range []string{"positive", "negative"} {
		files, _ := filepath.Glob(paths.Repo("test", "fixtures", "rules", rule, kind, "*.json"))
		slices.Sort(files)
		for _, f := range files {
			s, err := read(f)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			s.Name, s.Rule, s.Kind = rule+"/"+kind+"/"+strings.TrimSuffix(filepath.Base(f), ".json"), rule, kind
			if want, ok := s.Expect[rule]; !ok || (kind == "positive") != (want > 0) {
				t.Fatalf("%s: a %s example must expect %s to fire %s", s.Name, kind, rule, map[string]string{"positive": "at least once", "negative": "0 times"}[kind])
			}
			out = append(out, s)
		}
	}
	return out
}

func read(path string) (Sequence, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Sequence{}, err
	}
	var f file
	if err := json.Unmarshal(raw, &f); err != nil {
		return Sequence{}, err
	}
	s := Sequence{About: f.About, Expect: f.Expect, Options: Options{Grace: 15 * time.Minute, Delay: 15 * time.Minute, Window: time.Hour, TTL: 30 * 24 * time.Hour}}
	for k, v := range f.Options {
		d, err := time.ParseDuration(v)
		if err != nil {
			return s, fmt.Errorf("option %s: %v", k, err)
		}
		switch k {
		case "grace":
			s.Options.Grace = d
		case "delay":
			s.Options.Delay = d
		case "window":
			s.Options.Window = d
		case "ttl":
			s.Options.TTL = d
		default:
			return s, fmt.Errorf("unknown option %s", k)
		}
	}
	for i, st := range f.Steps {
		switch {
		case st.Event != "":
			base, err := resolve(st.eventRef)
			if err != nil {
				return s, fmt.Errorf("step %d: %v", i, err)
			}
			for n := range max(st.Repeat, 1) {
				e := deepCopy(base)
				if st.Repeat > 0 {
					number(e, n)
				}
				s.Steps = append(s.Steps, Step{Event: e})
			}
		case st.Chunk != nil:
			var step Step
			for _, r := range st.Chunk {
				var rec Record
				refs := r.File
				if rec.File = refs != nil; !rec.File {
					refs = []eventRef{r.eventRef}
				}
				for _, ref := range refs {
					e, err := resolve(ref)
					if err != nil {
						return s, fmt.Errorf("step %d: %v", i, err)
					}
					rec.Events = append(rec.Events, e)
				}
				step.Chunk = append(step.Chunk, rec)
			}
			s.Steps = append(s.Steps, step)
		case st.Silence != "":
			d, err := time.ParseDuration(st.Silence)
			if err != nil {
				return s, fmt.Errorf("step %d: %v", i, err)
			}
			s.Steps = append(s.Steps, Step{Silence: d})
		case st.Restart:
			s.Steps = append(s.Steps, Step{Restart: true})
		default:
			return s, fmt.Errorf("step %d is neither an event, a silence nor a restart", i)
		}
	}
	return s, nil
}

// Event reads test/fixtures/<name>.json.
func Event(name string) (map[string]any, error) { return event(name) }

// resolve reads an event step's fixture with its fields set.
func resolve(r eventRef) (map[string]any, error) {
	e, err := event(r.Event)
	if err != nil {
		return nil, err
	}
	for k, v := range r.Set {
		set(e, k, v)
	}
	return e, nil
}

// event reads test/fixtures/<name>.json.
func event(name string) (map[string]any, error) {
	raw, err := os.ReadFile(paths.Repo("test", "fixtures", name+".json"))
	if err != nil {
		return nil, err
	}
	v, err := value.FromJSON(raw)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is not a JSON object", name)
	}
	return m, nil
}

// set writes v at a dotted path, making the maps on the way.
func set(m map[string]any, path string, v any) {
	head, rest, nested := strings.Cut(path, ".")
	if !nested {
		if f, ok := v.(float64); ok && f == float64(int64(f)) {
			v = int64(f) // numbers as the decoder gives them
		}
		m[head] = v
		return
	}
	sub, ok := m[head].(map[string]any)
	if !ok {
		sub = map[string]any{}
		m[head] = sub
	}
	set(sub, rest, v)
}

// number makes the n-th copy of a repeated event its own call: {n} in its
// eventID is n, and its eventTime is n seconds later.
func number(e map[string]any, n int) {
	for _, k := range []string{"eventID", "id"} {
		if id, ok := e[k].(string); ok {
			e[k] = strings.ReplaceAll(id, "{n}", fmt.Sprint(n))
		}
	}
	for _, k := range []string{"eventTime", "time"} {
		if s, ok := e[k].(string); ok {
			if at, err := time.Parse(time.RFC3339, s); err == nil {
				e[k] = at.Add(time.Duration(n) * time.Second).UTC().Format(time.RFC3339)
			}
		}
	}
}

func deepCopy(m map[string]any) map[string]any {
	out := maps.Clone(m)
	for k, v := range out {
		switch v := v.(type) {
		case map[string]any:
			out[k] = deepCopy(v)
		case []any:
			a := slices.Clone(v)
			for i, e := range a {
				if em, ok := e.(map[string]any); ok {
					a[i] = deepCopy(em)
				}
			}
			out[k] = a
		}
	}
	return out
}

// EventTime is the time an event step carries (CloudTrail's eventTime, an
// EventBridge envelope's time, an OCSF record's epoch milliseconds); zero
// when it has none.
func EventTime(e map[string]any) time.Time {
	for _, k := range []string{"eventTime", "time"} {
		switch v := e[k].(type) {
		case string:
			if at, err := time.Parse(time.RFC3339Nano, v); err == nil {
				return at
			}
		case int64:
			return time.UnixMilli(v).UTC()
		}
	}
	return time.Time{}
}

// Play runs a sequence through the detector and the lifecycle engine as
// the plugin does (alerts de-duplicated by key), with a wall clock of its
// own that moves on through silences. A
// restart keeps only what Changes handed over, as the store would. It
// calls finding for each alert and returns the alerts counted by rule.
func Play(t testing.TB, s Sequence, finding func(detect.Finding)) map[string]int {
	t.Helper()
	det := detect.New(detect.Options{EventKeys: []string{"log", "message"}})
	eng := lifecycle.New(s.Options.engine())
	kept := map[string][]byte{}
	var watermark int64
	save := func() {
		changed, deleted, wm := eng.Changes()
		for _, c := range changed {
			kept[c.ID()] = c.MarshalMsg(nil)
		}
		for _, id := range deleted {
			delete(kept, id)
		}
		watermark = wm
		eng.Committed()
	}
	counts := map[string]int{}
	seen := map[string]bool{}
	emit := func(fs []detect.Finding) bool {
		for _, f := range fs {
			if !seen[f.Key] {
				seen[f.Key] = true
				counts[f.Rule.ID]++
				if finding != nil {
					finding(f)
				}
			}
		}
		return true
	}
	// The wall clock is a collector's replaying the sequence's events
	// after they all happened: it starts after the latest of them and
	// moves a millisecond a step, and through silences. Event time alone
	// decides what is due, as in a replay of an archive (the plugin's
	// tests run the same way, on today's clock).
	var wall time.Time
	for _, st := range s.Steps {
		for _, e := range st.Events() {
			if at := EventTime(e); at.After(wall) {
				wall = at
			}
		}
	}
	for _, st := range s.Steps {
		wall = wall.Add(time.Millisecond)
		switch {
		case st.Event != nil || st.Chunk != nil:
			var data []byte
			for _, b := range st.Bodies() {
				data = fbchunk.AppendV2(data, wall, nil, b)
			}
			stats := det.ScanEach(data, eng.Watch(), func(o detect.Observed) { emit(eng.Observe(o, wall)) })
			eng.Advance(stats.Last, wall)
		case st.Silence > 0:
			wall = wall.Add(st.Silence)
		case st.Restart:
			save()
			var cases []*lifecycle.Case
			for _, id := range slices.Sorted(maps.Keys(kept)) {
				c, err := lifecycle.UnmarshalCase(kept[id])
				if err != nil {
					t.Fatal(err)
				}
				cases = append(cases, c)
			}
			eng = lifecycle.New(s.Options.engine())
			eng.Load(cases, watermark, wall)
		}
		emit(eng.Due(wall))
		save()
	}
	return counts
}

// engine is the engine's options for the sequence (the plugin's defaults
// for what the sequence does not set).
func (o Options) engine() lifecycle.Options {
	return lifecycle.Options{WatchTTL: cmp.Or(o.TTL, 30*24*time.Hour), MaxKeys: 100000, UseWindow: o.Window, Grace: o.Grace, Delay: o.Delay, Persist: true}
}

// Rules are the rules whose examples are sequences: those the lifecycle
// engine fires.
var Rules = []string{rules.QuarantinedKeyUsed, rules.ExposedNotQuarantined, rules.ExposedKeyRetired, rules.ExposedKeyReactivated}

// Findings plays every sequence of every lifecycle rule and returns all
// their alerts: examples of every kind of alert, for the format tests.
func Findings(t testing.TB) []detect.Finding {
	var out []detect.Finding
	for _, rule := range Rules {
		for _, s := range Load(t, rule) {
			Play(t, s, func(f detect.Finding) { out = append(out, f) })
		}
	}
	return out
}

// Convert is s with each CloudTrail event replaced by convert's record of
// it (an OCSF form, say); other events (AWS Health notices) stay as they
// are.
func Convert(s Sequence, convert func(map[string]any) (map[string]any, error)) (Sequence, error) {
	out := s
	out.Steps = slices.Clone(s.Steps)
	conv := func(e map[string]any) (map[string]any, error) {
		if e["eventName"] == nil {
			return e, nil
		}
		return convert(deepCopy(e))
	}
	for i, st := range out.Steps {
		switch {
		case st.Event != nil:
			rec, err := conv(st.Event)
			if err != nil {
				return out, fmt.Errorf("step %d: %v", i, err)
			}
			out.Steps[i].Event = rec
		case st.Chunk != nil:
			// Records of another shape have no log file object: each event
			// becomes a record of its own, in the file's order.
			var chunk []Record
			for _, e := range st.Events() {
				rec, err := conv(e)
				if err != nil {
					return out, fmt.Errorf("step %d: %v", i, err)
				}
				chunk = append(chunk, Record{Events: []map[string]any{rec}})
			}
			out.Steps[i].Chunk = chunk
		}
	}
	return out, nil
}

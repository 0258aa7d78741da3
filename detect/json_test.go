package detect_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/alternate"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
)

// split frames text whole, returning each record's bytes and whether it
// is a log file's element.
func split(t testing.TB, text []byte) ([]string, error) {
	var s detect.Splitter
	var out []string
	for {
		sp, ok, err := s.Next(text, true)
		if err != nil || !ok {
			return out, err
		}
		kind := "body"
		if sp.Element {
			kind = "element"
		}
		out = append(out, kind+" "+string(text[sp.Start:sp.End]))
	}
}

// splitPieces frames text handed over in pieces of the given sizes,
// keeping only what the Splitter asks to keep, as a streaming reader does.
func splitPieces(text []byte, sizes []int) ([]string, error) {
	var s detect.Splitter
	var out []string
	var buf []byte
	for i := 0; ; {
		n := len(text) - i
		if len(sizes) > 0 {
			n = min(n, sizes[0])
			sizes = sizes[1:]
		}
		buf = append(buf, text[i:i+n]...)
		i += n
		eof := i == len(text)
		for {
			sp, ok, err := s.Next(buf, eof)
			if err != nil {
				return out, err
			}
			if !ok {
				break
			}
			kind := "body"
			if sp.Element {
				kind = "element"
			}
			out = append(out, kind+" "+string(buf[sp.Start:sp.End]))
		}
		if eof {
			return out, nil
		}
		k := s.Keep()
		buf = append(buf[:0], buf[k:]...)
		s.Shift(k)
	}
}

func TestSplitterFramesEveryArchiveShape(t *testing.T) {
	for _, c := range []struct {
		name, text string
		want       []string
	}{
		{"log file", `{"Records":[{"eventName":"A"},{"eventName":"B","x":"}]\"{"}]}`,
			[]string{`element {"eventName":"A"}`, `element {"eventName":"B","x":"}]\"{"}`}},
		{"log file pretty-printed, keys after Records", "{\n  \"Records\" : [\n    {\"a\": [1, {\"b\": 2}]},\n 3, \"s\", null, [4]\n  ],\n  \"digest\": {\"x\": \"]}\"}\n}\n",
			[]string{`element {"a": [1, {"b": 2}]}`}},
		{"JSON lines", "{\"eventName\":\"A\"}\n{\"eventName\":\"B\"}\r\n\n{}\n",
			[]string{`body {"eventName":"A"}`, `body {"eventName":"B"}`, `body {}`}},
		{"concatenated, no newlines", `{"a":1}{"b":{"c":[true,false,null]}}`,
			[]string{`body {"a":1}`, `body {"b":{"c":[true,false,null]}}`}},
		{"top-level array", `[{"detail-type":"x"}, 1, "two", {"eventName":"C"}]`,
			[]string{`body {"detail-type":"x"}`, `body {"eventName":"C"}`}},
		{"Records not first: the whole object", `{"x":1,"Records":[{"eventName":"A"}]}`,
			[]string{`body {"x":1,"Records":[{"eventName":"A"}]}`}},
		{"Records not an array: the whole object", `{"Records":{"eventName":"A"}}`,
			[]string{`body {"Records":{"eventName":"A"}}`}},
		{"empty log file", `{"Records":[]}`, nil},
		{"scalars between objects", "1\n\"s\"\ntrue\n{\"a\":2}\n-3.5e2", []string{`body {"a":2}`}},
		{"byte order mark", "\xEF\xBB\xBF{\"a\":1}", []string{`body {"a":1}`}},
		{"empty", "", nil},
		{"escaped backslashes before a quote", `{"a":"\\\\"}{"b":"\\\""}`, []string{`body {"a":"\\\\"}`, `body {"b":"\\\""}`}},
	} {
		got, err := split(t, []byte(c.text))
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
		// The same, a byte at a time.
		ones := make([]int, len(c.text))
		for i := range ones {
			ones[i] = 1
		}
		if got, err := splitPieces([]byte(c.text), ones); err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s, byte by byte: %q, %v", c.name, got, err)
		}
	}
}

// A file cut anywhere inside a record is an error at its end; the records
// before the cut are still framed.
func TestSplitterTruncated(t *testing.T) {
	text := []byte(`{"Records":[{"eventName":"A","k":"v"},{"eventName":"B"}]}`)
	whole, err := split(t, text)
	if err != nil || len(whole) != 2 {
		t.Fatalf("%q %v", whole, err)
	}
	for cut := 1; cut < len(text); cut++ {
		got, err := split(t, text[:cut])
		if !errors.Is(err, detect.ErrTruncated) {
			t.Errorf("cut at %d: error %v", cut, err)
		}
		if len(got) > 0 && !slices.Equal(got, whole[:len(got)]) {
			t.Errorf("cut at %d: %q", cut, got)
		}
	}
	for _, bad := range []string{"}", `{"a" 1}`, `{1:2}`, "[,}", "garbage"} {
		if _, err := split(t, []byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// FuzzSplitterPieces: whatever the text and however it is cut into
// pieces, the streaming Splitter frames what the whole-text one does.
func FuzzSplitterPieces(f *testing.F) {
	for _, s := range []string{`{"Records":[{"a":"b\\"},{"c":[1,2]}]}`, "{\"a\":1}\n{\"b\":\"\\\"\"}\n", `[{"x":1},2]`, `{"x":{"Records":[]}}`} {
		f.Add([]byte(s), []byte{1, 3, 7})
	}
	f.Fuzz(func(t *testing.T, text, cuts []byte) {
		whole, errWhole := split(t, text)
		var sizes []int
		for _, c := range cuts {
			sizes = append(sizes, int(c%16)+1)
		}
		pieces, errPieces := splitPieces(text, sizes)
		if !slices.Equal(whole, pieces) || (errWhole == nil) != (errPieces == nil) {
			t.Fatalf("whole %q %v\npieces %q %v", whole, errWhole, pieces, errPieces)
		}
	})
}

// FuzzSplitterBlocksAgree: framing from blocks' bits and framing a byte
// at a time give the same records and the same error, whole and in
// pieces of any size (a block is 64 bytes: pieces here go past it).
func FuzzSplitterBlocksAgree(f *testing.F) {
	f.Add(value.ToJSON(map[string]any{"Records": corpus.Panther(f)[:3]}), []byte{200, 31, 64})
	for _, s := range []string{
		`{"Records":[{"a":"b\\"},{"c":[1,2],"d":"{[\"}]"}]}`,
		"{\"a\":{\"b\":[{\"c\":\"}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}\\\"\"}]}}\n{\"b\":\"\\\"\"}\n",
		`[{"x":1},2,"0123456789012345678901234567890123456789",{"y":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]`,
	} {
		f.Add([]byte(s), []byte{40, 3, 70})
	}
	f.Fuzz(func(t *testing.T, text, cuts []byte) {
		var sizes []int
		for _, c := range cuts {
			sizes = append(sizes, int(c)+1)
		}
		type result struct {
			whole, pieces []string
			errW, errP    string
		}
		var got [2]result
		for k, on := range []bool{true, false} {
			restore := detect.UseBlocks(on)
			w, errW := split(t, text)
			p, errP := splitPieces(text, sizes)
			restore()
			got[k] = result{w, p, fmt.Sprint(errW), fmt.Sprint(errP)}
		}
		if !reflect.DeepEqual(got[0], got[1]) {
			t.Fatalf("from blocks %q\na byte at a time %q", got[0], got[1])
		}
	})
}

func TestCountEvents(t *testing.T) {
	events := corpus.Panther(t)
	text := value.ToJSON(map[string]any{"Records": events})
	n := 0
	for _, e := range events {
		if m, ok := e.(map[string]any); ok && m["eventVersion"] != nil {
			n++
		}
	}
	if got := detect.CountEvents(text); got != n || n < 300 {
		t.Fatalf("%d events counted, %d have eventVersion", got, n)
	}
	// In pieces, with the overlap in front of each.
	total, prev := 0, []byte(nil)
	for i := 0; i < len(text); i += 1000 {
		piece := append(prev, text[i:min(i+1000, len(text))]...)
		total += detect.CountEvents(piece)
		prev = append([]byte(nil), piece[max(0, len(piece)-detect.CountOverlap):]...)
	}
	if total != n {
		t.Fatalf("in pieces: %d, want %d", total, n)
	}
}

// EventStarts over a text as it grows, piece by piece, finds each key
// once, as over the whole text: a key cut by the end of a piece is found
// when the next piece completes it.
func TestEventStartsAsTheTextGrows(t *testing.T) {
	text := value.ToJSON(map[string]any{"Records": corpus.Panther(t)})
	whole := detect.EventStarts(text, 0, nil)
	for _, piece := range []int{1, 7, 13, 14, 15, 1000, 32 << 10} {
		var got []int
		for n := 0; n < len(text); {
			from := detect.NextFrom(n)
			n = min(n+piece, len(text))
			got = detect.EventStarts(text[:n], from, got)
		}
		if !slices.Equal(got, whole) || len(whole) < 300 {
			t.Fatalf("pieces of %d: %d starts, whole text %d", piece, len(got), len(whole))
		}
	}
}

// Every example of the rules that decide from one event alone gives its
// verdict read from JSON text, as a log file and as JSON lines; the corpus
// as one log file holds exactly its two quarantines.
func TestScanJSONGivesTheRulesVerdicts(t *testing.T) {
	d := detect.New(detect.Options{EventKeys: []string{"log", "message"}})
	for _, r := range rules.Stateless() {
		for _, kind := range []string{"positive", "negative"} {
			for i, ev := range corpus.Fixtures(t, r.ID, kind) {
				for shape, text := range map[string][]byte{
					"log file":   value.ToJSON(map[string]any{"Records": []any{ev}}),
					"JSON lines": append(append(value.ToJSON(ev), '\n'), value.ToJSON(ev)...),
				} {
					if shape == "log file" && r.ID == rules.CredentialsExposed {
						continue // a Health notice is no CloudTrail event
					}
					obs, _, err := d.ScanJSON(text, nil, time.Time{}, nil)
					fired := slices.ContainsFunc(detect.Findings(obs), func(f detect.Finding) bool { return f.Rule == r })
					if err != nil || fired != (kind == "positive") {
						t.Errorf("%s %s #%d as %s: fired %v, %v", r.ID, kind, i, shape, fired, err)
					}
				}
			}
		}
	}
	text := value.ToJSON(map[string]any{"Records": corpus.Panther(t)})
	obs, st, err := d.ScanJSON(text, nil, time.Time{}, nil)
	if err != nil || len(detect.Findings(obs)) != 2 || st.Records != 475 || st.Candidates != 2 {
		t.Fatalf("corpus: %d findings, %+v, %v", len(detect.Findings(obs)), st, err)
	}
}

// A pattern written with escapes is still found: the record is decoded.
func TestEscapesMakeCandidates(t *testing.T) {
	ev := applied(t)
	plain := string(value.ToJSON(ev))
	d := detect.New(detect.Options{})
	for _, text := range []string{
		strings.ReplaceAll(plain, "Quarantine", `\u0051uarantine`),
		strings.ReplaceAll(plain, "Quarantine", `Q\u0075arantine`),
		`{"log":` + string(value.ToJSON(strings.ReplaceAll(plain, "Quarantine", `\u0051uarantine`))) + `}`,
	} {
		if !strings.Contains(text, `\u`) || strings.Contains(text, "Quarantine") {
			t.Fatalf("the test text is wrong: %s", text)
		}
		d := detect.New(detect.Options{EventKeys: []string{"log"}})
		obs, _, err := d.ScanJSON([]byte(text), nil, time.Time{}, nil)
		if err != nil || len(detect.Findings(obs)) != 1 {
			t.Errorf("%d findings, %v: %.120s", len(detect.Findings(obs)), err, text)
		}
	}
	// Escapes encoders do write make no candidate.
	for _, text := range []string{`{"a":"\u003cb\u003e \" \\ \n \u00e9"}`} {
		if detect.HasCandidate([]byte(text), nil) {
			t.Errorf("%s is a candidate", text)
		}
		if _, st, _ := d.ScanJSON([]byte(text), nil, time.Time{}, nil); st.Candidates != 0 {
			t.Errorf("%s: %+v", text, st)
		}
	}
}

// decodeAll is the general path: every value of the text decoded, every
// event resolved and observed. ok is false when the text is not a stream
// of JSON values every one of which decodes (the fast path then reads
// what it can, and is not compared), or when a map has keys that differ
// only in case (the map path then recases them in map order).
func decodeAll(d *detect.Detector, text []byte) (obs []detect.Observed, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(text))
	r := cloudtrail.Resolver{EventKeys: []string{"log", "message"}}
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			return obs, true
		} else if err != nil {
			return nil, false
		}
		v, err := value.FromJSON(raw)
		if err != nil || caseTwins(v, 0) {
			return nil, false
		}
		bodies := []any{v}
		if a, isArray := v.([]any); isArray {
			bodies = a
		}
		for _, b := range bodies {
			if m, isMap := b.(map[string]any); isMap {
				r.Resolve(m, func(e *cloudtrail.Event) { obs = append(obs, d.Observe(e, fileTime)) })
			}
		}
	}
}

func caseTwins(v any, depth int) bool {
	switch v := v.(type) {
	case map[string]any:
		seen := map[string]bool{}
		for k, e := range v {
			if seen[strings.ToLower(k)] || caseTwins(e, depth+1) {
				return true
			}
			seen[strings.ToLower(k)] = true
		}
	case []any:
		for _, e := range v {
			if caseTwins(e, depth+1) {
				return true
			}
		}
	case string:
		// Text under an event key is read as JSON too.
		if depth < 3 && strings.HasPrefix(strings.TrimSpace(v), "{") {
			if inner, err := value.FromJSON([]byte(v)); err == nil {
				return caseTwins(inner, depth+1)
			}
		}
	}
	return false
}

// outcome is what findings say, in order: rule, key, what the lifecycle
// counted.
func outcome(fs []detect.Finding) []string {
	var out []string
	for _, f := range fs {
		s := f.Rule.ID + " " + f.Key
		if u := f.Match.Use; u != nil {
			s += fmt.Sprintf(" calls=%d total=%d", u.Calls, u.Total)
		}
		if k := f.Match.Key; k != nil {
			s += " key=" + k.ID + "/" + k.User
		}
		out = append(out, s)
	}
	return out
}

// fileTime is the time the fuzzed text's events take when they carry none
// of their own, as the scan gives them its file's stamp and the plugin its
// record's time: never none. (With none, an event's time was the zero
// time, before any other, and an exposure without a time was due at
// once: the next event, read only when every record is decoded, fired
// it.)
var fileTime = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

func lifecycleOf(obs []detect.Observed, seed []*lifecycle.Case) []string {
	e := seeded(seed)
	var fs []detect.Finding
	for _, o := range obs {
		fs = append(fs, e.Observe(o, time.Time{})...)
	}
	return outcome(fs)
}

// seeded is a lifecycle engine that never forgets, with seed's cases.
func seeded(seed []*lifecycle.Case) *lifecycle.Engine {
	e := lifecycle.New(lifecycle.Options{WatchTTL: 1 << 62, MaxKeys: 1 << 20, UseWindow: time.Hour, Grace: 15 * time.Minute, Delay: 15 * time.Minute})
	e.Load(seed, 0, time.Time{})
	return e
}

// ownList reads text record by record with the engine's own watch list
// as it grows, as the plugin does, and feeds the engine what it lets
// through.
func ownList(d *detect.Detector, text []byte, seed []*lifecycle.Case) []string {
	e := seeded(seed)
	var fs []detect.Finding
	var s detect.Splitter
	var st detect.JSONStats
	for {
		sp, ok, err := s.Next(text, true)
		if err != nil || !ok {
			break
		}
		for _, o := range d.ObserveJSON(text[sp.Start:sp.End], sp.Element, e.Watch(), fileTime, nil, &st) {
			fs = append(fs, e.Observe(o, time.Time{})...)
		}
	}
	return outcome(fs)
}

// jsonSeeds: archives of every kind, with the events a lifecycle acts on.
func jsonSeeds(f *testing.F) {
	var events []any
	for _, r := range rules.Stateless() {
		for _, ev := range corpus.Fixtures(f, r.ID, "positive") {
			events = append(events, ev)
		}
	}
	for _, name := range []string{"ec2_describe_instances_by_key", "iam_delete_access_key", "iam_delete_user", "iam_update_access_key_inactive", "sts_get_caller_identity_trufflehog", "health_exposed"} {
		events = append(events, corpus.JSONFile(f, corpusPath("events/"+name)))
	}
	// Access key calls on a user watched without a key, and on another,
	// by an administrator: the record names the user, not its caller.
	for _, user := range []string{"keyless", "someone-else"} {
		for _, name := range []string{"iam_delete_access_key", "iam_update_access_key_inactive"} {
			ev := corpus.JSONFile(f, corpusPath("events/"+name))
			params, _ := ev["requestParameters"].(map[string]any)
			params = maps.Clone(params)
			params["userName"], params["accessKeyId"] = user, "AKIAEXAMPLEKEYLESS01"
			ev["requestParameters"] = params
			events = append(events, ev)
		}
	}
	for i := 0; i < len(events); i += 3 {
		group := events[i:min(i+3, len(events))]
		f.Add(value.ToJSON(map[string]any{"Records": group}))
		var lines []byte
		for _, e := range group {
			lines = append(append(lines, value.ToJSON(e)...), '\n')
		}
		f.Add(lines)
		f.Add(value.ToJSON(map[string]any{"detail-type": "AWS API Call via CloudTrail", "detail": group[0]}))
		f.Add(value.ToJSON(map[string]any{"log": string(value.ToJSON(group[0]))}))
	}
	var long []byte
	for _, ev := range overLong(f) {
		long = append(append(long, value.ToJSON(ev)...), '\n')
	}
	f.Add(long)
	f.Add(value.ToJSON(map[string]any{"Records": overLong(f)}))
	// Envelopes of other kinds, each alone and as JSON lines: the Splitter
	// reads a Lambda event's Records element by element, the general path
	// the whole.
	var lines []byte
	for _, ev := range shapeSeeds(f) {
		js := value.ToJSON(ev)
		f.Add(js)
		lines = append(append(lines, js...), '\n')
	}
	f.Add(lines)
}

// FuzzJSONPathsAgree is the differential check of the scan's fast path:
// for any text of JSON values, reading it as the scan does (a first read
// with nothing watched, a second with the static watch list the first
// one's events give, plus a case already watched) finds the events the
// general path finds by decoding everything: the same findings of the
// rules that decide from one event, and the same findings of a lifecycle
// engine fed either way.
func FuzzJSONPathsAgree(f *testing.F) {
	jsonSeeds(f)
	d := detect.New(detect.Options{EventKeys: []string{"log", "message"}})
	seed := func() []*lifecycle.Case {
		return []*lifecycle.Case{{Key: "AKIAEXAMPLEEXPOSED01", User: "ci-deployer", Account: "111122223333", FirstSeen: 1},
			{User: "keyless", Account: "111122223333", FirstSeen: 1}}
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		all, ok := decodeAll(d, text)
		if !ok {
			return
		}
		first, _, err := d.ScanJSON(text, nil, fileTime, nil)
		if err != nil {
			t.Fatalf("the decoder reads it all, the splitter says %v", err)
		}
		w := &detect.StaticWatch{Users: true, Keys: map[string]bool{"AKIAEXAMPLEEXPOSED01": true}}
		w.AddUser("111122223333", "ci-deployer")
		w.AddUser("111122223333", "keyless")
		for _, o := range first {
			w.Learn(o)
		}
		read, _, err := d.ScanJSON(text, w, fileTime, nil)
		if err != nil {
			t.Fatal(err)
		}
		var second []detect.Observed
		for _, o := range read {
			if w.Relevant(o) {
				second = append(second, o)
			}
		}
		if a, b := outcome(detect.Findings(second)), outcome(detect.Findings(all)); !reflect.DeepEqual(a, b) {
			t.Fatalf("stateless findings differ:\nfast %q\nall  %q", a, b)
		}
		if a, b := outcome(detect.Findings(first)), outcome(detect.Findings(all)); !reflect.DeepEqual(a, b) {
			t.Fatalf("the first read's findings differ:\nfast %q\nall  %q", a, b)
		}
		if a, b := lifecycleOf(second, seed()), lifecycleOf(all, seed()); !reflect.DeepEqual(a, b) {
			t.Fatalf("lifecycle findings differ:\nfast %q\nall  %q", a, b)
		}
		// The engine's own list, as the plugin reads with it, growing as it
		// reads: what it lets through is what the engine acts on (a
		// user's AccessKey calls by the names it holds, say).
		if a, b := ownList(d, text, seed()), lifecycleOf(all, seed()); !reflect.DeepEqual(a, b) {
			t.Fatalf("lifecycle findings with the engine's list differ:\nfast %q\nall  %q", a, b)
		}
	})
}

// FuzzKeylessNamesLoseNothing is the differential check of looking for
// the names of the users watched without a key in a record's raw text:
// read with a list that names them (the engine's, while there are few),
// any text gives every event that the same list, unable to name them
// (then every IAM user's call without an ARN near, and every access key
// call, is a candidate), gives of such a user's calls and of the calls
// that name one. A name spelled with escapes is the escape pass's.
func FuzzKeylessNamesLoseNothing(f *testing.F) {
	jsonSeeds(f)
	for _, name := range []string{"keyless", "alice", `k\u0065yless`} {
		f.Add([]byte(`{"eventVersion":"1.08","eventName":"ConsoleLogin","recipientAccountId":"111122223333","userIdentity":{"type":"IAMUser","userName":"` + name + `","accountId":"111122223333"}}`))
	}
	d := detect.New(detect.Options{EventKeys: []string{"log", "message"}})
	key := map[string]bool{"AKIAEXAMPLEEXPOSED01": true}
	// Two names, and each alone (whose name the walk looks for).
	lists := []watch{{keys: key, users: map[string]bool{"111122223333/keyless": true, "111122223333/ci-deployer": true}},
		{keys: key, users: map[string]bool{"111122223333/keyless": true}}, {users: map[string]bool{"111122223333/ci-deployer": true}}}
	f.Fuzz(func(t *testing.T, text []byte) {
		for _, names := range lists {
			every, _, err := d.ScanJSON(text, cannotSay{names}, fileTime, nil)
			if err != nil {
				continue
			}
			read, _, err := d.ScanJSON(text, names, fileTime, nil)
			if err != nil {
				// Text that is not JSON is framed only where a pattern
				// stands: the one name (the walk looks for it) where no
				// IAMUser is, say. Then the list that cannot name its
				// users framed nothing, and found nothing to lose.
				if len(every) > 0 {
					t.Fatalf("%d names: %v, where %d events were found", len(names.users), err, len(every))
				}
				continue
			}
			got := map[string]int{}
			for _, o := range read {
				got[eventOf(o.Event)]++
			}
			for _, o := range every {
				if e := o.Event; namesKeyless(e, names) {
					if got[eventOf(e)] == 0 {
						t.Fatalf("%d names: lost %s", len(names.users), eventOf(e))
					}
					got[eventOf(e)]--
				}
			}
		}
	})
}

// cannotSay is a watch list that cannot name its users without a key.
type cannotSay struct{ watch }

func (cannotSay) KeylessNames() ([][]byte, bool) { return nil, false }

// namesKeyless: the event is a call of a user w watches without a key,
// or names one (an access key call on that user), as the engine reads it.
func namesKeyless(e *cloudtrail.Event, w watch) bool {
	account := e.Actor.AccountID
	if account == "" {
		account = e.Account
	}
	return e.Actor.Type == "IAMUser" && w.users[account+"/"+e.Actor.UserName] || w.users[e.Account+"/"+e.Param("userName")]
}

func eventOf(e *cloudtrail.Event) string {
	return strings.Join([]string{e.ID, e.Name, e.Time, e.Actor.Type, e.Actor.UserName, e.Param("userName")}, "|")
}

// BenchmarkSplitterBlocks frames the corpus's events as JSON lines (an
// export) and as a log file, from blocks' bits and a byte at a time
// alternately; x-bytes is how many times longer a byte at a time takes.
func BenchmarkSplitterBlocks(b *testing.B) {
	events := corpus.Panther(b)
	lines := []byte{}
	for len(lines) < 8<<20 {
		for _, e := range events {
			lines = append(append(lines, value.ToJSON(e)...), '\n')
		}
	}
	logFile := value.ToJSON(map[string]any{"Records": events})
	for len(logFile) < 8<<20 {
		logFile = append(logFile, value.ToJSON(map[string]any{"Records": events})...)
	}
	for _, c := range []struct {
		name string
		text []byte
	}{{"lines", lines}, {"logfile", logFile}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.text)))
			b.ReportMetric(alternate.Ratio(b, detect.UseBlocks, func() {
				var s detect.Splitter
				for {
					if _, ok, err := s.Next(c.text, true); err != nil || !ok {
						break
					}
				}
			}), "x-bytes")
		})
	}
}

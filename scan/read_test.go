package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

// A log file's records are guessed from where each event's
// {"eventVersion": starts; whatever the guess, the events decoded are
// those of framing the text properly: for AWS's own layout, for another
// key order, and for an event holding a nested object that starts as an
// event does (the guess is then found wrong, and the text framed).
func TestGuessedRecordsDecodeAsFramed(t *testing.T) {
	for name, text := range guessTexts(t) {
		keys := keysOf([]byte(text), len(text))
		_, guessed := logRecords([]byte(text), &keys, nil)
		if got, want, ok := guessedAndFramed([]byte(text)); !ok || got != want || want == "" {
			t.Errorf("%s (guessed %v): %s, framed %s", name, guessed, got, want)
		}
	}
}

// FuzzGuessedRecordsDecodeAsFramed is the differential check of the two
// ways a held text is framed: for any valid JSON text, the records the
// guess finds decode to the events framing it properly gives. (In text
// that is not JSON, a string left open can hold what the guess takes for
// an event; AWS writes no such file, and whoever can write one into an
// archive can write any event there.)
func FuzzGuessedRecordsDecodeAsFramed(f *testing.F) {
	for _, text := range guessTexts(f) {
		f.Add([]byte(text))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		if !json.Valid(text) {
			return
		}
		if got, want, ok := guessedAndFramed(text); ok && got != want {
			t.Fatalf("guessed %s, framed %s", got, want)
		}
	})
}

// guessedAndFramed are the events of text read as the scan reads a held
// file, and as ScanJSON frames it; ok is false when it is not JSON.
func guessedAndFramed(text []byte) (got, want string, ok bool) {
	det := detect.New(detect.Options{})
	framed, _, err := det.ScanJSON(text, nil, time.Time{}, nil)
	if err != nil {
		return "", "", false
	}
	// The keys noted as readAll notes them, the text coming in pieces.
	d := &decoded{text: text, keys: keysOf(text, 1+len(text)%97)}
	if _, err := newReader(det, nil).refilter(d, noWatch{}); err != nil {
		return "", "", false
	}
	return ids(d.obs), ids(framed), true
}

// A held text's framing goes back with it for the next file: the next
// file's keys, stops and guessed records are its own, whatever the last
// one left (a larger file before a smaller one, and the other way).
func TestFramingReusedClean(t *testing.T) {
	det := detect.New(detect.Options{})
	texts := guessTexts(t)
	names := slices.Sorted(maps.Keys(texts))
	var files []source.Object
	for i, name := range names {
		files = append(files, source.Memory(fmt.Sprintf("AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/20/111122223333_CloudTrail_us-east-1_20261120T08%02dZ_x.json", i), []byte(texts[name])))
	}
	fresh := func(obj source.Object) *decoded {
		return newReader(det, nil).readHeld(context.Background(), obj, 0, nil, noWatch{})
	}
	r := newReader(det, nil)
	for _, order := range [][]int{{0, 1, 2, 0, 2, 1}, {2, 0, 1, 2}} {
		for _, i := range order {
			obj := files[i%len(files)]
			got, want := r.readHeld(context.Background(), obj, 0, nil, noWatch{}), fresh(obj)
			if !slices.Equal(got.keys.at, want.keys.at) || !slices.Equal(got.keys.stop, want.keys.stop) ||
				!slices.Equal(got.spans, want.spans) || ids(got.obs) != ids(want.obs) {
				t.Fatalf("%s after others: keys %v %v spans %v, fresh %v %v %v", names[i%len(names)], got.keys.at, got.keys.stop, got.spans, want.keys.at, want.keys.stop, want.spans)
			}
			r.release(got)
		}
	}
}

// The keys and their records' stops are the same however the text
// comes, and a stop is noted exactly where {"eventVersion": opens an
// object, after the separators before it.
func TestKeysNotedInPieces(t *testing.T) {
	for name, text := range guessTexts(t) {
		whole := keysOf([]byte(text), len(text))
		if len(whole.at) == 0 || len(whole.stop) != len(whole.at) {
			t.Fatalf("%s: %d keys, %d stops", name, len(whole.at), len(whole.stop))
		}
		for i, at := range whole.at {
			opens := at > 0 && strings.HasPrefix(text[at-1:], `{"eventVersion":`)
			if stop := whole.stop[i]; opens != (stop >= 0) || opens && (strings.TrimRight(text[:at-1], ", \t\r\n") != text[:stop]) {
				t.Errorf("%s: key at %d: stop %d", name, at, stop)
			}
		}
		for _, piece := range []int{1, 2, 15, 16, 17, 100, 4096} {
			if k := keysOf([]byte(text), piece); !slices.Equal(k.at, whole.at) || !slices.Equal(k.stop, whole.stop) {
				t.Errorf("%s in pieces of %d: %v %v, whole %v %v", name, piece, k.at, k.stop, whole.at, whole.stop)
			}
		}
	}
}

// keysOf notes the keys of text as readAll does, the text growing by
// piece bytes at a time.
func keysOf(text []byte, piece int) eventKeys {
	var k eventKeys
	for n := 0; n < len(text); {
		from := detect.NextFrom(n)
		n = min(len(text), n+piece)
		k.add(text[:n], from)
	}
	k.finish(text)
	return k
}

// guessTexts are log files as AWS writes them, in another key order, and
// with an event holding a nested object that starts as an event does.
func guessTexts(t testing.TB) map[string]string {
	q, _ := sequence.Event("rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline")
	noise := corpus.Panther(t)[:30]
	ordered := func(events []any) string {
		var b strings.Builder
		b.WriteString(`{"Records":[`)
		for i, e := range events {
			if i > 0 {
				b.WriteByte(',')
			}
			m := e.(map[string]any)
			// eventVersion first, as AWS writes it.
			b.WriteString(`{"eventVersion":` + string(value.ToJSON(m["eventVersion"])))
			for _, k := range slices.Sorted(func(yield func(string) bool) {
				for k := range m {
					if k != "eventVersion" && !yield(k) {
						return
					}
				}
			}) {
				b.WriteString(`,` + string(value.ToJSON(k)) + `:` + string(value.ToJSON(m[k])))
			}
			b.WriteByte('}')
		}
		b.WriteString("]}")
		return b.String()
	}
	var events []any
	for _, n := range noise {
		if m := n.(map[string]any); m["eventVersion"] != nil {
			events = append(events, m)
		}
	}
	nested := map[string]any{}
	for k, v := range q {
		nested[k] = v
	}
	nested["eventID"] = "nested"
	nested["requestParameters"] = map[string]any{"echo": map[string]any{"eventVersion": "1.08", "policyName": "AWSCompromisedKeyQuarantineV2"}}
	return map[string]string{
		"aws":       ordered(append(append(slices.Clone(events[:10]), any(q)), events[10:]...)),
		"nested":    ordered(append(append(slices.Clone(events[:10]), any(nested), any(q)), events[10:]...)),
		"key order": string(value.ToJSON(map[string]any{"Records": append(slices.Clone(events), any(q))})),
	}
}

func ids(obs []detect.Observed) string {
	var out []string
	for _, o := range obs {
		out = append(out, o.Event.ID)
	}
	return strings.Join(out, ",")
}

type noWatch struct{}

func (noWatch) Empty() bool                    { return true }
func (noWatch) Key([]byte) bool                { return false }
func (noWatch) KeylessUsers() bool             { return false }
func (noWatch) User([]byte, []byte) bool       { return false }
func (noWatch) Version() uint64                { return 0 }
func (noWatch) KeylessNames() ([][]byte, bool) { return nil, true }

// What an event names that a watch list can hold is read from all of it,
// also from a part its reader left undecoded: a CreateAccessKey read as
// a map of an odd shape keeps its responseElements as msgpack.
func TestNamesOfReadsUndecodedParts(t *testing.T) {
	resp := value.AppendMsgpack(nil, map[string]any{"accessKey": map[string]any{
		"userName": "build-bot", "accessKeyId": "AKIAEXAMPLENEWKEY001"}})
	o := detect.Observed{Event: &cloudtrail.Event{Name: "CreateAccessKey",
		Raw: map[string]any{"eventName": "CreateAccessKey", "responseElements": value.Raw(resp)}}}
	names, ok := namesOf(o)
	got := map[string]bool{}
	for _, n := range names {
		got[string(n)] = true
	}
	if !ok || !got["build-bot"] || !got["AKIAEXAMPLENEWKEY001"] {
		t.Fatalf("names %q (%v)", names, ok)
	}
}

// accountOf finds the first "recipientAccountId":" as bytes.Index does,
// whatever the A's before it, and gives its account only when that is
// 12 digits.
func TestAccountOf(t *testing.T) {
	for rec, want := range map[string]string{
		`{"eventVersion":"1.08","recipientAccountId":"111122223333","x":"A"}`: "111122223333",
		`{"a":"AAAA AKIAEXAMPLE Action","recipientAccountId":"111122223333"}`: "111122223333",
		`"recipientAccountId":"111122223333"`:                                 "111122223333",
		`{"recipientAccountId":"12","recipientAccountId":"111122223333"}`:     "",
		`{"recipientAccountId": "111122223333"}`:                              "",
		`{"recipientAccountId":"1111`:                                         "",
		`{"recipientaccountid":"111122223333"}`:                               "",
		`{"A":"AccountId","recipientAccountId":"11112222333x"}`:               "",
	} {
		if got := accountOf([]byte(rec)); got != want {
			t.Errorf("accountOf(%s) = %q, want %q", rec, got, want)
		}
	}
}

// FuzzAccountOfAgreesWithIndex holds the hop over the key's A to the
// plain search for the whole key.
func FuzzAccountOfAgreesWithIndex(f *testing.F) {
	for _, s := range []string{`{"recipientAccountId":"111122223333"}`, `AAA"recipientAccountId":"1111222233`, `"recipientAccountId":"recipientAccountId":"111122223333"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		const key = `"recipientAccountId":"`
		want := ""
		if i := bytes.Index(rec, []byte(key)); i >= 0 && i+len(key)+12 <= len(rec) && source.IsAccount(string(rec[i+len(key):i+len(key)+12])) {
			want = string(rec[i+len(key) : i+len(key)+12])
		}
		if got := accountOf(rec); got != want {
			t.Fatalf("accountOf(%q) = %q, bytes.Index says %q", rec, got, want)
		}
	})
}

package scan

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

// A log file's records are guessed from where each event's
// {"eventVersion": starts; whatever the guess, the events decoded are
// those of framing the text properly: for AWS's own layout, for another
// key order, and for an event holding a nested object that starts as an
// event does (the guess is then found wrong, and the text framed).
func TestGuessedRecordsDecodeAsFramed(t *testing.T) {
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
	texts := map[string]string{
		"aws":       ordered(append(append(slices.Clone(events[:10]), any(q)), events[10:]...)),
		"nested":    ordered(append(append(slices.Clone(events[:10]), any(nested), any(q)), events[10:]...)),
		"key order": string(value.ToJSON(map[string]any{"Records": append(slices.Clone(events), any(q))})),
	}
	det := detect.New(detect.Options{})
	r := newReader(det, nil)
	for name, text := range texts {
		want, _, err := det.ScanJSON([]byte(text), nil, time.Time{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		d := &decoded{text: []byte(text)}
		if _, err := r.refilter(d, noWatch{}); err != nil {
			t.Fatal(err)
		}
		_, guessed := logRecords([]byte(text))
		if ids(d.obs) != ids(want) || len(want) == 0 {
			t.Errorf("%s (guessed %v): %s, framed %s", name, guessed, ids(d.obs), ids(want))
		}
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

func (noWatch) Empty() bool              { return true }
func (noWatch) Key([]byte) bool          { return false }
func (noWatch) KeylessUsers() bool       { return false }
func (noWatch) User([]byte, []byte) bool { return false }
func (noWatch) Version() uint64          { return 0 }

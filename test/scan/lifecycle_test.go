package scan_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

// writeSequence lays a sequence's events out as a trail would: each
// CloudTrail event in a log file of its own (stamped five minutes after
// it), the regions taking turns so the scan must merge two streams, and
// the AWS Health notices in a JSON lines file of their own. It returns
// the time the sequence ends: its latest event, plus a silence after the
// step it came in.
func writeSequence(t *testing.T, root string, s sequence.Sequence) time.Time {
	var end time.Time
	var health []byte
	n := 0
	for _, st := range s.Steps {
		if st.Silence > 0 {
			end = end.Add(st.Silence)
		}
		for _, e := range st.Events() {
			if e["eventName"] == nil {
				health = append(append(health, value.ToJSON(e)...), '\n')
				end = later(end, sequence.EventTime(e))
				continue
			}
			at := sequence.EventTime(e)
			account, _ := e["recipientAccountId"].(string)
			region := []string{"us-east-1", "eu-west-1"}[n%2]
			if _, err := archive.WriteLogFile(root, account, region, at.Add(5*time.Minute), fmt.Sprintf("n%03d", n), []any{e}); err != nil {
				t.Fatal(err)
			}
			n++
			end = later(end, at)
		}
	}
	if health != nil {
		os.WriteFile(filepath.Join(root, "health.jsonl"), health, 0o644)
	}
	return end
}

// later is the later of two times.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// The lifecycle's examples laid out as archives: the scan, in event time
// across files and regions, gives each exactly the alerts it expects.
// (A collector restart is nothing to a scan; a silence is the time
// between events, and at the end, --until.)
func TestLifecycleSequences(t *testing.T) {
	for _, rule := range sequence.Rules {
		for _, s := range sequence.Load(t, rule) {
			t.Run(s.Name, func(t *testing.T) {
				t.Parallel()
				root := t.TempDir()
				end := writeSequence(t, root, s)
				res := scanOf(t, "--grace", s.Options.Grace.String(), "--delay", s.Options.Delay.String(),
					"--use-window", s.Options.Window.String(), "--watch-ttl", s.Options.TTL.String(), "--until", end.Format(time.RFC3339Nano), root)
				if res.code > 1 {
					t.Fatalf("exit %d\n%s", res.code, res.stderr)
				}
				got := countRules(alerts(t, res.stdout))
				for id, want := range s.Expect {
					if got[id] != want {
						t.Errorf("%s: %d alerts, want %d (all %v)\n%s\n%s", id, got[id], want, got, s.About, res.stderr)
					}
				}
			})
		}
	}
}

var lateRe = regexp.MustCompile(`(\d+) event\(s\) late \((\d+) more than --delay`)

// Files of one stream are read in time order and merged with the other
// region's by event time: an event AWS put in the next file, a minute
// earlier than the last of the one before, is still in order; one put
// an hour late is taken, and counted late.
func TestMergeInEventTime(t *testing.T) {
	quarantine, _ := sequence.Event("rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline")
	use, _ := sequence.Event("events/ec2_describe_instances_by_key")
	at := sequence.EventTime(quarantine)
	account := quarantine["recipientAccountId"].(string)
	ev := func(base map[string]any, id string, t time.Time) any {
		e := map[string]any{}
		for k, v := range base {
			e[k] = v
		}
		e["eventID"], e["eventTime"] = id, t.Format(time.RFC3339)
		return e
	}
	for _, c := range []struct {
		name       string
		lateBy     time.Duration
		late, past int
		first      string
	}{{"a file late", 7 * time.Minute, 0, 0, "early"}, {"an hour late", time.Hour, 1, 1, "use-0"}} {
		root := t.TempDir()
		archive.WriteLogFile(root, account, "us-east-1", at.Add(5*time.Minute), "a", []any{quarantine})
		// Uses in another region, one file every 5 minutes.
		for i := range 20 {
			stamp := at.Add(time.Duration(10+5*i) * time.Minute)
			recs := []any{ev(use, fmt.Sprintf("use-%d", i), stamp.Add(-2*time.Minute))}
			if i == 0 {
				// The call 3 minutes before the quarantine's file stamp,
				// written c.lateBy later.
				archive.WriteLogFile(root, account, "eu-west-1", at.Add(c.lateBy), "late", []any{ev(use, "early", at.Add(2*time.Minute))})
			}
			archive.WriteLogFile(root, account, "eu-west-1", stamp, fmt.Sprintf("u%02d", i), recs)
		}
		res := scanOf(t, root)
		m := lateRe.FindStringSubmatch(res.stderr)
		if res.code != 1 || m == nil || m[1] != fmt.Sprint(c.late) || m[2] != fmt.Sprint(c.past) {
			t.Errorf("%s: exit %d, late %q, want %d (%d past --delay)\n%s", c.name, res.code, m, c.late, c.past, res.stderr)
		}
		// Uses over 100 minutes, one alert per hour's window: the first
		// window opens with the first call in event time, unless it came
		// too late to be seen first.
		var uses []alert
		for _, a := range alerts(t, res.stdout) {
			if a.Rule.ID == rules.QuarantinedKeyUsed {
				uses = append(uses, a)
			}
		}
		if len(uses) != 2 || uses[0].EventID != c.first {
			t.Errorf("%s: use alerts %+v", c.name, uses)
		}
	}
}

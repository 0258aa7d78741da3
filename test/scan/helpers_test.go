// Package scan_test drives the built cloudtrail-quarantine binary over
// real files, a real S3 protocol server on the loopback and a real
// pseudo-terminal.
package scan_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

var (
	buildOnce sync.Once
	buildErr  error
)

// bin is the command make builds (once per test binary).
func bin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		out, err := exec.Command("make", "-C", paths.Root(), "build/cloudtrail-quarantine").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("make: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(paths.Root(), "build", "cloudtrail-quarantine")
}

// result is one run of the command.
type result struct {
	stdout, stderr string
	code           int
}

var hwmRe = regexp.MustCompile(`peak memory ([\d.]+) (k|M|G)B \(VmHWM\)`)

// peakMB is the peak resident memory the command reports (its VmHWM).
func (r result) peakMB(t testing.TB) float64 {
	m := hwmRe.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no peak memory in the summary:\n%s", r.stderr)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v * map[string]float64{"k": 1e-3, "M": 1, "G": 1e3}[m[2]]
}

type run struct {
	args  []string
	env   []string
	stdin []byte
}

func scanCmd(t testing.TB, r run) result {
	t.Helper()
	cmd := exec.Command(bin(t), append([]string{"scan", "--progress", "never"}, r.args...)...)
	cmd.Env = append(os.Environ(), r.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if r.stdin != nil {
		cmd.Stdin = bytes.NewReader(r.stdin)
	}
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	if exit, ok := err.(*exec.ExitError); ok {
		res.code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return res
}

func scanOf(t testing.TB, args ...string) result { return scanCmd(t, run{args: args}) }

// alert is the part of an alert line the tests compare.
type alert struct {
	Rule struct {
		ID string `json:"id"`
	} `json:"rule"`
	EventID   string `json:"event_id"`
	EventTime string `json:"event_time"`
	AccountID string `json:"account_id"`
	Shape     string `json:"record_shape"`
	Key       struct {
		ID   string `json:"id"`
		User string `json:"user"`
	} `json:"key"`
	Use struct {
		Calls       int    `json:"calls"`
		WindowStart string `json:"window_start"`
	} `json:"use"`
}

// id names an alert across runs (and against the plugin's): rule, event,
// key and window.
func (a alert) id() string {
	return strings.Join([]string{a.Rule.ID, a.EventID, a.Key.ID, a.Key.User, a.Use.WindowStart}, "|")
}

func alerts(t testing.TB, out string) []alert {
	t.Helper()
	var as []alert
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var a alert
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("not an alert line: %.200q: %v", line, err)
		}
		as = append(as, a)
	}
	return as
}

func ids(as []alert) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.id())
	}
	slices.Sort(out)
	return out
}

func countRules(as []alert) map[string]int {
	m := map[string]int{}
	for _, a := range as {
		m[a.Rule.ID]++
	}
	return m
}

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

// Accounts of the test archives (a second and third beside the
// examples' own).
var accounts = []string{"111122223333", "444455556666", "777788889999", "210987654321", "123456789012"}

// example is one rule example placed in an archive.
type example struct {
	rule, kind, id string
}

// statelessExamples are the examples of the rules that decide from one
// event, each with an eventID of its own, and what they must give.
func statelessExamples(t testing.TB) (events []map[string]any, want []example) {
	for _, r := range rules.Stateless() {
		for _, kind := range []string{"positive", "negative"} {
			for i, ev := range corpus.Fixtures(t, r.ID, kind) {
				ev = maps.Clone(ev)
				id := fmt.Sprintf("%s-%s-%d", r.ID, kind, i)
				if ev["eventName"] == nil {
					continue // an AWS Health notice: no CloudTrail event
				}
				ev["eventID"] = id
				ev["eventTime"] = t0.Add(time.Duration(len(events)) * time.Second).Format(time.RFC3339)
				events = append(events, ev)
				want = append(want, example{r.ID, kind, id})
			}
		}
	}
	return events, want
}

// layoutArchive writes the corpus and the examples as log files of
// several accounts, regions and days, most files holding nothing of
// note: what a trail's bucket looks like. Each event's time is its
// file's, as in a real trail; the examples (all of account 111122223333)
// go in that account's files, the corpus's events in every account's,
// made that account's. It returns the examples and how many CloudTrail
// events (with eventVersion) it wrote.
func layoutArchive(t testing.TB, root string) (want []example, events int) {
	t.Helper()
	noise := quiet(t)
	examples, want := statelessExamples(t)
	regions := []string{"us-east-1", "eu-west-1"}
	n, next := 0, 0
	for day := range 3 {
		for ai, account := range accounts {
			for ri, region := range regions {
				for f := range 2 {
					at := t0.Add(time.Duration(day)*24*time.Hour + time.Duration(f*5+ai+ri)*time.Minute)
					var recs []any
					for k := range 40 {
						e := maps.Clone(noise[(n*40+k)%len(noise)].(map[string]any))
						e["eventTime"] = at.Add(-time.Duration(40-k) * time.Second).Format(time.RFC3339Nano)
						e["recipientAccountId"] = account
						recs = append(recs, e)
					}
					for j := 0; j < 5 && account == "111122223333" && next < len(examples); j++ {
						// Just before the event it goes in front of: in time order.
						e := maps.Clone(examples[next])
						pos := 10 + 5*j
						after, _ := time.Parse(time.RFC3339Nano, recs[pos].(map[string]any)["eventTime"].(string))
						e["eventTime"] = after.Add(-500 * time.Millisecond).Format(time.RFC3339Nano)
						recs = append(recs[:pos:pos], append([]any{e}, recs[pos:]...)...)
						next++
					}
					n++
					for _, r := range recs {
						if r.(map[string]any)["eventVersion"] != nil {
							events++
						}
					}
					if _, err := archive.WriteLogFile(root, account, region, at, fmt.Sprintf("f%d", f), recs); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	if next < len(examples) {
		t.Fatalf("the archive has room for %d examples, there are %d", next, len(examples))
	}
	return want, events
}

// checkExamples: each positive example gave its rule's alert, no
// negative did.
func checkExamples(t *testing.T, as []alert, want []example) {
	t.Helper()
	fired := map[string]bool{}
	for _, a := range as {
		fired[a.Rule.ID+"|"+a.EventID] = true
	}
	for _, w := range want {
		if got := fired[w.rule+"|"+w.id]; got != (w.kind == "positive") {
			t.Errorf("%s: %s alert %v", w.id, w.rule, got)
		}
	}
}

// quiet is the corpus without its two quarantines: events no rule fires on.
func quiet(t testing.TB) []any {
	var out []any
	for _, e := range corpus.Panther(t) {
		js := value.ToJSON(e)
		if !slices.ContainsFunc(detect.Needles, func(n []byte) bool { return bytes.Contains(js, n) }) {
			out = append(out, e)
		}
	}
	return out
}

package scan_test

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
)

const tag = "aws.cloudtrail.events"

// chunksOf reads an archive's log files back, in the order their stamps
// say they were written, as the chunks a collector tailing the trail
// would flush: a log file object a record. last is the latest event time.
func chunksOf(t *testing.T, root string) (flushes []harness.Flush, last time.Time) {
	t.Helper()
	var files []string
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".json.gz") {
			files = append(files, p)
		}
		return err
	})
	stamp := func(p string) time.Time { s, _ := source.FileStamp(p); return s }
	slices.SortStableFunc(files, func(a, b string) int { return stamp(a).Compare(stamp(b)) })
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		text, err := io.ReadAll(zr)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		body, err := value.FromJSON(text)
		if err != nil {
			t.Fatal(err)
		}
		flushes = append(flushes, harness.Flush{Tag: tag, Data: fbchunk.AppendV2(nil, stamp(p), nil, body)})
		for _, e := range body.(map[string]any)["Records"].([]any) {
			if at, err := time.Parse(time.RFC3339Nano, e.(map[string]any)["eventTime"].(string)); err == nil && at.After(last) {
				last = at
			}
		}
	}
	return flushes, last
}

// lifecycleStory adds a key's life to an archive: quarantined, used in
// two regions, a call the quarantine denied, retired.
func lifecycleStory(t *testing.T, root string) {
	account := "111122223333"
	q := fixtureEvent(t, "rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline")
	writeLog(t, root, account, "us-east-1", t0.Add(20*time.Minute), "story-q", q)
	for i, name := range []string{"events/ec2_describe_instances_by_key", "events/iam_create_access_key_denied", "events/ec2_run_instances_unauthorized"} {
		e := fixtureEvent(t, name)
		e["eventTime"] = t0.Add(time.Duration(30+i*10) * time.Minute).Format(time.RFC3339)
		writeLog(t, root, account, []string{"eu-west-1", "us-east-1"}[i%2], t0.Add(time.Duration(32+i*10)*time.Minute), "story-u", e)
	}
	d := fixtureEvent(t, "events/iam_delete_access_key")
	d["eventTime"] = t0.Add(2 * time.Hour).Format(time.RFC3339)
	writeLog(t, root, account, "us-east-1", t0.Add(2*time.Hour+3*time.Minute), "story-d", d)
}

// The scan and the plugin give the same alerts on the same events: the
// archive's log files flushed through the built .so in the order they
// were written, and scanned.
func TestScanAndPluginAgree(t *testing.T) {
	root := t.TempDir()
	layoutArchive(t, root)
	lifecycleStory(t, root)
	flushes, last := chunksOf(t, root)
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{{}}, Flushes: flushes, Quiet: true})
	if res.ExitCode != 0 {
		t.Fatalf("harness exit %d\n%s", res.ExitCode, res.Stderr)
	}
	plugin := ids(alerts(t, res.Stdout))
	// The plugin's clock is the events' time here (no silence): its
	// latest. End the scan's there too.
	scanned := scanOf(t, "--until", last.Format(time.RFC3339Nano), root)
	if scanned.code != 1 {
		t.Fatalf("scan exit %d\n%s", scanned.code, scanned.stderr)
	}
	got := ids(alerts(t, scanned.stdout))
	if !slices.Equal(got, plugin) {
		t.Fatalf("the scan's alerts differ from the plugin's:\nscan   %q\nplugin %q", got, plugin)
	}
	c := countRules(alerts(t, scanned.stdout))
	for _, rule := range []string{"aws.iam.quarantine_applied", "aws.iam.quarantined_key_used", "aws.iam.quarantine_denied_call", "aws.iam.exposed_key_retired"} {
		if c[rule] == 0 {
			t.Errorf("no %s alert to compare: %v", rule, c)
		}
	}
}

// A scan seeds a live plugin: --state writes the watch list into a
// State_Dir, and the plugin started over it alerts on the key's next use
// (without the scan's state, the same use is nothing to it).
func TestStateSeedsThePlugin(t *testing.T) {
	root := t.TempDir()
	account := "111122223333"
	writeLog(t, root, account, "us-east-1", t0.Add(20*time.Minute), "q",
		fixtureEvent(t, "rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline"))
	dir := filepath.Join(t.TempDir(), "state")
	res := scanOf(t, "--state", dir, root)
	if res.code != 1 || !strings.Contains(res.stderr, "state: 2 case(s) written") { // the key, and its user
		t.Fatalf("exit %d\n%s", res.code, res.stderr)
	}
	use := fixtureEvent(t, "events/ec2_describe_instances_by_key")
	use["eventTime"] = t0.Add(24 * time.Hour).Format(time.RFC3339)
	chunk := fbchunk.AppendV2(nil, t0.Add(24*time.Hour), nil, use)
	for _, c := range []struct {
		props []harness.KV
		want  int
	}{{[]harness.KV{{Key: "State_Dir", Value: dir}}, 1}, {[]harness.KV{{Key: "State_Dir", Value: t.TempDir()}}, 0}} {
		out := harness.Run(t, harness.Options{Instances: [][]harness.KV{c.props}, Flushes: []harness.Flush{{Tag: tag, Data: chunk}}, Quiet: true})
		if out.ExitCode != 0 {
			t.Fatalf("harness exit %d\n%s", out.ExitCode, out.Stderr)
		}
		if n := countRules(alerts(t, out.Stdout))["aws.iam.quarantined_key_used"]; n != c.want {
			t.Errorf("State_Dir %s: %d use alerts, want %d\n%s", c.props[0].Value, n, c.want, out.Stderr)
		}
	}
	// --state takes the store's file too, and keeps what it holds.
	again := scanOf(t, "--state", filepath.Join(dir, "state.db"), root)
	if again.code != 1 || !strings.Contains(again.stderr, "state: ") {
		t.Fatalf("exit %d\n%s", again.code, again.stderr)
	}
}

package scan_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
)

// A trail's archive in the S3 layout: every example gives its verdict,
// the corpus none, and the summary counts what was read.
func TestScanLayoutArchive(t *testing.T) {
	root := t.TempDir()
	want, events := layoutArchive(t, root)
	// CloudTrail's digest files (no events) sit in a tree of their own,
	// which is not read: this one would fail as JSON.
	digest := filepath.Join(root, "AWSLogs", "111122223333", "CloudTrail-Digest", "us-east-1", "2026", "11", "20")
	os.MkdirAll(digest, 0o755)
	os.WriteFile(filepath.Join(digest, "111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20261120T080000Z.json.gz"), []byte("not a log"), 0o644)
	// Each denied call its own window: the lifecycle folds a key's denied
	// calls of one window into one alert, and the examples share keys.
	res := scanOf(t, "--use-window", "1ns", root)
	if res.code != 1 {
		t.Fatalf("exit %d\n%s", res.code, res.stderr)
	}
	checkExamples(t, alerts(t, res.stdout), want)
	files, _ := filepath.Glob(filepath.Join(root, "AWSLogs", "*", "CloudTrail", "*", "*", "*", "*", "*.json.gz"))
	if !strings.Contains(res.stderr, fmt.Sprintf(": %d files, ", len(files))) || !strings.Contains(res.stderr, fmt.Sprintf(" %s events (", commas(events))) {
		t.Errorf("summary does not count %d files of %d events:\n%s", len(files), events, res.stderr)
	}
	if !regexp.MustCompile(`alerts: \d+ \(aws\.iam\.quarantine_applied \d+`).MatchString(res.stderr) || !strings.Contains(res.stderr, "/s of text") {
		t.Errorf("summary:\n%s", res.stderr)
	}
	// --account and --region prune the layout: only those files are
	// read, and us-east-1's, for the global services' events.
	one := scanOf(t, "--account", "444455556666", "--region", "eu-west-1", root)
	if !strings.Contains(one.stderr, ": 12 files, ") {
		t.Errorf("pruned to one account and region:\n%s", one.stderr)
	}
	for _, a := range alerts(t, one.stdout) {
		if !strings.Contains(res.stdout, a.EventID) {
			t.Errorf("%s: not an alert of the full scan", a.EventID)
		}
	}
	// --since/--until by event time: the first day only.
	day := scanOf(t, "--until", "2026-11-20", root)
	for _, a := range alerts(t, day.stdout) {
		if !strings.HasPrefix(a.EventTime, "2026-11-20") {
			t.Errorf("--until 2026-11-20 gave %s at %s", a.EventID, a.EventTime)
		}
	}
	if n, all := len(alerts(t, day.stdout)), len(alerts(t, res.stdout)); n == 0 || n >= all {
		t.Errorf("--until: %d of %d alerts", n, all)
	}
}

func commas(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Broken files among good ones: each named in one error line, the
// others' alerts still given, exit 2 (the scan is incomplete, even
// though it found alerts).
func TestCorruptFiles(t *testing.T) {
	root := t.TempDir()
	want, _ := layoutArchive(t, root)
	good := archive.Gzip(archive.Records(quiet(t)))
	dir := filepath.Join(root, "AWSLogs", "111122223333", "CloudTrail", "us-east-1", "2026", "11", "21")
	bad := map[string][]byte{
		"truncated.json.gz": good[:len(good)/2],
		"corrupt.json.gz":   flip(good, len(good)/2),
		"empty.json.gz":     {},
		"garbage.json":      []byte("this is not JSON\n"),
		"cut.json":          archive.Records(quiet(t))[:5000],
	}
	for name, data := range bad {
		os.WriteFile(filepath.Join(dir, name), data, 0o644)
	}
	res := scanOf(t, "--use-window", "1ns", root)
	if res.code != 2 {
		t.Fatalf("exit %d, want 2\n%s", res.code, res.stderr)
	}
	checkExamples(t, alerts(t, res.stdout), want)
	for name := range bad {
		if name == "empty.json.gz" {
			continue // an empty file is an empty log, not an error
		}
		if n := strings.Count(res.stderr, name); n != 1 {
			t.Errorf("%s named %d times:\n%s", name, n, res.stderr)
		}
	}
	if strings.Contains(res.stderr, "empty.json.gz") {
		t.Errorf("the empty file is reported:\n%s", res.stderr)
	}
	if !strings.Contains(res.stderr, "failed: 4 file(s): (") {
		t.Errorf("summary:\n%s", res.stderr)
	}
}

func flip(b []byte, at int) []byte {
	c := bytes.Clone(b)
	for i := at; i < at+64 && i < len(c); i++ {
		c[i] ^= 0x5a
	}
	return c
}

// JSON lines, EventBridge and AWS Health events, a pretty-printed log
// file and standard input are read alike.
func TestShapesAndStdin(t *testing.T) {
	events, want := statelessExamples(t)
	var lines, bridge []byte
	for _, e := range events {
		lines = append(append(lines, value.ToJSON(e)...), '\n')
		bridge = append(append(bridge, value.ToJSON(map[string]any{"version": "0", "detail-type": "AWS API Call via CloudTrail",
			"source": "aws.iam", "account": "111122223333", "detail": e})...), '\n')
	}
	health := corpus.JSONFile(t, "../fixtures/events/health_exposed.json")
	root := t.TempDir()
	files := map[string][]byte{
		"events.jsonl":       lines,
		"bridge.json.gz":     archive.Gzip(bridge),
		"health.json":        value.ToJSON(health),
		"pretty/export.json": []byte(strings.ReplaceAll(string(archive.Records(anys(events))), ",\"", ",\n    \"")),
	}
	for name, data := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755)
		os.WriteFile(filepath.Join(root, name), data, 0o644)
	}
	for name := range files {
		res := scanOf(t, "--use-window", "1ns", filepath.Join(root, name))
		if res.code != 1 {
			t.Fatalf("%s: exit %d\n%s", name, res.code, res.stderr)
		}
		if name == "health.json" {
			if c := countRules(alerts(t, res.stdout)); c["aws.health.credentials_exposed"] != 1 {
				t.Errorf("health: %v", c)
			}
			continue
		}
		checkExamples(t, alerts(t, res.stdout), want)
	}
	for _, in := range [][]byte{lines, archive.Gzip(lines)} {
		res := scanCmd(t, run{args: []string{"--use-window", "1ns", "-"}, stdin: in})
		if res.code != 1 {
			t.Fatalf("stdin: exit %d\n%s", res.code, res.stderr)
		}
		checkExamples(t, alerts(t, res.stdout), want)
	}
}

func anys(ms []map[string]any) []any {
	out := make([]any, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

// Exit statuses: 0 nothing found, 1 alerts, 2 for what makes a scan
// incomplete or impossible.
func TestExitStatuses(t *testing.T) {
	root := t.TempDir()
	clean := filepath.Join(root, "clean.json.gz")
	os.WriteFile(clean, archive.Gzip(archive.Records(quiet(t))), 0o644)
	events, _ := statelessExamples(t)
	found := filepath.Join(root, "found.json")
	os.WriteFile(found, archive.Records(anys(events)), 0o644)
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{clean}, 0, "alerts: 0"},
		{[]string{found}, 1, "alerts: "},
		{[]string{found, filepath.Join(root, "missing")}, 2, "missing"},
		{[]string{"--format", "xml", clean}, 2, "--format"},
		{[]string{"--since", "yesterday", clean}, 2, "--since"},
		{[]string{"--shard", "4/4", clean}, 2, "--shard"},
		{[]string{"--account", "12", clean}, 2, "--account"},
		{[]string{"--nonsense", clean}, 2, "nonsense"},
		{nil, 2, "no PATH"},
	} {
		res := scanOf(t, c.args...)
		if res.code != c.code || !strings.Contains(res.stderr, c.says) {
			t.Errorf("%q: exit %d, want %d with %q\n%s", c.args, res.code, c.code, c.says, res.stderr)
		}
	}
	help := scanOf(t, "--help")
	for _, s := range []string{"Usage: cloudtrail-quarantine scan [flags] PATH...", "Examples:", "-shard K/N", "Exit status: 0"} {
		if help.code != 0 || !strings.Contains(help.stdout, s) {
			t.Errorf("--help lacks %q (exit %d):\n%s", s, help.code, help.stdout)
		}
	}
}

// A log file of 100 MB of JSON, its one quarantine at the very end:
// found, the file streamed (the process's peak resident memory, about 16
// MB at rest, stays well under the file's size).
func TestHugeRecordsFile(t *testing.T) {
	q := quiet(t)
	events, _ := statelessExamples(t)
	var text bytes.Buffer
	text.WriteString(`{"Records":[`)
	for i := 0; text.Len() < 100<<20; i++ {
		text.Write(value.ToJSON(q[i%len(q)]))
		text.WriteByte(',')
	}
	text.Write(value.ToJSON(events[0]))
	text.WriteString("]}")
	var gz bytes.Buffer
	w, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	w.Write(text.Bytes())
	w.Close()
	p := filepath.Join(t.TempDir(), "huge.json.gz")
	os.WriteFile(p, gz.Bytes(), 0o644)
	res := scanOf(t, p)
	if as := alerts(t, res.stdout); res.code != 1 || len(as) == 0 || as[0].EventID != events[0]["eventID"] {
		t.Fatalf("exit %d, %d alerts\n%s", res.code, len(as), res.stderr)
	}
	peak := res.peakMB(t)
	t.Logf("%d MB of JSON, peak resident memory %.1f MB", text.Len()>>20, peak)
	if peak > 64 {
		t.Errorf("peak resident memory %.1f MB for a %d MB file: not streamed", peak, text.Len()>>20)
	}
}

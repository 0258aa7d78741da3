package scan_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
)

// The mistakes a responder makes at 3 a.m., as tests.

// Flags after the paths are flags: scan ./AWSLogs --account X --output F
// scans that account only and writes F. An unknown flag names the
// command and --help, and scans nothing.
func TestFlagsAfterPaths(t *testing.T) {
	root := t.TempDir()
	layoutArchive(t, root)
	out := filepath.Join(t.TempDir(), "alerts.ndjson")
	res := scanOf(t, root, "--account", "444455556666", "--output", out, "--region", "eu-west-1")
	if res.code > 1 || res.stdout != "" {
		t.Fatalf("exit %d, stdout %.200q\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, ": 12 files, ") {
		t.Errorf("not pruned to one account (and its us-east-1 for the global services):\n%s", res.stderr)
	}
	written, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("--output after the path: %v", err)
	}
	for _, a := range alerts(t, string(written)) {
		if a.AccountID != "444455556666" {
			t.Errorf("an alert of account %s", a.AccountID)
		}
	}
	// -- ends the flags: a path may start with a dash.
	dash := filepath.Join(root, "--odd")
	os.WriteFile(dash, archive.Records(quiet(t)[:3]), 0o644)
	if r := scanOf(t, "--", dash); r.code != 0 || !strings.Contains(r.stderr, ": 1 files, ") {
		t.Errorf("-- then a path: exit %d\n%s", r.code, r.stderr)
	}
	bogus := scanOf(t, root, "--bogus")
	if bogus.code != 2 || !strings.HasPrefix(bogus.stderr, "cloudtrail-quarantine scan: unknown flag: --bogus\n") ||
		!strings.Contains(bogus.stderr, "cloudtrail-quarantine scan --help") || strings.Contains(bogus.stderr, " files, ") {
		t.Errorf("--bogus: exit %d\n%s", bogus.code, bogus.stderr)
	}
	help := scanOf(t, root, "--help")
	if help.code != 0 || !strings.Contains(help.stdout, "us-east-1's IAM, STS") || !strings.Contains(help.stdout, "--s3-concurrency") {
		t.Errorf("--help: exit %d\n%s", help.code, help.stdout)
	}
}

// --region eu-west-1 keeps what the lifecycle of a key used in eu-west-1
// needs: the Health notice and the IAM quarantine, which CloudTrail logs
// in us-east-1. The other us-east-1 events are not taken.
func TestRegionKeepsTheGlobalLifecycle(t *testing.T) {
	root := t.TempDir()
	account := "111122223333"
	notice := corpus.JSONFile(t, "../fixtures/events/health_exposed.json")
	noticeAt, _ := time.Parse(time.RFC3339, notice["time"].(string))
	os.WriteFile(filepath.Join(root, "health.jsonl"), append(value.ToJSON(notice), '\n'), 0o644)
	q := fixtureEvent(t, "rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline")
	q["eventTime"] = noticeAt.Add(time.Minute).Format(time.RFC3339)
	writeLog(t, root, account, "us-east-1", noticeAt.Add(5*time.Minute), "q", q)
	// An ordinary us-east-1 call with the key: not eu-west-1's.
	local := fixtureEvent(t, "events/ec2_describe_instances_by_key")
	local["eventID"], local["eventTime"] = "local-use", noticeAt.Add(20*time.Minute).Format(time.RFC3339)
	writeLog(t, root, account, "us-east-1", noticeAt.Add(25*time.Minute), "l", local)
	use := fixtureEvent(t, "events/ec2_describe_instances_by_key")
	use["eventID"], use["awsRegion"] = "eu-use", "eu-west-1"
	use["eventTime"] = noticeAt.Add(2 * time.Hour).Format(time.RFC3339)
	writeLog(t, root, account, "eu-west-1", noticeAt.Add(2*time.Hour+5*time.Minute), "u", use)

	res := scanOf(t, "--region", "eu-west-1", root)
	if res.code != 1 {
		t.Fatalf("exit %d\n%s", res.code, res.stderr)
	}
	var used []string
	for _, a := range alerts(t, res.stdout) {
		if a.Rule.ID == rules.QuarantinedKeyUsed {
			used = append(used, a.EventID)
		}
	}
	if len(used) != 1 || used[0] != "eu-use" {
		t.Errorf("use alerts %q, want the eu-west-1 call's only\n%s\n%s", used, res.stdout, res.stderr)
	}
	c := countRules(alerts(t, res.stdout))
	if c[rules.QuarantineApplied] != 1 || c[rules.CredentialsExposed] != 1 {
		t.Errorf("the global events' alerts: %v", c)
	}
}

// A truncated .json.gz gives up only what the cut destroyed: a needle
// decoded before the cut alerts, the file is named, the exit is 2.
func TestTruncatedFileKeepsWhatIsReadable(t *testing.T) {
	events, want := statelessExamples(t)
	var needle map[string]any
	for i, w := range want {
		if w.rule == rules.QuarantineApplied && w.kind == "positive" {
			needle = events[i]
			break
		}
	}
	q := quiet(t)
	recs := []any{needle}
	for i := 0; len(recs) < 3000; i++ {
		recs = append(recs, q[i%len(q)])
	}
	gz := archive.Gzip(archive.Records(recs))
	root := t.TempDir()
	for _, name := range []string{
		archive.LogFile("111122223333", "us-east-1", t0, "cut"), // held whole
		"export/cut.json.gz", // outside the layout: streamed
	} {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, gz[:len(gz)*2/3], 0o644)
		res := scanOf(t, p)
		as := alerts(t, res.stdout)
		if res.code != 2 || len(as) != 1 || as[0].EventID != needle["eventID"] {
			t.Errorf("%s: exit %d, alerts %v\n%s", name, res.code, ids(as), res.stderr)
		}
		if strings.Count(res.stderr, p) != 1 || !strings.Contains(res.stderr, "gzip: truncated") || strings.Contains(res.stderr, "gzip: gzip:") {
			t.Errorf("%s: error lines\n%s", name, res.stderr)
		}
	}
	// A bad checksum is named once as such.
	bad := bytes.Clone(gz)
	bad[len(bad)-6] ^= 0xff
	p := filepath.Join(root, "crc.json.gz")
	os.WriteFile(p, bad, 0o644)
	if res := scanOf(t, p); res.code != 2 || !strings.Contains(res.stderr, ": gzip: invalid checksum\n") || len(alerts(t, res.stdout)) != 1 {
		t.Errorf("checksum: exit %d\n%s", res.code, res.stderr)
	}
}

// Standard input holding only AWS Health events: read as it arrives (not
// copied to a file first), its notice counted as an event beside its
// alert.
func TestStdinHealthOnly(t *testing.T) {
	notice := corpus.JSONFile(t, "../fixtures/events/health_exposed.json")
	res := scanCmd(t, run{args: []string{"-"}, stdin: append(value.ToJSON(notice), '\n'),
		env: []string{"TMPDIR=/nonexistent-dir-for-this-test"}})
	if res.code != 1 || countRules(alerts(t, res.stdout))[rules.CredentialsExposed] != 1 {
		t.Fatalf("exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, ": 1 files, ") || !strings.Contains(res.stderr, " 1 events (1 decoded)") {
		t.Errorf("summary:\n%s", res.stderr)
	}
}

// The table: the alert's event_time in UTC with its Z, a region column,
// and "no alerts" rather than nothing.
func TestTable(t *testing.T) {
	root := t.TempDir()
	notice := corpus.JSONFile(t, "../fixtures/events/health_exposed.json")
	os.WriteFile(filepath.Join(root, "health.jsonl"), append(value.ToJSON(notice), '\n'), 0o644)
	table := scanOf(t, "--format", "table", "--grace", "1m", "--delay", "0s", "--until", "2026-11-21", root)
	native := scanOf(t, "--grace", "1m", "--delay", "0s", "--until", "2026-11-21", root)
	as := alerts(t, native.stdout)
	if table.code != 1 || len(as) != 2 {
		t.Fatalf("exit %d, %d alerts\n%s", table.code, len(as), table.stderr)
	}
	lines := strings.Split(strings.TrimSpace(table.stdout), "\n")
	if !strings.HasPrefix(lines[0], "TIME (UTC)") || !strings.Contains(lines[0], "REGION") {
		t.Errorf("header %q", lines[0])
	}
	for i, a := range as {
		at, _ := time.Parse(time.RFC3339Nano, a.EventTime)
		if want := at.UTC().Format("2006-01-02 15:04:05Z"); !strings.HasPrefix(lines[i+1], want) || !strings.Contains(lines[i+1], "us-east-1") {
			t.Errorf("%s: row %q, want its event_time %s and region", a.Rule.ID, lines[i+1], want)
		}
	}
	clean := filepath.Join(t.TempDir(), "clean.json")
	os.WriteFile(clean, archive.Records(quiet(t)[:5]), 0o644)
	if res := scanOf(t, "--format", "table", clean); res.code != 0 || strings.TrimSpace(res.stdout) != "no alerts" {
		t.Errorf("zero alerts: exit %d, %q", res.code, res.stdout)
	}
}

// Files outside the layout are read once, before the merge, and their
// events merged in event time with the layout's: a key quarantined in
// the layout, used in an export (JSON lines) and in the layout, gives the
// alerts of the same events all in the layout.
func TestExportMergedInEventTime(t *testing.T) {
	account := "111122223333"
	q := fixtureEvent(t, "rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline")
	at, _ := time.Parse(time.RFC3339, q["eventTime"].(string))
	var uses []map[string]any
	for i := range 6 {
		u := fixtureEvent(t, "events/ec2_describe_instances_by_key")
		u["eventID"] = fmt.Sprintf("use-%d", i)
		u["eventTime"] = at.Add(time.Duration(-30+i*45) * time.Minute).Format(time.RFC3339)
		uses = append(uses, u)
	}
	layout, mixed := t.TempDir(), t.TempDir()
	writeLog(t, layout, account, "us-east-1", at.Add(5*time.Minute), "q", q)
	writeLog(t, mixed, account, "us-east-1", at.Add(5*time.Minute), "q", q)
	var export []byte
	for i, u := range uses {
		stamp, _ := time.Parse(time.RFC3339, u["eventTime"].(string))
		writeLog(t, layout, account, "eu-west-1", stamp.Add(5*time.Minute), fmt.Sprint(i), u)
		if i%2 == 0 {
			writeLog(t, mixed, account, "eu-west-1", stamp.Add(5*time.Minute), fmt.Sprint(i), u)
		} else {
			export = append(append(export, value.ToJSON(u)...), '\n')
		}
	}
	// The export's lines out of order, as exports may be.
	os.WriteFile(filepath.Join(mixed, "export.jsonl"), export, 0o644)
	want := scanOf(t, "--use-window", "1ns", layout)
	got := scanOf(t, "--use-window", "1ns", mixed)
	if want.code != 1 || got.code != 1 {
		t.Fatalf("exit %d, %d\n%s\n%s", want.code, got.code, want.stderr, got.stderr)
	}
	if w, g := ids(alerts(t, want.stdout)), ids(alerts(t, got.stdout)); strings.Join(w, "\n") != strings.Join(g, "\n") {
		t.Errorf("with an export:\n%q\nall in the layout:\n%q", g, w)
	}
	if n := countRules(alerts(t, got.stdout))[rules.QuarantinedKeyUsed]; n != 5 {
		t.Errorf("%d use alerts, want the 5 after the quarantine", n)
	}
}

package ship_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
)

// Local files, once: every event of every log file arrives as one record
// with its file, its eventTime as the record time, and the tag; digest
// and Insights files are left out; a corrupt file fails the run (exit 2)
// without stopping the others.
func TestShipLocalFiles(t *testing.T) {
	root := t.TempDir()
	day := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	want := map[string]int{}
	for i, acct := range []string{"111122223333", "444455556666"} {
		for f := range 3 {
			key, data := logFile(acct, "us-east-1", day.Add(time.Duration(f)*5*time.Minute), acct+"-f"+string(rune('a'+f)), 40+i)
			write(t, filepath.Join(root, key), data)
			for j := range 40 + i {
				want[acct+"-f"+string(rune('a'+f))+"-"+itoa(j)] = 1
			}
		}
	}
	// Not events: a digest and an Insights file.
	write(t, filepath.Join(root, "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/02/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20261102T100000Z.json.gz"),
		archive.Gzip([]byte(`{"awsAccountId":"111122223333","logFiles":[]}`)))
	write(t, filepath.Join(root, "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2026/11/02/111122223333_CloudTrail-Insight_us-east-1_20261102T1000Z_x.json.gz"),
		archive.Gzip(archive.Records([]any{event("insight-1", day, "111122223333")})))
	recv := forwardrecv.Start(t, forwardrecv.Options{Network: "unix"})
	out, code := shipOnce(t, nil, "--forward", "unix://"+recv.Addr(), "--stats-interval", "0", root)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	got := ids(recv.Entries())
	if len(got) != len(want) {
		t.Fatalf("%d distinct events, want %d\n%s", len(got), len(want), out)
	}
	for id := range want {
		if got[id] != 1 {
			t.Errorf("%s arrived %d times", id, got[id])
		}
	}
	for _, e := range recv.Entries() {
		file, _ := e.Record["source_file"].(string)
		if !strings.HasPrefix(file, root) || e.Tag != "aws.cloudtrail.events" {
			t.Fatalf("record from %q tagged %q", file, e.Tag)
		}
		if et, _ := time.Parse(time.RFC3339, e.Record["eventTime"].(string)); !e.Time.Equal(et) {
			t.Fatalf("record time %v, eventTime %v", e.Time, et)
		}
		if _, ok := e.Record["s3_bucket"]; ok {
			t.Fatal("a local file's record has s3_bucket")
		}
	}
	if !strings.Contains(out, "objects 6 (failed 0), events 243") {
		t.Errorf("stats line:\n%s", out)
	}

	// A corrupt file beside a good one: the good one ships, the run fails.
	bad := t.TempDir()
	key, data := logFile("111122223333", "us-east-1", day, "good", 5)
	write(t, filepath.Join(bad, key), data)
	_, cut := logFile("111122223333", "us-east-1", day.Add(time.Minute), "cut", 50)
	write(t, filepath.Join(bad, "cut.json.gz"), cut[:len(cut)/2])
	write(t, filepath.Join(bad, "notjson.json"), []byte("this is no JSON\n"))
	recv2 := forwardrecv.Start(t, forwardrecv.Options{Network: "unix"})
	out, code = shipOnce(t, nil, "--forward", "unix://"+recv2.Addr(), bad)
	if code != 2 || !strings.Contains(out, "cut.json.gz") || !strings.Contains(out, "notjson.json") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if got := ids(recv2.Entries()); got["good-4"] != 1 {
		t.Fatalf("the good file did not ship: %v", got)
	}
}

func write(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

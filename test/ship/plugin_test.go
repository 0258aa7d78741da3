package ship_test

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
)

// The records ship sends are plain events to the plugin: the sample
// stream (a key's whole life), shipped from a gzipped log file into the
// forward receiver, then flushed as received through the built .so in
// the harness, gives the same alerts as the events flushed as they are.
// The fields ship adds (s3_bucket, s3_key, source_file) change nothing.
func TestShipRecordsReadByPlugin(t *testing.T) {
	sample := corpus.Sample(t)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "sample.json.gz"), archive.Gzip(archive.Records(sample)))
	recv := forwardrecv.Start(t, forwardrecv.Options{Network: "unix"})
	if out, code := shipOnce(t, nil, "--forward", "unix://"+recv.Addr(), dir); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	entries := recv.Entries()
	if len(entries) != len(sample) {
		t.Fatalf("%d records, want %d", len(entries), len(sample))
	}
	var shipped []byte
	for _, e := range entries {
		// As in_forward hands them on: [[time, {}], record].
		shipped = msgp.AppendArrayHeader(shipped, 2)
		shipped = msgp.AppendArrayHeader(shipped, 2)
		shipped = fbchunk.AppendEventTime(shipped, e.Time)
		shipped = msgp.AppendMapHeader(shipped, 0)
		shipped = append(shipped, e.Raw...)
	}
	got := pluginAlerts(t, shipped)
	want := pluginAlerts(t, fbchunk.FromValues(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), sample))
	if len(want) < 9 || !slices.Equal(got, want) {
		t.Fatalf("alerts from shipped records:\n%s\nfrom the events:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// pluginAlerts flushes a chunk through the .so (stdout output) and
// returns its alerts' rule and event ids, sorted.
func pluginAlerts(t *testing.T, chunk []byte) []string {
	t.Helper()
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{{}},
		Flushes: []harness.Flush{{Instance: 0, Tag: "aws.cloudtrail.events", Data: chunk}}})
	if res.ExitCode != 0 {
		t.Fatalf("harness exit %d\n%s", res.ExitCode, res.Stderr)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		var a struct {
			Rule struct {
				ID string `json:"id"`
			} `json:"rule"`
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("not an alert: %q", line)
		}
		out = append(out, a.Rule.ID+" "+a.EventID)
	}
	slices.Sort(out)
	return out
}

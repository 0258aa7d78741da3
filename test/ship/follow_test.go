package ship_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/loopback"
)

// --follow: an organization trail's layout listed every second, per
// account and region; a file delivered late, behind the checkpoint but
// within the look-back, is shipped on the next listing; nothing is
// shipped twice, across a restart over the same --state either; a file
// older than the look-back behind the checkpoint is not listed; a second
// process on the same state file is refused.
func TestShipFollowLateFile(t *testing.T) {
	s3 := startS3(t, bucket)
	recv := forwardrecv.Start(t, forwardrecv.Options{Network: "unix"})
	now := time.Now().UTC().Truncate(time.Minute)
	want := map[string]bool{}
	put := func(account, region, name string, at time.Time, n int) {
		key, data := logFile(account, region, at, name, n)
		key = "trail/" + strings.Replace(key, "AWSLogs/", "AWSLogs/o-abc123def4/", 1)
		s3.put(t, bucket, key, data)
		for i := range n {
			want[fmt.Sprintf("%s-%d", name, i)] = true
		}
	}
	for i := range 3 {
		put("111122223333", "us-east-1", fmt.Sprintf("a%d", i), now.Add(-time.Hour+time.Duration(i)*5*time.Minute), 10)
		put("444455556666", "eu-west-1", fmt.Sprintf("b%d", i), now.Add(-time.Hour+time.Duration(i)*5*time.Minute), 10)
	}
	s3.put(t, bucket, "trail/AWSLogs/o-abc123def4/111122223333/CloudTrail-Digest/us-east-1/x_CloudTrail-Digest_us-east-1_t_us-east-1_20261102T100000Z.json.gz", []byte("{}"))
	state := filepath.Join(t.TempDir(), "state.db")
	args := []string{"--forward", "unix://" + recv.Addr(), "--endpoint-url", s3.url, "--follow", "--state", state,
		"--interval", "1s", "--lookback", "2h", "--since", now.Add(-3 * time.Hour).Format(time.RFC3339), "--stats-interval", "0"}
	metrics := loopback.FreeAddr(t)
	p := startShip(t, nil, append(args, "--metrics-listen", metrics, "s3://"+bucket+"/trail/")...)
	wait := func(what string) {
		waitFor(t, what, 30*time.Second, func() bool { return len(ids(recv.Entries())) == len(want) })
	}
	wait("the first files")
	// Late: stamped 57 minutes ago, behind its stream's checkpoint (the
	// newest file shipped, 50 minutes ago); and a new one.
	put("111122223333", "us-east-1", "late", now.Add(-57*time.Minute), 7)
	put("444455556666", "eu-west-1", "new", now.Add(-time.Minute), 8)
	wait("the late and the new file")
	// Too old: three hours behind the checkpoint, outside the look-back.
	key, data := logFile("111122223333", "us-east-1", now.Add(-4*time.Hour), "tooold", 5)
	s3.put(t, bucket, "trail/"+strings.Replace(key, "AWSLogs/", "AWSLogs/o-abc123def4/", 1), data)
	polls := scrape(t, metrics, "polls_total")
	waitFor(t, "two more listings", 10*time.Second, func() bool { return scrape(t, metrics, "polls_total") >= polls+2 })

	// The state file is this process's.
	out, code := shipOnce(t, nil, append(args, "s3://"+bucket+"/trail/")...)
	if code != 2 || !strings.Contains(out, "in use by another process") {
		t.Fatalf("a second process on the state file: exit %d\n%s", code, out)
	}
	p.signal(sigterm)
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	// Restarted over the same state: nothing again.
	before := len(recv.Entries())
	p = startShip(t, nil, append(args, "--metrics-listen", metrics, "s3://"+bucket+"/trail/")...)
	waitFor(t, "two listings", 20*time.Second, func() bool { return scrape(t, metrics, "polls_total") >= 2 })
	p.signal(sigterm)
	p.wait(t, 15*time.Second)
	got := ids(recv.Entries())
	for id := range want {
		if got[id] != 1 {
			t.Errorf("%s arrived %d times", id, got[id])
		}
	}
	if len(recv.Entries()) != before || got["tooold-0"] != 0 || len(got) != len(want) {
		t.Errorf("%d records, %d before the restart; %d distinct, want %d; too old shipped %d times",
			len(recv.Entries()), before, len(got), len(want), got["tooold-0"])
	}
}

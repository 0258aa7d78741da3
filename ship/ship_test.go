package ship

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// The state keeps a look-back's worth of keys per stream: the checkpoint
// moves forward only, and pruning drops exactly the keys behind the
// horizon. A second open of the file is refused, not waited for.
func TestStateBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := openState(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	const stream = "AWSLogs/111122223333/CloudTrail/us-east-1/"
	for i := range 100 {
		at := t0.Add(time.Duration(i) * 5 * time.Minute)
		if err := st.shipped(stream, stream+at.Format("2006/01/02/150405"), at); err != nil {
			t.Fatal(err)
		}
	}
	st.shipped(stream, stream+"late", t0) // behind: the checkpoint stays
	cp, keys, err := st.stream(stream)
	if err != nil || !cp.Equal(t0.Add(99*5*time.Minute)) || len(keys) != 101 {
		t.Fatalf("checkpoint %v, %d keys, %v", cp, len(keys), err)
	}
	kept, err := st.prune(stream, cp.Add(-time.Hour))
	if err != nil || kept != 13 {
		t.Fatalf("kept %d keys within the hour before %v (want 13), %v", kept, cp, err)
	}
	if _, err := openState(path); err == nil {
		t.Fatal("a second open of the state file")
	}
	start, _ := st.start(t0)
	if again, _ := st.start(t0.Add(time.Hour)); !again.Equal(start) || !start.Equal(t0) {
		t.Fatalf("start %v then %v", start, again)
	}
}

func TestNames(t *testing.T) {
	for key, want := range map[string]time.Time{
		"AWSLogs/1/CloudTrail/us-east-1/2026/11/02/111122223333_CloudTrail_us-east-1_20261102T1005Z_abc.json.gz":                             time.Date(2026, 11, 2, 10, 5, 0, 0, time.UTC),
		"AWSLogs/1/CloudTrail-Insight/us-east-1/2026/11/02/111122223333_CloudTrail-Insight_us-east-1_20261102T1005Z_abc.json.gz":             time.Date(2026, 11, 2, 10, 5, 0, 0, time.UTC),
		"AWSLogs/1/CloudTrail-Digest/us-east-1/2026/11/02/111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20261102T100512Z.json.gz": time.Date(2026, 11, 2, 10, 5, 12, 0, time.UTC),
		"AWSLogs/1/CloudTrail/us-east-1/2026/11/02/notes.txt":                                                                                {},
	} {
		if got := fileTime(key); !got.Equal(want) {
			t.Errorf("%s: %v, want %v", key, got, want)
		}
	}
	for prefix, want := range map[string][]string{
		"trail/AWSLogs/":                               nil,
		"AWSLogs/o-abc/":                               nil,
		"AWSLogs/o-abc/111122223333/CloudTrail/":       {"111122223333", "CloudTrail"},
		"x/AWSLogs/111122223333/CloudTrail/eu-west-1/": {"111122223333", "CloudTrail", "eu-west-1"},
	} {
		if got := layoutParts(prefix); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %q, want %q", prefix, got, want)
		}
	}
	if u, err := QueueURL("sqs.us-east-1.amazonaws.com/111122223333/q"); err != nil || u != "https://sqs.us-east-1.amazonaws.com/111122223333/q" {
		t.Errorf("%s %v", u, err)
	}
	if _, err := QueueURL("https://sqs.us-east-1.amazonaws.com/"); err == nil {
		t.Error("a URL without a queue")
	}
	for v, want := range map[string][2]string{"unix:///run/ct.sock": {"unix", "/run/ct.sock"}, "tcp://fb:24224": {"tcp", "fb:24224"}} {
		if n, a, err := forwardAddress(v); err != nil || n != want[0] || a != want[1] {
			t.Errorf("%s: %s %s %v", v, n, a, err)
		}
	}
	for _, bad := range []string{"fb:24224", "tcp://fb", "unix://"} {
		if _, _, err := forwardAddress(bad); err == nil {
			t.Errorf("%s taken", bad)
		}
	}
	if maxReceiveCount(`{"deadLetterTargetArn":"arn","maxReceiveCount":"5"}`) != 5 || maxReceiveCount(`{"maxReceiveCount":3}`) != 3 || maxReceiveCount("") != 0 {
		t.Error("maxReceiveCount")
	}
}

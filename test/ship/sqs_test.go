package ship_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/loopback"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sqsserver"
)

const bucket = "trail-bucket"

// s3Event is an S3 event notification for one object, its key
// URL-encoded as S3 does (a space as '+').
func s3Event(bucket, key string) string {
	return fmt.Sprintf(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-11-02T10:05:00.000Z","eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","configurationId":"ct","bucket":{"name":%q,"arn":"arn:aws:s3:::%s"},"object":{"key":%q,"size":1234,"sequencer":"0055AED6DCD90281E5"}}}]}`,
		bucket, bucket, strings.ReplaceAll(url.QueryEscape(key), "%2F", "/"))
}

func cloudTrailSNS(bucket string, keys ...string) string {
	b, _ := json.Marshal(map[string]any{"s3Bucket": bucket, "s3ObjectKey": keys})
	return string(b)
}

func eventBridge(bucket, key, detailType string) string {
	return fmt.Sprintf(`{"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103","detail-type":%q,"source":"aws.s3","account":"111122223333","time":"2026-11-02T10:05:00Z","region":"us-east-1","resources":["arn:aws:s3:::%s"],"detail":{"version":"0","bucket":{"name":%q},"object":{"key":%q,"size":5,"etag":"b1946ac92492d2347c6235b4d2611184","sequencer":"617f08299329d189"},"request-id":"N4N7GDK58NMKJ12R","requester":"111122223333","reason":"PutObject"}}`,
		detailType, bucket, bucket, key)
}

const testEvent = `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-02T10:00:00.000Z","Bucket":"trail-bucket","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}`

// sqsSetup is a queue with a dead-letter queue, an SNS topic whose queue
// gets envelopes, S3, and a receiver.
type sqsSetup struct {
	sqs  *sqsserver.Server
	s3   *fakeS3
	recv *forwardrecv.Server
}

func newSQSSetup(t *testing.T, visibility, maxReceives int) *sqsSetup {
	t.Helper()
	s := &sqsSetup{sqs: sqsserver.Start(t, visibility, "ct"), s3: startS3(t, bucket),
		recv: forwardrecv.Start(t, forwardrecv.Options{Network: "unix", SharedKey: sharedKey})}
	s.sqs.CreateQueue(t, "dlq", visibility, "", 0)
	s.sqs.CreateQueue(t, "files", visibility, "dlq", maxReceives)
	return s
}

// args are ship's flags for queue q, with a short long poll so tests stop
// quickly, the shared key from the environment, and metrics.
func (s *sqsSetup) args(q, metrics string, extra ...string) []string {
	return append([]string{"--forward", "unix://" + s.recv.Addr(), "--endpoint-url", s.s3.url, "--wait", "1s",
		"--metrics-listen", metrics, "--stats-interval", "1s", "--shutdown-timeout", "5s"}, append(extra, "sqs://"+s.sqs.QueueURL(q))...)
}

var sharedKeyEnv = []string{"CTQ_SHARED_KEY=" + sharedKey}

// Every notification shape announces its objects; a URL-encoded key is
// decoded; the test event, digest and Insights files and a delete are
// skipped, and those messages deleted too; each event arrives once, with
// its bucket and key; the queue ends empty.
func TestShipNotificationShapes(t *testing.T) {
	s := newSQSSetup(t, 30, 3)
	day := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	want := map[string]string{} // event id -> key
	put := func(prefix, name string, n int) string {
		key, data := logFile("111122223333", "us-east-1", day, name, n)
		key = prefix + key
		s.s3.put(t, bucket, key, data)
		for i := range n {
			want[fmt.Sprintf("%s-%d", name, i)] = key
		}
		return key
	}
	raw := put("my trail/", "raw", 30) // a space: '+' in the notification
	s.sqs.Send(t, "files", s3Event(bucket, raw))
	s.sqs.Send(t, "files", testEvent)
	wrapped := put("", "wrapped", 20)
	s.sqs.Publish(t, "ct", s3Event(bucket, wrapped))
	ct1, ct2 := put("", "ctsns1", 10), put("", "ctsns2", 11)
	s.sqs.Publish(t, "ct", cloudTrailSNS(bucket, ct1, ct2))
	eb := put("", "eventbridge", 12)
	s.sqs.Send(t, "files", eventBridge(bucket, eb, "Object Created"))
	s.sqs.Send(t, "files", eventBridge(bucket, eb, "Object Deleted"))
	digest := "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/11/02/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20261102T100000Z.json.gz"
	insight := "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2026/11/02/111122223333_CloudTrail-Insight_us-east-1_20261102T1000Z_x.json.gz"
	s.sqs.Send(t, "files", s3Event(bucket, digest))
	s.sqs.Publish(t, "ct", s3Event(bucket, insight))

	metrics := loopback.FreeAddr(t)
	p1 := startShip(t, sharedKeyEnv, s.args("files", metrics)...)
	metrics2 := loopback.FreeAddr(t)
	p2 := startShip(t, sharedKeyEnv, s.args("ct-q", metrics2)...)
	waitFor(t, "every event", time.Minute, func() bool { return len(ids(s.recv.Entries())) >= len(want) })
	waitFor(t, "both queues empty", 30*time.Second, func() bool {
		return s.sqs.Messages(t, "files") == 0 && s.sqs.Messages(t, "ct-q") == 0
	})
	if v := scrape(t, metrics, "objects_skipped_total", `reason="test_event"`) + scrape(t, metrics, "objects_skipped_total", `reason="digest"`) +
		scrape(t, metrics, "objects_skipped_total", `reason="not_created"`) + scrape(t, metrics2, "objects_skipped_total", `reason="insight"`); v != 4 {
		t.Errorf("skipped %v (test event, digest, delete, insight), want 4", v)
	}
	if v := scrape(t, metrics, "messages_deleted_total") + scrape(t, metrics2, "messages_deleted_total"); v != 8 {
		t.Errorf("deleted %v messages, want 8", v)
	}
	p1.signal(sigterm)
	p2.signal(sigterm)
	if c1, c2 := p1.wait(t, 10*time.Second), p2.wait(t, 10*time.Second); c1 != 0 || c2 != 0 {
		t.Fatalf("exit %d %d", c1, c2)
	}
	got := s.recv.Entries()
	counts := ids(got)
	for id := range want {
		if counts[id] != 1 {
			t.Errorf("%s arrived %d times", id, counts[id])
		}
	}
	if len(counts) != len(want) {
		t.Errorf("%d distinct events, want %d", len(counts), len(want))
	}
	for _, e := range got {
		id, _ := e.Record["eventID"].(string)
		if e.Record["s3_bucket"] != bucket || e.Record["s3_key"] != want[id] {
			t.Fatalf("%s: bucket %v key %v, want %s", id, e.Record["s3_bucket"], e.Record["s3_key"], want[id])
		}
	}
	checkNoSecrets(t, p1.output()+p2.output())
}

package ship

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/logx"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink/forward"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sqsserver"
)

// The SQS mode in this process, so the race detector sees the receive
// loop, readers, senders and finishers at work: messages of one and of
// two objects, a receiver that stops acknowledging for a while, every
// event delivered and every message deleted, then a clean stop.
func TestRunSQSUnderRace(t *testing.T) {
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "AKIAFAKE", "AWS_SECRET_ACCESS_KEY": "fake", "AWS_REGION": "us-east-1",
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"} {
		t.Setenv(k, v)
	}
	q := sqsserver.Start(t, 2)
	q.CreateQueue(t, "q", 2, "", 0)
	backend := s3mem.New()
	backend.CreateBucket("b")
	s3srv := httptest.NewServer(gofakes3.New(backend).Server())
	defer s3srv.Close()
	recv := forwardrecv.Start(t, forwardrecv.Options{Network: "unix"})
	want := 0
	for i := range 30 {
		var keys []string
		for j := range 1 + i%2 {
			var evs []any
			for e := range 15 {
				evs = append(evs, map[string]any{"eventID": fmt.Sprintf("%d-%d-%d", i, j, e), "eventTime": "2026-11-02T10:00:00Z"})
			}
			data := archive.Gzip(archive.Records(evs))
			key := fmt.Sprintf("AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/02/f%d-%d.json.gz", i, j)
			backend.PutObject("b", key, map[string]string{}, bytes.NewReader(data), int64(len(data)), nil)
			keys = append(keys, `"`+key+`"`)
			want += 15
		}
		q.Send(t, "q", fmt.Sprintf(`{"s3Bucket":"b","s3ObjectKey":[%s]}`, join(keys)))
	}
	var logs bytes.Buffer
	o := Options{Source: "sqs://" + q.QueueURL("q"), Connections: 2, Workers: 3, MaxMessages: 5, WaitTime: time.Second,
		ShutdownTimeout: 3 * time.Second, Log: logx.NewCommand(&lockedBuffer{b: &logs}, "ship"),
		Forward: forwardOptions(recv.Addr())}
	o.S3 = func(ctx context.Context) (s3API, error) { return newS3(ctx, s3srv.URL) }
	o.SQS = func(ctx context.Context, u string) (SQSAPI, error) { return newSQS(ctx, u, "") }
	ctx, cancel := context.WithCancel(context.Background())
	c := &counters{}
	done := make(chan error)
	go func() {
		_, err := Run(ctx, o, c)
		done <- err
	}()
	recv.SetAck(false)
	time.Sleep(1500 * time.Millisecond)
	recv.SetAck(true)
	deadline := time.Now().Add(time.Minute)
	for c.MessagesDeleted.Load() < 30 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range recv.Entries() {
		seen[e.Record["eventID"].(string)] = true
	}
	if len(seen) != want || c.MessagesDeleted.Load() != 30 || q.Messages(t, "q") != 0 {
		t.Fatalf("%d of %d events, %d messages deleted, %d left\n%s", len(seen), want, c.MessagesDeleted.Load(), q.Messages(t, "q"), logs.String())
	}
}

type s3API = source.S3API

func join(s []string) string { return strings.Join(s, ",") }

func forwardOptions(addr string) forward.Options {
	return forward.Options{Network: "unix", Address: addr, Tag: "aws.cloudtrail.events", Timeout: time.Second, MaxBatchBytes: 4 << 10}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

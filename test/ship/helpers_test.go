// Package ship_test drives the built `cloudtrail-quarantine ship` over
// real sockets: the project's forward receiver (acks included), an S3
// protocol server (gofakes3) and an SQS-compatible server (goaws, see
// test/sqsserver), all on the loopback.
package ship_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/makebin"
)

// bin is the command make builds.
func bin(t testing.TB) string { return makebin.Path(t, "build/cloudtrail-quarantine") }

const (
	testKeyID  = "AKIAFAKEKEYFORSHIPTST"
	testSecret = "ship-s3cr3t-must-never-be-logged-0123456789"
	sharedKey  = "shared-key-never-logged-42"
)

// awsEnv: fake credentials, no region (ship supplies one), no files.
func awsEnv() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + testKeyID, "AWS_SECRET_ACCESS_KEY=" + testSecret, "AWS_REGION=", "AWS_DEFAULT_REGION=",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_MAX_ATTEMPTS=2"}
}

const sigterm = syscall.SIGTERM

// proc is a running ship.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
	code   int
}

type lockedWriter struct{ p *proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.stderr.Write(b)
}

// startShip runs `cloudtrail-quarantine ship args...`.
func startShip(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin(t), append([]string{"ship"}, args...)...)
	cmd.Env = append(append(os.Environ(), awsEnv()...), env...)
	p := &proc{cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = lockedWriter{p}
	cmd.Stdout = lockedWriter{p}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		_ = err
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("ship's stderr:\n%s", p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// wait waits for the exit and returns the exit status.
func (p *proc) wait(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(within):
		t.Fatalf("ship still running after %v:\n%s", within, p.output())
		return -1
	}
}

func (p *proc) signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// shipOnce runs ship to its end.
func shipOnce(t testing.TB, env []string, args ...string) (string, int) {
	t.Helper()
	p := startShip(t, env, args...)
	code := p.wait(t, 2*time.Minute)
	return p.output(), code
}

// checkNoSecrets fails if a log holds a credential or the shared key.
func checkNoSecrets(t testing.TB, log string) {
	t.Helper()
	for _, s := range []string{testSecret, testKeyID, sharedKey} {
		if strings.Contains(log, s) {
			t.Errorf("a secret (%.8s...) in ship's output:\n%s", s, log)
		}
	}
}

// fakeS3 is an S3 protocol server on the loopback.
type fakeS3 struct {
	url     string
	backend *s3mem.Backend
}

func startS3(t testing.TB, buckets ...string) *fakeS3 {
	t.Helper()
	b := s3mem.New()
	for _, name := range buckets {
		if err := b.CreateBucket(name); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(gofakes3.New(b).Server())
	t.Cleanup(srv.Close)
	return &fakeS3{url: srv.URL, backend: b}
}

func (s *fakeS3) put(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	if _, err := s.backend.PutObject(bucket, key, map[string]string{}, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
}

// event is a CloudTrail event with a unique id.
func event(id string, at time.Time, account string) map[string]any {
	return map[string]any{
		"eventVersion": "1.09", "eventID": id, "eventTime": at.UTC().Format(time.RFC3339),
		"eventSource": "ec2.amazonaws.com", "eventName": "DescribeInstances", "awsRegion": "us-east-1",
		"sourceIPAddress": "203.0.113.7", "userAgent": "aws-cli/2.15.0",
		"userIdentity": map[string]any{"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::" + account + ":user/alice",
			"accountId": account, "accessKeyId": "AKIAEXAMPLEKEY000001", "userName": "alice"},
		"requestParameters": map[string]any{"maxResults": 1000, "filterSet": map[string]any{}},
		"responseElements":  nil, "requestID": "req-" + id, "eventType": "AwsApiCall", "readOnly": true,
		"recipientAccountId": account, "eventCategory": "Management", "managementEvent": true,
	}
}

// logFile is a gzipped CloudTrail log file of n events with ids
// prefix-0..n-1, and its key in the layout.
func logFile(account, region string, at time.Time, prefix string, n int) (string, []byte) {
	var evs []any
	for i := range n {
		evs = append(evs, event(fmt.Sprintf("%s-%d", prefix, i), at.Add(-time.Duration(n-i)*time.Second), account))
	}
	key := filepath.ToSlash(archive.LogFile(account, region, at, prefix))
	return key, archive.Gzip(archive.Records(evs))
}

// ids counts the received records by eventID.
func ids(entries []forwardrecv.Entry) map[string]int {
	out := map[string]int{}
	for _, e := range entries {
		id, _ := e.Record["eventID"].(string)
		out[id]++
	}
	return out
}

// waitFor polls cond until it holds.
func waitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(within)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not after %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrape reads one metric from ship's endpoint.
func scrape(t testing.TB, addr, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	for _, line := range strings.Split(b.String(), "\n") {
		want := "cloudtrail_quarantine_ship_" + name
		if len(labels) > 0 {
			want += "{" + labels[0] + "}"
		}
		if v, ok := strings.CutPrefix(line, want+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

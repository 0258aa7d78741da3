package scan_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// fakeS3 is an S3 protocol server on the loopback holding root's files
// under bucket/prefix, recording the prefixes it was asked to list.
type fakeS3 struct {
	url    string
	mu     sync.Mutex
	listed []string
	gets   int
}

const (
	testKeyID  = "AKIAFAKEKEYFORTESTS1"
	testSecret = "s3cr3t-must-never-be-logged-1234567890"
)

func startS3(t *testing.T, bucket, prefix, root string) *fakeS3 {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = backend.PutObject(bucket, prefix+filepath.ToSlash(rel), map[string]string{}, f, info.Size(), nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeS3{}
	h := gofakes3.New(backend).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.mu.Lock()
		if r.Method == http.MethodGet && r.URL.Query().Has("list-type") {
			fs.listed = append(fs.listed, r.URL.Query().Get("prefix"))
		} else if r.Method == http.MethodGet {
			fs.gets++
		}
		fs.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	fs.url = srv.URL
	return fs
}

func (fs *fakeS3) env() []string {
	// No region: one is only needed to sign, and the command supplies it.
	return []string{"AWS_ACCESS_KEY_ID=" + testKeyID, "AWS_SECRET_ACCESS_KEY=" + testSecret, "AWS_REGION=", "AWS_DEFAULT_REGION=",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
}

// The same archive in S3, listed and streamed with the SDK: the same
// alerts as from disk; --account lists only that account's prefixes;
// failures name the object and never the credentials.
func TestS3(t *testing.T) {
	root := t.TempDir()
	layoutArchive(t, root)
	s3 := startS3(t, "trail-bucket", "org/", root)
	local := scanOf(t, root)
	remote := scanCmd(t, run{args: []string{"--endpoint-url", s3.url, "s3://trail-bucket/org/"}, env: s3.env()})
	if remote.code != local.code || strings.Join(ids(alerts(t, remote.stdout)), "\n") != strings.Join(ids(alerts(t, local.stdout)), "\n") {
		t.Fatalf("S3 exit %d, local %d; alerts differ:\n%s\n---\n%s", remote.code, local.code, remote.stdout, remote.stderr)
	}
	if len(alerts(t, remote.stdout)) == 0 {
		t.Fatal("no alerts")
	}
	// The SDK's line for each GET whose response has no checksum it can
	// check (this server sends none) is off: it would be thousands of
	// lines over the progress bar.
	if strings.Contains(remote.stderr, "checksum") {
		t.Errorf("the SDK's checksum log:\n%s", remote.stderr)
	}
	s3.mu.Lock()
	s3.listed = nil
	s3.mu.Unlock()
	one := scanCmd(t, run{args: []string{"--endpoint-url", s3.url, "--account", "777788889999", "s3://trail-bucket/org/"}, env: s3.env()})
	if one.code > 1 {
		t.Fatalf("exit %d\n%s", one.code, one.stderr)
	}
	s3.mu.Lock()
	for _, p := range s3.listed {
		for _, other := range accounts {
			if other != "777788889999" && strings.Contains(p, other) {
				t.Errorf("listed %q for --account 777788889999", p)
			}
		}
	}
	s3.mu.Unlock()
	for _, a := range alerts(t, one.stdout) {
		if !strings.Contains(local.stdout, a.EventID) {
			t.Errorf("%s is no alert of the full scan", a.EventID)
		}
	}
	// A bucket that is not there, and an endpoint that refuses.
	for _, args := range [][]string{{"--endpoint-url", s3.url, "s3://no-such-bucket/x/"}, {"--endpoint-url", "http://127.0.0.1:1", "s3://trail-bucket/"}} {
		res := scanCmd(t, run{args: args, env: append(s3.env(), "AWS_MAX_ATTEMPTS=1")})
		if res.code != 2 || !strings.Contains(res.stderr, args[len(args)-1]) {
			t.Errorf("%q: exit %d\n%s", args, res.code, res.stderr)
		}
		if strings.Contains(res.stderr+res.stdout, testSecret) || strings.Contains(res.stderr+res.stdout, testKeyID) {
			t.Errorf("%q: credentials in the output:\n%s", args, res.stderr)
		}
	}
}

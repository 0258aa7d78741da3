package bench

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/cli"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
)

// s3Latency is what each request to the loopback S3 server waits before
// it is served: a GET or a listing page from a region away.
const s3Latency = 20 * time.Millisecond

// BenchmarkScanS3 scans a trail's bucket through an S3 protocol server on
// the loopback that answers each request 20 ms late: 22 accounts x 2
// regions x 2 days, a log file a day (88 files, about 250 listings), with
// S3Concurrency requests in flight. concurrency=GOMAXPROCS is one request
// per core (the scan before issue #16); the default must sit where the
// curve flattens.
func BenchmarkScanS3(b *testing.B) {
	backend := s3mem.New()
	if err := backend.CreateBucket("trail"); err != nil {
		b.Fatal(err)
	}
	d := mustLoad(b)
	files := 0
	for a, account := range benchAccounts {
		for r, region := range benchRegions[:2] {
			for day := range 2 {
				at := t0.Add(time.Duration(day)*24*time.Hour + time.Duration(a*2+r)*time.Minute)
				var recs []any
				for i := range 60 {
					e := maps.Clone(d.clean[(a*131+r*17+day*7+i)%len(d.clean)].(map[string]any))
					e["eventID"], e["recipientAccountId"] = uuid(), account
					e["eventTime"] = at.Add(-time.Duration(i) * time.Second).Format(time.RFC3339)
					recs = append(recs, e)
				}
				gz := archive.Gzip(archive.Records(recs))
				key := archive.LogFile(account, region, at, "s3")
				if _, err := backend.PutObject("trail", key, map[string]string{}, bytesReader(gz), int64(len(gz)), nil); err != nil {
					b.Fatal(err)
				}
				files++
			}
		}
	}
	h := gofakes3.New(backend).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(s3Latency)
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "AKIAFAKEKEYFORBENCH1", "AWS_SECRET_ACCESS_KEY": "bench-secret",
		"AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"} {
		b.Setenv(k, v)
	}
	w := runtime.GOMAXPROCS(0)
	for _, conc := range []int{w, 8, 16, 32, 64, 128} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			for b.Loop() {
				res, err := scan.Run(context.Background(), scan.Options{Paths: []string{"s3://trail/AWSLogs/"}, Workers: w, S3Concurrency: conc,
					S3:        func(ctx context.Context) (source.S3API, error) { return cli.NewS3(ctx, srv.URL, conc) },
					Lifecycle: lifecycle.Options{WatchTTL: time.Hour, MaxKeys: 1000, UseWindow: time.Hour, Grace: time.Minute, Delay: time.Minute}})
				if err != nil || res.Summary.Failed > 0 || res.Summary.Files != files {
					b.Fatalf("%v %+v", err, res.Summary)
				}
			}
			b.ReportMetric(float64(files)*float64(b.N)/b.Elapsed().Seconds(), "files/s")
		})
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

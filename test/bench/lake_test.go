package bench

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/ocsfmap"
)

// lakeEvents is how many events the Security Lake benchmark reads, as
// Parquet and as the same events in CloudTrail log files.
const lakeEvents = 40000

var (
	lakeOnce          sync.Once
	lakeDir, jsonDir  string
	lakeGz, lakeParqu int64
)

// lakeArchives writes the same events twice: as Security Lake writes them
// (OCSF in Parquet, ZSTD, row groups of 5,000 rows, a file per account
// and day) and as CloudTrail log files (.json.gz) in the S3 layout.
func lakeArchives(b *testing.B) {
	lakeOnce.Do(func() {
		d := mustLoad(b)
		lakeDir, jsonDir = tempDir(b, "ctq-bench-lake-"), tempDir(b, "ctq-bench-lakejson-")
		perFile := lakeEvents / 8
		for f := range 8 {
			account := benchAccounts[f%4]
			at := t0.Add(time.Duration(f/4) * 24 * time.Hour)
			var recs []map[string]any
			var events []any
			for i := 0; len(recs) < perFile; i++ {
				e := maps.Clone(d.clean[(f*7919+i)%len(d.clean)].(map[string]any))
				if e["eventVersion"] == nil || e["eventid"] != nil {
					continue
				}
				e["eventID"], e["requestID"], e["recipientAccountId"] = uuid(), uuid(), account
				e["eventTime"] = at.Add(time.Duration(i) * time.Second).Format(time.RFC3339)
				rec, err := ocsfmap.SecurityLakeV2(e)
				if err != nil {
					continue
				}
				recs = append(recs, rec)
				events = append(events, e)
			}
			p := filepath.Join(lakeDir, archive.LakeFile(account, "us-east-1", at, fmt.Sprintf("part-%d", f)))
			if err := archive.WriteParquetWith(p, recs, parquet.Compression(&parquet.Zstd), parquet.MaxRowsPerRowGroup(5000)); err != nil {
				b.Fatal(err)
			}
			info, _ := os.Stat(p)
			lakeParqu += info.Size()
			for k := 0; k < len(events); k += 1000 {
				jp, err := archive.WriteLogFile(jsonDir, account, "us-east-1", at.Add(time.Duration(k)*time.Second), fmt.Sprintf("p%d", f), events[k:min(k+1000, len(events))])
				if err != nil {
					b.Fatal(err)
				}
				info, _ := os.Stat(jp)
				lakeGz += info.Size()
			}
		}
	})
}

// BenchmarkLake reads the same events as Security Lake's Parquet and as
// .json.gz log files, alternately in each iteration, and reports the
// ratio of their times (target: at most 1.5).
func BenchmarkLake(b *testing.B) {
	lakeArchives(b)
	for _, w := range workerCounts {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			runtime.GC()
			var parquetT, jsonT, parquetCPU, jsonCPU time.Duration
			for b.Loop() {
				start, c0 := time.Now(), cpuTime()
				pr := scanPaths(b, []string{lakeDir}, w)
				mid, c1 := time.Now(), cpuTime()
				jr := scanPaths(b, []string{jsonDir}, w)
				parquetT, jsonT = parquetT+mid.Sub(start), jsonT+time.Since(mid)
				parquetCPU, jsonCPU = parquetCPU+c1-c0, jsonCPU+cpuTime()-c1
				if pr.Summary.Events != jr.Summary.Events {
					b.Fatalf("%d events in Parquet, %d as JSON", pr.Summary.Events, jr.Summary.Events)
				}
			}
			b.ReportMetric(float64(parquetT)/float64(jsonT), "x-json")
			b.ReportMetric(float64(parquetCPU)/float64(jsonCPU), "x-json-cpu")
			b.ReportMetric(float64(lakeEvents)*float64(b.N)/parquetT.Seconds(), "parquet-events/s")
			b.ReportMetric(float64(lakeEvents)*float64(b.N)/jsonT.Seconds(), "json-events/s")
		})
	}
}

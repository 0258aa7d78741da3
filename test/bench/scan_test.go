package bench

import (
	stdgzip "compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
)

// noLifecycle leaves the corpus's two quarantines (of 2020 and 2023) out
// by event time: nothing for a second read.
var noLifecycle = source.Filter{Since: t0.Add(-24 * time.Hour)}

// The scan benchmarks (issue #10) run over one archive: the corpus's
// clean events replicated to archiveText bytes of JSON, each copy its own
// eventID, requestID and time (so gzip sees what it sees in a real trail,
// not repeats), in log files of about 2 MB as AWS writes them, in the S3
// layout, with two quarantines among them. Against it, in the same run:
// the decompression floor (the same files decoded on as many workers, by
// each gzip library), and `zcat | jq` doing the same filter.
const (
	archiveText = 320 << 20
	fileText    = 2 << 20
)

var (
	archiveOnce sync.Once
	archiveDir  string
	archiveGz   int64
	archiveRaw  int64
	archiveList []string
)

func benchArchive(b *testing.B) string {
	archiveOnce.Do(func() {
		d := mustLoad(b)
		dir, err := os.MkdirTemp("", "ctq-bench-archive-")
		if err != nil {
			b.Fatal(err)
		}
		archiveDir = dir
		nfiles := archiveText / fileText
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, runtime.GOMAXPROCS(0))
		for f := range nfiles {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				at := t0.Add(time.Duration(f) * 5 * time.Minute)
				var recs []any
				size := 0
				for i := 0; size < fileText; i++ {
					e := maps.Clone(d.clean[(f*7919+i)%len(d.clean)].(map[string]any))
					e["eventID"], e["requestID"] = uuid(), uuid()
					e["eventTime"] = at.Add(-time.Duration(300-i%300) * time.Second).Format(time.RFC3339)
					e["recipientAccountId"] = "111122223333"
					if f == nfiles/3 && i == 100 || f == 2*nfiles/3 && i == 200 {
						e = d.quarantine[f%2].(map[string]any)
					}
					recs = append(recs, e)
					size += len(value.ToJSON(e)) + 1
				}
				text := archive.Records(recs)
				p := filepath.Join(dir, archive.LogFile("111122223333", []string{"us-east-1", "eu-west-1"}[f%2], at, "bench"))
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, archive.Gzip(text), 0o644); err != nil {
					b.Error(err)
					return
				}
				info, _ := os.Stat(p)
				mu.Lock()
				archiveGz += info.Size()
				archiveRaw += int64(len(text))
				archiveList = append(archiveList, p)
				mu.Unlock()
			})
		}
		wg.Wait()
	})
	if archiveDir == "" || len(archiveList) == 0 {
		b.Fatal("no archive")
	}
	return archiveDir
}

func uuid() string {
	var u [16]byte
	rand.Read(u[:])
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// reportArchive sets the archive's compressed size as the bytes of an
// op (so MB/s is of gzipped CloudTrail) and its text's GB/s.
func reportArchive(b *testing.B) {
	b.SetBytes(archiveGz)
	b.ReportMetric(float64(archiveRaw)*float64(b.N)/b.Elapsed().Seconds()/1e9, "text-GB/s")
	b.ReportMetric(float64(archiveRaw)/float64(archiveGz), "ratio")
}

var workerCounts = func() []int {
	n := runtime.GOMAXPROCS(0)
	if n == 1 {
		return []int{1}
	}
	return []int{1, n}
}()

// BenchmarkBackfill is the scan of an archive with no lifecycle to
// follow: the corpus's quarantines are of groups and roles there, so no
// second read. Its cost beside the floor is detection's.
func BenchmarkBackfill(b *testing.B) {
	dir := benchArchive(b)
	for _, w := range workerCounts {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			runtime.GC() // the archive's making leaves garbage the timed loop must not collect
			for b.Loop() {
				backfill(b, dir, w)
			}
			reportArchive(b)
		})
	}
}

// backfill scans the archive once with no lifecycle to follow.
func backfill(b *testing.B, dir string, workers int) {
	res, err := scan.Run(context.Background(), scan.Options{Paths: []string{dir}, Workers: workers,
		Filter:    noLifecycle,
		Lifecycle: lifecycle.Options{WatchTTL: 30 * 24 * time.Hour, MaxKeys: 100000, UseWindow: time.Hour, Grace: 15 * time.Minute, Delay: 15 * time.Minute}})
	if err != nil || res.Summary.Failed > 0 || res.Summary.Accounts != 0 {
		b.Fatalf("%v, %+v", err, res.Summary)
	}
}

// BenchmarkBackfillVsFloor times the scan and the floor (klauspost's
// decompression on as many workers) alternately, each iteration one of
// each, and reports their ratio: on a shared 2-vCPU VM two benchmarks run
// a minute apart drift by more than the 25% the target allows.
func BenchmarkBackfillVsFloor(b *testing.B) {
	dir := benchArchive(b)
	for _, w := range workerCounts {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			runtime.GC()
			var scanT, floorT time.Duration
			for b.Loop() {
				start := time.Now()
				decodeAll(b, w, func(r io.Reader) (io.Reader, error) { return kgzip.NewReader(r) })
				mid := time.Now()
				backfill(b, dir, w)
				floorT, scanT = floorT+mid.Sub(start), scanT+time.Since(mid)
			}
			b.ReportMetric(float64(scanT)/float64(floorT), "x-floor")
		})
	}
}

// BenchmarkDecompress is the floor: the same files decoded to nothing on
// the same number of workers, with each gzip library.
func BenchmarkDecompress(b *testing.B) {
	benchArchive(b)
	libs := map[string]func(io.Reader) (io.Reader, error){
		"stdlib":    func(r io.Reader) (io.Reader, error) { return stdgzip.NewReader(r) },
		"klauspost": func(r io.Reader) (io.Reader, error) { return kgzip.NewReader(r) },
	}
	for _, lib := range []string{"stdlib", "klauspost"} {
		for _, w := range workerCounts {
			b.Run(fmt.Sprintf("%s/workers=%d", lib, w), func(b *testing.B) {
				runtime.GC()
				for b.Loop() {
					decodeAll(b, w, libs[lib])
				}
				reportArchive(b)
			})
		}
	}
}

func decodeAll(b *testing.B, workers int, open func(io.Reader) (io.Reader, error)) {
	files := make(chan string)
	var wg sync.WaitGroup
	buf := make([][]byte, workers)
	for i := range workers {
		buf[i] = make([]byte, 1<<20)
		wg.Go(func() {
			for p := range files {
				f, err := os.Open(p)
				if err != nil {
					b.Error(err)
					continue
				}
				zr, err := open(f)
				if err == nil {
					_, err = io.CopyBuffer(io.Discard, zr, buf[i])
				}
				f.Close()
				if err != nil {
					b.Error(err)
				}
			}
		})
	}
	for _, p := range archiveList {
		files <- p
	}
	close(files)
	wg.Wait()
}

// BenchmarkZcatJq is what responders do by hand, run on every core: zcat
// piped into jq keeping the events that name a quarantine policy or an
// exposure notice (the scan's prefilter patterns); and parallel zcat to
// /dev/null, the floor as the shell sees it.
func BenchmarkZcatJq(b *testing.B) {
	benchArchive(b)
	for _, tool := range []string{"zcat", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s is not installed: `make bench` installs it (build/bench-tools.sh)", tool)
		}
	}
	list := archiveDir + ".files.txt" // beside the archive, not in it
	os.WriteFile(list, []byte(strings.Join(archiveList, "\n")+"\n"), 0o644)
	w := runtime.GOMAXPROCS(0)
	for name, script := range map[string]string{
		"zcat-jq": `xargs -P ` + fmt.Sprint(w) + ` -n 8 sh -c 'zcat "$@" | jq -c ".Records[] | select(tojson | test(\"Quarantine|xposedCredentialPolicy|RISK_\"))"' _ < ` + list + ` | wc -l`,
		"zcat":    `xargs -P ` + fmt.Sprint(w) + ` -n 8 sh -c 'zcat "$@" > /dev/null' _ < ` + list + ` && echo 2`,
	} {
		b.Run(fmt.Sprintf("%s/workers=%d", name, w), func(b *testing.B) {
			for b.Loop() {
				out, err := exec.Command("bash", "-c", "set -o pipefail; "+script).CombinedOutput()
				if err != nil || strings.TrimSpace(string(out)) != "2" {
					b.Fatalf("%v: %s", err, out)
				}
			}
			reportArchive(b)
		})
	}
}

// BenchmarkBackfillLifecycle runs last: it leaves the GC a large heap.
// It is the scan over the archive, in process: both
// passes, the second reading the files of the account whose key was
// quarantined (both of them here: the worst case).
func BenchmarkBackfillLifecycle(b *testing.B) {
	dir := benchArchive(b)
	for _, w := range workerCounts {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			runtime.GC()
			for b.Loop() {
				res, err := scan.Run(context.Background(), scan.Options{Paths: []string{dir}, Workers: w,
					Lifecycle: lifecycle.Options{WatchTTL: 30 * 24 * time.Hour, MaxKeys: 100000, UseWindow: time.Hour, Grace: 15 * time.Minute, Delay: 15 * time.Minute}})
				if err != nil || res.Summary.Failed > 0 || res.Summary.Alerts != 2 {
					b.Fatalf("%v, %+v", err, res.Summary)
				}
			}
			reportArchive(b)
		})
	}
}

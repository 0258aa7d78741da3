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
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

// The scan benchmarks (issue #16) run over two archives. The clean one
// is what a trail's bucket holds: the corpus's clean events replicated
// to archiveText bytes of JSON, each copy its own eventID, requestID and
// time (so gzip sees what it sees in a real trail, not repeats), in log
// files of about fileText bytes as AWS writes them, in the S3 layout of
// 22 accounts x 4 regions over a day and a half, with the corpus's two quarantines (of a group
// and a role: no lifecycle to follow) among them. The worst case adds,
// in another directory: a keyless quarantine (AWS attaching the policy
// to a user, naming no key) in each of the 22 accounts, after which that
// user keeps calling (1 event in 50 of its account's), and an export
// outside the layout of an eighth of the archive's size. Against them, in
// the same run: the decompression floor (the same files decoded on as
// many workers), and the responder's tools.
const (
	archiveText = 256 << 20
	fileText    = 1 << 20
	exportText  = archiveText / 8
)

var (
	benchAccounts = func() []string {
		var out []string
		for i := range 22 {
			out = append(out, fmt.Sprintf("%012d", 100000000000+i*7919))
		}
		return out
	}()
	benchRegions = []string{"us-east-1", "eu-west-1", "us-west-2", "ap-southeast-2"}
)

// benchSet is an archive's paths and the files the floor decodes.
type benchSet struct {
	paths    []string
	files    []string
	gz, text int64
}

var (
	archiveOnce  sync.Once
	clean, worst benchSet
	watchedUser  = "ci-deployer"
)

func benchArchives(b *testing.B) {
	archiveOnce.Do(func() {
		d := mustLoad(b)
		// Events as CloudTrail writes them: the corpus's records in other
		// shapes (Panther's lower-cased keys beside the real ones) would get
		// an eventID of their own here beside the one they carry.
		var events []map[string]any
		for _, e := range d.clean {
			if m := e.(map[string]any); m["eventVersion"] != nil && m["eventid"] == nil {
				events = append(events, m)
			}
		}
		dir, extra := tempDir(b, "ctq-bench-archive-"), tempDir(b, "ctq-bench-worst-")
		clean.paths = []string{dir}
		streams := len(benchAccounts) * len(benchRegions)
		nfiles := archiveText / fileText
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, runtime.GOMAXPROCS(0))
		write := func(set *benchSet, p string, text []byte) {
			os.MkdirAll(filepath.Dir(p), 0o755)
			gz := archive.Gzip(text)
			if err := os.WriteFile(p, gz, 0o644); err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			set.gz += int64(len(gz))
			set.text += int64(len(text))
			set.files = append(set.files, p)
			mu.Unlock()
		}
		for f := range nfiles {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				stream := f % streams
				account, region := benchAccounts[stream/len(benchRegions)], benchRegions[stream%len(benchRegions)]
				// A stream's files hours apart: the archive spans days, as
				// a responder's does (the one of the issue: 30 days, a file
				// or two per region and day).
				at := t0.Add(time.Duration(f/streams)*6*time.Hour + time.Duration(stream)*time.Second)
				recs, size := []any{}, 0
				for i := 0; size < fileText; i++ {
					e := maps.Clone(events[(f*7919+i)%len(events)])
					e["eventID"], e["requestID"] = uuid(), uuid()
					e["eventTime"] = at.Add(-time.Duration(300-i%300) * time.Second).Format(time.RFC3339)
					e["recipientAccountId"] = account
					if i%50 == 7 {
						// The user the worst case quarantines, at work.
						e["userIdentity"] = map[string]any{"type": "IAMUser", "principalId": "AIDAEXAMPLE" + account,
							"arn": "arn:aws:iam::" + account + ":user/" + watchedUser, "accountId": account,
							"accessKeyId": "AKIA" + account + "WXYZ", "userName": watchedUser}
					}
					if f == nfiles/3 && i == 100 || f == 2*nfiles/3 && i == 200 {
						e = d.quarantine[f%2].(map[string]any)
					}
					recs = append(recs, e)
					size += len(value.ToJSON(e)) + 1
				}
				write(&clean, filepath.Join(dir, archive.LogFile(account, region, at, "bench")), archive.Records(recs))
			})
		}
		wg.Wait()
		worst = benchSet{paths: []string{dir, extra}, files: slices.Clone(clean.files), gz: clean.gz, text: clean.text}
		q := mustFixture(b, "rules/aws.iam.quarantine_applied/positive/attach_user_v2")
		for i, account := range benchAccounts {
			e := maps.Clone(q)
			e["recipientAccountId"], e["eventID"] = account, uuid()
			e["requestParameters"] = map[string]any{"userName": watchedUser, "policyArn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"}
			at := t0.Add(3*time.Hour + time.Duration(10+i)*time.Minute)
			e["eventTime"] = at.Add(-2 * time.Minute).Format(time.RFC3339)
			write(&worst, filepath.Join(extra, archive.LogFile(account, "us-east-1", at, "quarantine")), archive.Records([]any{e}))
		}
		var export []byte
		for i := 0; len(export) < exportText; i++ {
			e := maps.Clone(events[(i*31)%len(events)])
			e["eventID"], e["requestID"] = uuid(), uuid()
			e["eventTime"] = t0.Add(time.Duration(i%(3*86400)) * time.Second).Format(time.RFC3339)
			e["recipientAccountId"] = benchAccounts[i%len(benchAccounts)]
			export = append(append(export, value.ToJSON(e)...), '\n')
		}
		write(&worst, filepath.Join(extra, "export", "cloudtrail-export.json.gz"), export)
	})
	if len(clean.files) == 0 || len(worst.files) == 0 {
		b.Fatal("no archive")
	}
}

func mustFixture(b *testing.B, name string) map[string]any {
	e, err := sequence.Event(name)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

func uuid() string {
	var u [16]byte
	rand.Read(u[:])
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// report sets an archive's compressed size as the bytes of an op (so
// MB/s is of gzipped CloudTrail) and its text's GB/s.
func (set *benchSet) report(b *testing.B) {
	b.SetBytes(set.gz)
	b.ReportMetric(float64(set.text)*float64(b.N)/b.Elapsed().Seconds()/1e9, "text-GB/s")
	b.ReportMetric(float64(set.text)/float64(set.gz), "ratio")
}

var workerCounts = func() []int {
	n := runtime.GOMAXPROCS(0)
	if n == 1 {
		return []int{1}
	}
	return []int{1, n}
}()

var archives = []struct {
	name string
	set  *benchSet
}{{"clean", &clean}, {"worst", &worst}}

// scanArchive scans an archive once, as the command does (the plugin's
// default lifecycle timing).
func scanArchive(b *testing.B, set *benchSet, workers int) *scan.Result {
	res := scanPaths(b, set.paths, workers)
	// The corpus's quarantines of a group and a role; in the worst case,
	// each account's quarantine of its user, and that user's calls after.
	applied, used := 2, 0
	if set == &worst {
		applied, used = 2+len(benchAccounts), len(benchAccounts)
	}
	if c := res.Summary.ByRule; c[rules.QuarantineApplied] != applied || c[rules.QuarantinedKeyUsed] < used {
		b.Fatalf("alerts %v, want %d quarantines and at least %d uses", c, applied, used)
	}
	return res
}

func scanPaths(b *testing.B, paths []string, workers int) *scan.Result {
	res, err := scan.Run(context.Background(), scan.Options{Paths: paths, Workers: workers,
		Lifecycle: lifecycle.Options{WatchTTL: 30 * 24 * time.Hour, MaxKeys: 100000, UseWindow: time.Hour, Grace: 15 * time.Minute, Delay: 15 * time.Minute}})
	if err != nil || res.Summary.Failed > 0 {
		b.Fatalf("%v, %+v", err, res.Summary)
	}
	return res
}

// BenchmarkScanVsFloor times the scan and the floor (klauspost's
// decompression of the same files on as many workers) alternately, each
// iteration one of each, and reports their ratio, in wall time (x-floor)
// and in CPU time (x-floor-cpu): on a shared 2-vCPU VM two benchmarks run
// a minute apart drift by more than the 25% the target allows, and the
// wall time of even alternating runs swings with the neighbours' load.
// MB/s is of the scan alone.
func BenchmarkScanVsFloor(b *testing.B) {
	benchArchives(b)
	for _, a := range archives {
		for _, w := range workerCounts {
			b.Run(fmt.Sprintf("%s/workers=%d", a.name, w), func(b *testing.B) {
				runtime.GC() // the archive's making leaves garbage the timed loop must not collect
				var scanT, floorT, scanCPU, floorCPU time.Duration
				var res *scan.Result
				for b.Loop() {
					start, c0 := time.Now(), cpuTime()
					decodeAll(b, a.set.files, w, func(r io.Reader) (io.Reader, error) { return kgzip.NewReader(r) })
					mid, c1 := time.Now(), cpuTime()
					res = scanArchive(b, a.set, w)
					floorT, scanT = floorT+mid.Sub(start), scanT+time.Since(mid)
					floorCPU, scanCPU = floorCPU+c1-c0, scanCPU+cpuTime()-c1
				}
				b.ReportMetric(float64(scanT)/float64(floorT), "x-floor")
				b.ReportMetric(float64(scanCPU)/float64(floorCPU), "x-floor-cpu")
				b.ReportMetric(float64(a.set.gz)*float64(b.N)/scanT.Seconds()/1e6, "scan-MB/s")
				b.ReportMetric(float64(a.set.gz)*float64(b.N)/floorT.Seconds()/1e6, "floor-MB/s")
				b.ReportMetric(float64(res.Summary.Alerts), "alerts")
				b.ReportMetric(float64(res.Summary.Records), "decoded")
			})
		}
	}
}

// cpuTime is the CPU time the process has used (user and system, every
// thread): on a VM shared with other work, wall time swings with the
// neighbours' load, the CPU a piece of work takes much less.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// inflaters are the gzip decoders BenchmarkDecompress compares: the two
// pure-Go ones, and libdeflate through cgo when built with -tags
// libdeflate (make bench does; libdeflate_test.go).
var inflaters = []inflater{
	{"stdlib", func(r io.Reader) (io.Reader, error) { return stdgzip.NewReader(r) }},
	{"klauspost", func(r io.Reader) (io.Reader, error) { return kgzip.NewReader(r) }},
}

type inflater struct {
	name string
	open func(io.Reader) (io.Reader, error)
}

// BenchmarkDecompress is the floor alone, with each gzip library.
func BenchmarkDecompress(b *testing.B) {
	benchArchives(b)
	for _, lib := range inflaters {
		for _, w := range workerCounts {
			b.Run(fmt.Sprintf("%s/workers=%d", lib.name, w), func(b *testing.B) {
				runtime.GC()
				for b.Loop() {
					decodeAll(b, clean.files, w, lib.open)
				}
				clean.report(b)
			})
		}
	}
}

func decodeAll(b *testing.B, list []string, workers int, open func(io.Reader) (io.Reader, error)) {
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
	for _, p := range list {
		files <- p
	}
	close(files)
	wg.Wait()
}

// Needles is what the responder's tools look for: the scan's prefilter
// patterns for the rules that decide from one event.
const needles = `Quarantine|xposedCredentialPolicy|RISK_`

// BenchmarkResponder is what responders run by hand over the clean
// archive, on every core, beside the scan: zcat piped into jq keeping the
// events that hold a pattern (hardened with // so a record without
// Records, or a null field, does not stop it), ripgrep searching the
// gzipped files (-z), zgrep, and parallel zcat to /dev/null, the floor as
// the shell sees it.
func BenchmarkResponder(b *testing.B) {
	benchArchives(b)
	for _, tool := range []string{"zcat", "jq", "rg", "zgrep"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s is not installed: `make bench` installs it (build/bench-tools.sh)", tool)
		}
	}
	list := clean.paths[0] + ".files.txt" // beside the archive, not in it
	os.WriteFile(list, []byte(strings.Join(clean.files, "\n")+"\n"), 0o644)
	w := runtime.GOMAXPROCS(0)
	xargs := fmt.Sprintf("xargs -P %d -n 16 ", w)
	for _, tool := range []struct{ name, script string }{
		{"zcat-jq", xargs + `sh -c 'zcat "$@" | jq -c "(.Records // [.])[] | select((tojson // \"\") | test(\"` + needles + `\"))"' _ < ` + list + ` | wc -l`},
		{"rg", `rg -z -c -e '` + needles + `' ` + clean.paths[0] + ` | wc -l`},
		// zgrep exits 1 for a file without a match.
		{"zgrep", xargs + `sh -c 'zgrep -c -E "` + needles + `" "$@"; [ $? -le 1 ]' _ < ` + list + ` | grep -vc ':0$'`},
		{"zcat", xargs + `sh -c 'zcat "$@" > /dev/null' _ < ` + list + ` && echo 2`},
	} {
		b.Run(fmt.Sprintf("%s/workers=%d", tool.name, w), func(b *testing.B) {
			for b.Loop() {
				out, err := exec.Command("bash", "-c", "set -o pipefail; "+tool.script).CombinedOutput()
				if err != nil || strings.TrimSpace(string(out)) != "2" {
					b.Fatalf("%v: %s", err, out)
				}
			}
			clean.report(b)
		})
	}
	b.Run(fmt.Sprintf("scan/workers=%d", w), func(b *testing.B) {
		runtime.GC()
		for b.Loop() {
			scanArchive(b, &clean, w)
		}
		clean.report(b)
	})
}

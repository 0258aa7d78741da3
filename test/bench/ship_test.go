package bench

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/makebin"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// The ship benchmarks (issue #18): 64 MB of JSON text in 32 gzipped
// CloudTrail log files of about 2 MB (the corpus's events, each copy its
// own ids), in one directory, shipped to the forward receiver on the
// loopback (which counts records and acknowledges, decoding nothing);
// beside them, the reference, Fluent Bit's own tail input reading the same
// files (it reads .gz since 3.0) with the json parser and sending them on
// with its forward output, acks required, to the same receiver.
const (
	shipText     = 64 << 20
	shipFileText = 2 << 20
)

var (
	shipOnce   sync.Once
	shipDir    string
	shipEvents int
	shipRaw    int64
	shipFiles  int
)

func shipArchive(b *testing.B) string {
	shipOnce.Do(func() {
		d := mustLoad(b)
		// Under build/, not the shared temporary directory: other
		// programs' clean-ups sweep that.
		dir := paths.Repo("build", "bench-ship")
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range shipText / shipFileText {
			at := t0.Add(time.Duration(f) * 5 * time.Minute)
			var recs []any
			for size := 0; size < shipFileText; {
				e := maps.Clone(d.clean[(f*7919+len(recs))%len(d.clean)].(map[string]any))
				e["eventID"], e["requestID"] = uuid(), uuid()
				e["eventTime"] = at.Add(-time.Duration(300-len(recs)%300) * time.Second).Format(time.RFC3339)
				recs = append(recs, e)
				size += len(value.ToJSON(e)) + 1
			}
			// A final newline: Fluent Bit's tail holds back a last line
			// without one (5.1.1: the file is never read).
			text := append(archive.Records(recs), '\n')
			name := fmt.Sprintf("111122223333_CloudTrail_us-east-1_%s_bench%02d.json.gz", at.Format("20060102T1504Z"), f)
			if err := os.WriteFile(filepath.Join(dir, name), archive.Gzip(text), 0o644); err != nil {
				b.Fatal(err)
			}
			shipEvents += len(recs)
			shipRaw += int64(len(text))
			shipFiles++
		}
		shipDir = dir
	})
	if shipDir == "" {
		b.Fatal("no archive")
	}
	return shipDir
}

func reportShip(b *testing.B) {
	b.SetBytes(shipRaw)
	b.ReportMetric(float64(shipEvents)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkShipLocalGz: `cloudtrail-quarantine ship DIR` (the built
// command, defaults: 4 workers, 2 connections, 1 MiB messages), one run
// per op, every event acknowledged before it exits.
func BenchmarkShipLocalGz(b *testing.B) {
	dir := shipArchive(b)
	bin := makebin.Path(b, "build/cloudtrail-quarantine")
	recv := forwardrecv.Start(b, forwardrecv.Options{Network: "unix", Discard: true})
	b.ResetTimer()
	for range b.N {
		cmd := exec.Command(bin, "ship", "--forward", "unix://"+recv.Addr(), "--stats-interval", "0", dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("ship: %v\n%s", err, out)
		}
	}
	b.StopTimer()
	if recv.Count() != shipEvents*b.N {
		b.Fatalf("%d records received, want %d", recv.Count(), shipEvents*b.N)
	}
	reportShip(b)
}

// BenchmarkShipFluentBitTailReference: fluent-bit (the one on the PATH)
// tailing the same files from their head into the same receiver; an op
// ends when the receiver has a record for every file (tail makes one
// record of a log file: its one line). Not measured, and said so, when no
// fluent-bit is on the PATH.
func BenchmarkShipFluentBitTailReference(b *testing.B) {
	fb, err := exec.LookPath("fluent-bit")
	if err != nil {
		b.Skip("fluent-bit is not on the PATH: the tail reference was not measured")
	}
	dir := shipArchive(b)
	recv := forwardrecv.Start(b, forwardrecv.Options{Discard: true, BufferMaxSize: 256 << 20})
	work := b.TempDir()
	parsers := filepath.Join(work, "parsers.conf")
	os.WriteFile(parsers, []byte("[PARSER]\n    Name   json\n    Format json\n"), 0o644)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		conf := filepath.Join(work, fmt.Sprintf("fb-%d.conf", i))
		os.WriteFile(conf, []byte(fmt.Sprintf(`[SERVICE]
    Flush        0.2
    Log_Level    warn
    Parsers_File %s
[INPUT]
    Name              tail
    Path              %s/*.json.gz
    Tag               aws.cloudtrail.events
    Parser            json
    Read_From_Head    on
    Buffer_Chunk_Size 1M
    Buffer_Max_Size   16M
[OUTPUT]
    Name                 forward
    Match                *
    Host                 127.0.0.1
    Port                 %d
    Require_Ack_Response true
`, parsers, dir, recv.Port())), 0o644)
		want := recv.Count() + shipFiles
		b.StartTimer()
		cmd := exec.Command(fb, "-c", conf)
		log, _ := os.Create(filepath.Join(work, fmt.Sprintf("fb-%d.log", i)))
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for recv.Count() < want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		b.StopTimer()
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
		if recv.Count() < want {
			out, _ := os.ReadFile(log.Name())
			b.Fatalf("fluent-bit delivered %d of %d files\n%s", recv.Count()-want+shipFiles, shipFiles, out)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportShip(b)
}

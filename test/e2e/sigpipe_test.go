package e2e

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/loopback"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/promscrape"
)

// `fluent-bit ... | head -c 100` with Alert_Output stdout: head takes 100
// bytes and exits, and every later write to stdout fails with EPIPE. The
// Go runtime of a c-shared library turns that into a SIGPIPE death of the
// whole Fluent Bit unless the library handles SIGPIPE; the plugin does,
// so the failed write is reported (and the chunk retried), and the later
// chunks are still read.
func TestBrokenStdoutDoesNotKillFluentBit(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	head := make(chan string, 1)
	go func() {
		buf := make([]byte, 100)
		n, _ := io.ReadFull(r, buf)
		r.Close()
		head <- string(buf[:n])
	}()
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{kv("Alert_Output", "stdout")}, Flushes: pipeChunks(t, 4),
		Stdout: w, PauseMS: 200})
	w.Close()
	if res.Signal != 0 || res.ExitCode != 0 {
		t.Fatalf("Fluent Bit died: signal %v, exit %d\n%s", res.Signal, res.ExitCode, tail(res.Stderr))
	}
	if h := <-head; !strings.HasPrefix(h, `{"`) {
		t.Errorf("head read %q, not the first alert", h)
	}
	if !strings.Contains(res.Stderr, "could not deliver 1 of 1 alert(s), asking Fluent Bit to retry the chunk: writing alerts: write /dev/stdout: broken pipe") {
		t.Errorf("the failed write is not reported:\n%s", tail(res.Stderr))
	}
	st := exitStats(t, res.Stderr)["cloudtrail_quarantine.0"]
	if st["flushes"] < 4 || st["retries"] < 3 || st["delivered"] != 1 {
		t.Errorf("exit counters %v", st)
	}
}

// Only stderr piped, to a reader that went away (journald restarting):
// the plugin's next log line fails with EPIPE. The plugin goes on: alerts
// are delivered, and the lines it could not write are counted in the
// metrics.
func TestBrokenStderrDoesNotKillFluentBit(t *testing.T) {
	w := harness.ClosedPipe(t)
	out := t.TempDir() + "/alerts.jsonl"
	listen := loopback.FreeAddr(t)
	p := harness.Start(t, harness.Options{Instances: [][]harness.KV{kv("Alert_Output", "file", "File_Path", out, "Metrics_Listen", listen)},
		Flushes: pipeChunks(t, 3), Stderr: w, LingerMS: 20_000})
	var lost float64
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		fams, _, err := promscrape.Get("http://" + listen + "/metrics")
		if err != nil {
			continue
		}
		lost, _ = fams.Value("cloudtrail_quarantine_log_write_errors_total", "name", "cloudtrail_quarantine.0")
		if d, _ := fams.Value("cloudtrail_quarantine_alerts_delivered_total", "name", "cloudtrail_quarantine.0"); d == 3 && lost > 0 {
			break
		}
	}
	p.Terminate()
	res := p.Wait()
	if res.Signal != 0 || res.ExitCode != 0 {
		t.Fatalf("Fluent Bit died: signal %v, exit %d", res.Signal, res.ExitCode)
	}
	// The effective configuration and three "delivered" lines at least.
	if lost < 4 {
		t.Errorf("%v lost log lines counted", lost)
	}
	data, _ := os.ReadFile(out)
	if as := parseLines(t, string(data)); len(as) != 3 {
		t.Errorf("%d alerts delivered with stderr gone, want 3", len(as))
	}
}

// pipeChunks are n quarantine events, one chunk each.
func pipeChunks(t *testing.T, n int) []harness.Flush {
	flushes, _ := quarantines(t, "pipe", n, 1)
	return flushes
}

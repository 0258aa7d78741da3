package scan_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// On a terminal the scan draws a progress bar on stderr and prints
// alerts as a table; piped, neither. The bar's numbers hold: while
// listing, the files found; then the files and bytes read of the total
// listed, never past it, and 100% of it at the end.
func TestProgressBarOnATerminal(t *testing.T) {
	root := t.TempDir()
	layoutArchive(t, root)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	cmd := exec.Command(bin(t), "scan", "--workers", "1", root)
	cmd.Stdout, cmd.Stderr = tty, tty
	var screen bytes.Buffer
	var read sync.WaitGroup
	read.Go(func() { io.Copy(&screen, ptmx) })
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	err = cmd.Wait()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
		t.Fatalf("exit %v", err)
	}
	// The reader drains the terminal and stops at its end (EIO once the
	// scan, the last holder of the other side, is gone): closing it first
	// could lose the tail of a long table, the summary.
	read.Wait()
	out := screen.String()
	for _, want := range []string{"listing: ", "SEVERITY", "quarantine_applied", "alerts: "} {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal shows no %q:\n%s", want, out)
		}
	}
	files, _ := filepath.Glob(filepath.Join(root, "AWSLogs", "*", "CloudTrail", "*", "*", "*", "*", "*.json.gz"))
	var states []string
	last := ""
	for _, m := range barRe.FindAllStringSubmatch(out, -1) {
		done, total, pct := atoi(m[1]), atoi(m[2]), atoi(m[3])
		if total != len(files) || done > total || pct > 100 {
			t.Errorf("bar %q: %d files listed", m[0], len(files))
		}
		if m[4] != m[5] && pct == 100 {
			t.Errorf("bar %q: bytes and percentage disagree", m[0])
		}
		states = append(states, m[0])
		last = m[0]
	}
	if len(states) == 0 || !strings.HasPrefix(last, fmt.Sprintf("reading %d/%d files 100%%", len(files), len(files))) {
		t.Errorf("the bar does not end full: %q", last)
	}
	if !strings.Contains(out, "\r") {
		t.Errorf("no bar redrawn in place:\n%q", out)
	}
	// Piped: no bar, JSON lines.
	piped := exec.Command(bin(t), "scan", root)
	var stdout, stderr bytes.Buffer
	piped.Stdout, piped.Stderr = &stdout, &stderr
	piped.Run()
	if strings.Contains(stderr.String(), "reading") || strings.Contains(stderr.String(), "\r") {
		t.Errorf("a bar on a pipe:\n%q", stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), `{"rule":`) {
		t.Errorf("piped output is not JSON lines: %.100q", stdout.String())
	}
}

// reading 12/60 files  40% |█████   | (135/338 kB, 1.2 MB/s) [0s:0s]
var barRe = regexp.MustCompile(`reading (\d+)/(\d+) files +(\d+)% \|[^|]*\| \(([\d.]+)/([\d.]+) [kMG]?B`)

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// Ctrl-C stops the scan cleanly: what was read so far is reported, with
// its alerts, and the exit status says the scan is incomplete.
func TestInterrupt(t *testing.T) {
	events, _ := statelessExamples(t)
	cmd := exec.Command(bin(t), "scan", "--progress", "never", "-")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, e := range events[:3] {
		stdin.Write(append(value.ToJSON(e), '\n'))
	}
	// The input stays open, as a stream being piped in would; stop it
	// once the scan has had time to read what came.
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("Ctrl-C did not stop the scan")
	}
	stdin.Close()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 2 {
		t.Fatalf("exit %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupted") || !strings.Contains(stderr.String(), ": 1 files, ") {
		t.Errorf("summary:\n%s", stderr.String())
	}
	if n := len(alerts(t, stdout.String())); n == 0 {
		t.Errorf("no alerts from what was read\n%s", stderr.String())
	}
	_ = os.Stdin
}

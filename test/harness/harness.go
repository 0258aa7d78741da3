// Package harness runs the C harness (host/harness.c), which loads the plugin
// .so the way Fluent Bit does, and parses what it reports. End-to-end tests
// use it to drive the real .so.
package harness

import (
	"bytes"
	"context"
	"errors"
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

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

var (
	buildOnce sync.Once
	buildErr  error
)

// Build runs `make` for the .so and the harness, once per test binary, and
// returns their absolute paths.
func Build(t testing.TB) (so, harnessBin string) {
	t.Helper()
	root := paths.Root()
	buildOnce.Do(func() {
		out, err := exec.Command("make", "-C", root, "build/out_cloudtrail_quarantine.so", "build/harness").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("make: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(root, "build", "out_cloudtrail_quarantine.so"), filepath.Join(root, "build", "harness")
}

// KV is one config property.
type KV struct{ Key, Value string }

// Flush is one chunk for one instance: Data, or a file at Path that the
// harness reads only when it flushes it (suites of gigabytes).
type Flush struct {
	Instance int
	Tag      string
	Data     []byte
	Path     string
}

// Options describe one harness run.
type Options struct {
	// Plugin is the .so to load; empty means the one Build makes.
	Plugin string
	// Command runs another harness (e.g. the arm64 one under qemu-user):
	// the command and its leading arguments; empty means the host harness.
	Command   []string
	Instances [][]KV // one entry per instance
	Flushes   []Flush
	Loops     int // 0: once
	// Retries is Fluent Bit's retry_limit: 0 means the harness default (1),
	// a negative value means no retry at all.
	Retries     int
	RetryWaitMS int
	PauseMS     int // before each flush (engine thread only)
	LingerMS    int // after the last flush, before exit
	Workers     int // per instance; 0: flushes on the engine thread
	StackSize   int // 0: 24 KiB
	// KillAfter makes the harness SIGKILL itself once the KillAfter-th
	// flush call returned, before it takes the answer (0: never): a crash
	// between the plugin's commit and Fluent Bit's.
	KillAfter int
	Quiet     bool
	Env       []string
	Timeout   time.Duration // 0: 60s
	// Stdout, when set, receives the plugin's stdout instead of
	// Result.Stdout (benchmarks that print megabytes of alerts); Stderr
	// likewise (a pipe whose reader goes away). An *os.File is handed to
	// the harness as it is.
	Stdout, Stderr io.Writer
	// Reloads are hot reloads after the run: every instance exits, the
	// plugin is unregistered, registered and started again, and the
	// flushes run again, in the same process.
	Reloads int
}

// Attempt is one reported flush call.
type Attempt struct {
	Instance, Bytes, Attempt, RC int
	Tag                          string
}

// Result is what a run reported.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
	Signal         syscall.Signal // what killed the harness, if a signal did
	Attempts       []Attempt
	// Summary holds the summary line's numbers and maxrss_kb.
	Summary map[string]int64
}

var (
	attemptRe = regexp.MustCompile(`(?m)^harness: flush instance=(\d+) tag=(\S*) bytes=(\d+) attempt=(\d+) rc=(-?\d+)$`)
	numbersRe = regexp.MustCompile(`(\w+)=(-?\d+)`)
)

// Args builds the harness command line for o, writing chunk files to dir.
func Args(o Options, so, dir string) ([]string, error) {
	n := max(len(o.Instances), 1)
	args := []string{"-i", strconv.Itoa(n)}
	for i, props := range o.Instances {
		for _, p := range props {
			args = append(args, "-s", fmt.Sprintf("%d:%s=%s", i, p.Key, p.Value))
		}
	}
	for i, f := range o.Flushes {
		if f.Path != "" {
			args = append(args, "-F", fmt.Sprintf("%d:%s:%s", f.Instance, f.Tag, f.Path))
			continue
		}
		path := filepath.Join(dir, fmt.Sprintf("chunk-%03d.bin", i))
		if err := os.WriteFile(path, f.Data, 0o600); err != nil {
			return nil, err
		}
		args = append(args, "-f", fmt.Sprintf("%d:%s:%s", f.Instance, f.Tag, path))
	}
	switch {
	case o.Retries < 0:
		args = append(args, "-r", "0")
	case o.Retries > 0:
		args = append(args, "-r", strconv.Itoa(o.Retries))
	}
	for flag, v := range map[string]int{"-l": o.Loops, "-d": o.RetryWaitMS, "-p": o.PauseMS, "-W": o.LingerMS, "-w": o.Workers, "-k": o.StackSize, "-R": o.Reloads, "-K": o.KillAfter} {
		if v > 0 {
			args = append(args, flag, strconv.Itoa(v))
		}
	}
	if o.Quiet {
		args = append(args, "-q")
	}
	return append(args, so), nil
}

// Run runs the harness to completion and fails the test if it cannot be
// started or overruns its timeout. A non-zero exit is reported, not fatal.
func Run(t testing.TB, o Options) Result {
	t.Helper()
	return Start(t, o).Wait()
}

// Proc is a harness run in progress.
type Proc struct {
	t              testing.TB
	cmd            *exec.Cmd
	ctx            context.Context
	cancel         context.CancelFunc
	stdout, stderr bytes.Buffer
	timeout        time.Duration
}

// Start launches the harness; Wait collects its result.
func Start(t testing.TB, o Options) *Proc {
	t.Helper()
	so, bin := Build(t)
	if o.Plugin != "" {
		so = o.Plugin
	}
	args, err := Args(o, so, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{t: t, timeout: o.Timeout}
	if p.timeout == 0 {
		p.timeout = 60 * time.Second
	}
	p.ctx, p.cancel = context.WithTimeout(context.Background(), p.timeout)
	if len(o.Command) > 0 {
		bin, args = o.Command[0], append(append([]string(nil), o.Command[1:]...), args...)
	}
	p.cmd = exec.CommandContext(p.ctx, bin, args...)
	p.cmd.Env = append(os.Environ(), o.Env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if o.Stdout != nil {
		p.cmd.Stdout = o.Stdout
	}
	if o.Stderr != nil {
		p.cmd.Stderr = o.Stderr
	}
	if err := p.cmd.Start(); err != nil {
		p.cancel()
		t.Fatal(err)
	}
	return p
}

// Terminate asks the harness to stop, with SIGTERM, as a service manager
// stops Fluent Bit: it ends its linger and exits cleanly.
func (p *Proc) Terminate() {
	p.cmd.Process.Signal(syscall.SIGTERM)
}

// Kill ends the harness with SIGKILL, as a crash or an OOM kill would:
// no exit callback runs.
func (p *Proc) Kill() {
	p.cmd.Process.Kill()
}

// Wait waits for the harness to exit and parses what it reported.
func (p *Proc) Wait() Result {
	p.t.Helper()
	defer p.cancel()
	err := p.cmd.Wait()
	res := Result{Stdout: p.stdout.String(), Stderr: p.stderr.String()}
	if p.ctx.Err() != nil {
		p.t.Fatalf("harness overran %v\n%s", p.timeout, res.Stderr)
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode() // -1 when killed by a signal
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal()
		}
	case err != nil:
		p.t.Fatal(err)
	}
	res.parse()
	return res
}

func (r *Result) parse() {
	for _, m := range attemptRe.FindAllStringSubmatch(r.Stderr, -1) {
		n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
		r.Attempts = append(r.Attempts, Attempt{Instance: n(1), Tag: m[2], Bytes: n(3), Attempt: n(4), RC: n(5)})
	}
	r.Summary = map[string]int64{}
	for _, line := range strings.Split(r.Stderr, "\n") {
		if strings.HasPrefix(line, "harness: summary ") || strings.HasPrefix(line, "harness: maxrss_kb=") {
			for _, m := range numbersRe.FindAllStringSubmatch(line, -1) {
				r.Summary[m[1]], _ = strconv.ParseInt(m[2], 10, 64)
			}
		}
	}
}

// ClosedPipe is the write end of a pipe whose reader has gone away (a
// `| head` that exited, a journald that restarted): a write to it fails
// with EPIPE, and raises SIGPIPE.
func ClosedPipe(t testing.TB) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	t.Cleanup(func() { w.Close() })
	return w
}

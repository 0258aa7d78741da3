package cli

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan"
)

// console is stderr shared by error lines and the progress bar: a line
// clears the bar first, so the two never mix on one line.
type console struct {
	w        io.Writer
	mu       sync.Mutex
	pbar     *progressbar.ProgressBar
	stop     chan struct{}
	wg       sync.WaitGroup
	progress *scan.Progress
}

func newConsole(w io.Writer) *console { return &console{w: w} }

func (c *console) line(format string, a ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pbar != nil {
		c.pbar.Clear()
	}
	fmt.Fprintf(c.w, format+"\n", a...)
}

// bar shows the scan's progress (files and bytes done, rate, ETA) until
// the returned func (or done) is called.
func (c *console) bar(p *scan.Progress) func() {
	c.pbar = progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(c.w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(24),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	)
	c.stop = make(chan struct{})
	c.progress = p
	c.update()
	c.wg.Go(func() {
		defer func() { recover() }() // a progress bar is not worth a crash
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-tick.C:
			}
			c.update()
		}
	})
	return c.done
}

func (c *console) update() {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.progress
	total := p.ListedBytes.Load()
	if !p.Listing.Load() && total > 0 {
		c.pbar.ChangeMax64(total)
	}
	what := "scanning"
	if p.Pass.Load() == 2 {
		what = "lifecycle"
	}
	c.pbar.Describe(fmt.Sprintf("%s %d/%d files", what, p.Files.Load(), p.ListedFiles.Load()))
	c.pbar.Set64(p.Bytes.Load())
}

// done takes the bar away.
func (c *console) done() {
	if c.stop == nil {
		return
	}
	close(c.stop)
	c.wg.Wait()
	c.update() // the last state, before it goes
	c.mu.Lock()
	c.pbar.Clear()
	c.pbar = nil
	c.mu.Unlock()
	c.stop = nil
}

// printSummary writes what the scan read and found.
func printSummary(w io.Writer, s *scan.Summary, statePath string, workers int) {
	secs := max(s.Elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "%s: %s files, %s stored, %s of text, %s events in %s: %s/s stored, %s/s of text\n", name,
		count(int64(s.Files)), bytes(s.Stored), bytes(s.Text), count(s.Events), s.Elapsed.Round(time.Millisecond),
		bytes(int64(float64(s.Stored)/secs)), bytes(int64(float64(s.Text)/secs)))
	if hwm := peakMemory(); hwm > 0 {
		fmt.Fprintf(w, "%s: peak memory %s (VmHWM), %d workers\n", name, bytes(hwm), workers)
	}
	fmt.Fprintf(w, "%s: alerts: %d%s\n", name, s.Alerts, byRule(s.ByRule))
	if s.Accounts > 0 || s.Watched > 0 {
		fmt.Fprintf(w, "%s: lifecycle: %d account(s) read again (%s files, %s), %d key(s) watched at the end, %d event(s) late (%d more than --delay, at most %s)\n",
			name, s.Accounts, count(int64(s.Reread)), bytes(s.RereadBytes), s.Watched, s.Late, s.VeryLate, s.MaxLate)
	}
	if statePath != "" {
		fmt.Fprintf(w, "%s: state: %d case(s) written to %s\n", name, s.StateWritten, statePath)
	}
	if s.Failed > 0 {
		fmt.Fprintf(w, "%s: failed: %d file(s):%s\n", name, s.Failed, byRule(s.Failures))
	}
	if s.Interrupted {
		fmt.Fprintf(w, "%s: interrupted: the alerts and counts above are of what was read\n", name)
	}
}

// byRule lists counts, largest first.
func byRule(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	for i, k := range keys {
		if i == 0 {
			b.WriteString(" (")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[k])
	}
	if len(keys) > 0 {
		b.WriteString(")")
	}
	return b.String()
}

func count(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func bytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// peakMemory is the process's peak resident set, from /proc (0 where
// there is none).
func peakMemory() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

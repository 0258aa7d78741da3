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
	reading  bool
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

// bar shows the scan's progress until the returned func (or done) is
// called: while listing, the files and bytes found and the rate they are
// found at; then the bytes read (as stored) of the total, the rate, the
// time left and the files read.
func (c *console) bar(p *scan.Progress) func() {
	c.pbar = newBar(c.w, -1)
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

func newBar(w io.Writer, total int64) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(24),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionShowCount(),
		// Drawn on the scan's own ticks only, never after it is taken away.
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionThrottle(0),
	)
}

func (c *console) update() {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.progress
	files, total := p.ListedFiles.Load(), p.ListedBytes.Load()
	if !p.Listed.Load() {
		c.pbar.Describe(fmt.Sprintf("listing: %s files", count(files)))
		c.pbar.Set64(total)
		return
	}
	if !c.reading {
		// Listing is over: the bar starts again, for the reading, so
		// its rate and time left are the reading's.
		c.reading = true
		c.pbar.Clear()
		c.pbar.Exit()
		max := int64(-1)
		if total > 0 {
			max = total
		}
		c.pbar = newBar(c.w, max)
	}
	done := p.Bytes.Load()
	if total > 0 {
		done = min(done, total)
	}
	c.pbar.Describe(fmt.Sprintf("reading %s/%s files", count(min(p.Files.Load(), files)), count(files)))
	c.pbar.Set64(done)
}

// done shows the last state and takes the bar away.
func (c *console) done() {
	if c.stop == nil {
		return
	}
	close(c.stop)
	c.wg.Wait()
	c.update()
	c.mu.Lock()
	c.pbar.Clear()
	c.pbar.Exit()
	c.pbar = nil
	c.mu.Unlock()
	c.stop = nil
}

// finished shows the bar full: the scan read all it listed.
func (c *console) finished() {
	if c.stop == nil {
		return
	}
	p := c.progress
	c.mu.Lock()
	if total := p.ListedBytes.Load(); total > 0 {
		p.Bytes.Store(total)
	}
	p.Files.Store(p.ListedFiles.Load())
	c.mu.Unlock()
}

// printSummary writes what the scan read and found.
func printSummary(w io.Writer, s *scan.Summary, statePath string, workers int) {
	secs := max(s.Elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "%s: %s files, %s stored, %s of text, %s events (%s decoded) in %s: %s/s stored, %s/s of text\n", name,
		count(int64(s.Files)), bytes(s.Stored), bytes(s.Text), count(s.Events), count(s.Records), s.Elapsed.Round(time.Millisecond),
		bytes(int64(float64(s.Stored)/secs)), bytes(int64(float64(s.Text)/secs)))
	if hwm := peakMemory(); hwm > 0 {
		fmt.Fprintf(w, "%s: peak memory %s (VmHWM), %d workers\n", name, bytes(hwm), workers)
	}
	fmt.Fprintf(w, "%s: alerts: %d%s\n", name, s.Alerts, byRule(s.ByRule))
	if s.Accounts > 0 || s.Watched > 0 || s.Late > 0 {
		fmt.Fprintf(w, "%s: lifecycle: %d account(s) with a case, %d key(s) watched at the end, %s event(s) found for a key watched after their file was read, %d event(s) late (%d more than --delay, at most %s)\n",
			name, s.Accounts, s.Watched, count(int64(s.Added)), s.Late, s.VeryLate, s.MaxLate)
	}
	if s.Spilled > 0 {
		fmt.Fprintf(w, "%s: %s records of files outside the layout kept aside, %s of them in a temporary file in %s (deleted)\n",
			name, count(int64(s.Kept)), bytes(s.Spilled), s.SpillDir)
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

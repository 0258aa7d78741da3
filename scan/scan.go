// Package scan runs the plugin's detection over archives: CloudTrail log
// files, JSON lines and Security Lake Parquet, local or in S3, every core
// busy. It reads in two passes. The first reads everything, a worker per
// file, and decodes only the rare records the prefilter lets through; it
// gives the findings of the rules that decide from one event, and the
// accounts where an exposed key's life starts. The second reads those
// accounts again, from that time on, watching every key the first pass
// saw, and feeds each account's lifecycle engine in event time, its
// streams (one per region: CloudTrail writes each in time order) merged
// by time. Alerts are de-duplicated by key, as the plugin does.
package scan

import (
	"cmp"
	"context"
	"errors"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
)

// Options configure a scan.
type Options struct {
	Paths  []string
	Filter source.Filter
	// Workers read files in parallel (0: one per core).
	Workers int
	// Lifecycle times the lifecycle engines (the plugin's Watch_TTL,
	// Watch_Max_Keys, Use_Alert_Window, Quarantine_Grace, Event_Delay).
	Lifecycle lifecycle.Options
	EventKeys []string
	// S3 makes the S3 client, when an s3:// path is given.
	S3 func(context.Context) (source.S3API, error)
	// TempDir holds the copy of standard input ("" : the system's).
	TempDir string
	// FileError is called once for each file (or path) that cannot be
	// read, as it fails; the scan goes on.
	FileError func(name string, err error)
	// Progress, when set, is kept up to date for a progress bar.
	Progress *Progress
}

// Progress is what a progress bar shows, updated while the scan runs.
type Progress struct {
	ListedFiles, ListedBytes atomic.Int64 // found so far
	Files, Bytes             atomic.Int64 // read so far (Bytes as stored)
	Listing                  atomic.Bool  // still listing
	Pass                     atomic.Int32 // 1 or 2
}

// Result is a scan's findings, in event-time order, and its summary.
type Result struct {
	Findings []detect.Finding
	Summary  Summary
	// Cases are the lifecycle engines' cases at the end, by account, for a
	// store (only with Lifecycle.Persist).
	Cases     []*lifecycle.Case
	Watermark int64
}

// Summary counts what a scan read and found.
type Summary struct {
	Files, Failed  int
	Stored, Text   int64 // bytes as stored, and as text
	Events         int64
	Records        int64 // records decoded (candidates)
	Elapsed        time.Duration
	Failures       map[string]int // reason -> files
	ByRule         map[string]int
	Alerts         int
	Interrupted    bool
	Accounts       int // accounts re-read for the lifecycle
	Reread         int // files re-read
	RereadBytes    int64
	Watched        int   // lifecycle cases at the end
	Late, VeryLate int64 // events behind the latest one of their account, and more than Event_Delay behind
	MaxLate        time.Duration
	ListErrors     int
	StateWritten   int // cases written by --state
}

// tagged is an observation with where it was read.
type tagged struct {
	detect.Observed
	place source.Place
}

type scanner struct {
	o      Options
	det    *detect.Detector
	rd     *reader
	sum    Summary
	mu     sync.Mutex
	failed map[string]bool

	// From the first pass, by account: the observations, the regions
	// (streams) seen, the end of the archive.
	first      map[string][]tagged
	streams    map[string]map[string]bool
	archEnd    map[string]time.Time
	plain      []source.Object // files outside a layout, read again whole
	cleanups   []func() error
	reads      chan struct{} // second-pass reads at once: as many as workers
	accountsMu sync.Mutex
}

// Run scans. It returns an error only when nothing could be scanned (a
// bad option); unreadable files are reported through FileError and
// counted in the summary.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Workers <= 0 {
		o.Workers = max(1, runtimeCPUs())
	}
	if o.Progress == nil {
		o.Progress = &Progress{}
	}
	if o.FileError == nil {
		o.FileError = func(string, error) {}
	}
	s := &scanner{o: o, det: detect.New(detect.Options{EventKeys: o.EventKeys}), failed: map[string]bool{},
		first: map[string][]tagged{}, streams: map[string]map[string]bool{}, archEnd: map[string]time.Time{},
		reads: make(chan struct{}, o.Workers)}
	s.sum.Failures, s.sum.ByRule = map[string]int{}, map[string]int{}
	s.rd = newReader(s.det, &o.Progress.Bytes)
	defer func() {
		for _, c := range s.cleanups {
			c()
		}
	}()
	start := time.Now()
	s.firstPass(ctx)
	res := &Result{}
	findings, cases, wm, watched := s.lifecycles(ctx)
	s.sum.Interrupted = ctx.Err() != nil
	res.Findings = dedup(findings)
	res.Cases, res.Watermark = cases, wm
	for _, f := range res.Findings {
		s.sum.ByRule[f.Rule.ID]++
	}
	s.sum.Alerts = len(res.Findings)
	s.sum.Watched = watched
	s.sum.Elapsed = time.Since(start)
	res.Summary = s.sum
	return res, nil
}

// fail reports a file once.
func (s *scanner) fail(name string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed[name] {
		return
	}
	s.failed[name] = true
	s.sum.Failed++
	s.sum.Failures[reason(err)]++
	s.o.FileError(name, err)
}

// reason is an error's text without the file's name, to count files by
// what went wrong.
func reason(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120] + "..."
	}
	return msg
}

// firstPass lists every path and reads every file, a worker each.
func (s *scanner) firstPass(ctx context.Context) {
	s.o.Progress.Pass.Store(1)
	jobs := make(chan source.Object, 4*s.o.Workers)
	results := make(chan fileResult, 4*s.o.Workers)
	var workers sync.WaitGroup
	for range s.o.Workers {
		workers.Go(func() {
			for obj := range jobs {
				if ctx.Err() != nil {
					continue
				}
				results <- s.rd.read(ctx, obj, nil, obj.Live)
			}
		})
	}
	go func() {
		s.list(ctx, jobs)
		close(jobs)
		workers.Wait()
		close(results)
	}()
	for res := range results {
		s.collect(res)
	}
}

// list feeds the first pass, noting what the second one needs: the
// streams of each account, the files outside any layout.
func (s *scanner) list(ctx context.Context, jobs chan<- source.Object) {
	p := s.o.Progress
	p.Listing.Store(true)
	defer p.Listing.Store(false)
	for _, path := range s.o.Paths {
		l, err := source.ForPath(path, s.o.S3)
		if err == nil {
			err = safely(func() error {
				return l.List(ctx, &s.o.Filter, func(obj source.Object) error {
					if obj.Name == "-" {
						spooled, cleanup, err := source.Spool(obj, s.o.TempDir)
						if err != nil {
							return err
						}
						s.cleanups = append(s.cleanups, cleanup)
						obj = spooled
					}
					if obj.Layout() {
						s.noteStream(obj.Place)
					} else {
						s.plain = append(s.plain, obj)
					}
					p.ListedFiles.Add(1)
					p.ListedBytes.Add(max(0, obj.Size))
					select {
					case jobs <- obj:
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				})
			})
		}
		if err != nil && ctx.Err() == nil {
			s.sum.ListErrors++
			s.fail(path, err)
		}
	}
}

func (s *scanner) noteStream(pl source.Place) {
	s.accountsMu.Lock()
	defer s.accountsMu.Unlock()
	if s.streams[pl.Account] == nil {
		s.streams[pl.Account] = map[string]bool{}
	}
	s.streams[pl.Account][streamKey(pl)] = true
	if end := pl.Time.Add(pl.Span); end.After(s.archEnd[pl.Account]) {
		s.archEnd[pl.Account] = end
	}
}

func streamKey(pl source.Place) string {
	if pl.Lake {
		return "lake/" + pl.Region
	}
	return "cloudtrail/" + pl.Region
}

// collect counts a file's result and keeps its observations, by account.
func (s *scanner) collect(res fileResult) {
	s.o.Progress.Files.Add(1)
	s.sum.Files++
	s.sum.Stored += res.stored
	s.sum.Text += res.text
	s.sum.Events += int64(res.events)
	s.sum.Records += int64(res.st.Candidates)
	if res.err != nil && !errors.Is(res.err, context.Canceled) {
		s.fail(res.obj.Name, res.err)
	}
	for _, o := range res.obs {
		if account, ok := s.take(res.obj.Place, o); ok {
			s.first[account] = append(s.first[account], tagged{o, res.obj.Place})
		}
	}
}

// take applies the filter to an event and says whose it is: the layout's
// account, or the event's own outside a layout.
func (s *scanner) take(pl source.Place, o detect.Observed) (string, bool) {
	f := &s.o.Filter
	account, region := pl.Account, pl.Region
	if !pl.Layout() {
		account, region = o.Event.Account, o.Event.Region
		if !f.Account(account) || (region != "" && !f.Region(region)) {
			return "", false
		}
	}
	return account, f.Time(o.Time)
}

func dedup(fs []detect.Finding) []detect.Finding {
	slices.SortStableFunc(fs, func(a, b detect.Finding) int {
		return cmp.Or(a.Time.Compare(b.Time), strings.Compare(a.Key, b.Key))
	})
	seen := map[string]bool{}
	out := fs[:0]
	for _, f := range fs {
		if !seen[f.Key] {
			seen[f.Key] = true
			out = append(out, f)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

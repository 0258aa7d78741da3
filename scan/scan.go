// Package scan runs the plugin's detection over archives: CloudTrail log
// files, JSON lines and Security Lake Parquet, local or in S3, every core
// busy, in one pass. Each account's log files are read in the order of
// their stamps, ahead of the merge on every core, and their events fed to
// the account's lifecycle engine as one stream in event time, so the
// watch list is what it was at that moment, and nothing is read twice
// (account.go). Files outside the layout are read once, before the merge
// (index.go). Alerts are de-duplicated by key, as the plugin does.
package scan

import (
	"cmp"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
)

// Options configure a scan.
type Options struct {
	Paths []string
	// Objects are scanned beside Paths (source.Memory makes them from
	// bytes: a test's files).
	Objects []source.Object
	Filter  source.Filter
	// Workers decode files in parallel (0: one per core).
	Workers int
	// S3Concurrency is how many S3 requests (listings and GETs) are in
	// flight at once (0: DefaultS3Concurrency).
	S3Concurrency int
	// Lookahead is how many files are read ahead of the merge (0:
	// lookaheadPerWorker per worker, and at least twice S3Concurrency
	// when reading from S3).
	Lookahead int
	// Lifecycle times the lifecycle engines (the plugin's Watch_TTL,
	// Watch_Max_Keys, Use_Alert_Window, Quarantine_Grace, Event_Delay).
	Lifecycle lifecycle.Options
	EventKeys []string
	// S3 makes the S3 client, when an s3:// path is given.
	S3 func(context.Context) (source.S3API, error)
	// TempDir holds records kept aside past spillAfter ("": the system's).
	TempDir string
	// FileError is called once for each file (or path) that cannot be
	// read, as it fails; the scan goes on.
	FileError func(name string, err error)
	// Progress, when set, is kept up to date for a progress bar.
	Progress *Progress
}

// DefaultS3Concurrency keeps S3 busy at 20 ms a request (BenchmarkScanS3).
const DefaultS3Concurrency = 64

// aheadBytes bounds the text held for the look-ahead and the merge.
const aheadBytes = 512 << 20

// lookaheadPerWorker is the files a worker reads ahead. The merge is one
// goroutine, and when a watch list grows it runs the prefilter again over
// the files of that account read ahead: with 8 files a worker the workers
// waited for it (the worst-case archive on 2 workers took 1.43x the
// floor, with 32 1.25-1.33x; BenchmarkScanVsFloor). aheadBytes still
// bounds the text they hold.
const lookaheadPerWorker = 32

// Progress is what a progress bar shows, updated while the scan runs.
type Progress struct {
	ListedFiles, ListedBytes atomic.Int64 // found so far
	Files, Bytes             atomic.Int64 // read so far (Bytes as stored)
	Listed                   atomic.Bool  // the listing is over: ListedFiles and ListedBytes are the totals
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
	Accounts       int   // accounts where a lifecycle case opened
	Reread         int   // times the prefilter ran again over a held file's text
	Added          int   // events found that way, or in records kept aside
	Kept           int   // records of streamed files kept aside
	Spilled        int64 // bytes of them in a temporary file
	SpillDir       string
	Watched        int   // lifecycle cases at the end
	Late, VeryLate int64 // events behind the latest one of their account, and more than Event_Delay behind
	MaxLate        time.Duration
	ListErrors     int
	StateWritten   int // cases written by --state
}

type scanner struct {
	o      Options
	det    *detect.Detector
	rd     *reader
	idx    *index
	sched  *sched
	sum    Summary
	mu     sync.Mutex
	failed map[string]bool

	accounts map[string]*account
	archEnd  time.Time // the latest file stamp of every account's
	streamed []*job
	remote   bool
}

// Run scans. It returns an error only when nothing could be scanned (a
// bad option); unreadable files are reported through FileError and
// counted in the summary.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Workers <= 0 {
		o.Workers = max(1, runtimeCPUs())
	}
	if o.S3Concurrency <= 0 {
		o.S3Concurrency = DefaultS3Concurrency
	}
	if o.Progress == nil {
		o.Progress = &Progress{}
	}
	if o.FileError == nil {
		o.FileError = func(string, error) {}
	}
	if o.TempDir == "" {
		o.TempDir = os.TempDir()
	}
	s := &scanner{o: o, det: detect.New(detect.Options{EventKeys: o.EventKeys}), failed: map[string]bool{},
		accounts: map[string]*account{}, idx: newIndex(o.TempDir)}
	s.sum.Failures, s.sum.ByRule = map[string]int{}, map[string]int{}
	s.rd = newReader(s.det, &o.Progress.Bytes)
	s.rd.rowGroups = make(chan struct{}, o.Workers)
	defer s.idx.close()
	start := time.Now()

	s.plan(s.list(ctx))
	look := o.Lookahead
	if look <= 0 {
		look = lookaheadPerWorker * o.Workers
		if s.remote {
			look = max(look, 2*o.S3Concurrency)
		}
	}
	s.sched = newSched(look, aheadBytes)
	var workers sync.WaitGroup
	s.startWorkers(ctx, &workers)
	s.readStreamed(ctx)
	findings, cases, wm := s.merge(ctx)
	s.sched.stop()
	workers.Wait()

	res := &Result{Findings: dedup(findings), Cases: cases, Watermark: wm}
	s.sum.Interrupted = ctx.Err() != nil
	for _, f := range res.Findings {
		s.sum.ByRule[f.Rule.ID]++
	}
	s.sum.Alerts = len(res.Findings)
	s.sum.Kept, s.sum.Spilled = len(s.idx.recs), s.idx.spilled
	if s.sum.Spilled > 0 {
		s.sum.SpillDir = o.TempDir
	}
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

// list finds every object under the paths (each once), for the progress
// bar as they are found.
func (s *scanner) list(ctx context.Context) []source.Object {
	p := s.o.Progress
	defer p.Listed.Store(true)
	var mu sync.Mutex
	seen := map[string]bool{}
	var objs []source.Object
	add := func(obj source.Object) error {
		mu.Lock()
		defer mu.Unlock()
		if seen[obj.Name] {
			return nil
		}
		seen[obj.Name] = true
		objs = append(objs, obj)
		p.ListedFiles.Add(1)
		p.ListedBytes.Add(max(0, obj.Size))
		return ctx.Err()
	}
	for _, obj := range s.o.Objects {
		if s.o.Filter.Takes(obj.Place) {
			add(obj)
		}
	}
	for _, path := range s.o.Paths {
		l, err := source.ForPath(path, s.o.S3, s.o.S3Concurrency)
		if err == nil {
			err = safely(func() error { return l.List(ctx, &s.o.Filter, add) })
		}
		if err != nil && ctx.Err() == nil {
			s.sum.ListErrors++
			s.fail(path, err)
		}
	}
	return objs
}

// plan sorts the objects: files of the layout to each account's stream,
// in stamp order, read ahead of the merge; the rest read before it.
func (s *scanner) plan(objs []source.Object) {
	slices.SortFunc(objs, func(a, b source.Object) int { return strings.Compare(a.Name, b.Name) })
	for i, obj := range objs {
		s.remote = s.remote || obj.Remote
		if !obj.Layout() || obj.Parquet() || obj.Size < 0 || obj.Size > holdMax {
			s.streamed = append(s.streamed, &job{obj: obj, file: i, done: make(chan struct{})})
			continue
		}
		a := s.account(obj.Account)
		a.jobs = append(a.jobs, &job{obj: obj, file: i, acct: a, done: make(chan struct{})})
		if e := fileEnd(obj.Place); e.After(a.end) {
			a.end = e
		}
	}
	for _, a := range s.accounts {
		s.archEnd = later(s.archEnd, a.end)
		slices.SortFunc(a.jobs, func(x, y *job) int {
			return cmp.Or(fileEnd(x.obj.Place).Compare(fileEnd(y.obj.Place)), strings.Compare(x.obj.Name, y.obj.Name))
		})
	}
}

func (s *scanner) account(id string) *account {
	a := s.accounts[id]
	if a == nil {
		a = &account{id: id, eng: lifecycle.New(s.o.Lifecycle)}
		s.accounts[id] = a
	}
	return a
}

// startWorkers starts the readers: one per worker decoding; reading from
// S3, as many more as keep S3Concurrency GETs in flight.
func (s *scanner) startWorkers(ctx context.Context, wg *sync.WaitGroup) {
	n := s.o.Workers
	if s.remote {
		n = max(n, s.o.S3Concurrency)
	}
	decoding := make(chan struct{}, s.o.Workers)
	for range n {
		wg.Go(func() {
			for j := s.sched.take(); j != nil; j = s.sched.take() {
				s.sched.finish(j, s.read(ctx, j, decoding))
			}
		})
	}
}

// read reads one job's file: an S3 object is fetched first (many at
// once, to hide S3's latency), then decoded on one of Workers.
func (s *scanner) read(ctx context.Context, j *job, decoding chan struct{}) *decoded {
	if ctx.Err() != nil {
		return nil
	}
	var fetched []byte
	if j.obj.Remote && j.acct != nil {
		var err error
		if fetched, err = fetch(ctx, j.obj); err != nil {
			d := &decoded{obj: j.obj, err: err}
			s.count(d)
			return d
		}
	}
	decoding <- struct{}{}
	defer func() { <-decoding }()
	var d *decoded
	if j.acct != nil {
		d = s.rd.readHeld(ctx, j.obj, j.file, fetched, j.acct.eng.Watch())
	} else {
		d = s.rd.readStreamed(ctx, j.obj, j.file, s.idx)
	}
	s.count(d)
	return d
}

func fetch(ctx context.Context, obj source.Object) ([]byte, error) {
	rc, err := obj.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, 0, max(obj.Size, 0)+1)
	for {
		n, err := rc.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// count adds a file read to the summary.
func (s *scanner) count(d *decoded) {
	s.o.Progress.Files.Add(1)
	s.mu.Lock()
	s.sum.Files++
	s.sum.Stored += d.stored
	s.sum.Text += d.size
	s.sum.Events += int64(d.events)
	s.sum.Records += int64(d.st.Candidates)
	s.mu.Unlock()
	if d.err != nil && !errors.Is(d.err, context.Canceled) {
		s.fail(d.obj.Name, d.err)
	}
}

// readStreamed reads the files outside the layout, before the merge
// (their events have no order to rely on), and gives their events to
// their accounts.
func (s *scanner) readStreamed(ctx context.Context) {
	s.sched.mu.Lock()
	for _, j := range s.streamed {
		j.demand = true
		s.sched.demanded = append(s.sched.demanded, j)
	}
	s.sched.mu.Unlock()
	s.sched.cond.Broadcast()
	for _, a := range sortedAccounts(s.accounts) {
		s.sched.add(a.jobs...)
	}
	for _, j := range s.streamed {
		<-j.done
		d := j.res
		if d == nil {
			continue
		}
		for i, o := range d.obs {
			if id, ok := s.take(d.obj.Place, o); ok {
				a := s.account(id)
				a.plain = append(a.plain, tagged{o, d.obj.Place, nil, d.pos[i]})
			}
		}
		d.obs = nil
	}
}

// merge runs every account's engine over its stream, as many at once as
// there are workers, in account order (the order files are read ahead in).
func (s *scanner) merge(ctx context.Context) ([]detect.Finding, []*lifecycle.Case, int64) {
	accounts := sortedAccounts(s.accounts)
	out := make([]outcome, len(accounts))
	slots := make(chan struct{}, s.o.Workers)
	var wg sync.WaitGroup
	for i, a := range accounts {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := safely(func() error { out[i] = s.runAccount(ctx, a); return nil }); err != nil {
				s.fail("the lifecycle of account "+a.id, err)
			}
		})
	}
	wg.Wait()
	var fs []detect.Finding
	var cases []*lifecycle.Case
	var wm int64
	for _, r := range out {
		fs = append(fs, r.findings...)
		cases = append(cases, r.cases...)
		wm = max(wm, r.wm)
		s.sum.Watched += r.watched
		s.sum.Late += r.late
		s.sum.VeryLate += r.veryLate
		s.sum.MaxLate = max(s.sum.MaxLate, r.maxLate)
		s.sum.Reread += r.reread
		s.sum.Records += int64(r.records)
		s.sum.Added += r.added
		if r.opened {
			s.sum.Accounts++
		}
	}
	return fs, cases, wm
}

func sortedAccounts(m map[string]*account) []*account {
	out := make([]*account, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *account) int { return strings.Compare(a.id, b.id) })
	return out
}

// end is the time the account's archive is known to reach: --until
// (the scan covers what came before it), else the latest file stamp of
// the archive: an account quiet at the end of it was quiet, and its
// waits end as they would in a plugin that reads every account's trail
// (its clock is the whole stream's).
func (s *scanner) end(a *account) time.Time {
	if u := s.o.Filter.Until; !u.IsZero() {
		return u
	}
	return later(a.end, s.archEnd)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// take applies the filter to an event and says whose it is: the layout's
// account, or the event's own outside a layout. With --region, the
// global services' events, which CloudTrail logs in us-east-1 (IAM, STS's
// global endpoint, AWS Health), are every region's: the lifecycle of a
// key used in eu-west-1 starts with them.
func (s *scanner) take(pl source.Place, o detect.Observed) (string, bool) {
	f := &s.o.Filter
	account, region := pl.Account, pl.Region
	if !pl.Layout() {
		account, region = o.Event.Account, o.Event.Region
		if !f.Account(account) {
			return "", false
		}
	}
	if region != "" && !f.Region(region) && !global(o.Event) {
		return "", false
	}
	return account, f.Time(o.Time)
}

// global: an event of a service whose calls CloudTrail logs in us-east-1
// whatever the region they concern, or an AWS Health notice.
func global(e *cloudtrail.Event) bool {
	if e.Exposure != nil {
		return true
	}
	return source.GlobalRegion(e.Region) && (e.Source == "iam.amazonaws.com" || e.Source == "sts.amazonaws.com" || e.Source == "health.amazonaws.com")
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

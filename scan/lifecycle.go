package scan

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
)

// Each account has a lifecycle engine of its own (every rule is
// independent per account, and a shard holds whole accounts), fed in
// event time: before each event, time moves to the event's, so an
// exposure whose wait ended in a silence fires before what came after
// it, as it does in the plugin while the stream is silent. At the end,
// time moves to the end of the account's archive (the latest file
// stamp, or --until): an exposure still waiting then stays pending, and
// --state hands its timer to the plugin.

type outcome struct {
	opened   bool // the engine opened a case at some point
	watched  int  // cases at the end
	findings []detect.Finding
	cases    []*lifecycle.Case
	wm       int64
}

// lifecycles runs each account's events through its engine: the first
// pass's alone when they start no case, else those of a second read.
func (s *scanner) lifecycles(ctx context.Context) ([]detect.Finding, []*lifecycle.Case, int64, int) {
	accounts := sortedKeys(s.first)
	out := make([]outcome, len(accounts))
	var wg sync.WaitGroup
	slots := make(chan struct{}, s.o.Workers)
	s.o.Progress.Pass.Store(2)
	for i, a := range accounts {
		obs := s.first[a]
		slices.SortStableFunc(obs, func(x, y tagged) int { return x.Time.Compare(y.Time) })
		eng := s.engine()
		next := sliceSource(obs)
		out[i] = s.replay(eng, next, s.end(a, obs))
		if !out[i].opened || ctx.Err() != nil {
			continue
		}
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			err := safely(func() error {
				if r, ok := s.again(ctx, a, obs); ok {
					out[i] = r
				}
				return nil
			})
			if err != nil {
				s.fail("the lifecycle of account "+a, err)
			}
		})
	}
	wg.Wait()
	var fs []detect.Finding
	var cases []*lifecycle.Case
	var wm int64
	watched := 0
	for _, r := range out {
		watched += r.watched
		fs = append(fs, r.findings...)
		cases = append(cases, r.cases...)
		wm = max(wm, r.wm)
	}
	return fs, cases, wm, watched
}

func (s *scanner) engine() *lifecycle.Engine { return lifecycle.New(s.o.Lifecycle) }

// end is the time the account's archive is known to reach: --until
// (the scan covers what came before it), else its latest file stamp or
// event.
func (s *scanner) end(account string, obs []tagged) time.Time {
	if u := s.o.Filter.Until; !u.IsZero() {
		return u
	}
	s.accountsMu.Lock()
	end := s.archEnd[account]
	s.accountsMu.Unlock()
	if n := len(obs); n > 0 && obs[n-1].Time.After(end) {
		end = obs[n-1].Time
	}
	return end
}

// replay feeds the engine in the order next gives (event time, the late
// aside) and returns its findings.
func (s *scanner) replay(eng *lifecycle.Engine, next func() (tagged, bool), end time.Time) outcome {
	var fs []detect.Finding
	var latest time.Time
	var late, veryLate int64
	var maxLate time.Duration
	opened := false
	fire := func(at time.Time) {
		fs = append(fs, eng.Due(at)...)
	}
	for {
		o, ok := next()
		if !ok {
			break
		}
		if behind := latest.Sub(o.Time); behind > 0 {
			// Late: the engine still takes it (its windows and timers
			// are in the event's own time), and Event_Delay is how late
			// an event may be without changing an exposure's verdict.
			late++
			maxLate = max(maxLate, behind)
			if behind > s.o.Lifecycle.Delay {
				veryLate++
			}
		} else {
			latest = o.Time
		}
		// The scan's clock is event time: passing it as the wall clock
		// moves the engine's time on to this event before it is seen.
		fire(o.Time)
		fs = append(fs, eng.Observe(o.Observed, o.Time)...)
		opened = opened || eng.Len() > 0
	}
	if end.After(latest) {
		fire(end)
	} else {
		fire(latest)
	}
	s.mu.Lock()
	s.sum.Late += late
	s.sum.VeryLate += veryLate
	s.sum.MaxLate = max(s.sum.MaxLate, maxLate)
	s.mu.Unlock()
	r := outcome{findings: fs, opened: opened, watched: eng.Len()}
	if s.o.Lifecycle.Persist {
		r.cases, _, r.wm = eng.Changes()
		slices.SortFunc(r.cases, func(a, b *lifecycle.Case) int { return cmp.Compare(a.ID(), b.ID()) })
	}
	return r
}

func sliceSource(obs []tagged) func() (tagged, bool) {
	i := 0
	return func() (tagged, bool) {
		if i == len(obs) {
			return tagged{}, false
		}
		i++
		return obs[i-1], true
	}
}

// again reads an account a second time, watching every key its first
// pass saw, from its first case on (files before that give what the
// first pass found in them), and replays it. ok is false when the scan
// was stopped meanwhile.
func (s *scanner) again(ctx context.Context, account string, first []tagged) (outcome, bool) {
	s.mu.Lock()
	s.sum.Accounts++
	s.mu.Unlock()
	w := &detect.StaticWatch{Users: true}
	var from time.Time
	for _, t := range first {
		w.Learn(t.Observed)
		if len(t.Findings) > 0 && (from.IsZero() || t.Time.Before(from)) {
			from = t.Time
		}
	}
	// A quarantine up to Quarantine_Grace before a notice counts, and a
	// file holds events up to source.Lag older than its stamp.
	f := source.Filter{Accounts: map[string]bool{account: true}, Regions: s.o.Filter.Regions,
		Since: from.Add(-s.o.Lifecycle.Grace - source.Lag), Until: s.o.Filter.Until}
	if f.Since.Before(s.o.Filter.Since) {
		f.Since = s.o.Filter.Since
	}
	var heads []*stream
	var kept []tagged // the first pass's events of files not read again
	for _, t := range first {
		if t.place.Layout() && !f.Takes(t.place) {
			kept = append(kept, t)
		}
	}
	heads = append(heads, newStream(func(yield func([]tagged) bool) {
		yield(kept)
	}))
	s.accountsMu.Lock()
	keys := sortedKeys(s.streams[account])
	plain := slices.Clone(s.plain)
	s.accountsMu.Unlock()
	for _, key := range keys {
		heads = append(heads, newStream(s.layoutStream(ctx, account, key, &f, w)))
	}
	for _, obj := range plain {
		heads = append(heads, newStream(s.fileStream(ctx, account, obj, w)))
	}
	defer func() {
		for _, h := range heads {
			h.stop()
		}
	}()
	m := merge(heads)
	r := s.replay(s.engine(), m, s.end(account, first))
	return r, ctx.Err() == nil
}

// layoutStream yields, in time order, the files of one account's stream
// (a region of its CloudTrail, or of its Security Lake), read ahead by
// as many workers as the scan has, each file's events sorted. A Security
// Lake partition's files are one batch: they are not ordered among
// themselves.
func (s *scanner) layoutStream(ctx context.Context, account, key string, f *source.Filter, w detect.Watch) func(yield func([]tagged) bool) {
	return func(yield func([]tagged) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		futures := make(chan chan fileResult, s.o.Workers)
		go func() {
			defer close(futures)
			for _, path := range s.o.Paths {
				l, err := source.ForPath(path, s.o.S3)
				if err != nil || path == "-" {
					continue
				}
				err = safely(func() error {
					return l.List(ctx, f, func(obj source.Object) error {
						if !obj.Layout() || obj.Account != account || streamKey(obj.Place) != key {
							return nil
						}
						fut := make(chan fileResult, 1)
						select {
						case futures <- fut:
						case <-ctx.Done():
							return ctx.Err()
						}
						s.o.Progress.ListedFiles.Add(1)
						s.o.Progress.ListedBytes.Add(max(0, obj.Size))
						go func() {
							s.reads <- struct{}{}
							defer func() { <-s.reads }()
							fut <- s.rd.read(ctx, obj, w, true)
						}()
						return nil
					})
				})
				if err != nil && ctx.Err() == nil {
					s.fail(path, err)
				}
			}
		}()
		var batch []tagged
		var batchTime time.Time
		lake := false
		for fut := range futures {
			res := <-fut
			obs := s.again2(account, res)
			if lake && res.obj.Lake && res.obj.Time.Equal(batchTime) {
				batch = append(batch, obs...)
				continue
			}
			if batch != nil && !yield(batch) {
				return
			}
			batch, batchTime, lake = obs, res.obj.Time, res.obj.Lake
			if batch == nil {
				batch = []tagged{}
			}
		}
		if batch != nil {
			yield(batch)
		}
	}
}

// fileStream yields a file outside any layout, read again: the
// account's events of it, as one batch.
func (s *scanner) fileStream(ctx context.Context, account string, obj source.Object, w detect.Watch) func(yield func([]tagged) bool) {
	return func(yield func([]tagged) bool) {
		res := s.rd.read(ctx, obj, w, true)
		yield(s.again2(account, res))
	}
}

// again2 counts a file read a second time and keeps the account's
// events.
func (s *scanner) again2(account string, res fileResult) []tagged {
	s.o.Progress.Files.Add(1)
	s.mu.Lock()
	s.sum.Reread++
	s.sum.RereadBytes += res.stored
	s.mu.Unlock()
	if res.err != nil && ctx2err(res.err) {
		s.fail(res.obj.Name, res.err)
	}
	var out []tagged
	for _, o := range res.obs {
		if a, ok := s.take(res.obj.Place, o); ok && a == account {
			out = append(out, tagged{o, res.obj.Place})
		}
	}
	return out
}

func ctx2err(err error) bool { return err != context.Canceled && err != context.DeadlineExceeded }

package scan

import (
	"context"
	"sync"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
)

// A job is one file to read. Files of the layout are read ahead of the
// merge in the order the merge will want them (account by account, each
// account's files by their stamps); the merge waits only for a file it
// needs that is not read yet, which it then asks for first.
type job struct {
	obj  source.Object
	file int      // its place in the scan's list of objects, by name
	acct *account // nil: a file read whole before the merge (see index.go)
	// done is closed once res is set, at the latest when a reader would
	// wait (see wakeEvery).
	done    chan struct{}
	res     *decoded
	state   int // queued, started, finished (under sched.mu)
	demand  bool
	counted bool // holds a place in the look-ahead
}

const (
	queued = iota
	started
	finished
)

// sched hands jobs to the workers: asked-for ones first, then the next in
// order while the look-ahead has room (files read and not yet given by
// the merge, and bytes of text held).
type sched struct {
	mu         sync.Mutex
	cond       *sync.Cond
	demanded   []*job
	order      []*job
	next       int
	ahead      int
	aheadBytes int64
	maxAhead   int
	maxBytes   int64
	stopped    bool
	unwoken    []*job // finished, done not closed yet
}

// wakeEvery is how many files the readers finish before they wake the
// merge waiting for the first of them. Waking a goroutine whose thread
// sleeps is a system call on the reader's time (a futex: about 25 µs a
// file on a 2-vCPU VM, a CPU profile of the worst case on one worker),
// and the merge, faster than the reading, slept for every file. A file
// the merge asked for is woken for at once; all are before a reader
// waits, so the merge never waits for a file a reader would not read.
const wakeEvery = 4

func newSched(maxAhead int, maxBytes int64) *sched {
	s := &sched{maxAhead: maxAhead, maxBytes: maxBytes}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// add appends jobs to the read-ahead order.
func (s *sched) add(jobs ...*job) {
	s.mu.Lock()
	s.order = append(s.order, jobs...)
	s.mu.Unlock()
	s.cond.Broadcast()
}

// take blocks until there is a job to run, or returns nil once stopped.
func (s *sched) take() *job {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.stopped {
			s.wake()
			return nil
		}
		for len(s.demanded) > 0 {
			j := s.demanded[0]
			s.demanded = s.demanded[1:]
			if j.state == queued {
				return s.start(j)
			}
		}
		for s.next < len(s.order) && s.order[s.next].state != queued {
			s.next++
		}
		if s.next < len(s.order) && s.ahead < s.maxAhead && s.aheadBytes < s.maxBytes {
			j := s.order[s.next]
			s.next++
			return s.start(j)
		}
		s.wake()
		s.cond.Wait()
	}
}

// wake closes the done of the jobs finished since the last wake (under mu).
func (s *sched) wake() {
	for _, j := range s.unwoken {
		close(j.done)
	}
	s.unwoken = s.unwoken[:0]
}

func (s *sched) start(j *job) *job {
	j.state = started
	if j.acct != nil {
		j.counted = true
		s.ahead++
	}
	return j
}

// finish records a job's result and wakes whoever waits for it.
func (s *sched) finish(j *job, d *decoded) {
	s.mu.Lock()
	j.res, j.state = d, finished
	if d != nil {
		s.aheadBytes += int64(cap(d.text))
	}
	s.unwoken = append(s.unwoken, j)
	if j.demand || len(s.unwoken) >= wakeEvery {
		s.wake()
	}
	s.mu.Unlock()
	s.cond.Broadcast()
}

// need returns the job's result, asking for it first if it was not
// started; nil when the scan was stopped before it was read.
func (s *sched) need(ctx context.Context, j *job) *decoded {
	s.mu.Lock()
	if j.state == finished {
		s.mu.Unlock()
		return j.res
	}
	if j.state == queued && !j.demand {
		if ctx.Err() != nil {
			s.mu.Unlock()
			return nil
		}
		j.demand = true
		s.demanded = append(s.demanded, j)
		s.cond.Broadcast()
	}
	s.mu.Unlock()
	select {
	case <-j.done:
		return j.res
	case <-ctx.Done():
		// A file being read still finishes (its reader sees ctx too).
		<-j.done
		return j.res
	}
}

// given frees the job's place in the look-ahead: the merge has given its
// events (its text may still be held, counted by bytes until freed).
func (s *sched) given(j *job) {
	s.mu.Lock()
	if j.counted {
		j.counted = false
		s.ahead--
	}
	s.mu.Unlock()
	s.cond.Broadcast()
}

// freed counts text no longer held.
func (s *sched) freed(n int) {
	s.mu.Lock()
	s.aheadBytes -= int64(n)
	s.mu.Unlock()
	s.cond.Broadcast()
}

func (s *sched) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.cond.Broadcast()
}

package scan

import (
	"context"
	"runtime"
	"testing"
	"time"
)

func closed(j *job) bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// The merge is woken for the files the readers finish a few at a time:
// not for each (a system call on the reader's time), but never later than
// when a reader would wait, and at once for a file it asked for.
func TestSchedWakesTheMergeInBatches(t *testing.T) {
	s := newSched(32, 1<<30)
	a := &account{}
	jobs := make([]*job, 2*wakeEvery+2)
	for i := range jobs {
		jobs[i] = &job{acct: a, done: make(chan struct{})}
	}
	s.add(jobs...)
	// The first wakeEvery-1 files finished: the merge sleeps on.
	for i := range wakeEvery - 1 {
		s.finish(s.take(), &decoded{})
		if closed(jobs[i]) {
			t.Fatalf("file %d woken alone", i)
		}
	}
	// But asking for one of them finds it read, without waiting.
	if d := s.need(context.Background(), jobs[0]); d == nil {
		t.Fatal("need gave nothing for a finished file")
	}
	// The wakeEvery-th wakes them all.
	s.finish(s.take(), &decoded{})
	for i := range wakeEvery {
		if !closed(jobs[i]) {
			t.Fatalf("file %d not woken after %d", i, wakeEvery)
		}
	}
	// A file the merge asks for, not read yet, is read next and woken for
	// at once.
	last := jobs[len(jobs)-1]
	got := make(chan *decoded)
	go func() { got <- s.need(context.Background(), last) }()
	for asked := false; !asked; runtime.Gosched() {
		s.mu.Lock()
		asked = last.demand
		s.mu.Unlock()
	}
	if j := s.take(); j != last {
		t.Fatal("the file asked for is not read first")
	}
	s.finish(last, &decoded{})
	if !closed(last) {
		t.Fatal("a file asked for was not woken for at once")
	}
	<-got
	// A reader that would wait wakes the merge for what it finished:
	// the files left are read, the last of them not woken for yet.
	for range len(jobs) - wakeEvery - 1 {
		s.finish(s.take(), &decoded{})
	}
	if n := len(s.unwoken); n == 0 {
		t.Fatalf("every file woken for: nothing left to test")
	}
	waiting := make(chan *job)
	go func() { waiting <- s.take() }()
	deadline := time.After(time.Minute) // liveness only: the take must block, then wake
	for _, j := range jobs {
		if j.state != finished {
			continue
		}
		select {
		case <-j.done:
		case <-deadline:
			t.Fatal("a reader with nothing to read did not wake the merge")
		}
	}
	s.stop()
	if j := <-waiting; j != nil {
		t.Fatalf("take after stop gave a job")
	}
}

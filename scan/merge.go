package scan

import (
	"container/heap"
	"fmt"
	"iter"
	"slices"
)

// A stream is one account's files that are written in time order (a
// region of its CloudTrail), as batches (a file each, or a Security Lake
// partition). It holds two batches at a time, the current one and the
// next, and gives their events in time order: an event AWS wrote into
// the next file, earlier than the current file's last, still comes in
// order. Only what the prefilter let through is held, never a file's
// text. An event out of order by more than that comes late (the engine
// takes it, and the summary counts it).
type stream struct {
	next   func() ([]tagged, bool)
	stop   func()
	buf    []item
	cur    int // the batch being given
	loaded int // the last batch pulled
	left   int // events of batch cur not given yet
	ended  bool
}

type item struct {
	tagged
	batch int
}

func newStream(seq iter.Seq[[]tagged]) *stream {
	next, stop := iter.Pull(seq)
	s := &stream{next: next, stop: stop, loaded: -1}
	s.load()
	s.left = len(s.buf)
	s.load()
	s.advance()
	return s
}

// load pulls the next batch and merges it in.
func (s *stream) load() {
	b, ok := s.next()
	if !ok {
		s.ended = true
		return
	}
	s.loaded++
	slices.SortStableFunc(b, func(x, y tagged) int { return x.Time.Compare(y.Time) })
	merged := make([]item, 0, len(s.buf)+len(b))
	i := 0
	for _, t := range b {
		for i < len(s.buf) && !s.buf[i].Time.After(t.Time) {
			merged = append(merged, s.buf[i])
			i++
		}
		merged = append(merged, item{t, s.loaded})
	}
	s.buf = append(merged, s.buf[i:]...)
}

// advance moves on to the next batch once the current one is given.
func (s *stream) advance() {
	for s.left == 0 && s.cur < s.loaded {
		s.cur++
		for _, it := range s.buf {
			if it.batch == s.cur {
				s.left++
			}
		}
		if !s.ended {
			s.load()
		}
	}
}

func (s *stream) pop() tagged {
	it := s.buf[0]
	s.buf = s.buf[1:]
	if it.batch == s.cur {
		s.left--
	}
	s.advance()
	return it.tagged
}

// streams is a heap of the streams by their next event's time: the k-way
// merge.
type streams []*stream

func (h streams) Len() int           { return len(h) }
func (h streams) Less(i, j int) bool { return h[i].buf[0].Time.Before(h[j].buf[0].Time) }
func (h streams) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *streams) Push(x any)        { *h = append(*h, x.(*stream)) }
func (h *streams) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}

// merge gives the events of all the streams in time order.
func merge(all []*stream) func() (tagged, bool) {
	var h streams
	for _, s := range all {
		if len(s.buf) > 0 {
			h = append(h, s)
		}
	}
	heap.Init(&h)
	return func() (tagged, bool) {
		if len(h) == 0 {
			return tagged{}, false
		}
		s := h[0]
		t := s.pop()
		if len(s.buf) == 0 {
			heap.Pop(&h)
		} else {
			heap.Fix(&h, 0)
		}
		return t, true
	}
}

// safely runs fn, turning a panic into an error: nothing the scan starts
// may take the process down.
func safely(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error (please report it): %v", p)
		}
	}()
	return fn()
}

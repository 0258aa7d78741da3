// Package dedup remembers which alerts were delivered, within a fixed
// budget, so a chunk Fluent Bit re-delivers after a RETRY (or an event seen
// twice) does not raise the same alert twice.
package dedup

import "sync"

// Set is a bounded set of keys: when full, adding a key forgets the oldest.
// It is safe for concurrent use.
type Set struct {
	mu   sync.Mutex
	keys map[string]struct{}
	ring []string // insertion order, for eviction
	next int
}

// New returns a Set that holds at most size keys.
func New(size int) *Set {
	if size < 1 {
		size = 1
	}
	return &Set{keys: make(map[string]struct{}, size), ring: make([]string, size)}
}

// Has reports whether key was added and not yet forgotten.
func (s *Set) Has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.keys[key]
	return ok
}

// Add remembers key.
func (s *Set) Add(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[key]; ok {
		return
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.keys, old)
	}
	s.ring[s.next] = key
	s.next = (s.next + 1) % len(s.ring)
	s.keys[key] = struct{}{}
}

// Len is the number of keys held.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

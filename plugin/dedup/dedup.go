// Package dedup remembers, in memory, which alerts were delivered, within
// a fixed budget of keys and of age, so a chunk Fluent Bit re-delivers
// after a RETRY (or an event seen twice) does not raise the same alert
// twice. With State_Dir the state store keeps these keys instead.
package dedup

import (
	"sync"
	"time"
)

// Set is a bounded set of keys: when full, adding a key forgets the
// oldest; a key older than the TTL is forgotten too. It is safe for
// concurrent use.
type Set struct {
	mu   sync.Mutex
	ttl  time.Duration
	now  func() time.Time
	keys map[string]time.Time
	ring []string // insertion order, for eviction
	next int
}

// New returns a Set that holds at most size keys, each for at most ttl.
func New(size int, ttl time.Duration) *Set {
	if size < 1 {
		size = 1
	}
	return &Set{ttl: ttl, now: time.Now, keys: make(map[string]time.Time, min(size, 1<<16)), ring: make([]string, size)}
}

// Has reports whether key was added and not yet forgotten.
func (s *Set) Has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	added, ok := s.keys[key]
	return ok && s.now().Sub(added) < s.ttl
}

// Add remembers key.
func (s *Set) Add(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[key]; ok {
		s.keys[key] = s.now()
		return
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.keys, old)
	}
	s.ring[s.next] = key
	s.next = (s.next + 1) % len(s.ring)
	s.keys[key] = s.now()
}

// Len is the number of keys held.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

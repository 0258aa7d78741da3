package dedup

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestBoundedFIFO(t *testing.T) {
	s := New(3, time.Hour)
	for i := range 5 {
		s.Add(strconv.Itoa(i))
	}
	s.Add("4") // already there: no eviction
	if s.Len() != 3 || s.Has("0") || s.Has("1") || !s.Has("2") || !s.Has("4") {
		t.Fatalf("len %d, has0 %v has2 %v", s.Len(), s.Has("0"), s.Has("2"))
	}
}

func TestConcurrent(t *testing.T) {
	s := New(1000, time.Hour)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				k := strconv.Itoa(g*500 + i)
				s.Add(k)
				s.Has(k)
			}
		})
	}
	wg.Wait()
	if s.Len() != 1000 {
		t.Fatalf("len %d", s.Len())
	}
}

func TestKeysExpire(t *testing.T) {
	now := time.Unix(0, 0)
	s := New(10, time.Hour)
	s.now = func() time.Time { return now }
	s.Add("a")
	now = now.Add(59 * time.Minute)
	if !s.Has("a") {
		t.Fatal("forgotten before its TTL")
	}
	now = now.Add(time.Minute)
	if s.Has("a") {
		t.Fatal("remembered past its TTL")
	}
}

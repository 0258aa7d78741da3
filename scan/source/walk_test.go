package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// A local listing reads directories several at once and finds what the
// one-at-a-time walk did: every log file of the accounts the filter
// takes, in any order, but not digests, dot files and directories, or
// what a symbolic link points to.
func TestLocalListing(t *testing.T) {
	root := t.TempDir()
	var want []string
	put := func(rel string, listed bool) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
		if listed {
			want = append(want, p)
		}
	}
	for _, account := range []string{"111122223333", "444455556666"} {
		for _, region := range []string{"us-east-1", "eu-west-1", "ap-southeast-2"} {
			for day := 20; day <= 22; day++ {
				for h := range 3 {
					name := fmt.Sprintf("%s_CloudTrail_%s_202611%02dT%02d00Z_x.json.gz", account, region, day, h)
					put(filepath.Join("AWSLogs", account, "CloudTrail", region, "2026", "11", fmt.Sprint(day), name), account == "111122223333")
				}
			}
			put(filepath.Join("AWSLogs", account, "CloudTrail-Digest", region, "2026", "11", "20", "digest.json.gz"), false)
		}
	}
	put("exports/events.jsonl", true)
	put("exports/.partial.jsonl", false)
	put(".cache/events.jsonl", false)
	if err := os.Symlink(filepath.Join(root, "exports"), filepath.Join(root, "linked")); err != nil {
		t.Fatal(err)
	}
	l, _ := ForPath(root, nil, 0)
	f := Filter{Accounts: map[string]bool{"111122223333": true}}
	var got []string
	var emitting atomic.Bool
	err := l.List(context.Background(), &f, func(o Object) error {
		if !emitting.CompareAndSwap(false, true) {
			t.Error("emit called from two goroutines at once")
		}
		defer emitting.Store(false)
		got = append(got, o.Name)
		if o.Size != 2 {
			t.Errorf("%s: size %d", o.Name, o.Size)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("listed %d files:\n%q\nwant %d:\n%q", len(got), got, len(want), want)
	}
}

// walkTree lists at most n nodes at once, and the first error stops it
// and is what it returns.
func TestWalkTree(t *testing.T) {
	var active, most atomic.Int32
	boom := errors.New("boom")
	for _, failAt := range []string{"", "r/2/1"} {
		var seen atomic.Int32
		level := func(ctx context.Context, node string, emit func(Object) error) ([]string, error) {
			n := active.Add(1)
			defer active.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			if node == failAt {
				return nil, boom
			}
			seen.Add(1)
			if strings.Count(node, "/") == 3 { // three levels down: a leaf
				return nil, emit(Object{Name: node})
			}
			var subs []string
			for i := range 4 {
				subs = append(subs, fmt.Sprintf("%s/%d", node, i))
			}
			return subs, nil
		}
		var leaves []string
		err := walkTree(context.Background(), "r", 3, level, func(o Object) error {
			leaves = append(leaves, o.Name)
			return nil
		})
		if failAt == "" {
			if err != nil || len(leaves) != 64 || seen.Load() != 1+4+16+64 {
				t.Errorf("%v, %d leaves, %d nodes", err, len(leaves), seen.Load())
			}
		} else if !errors.Is(err, boom) {
			t.Errorf("failing at %s: %v", failAt, err)
		}
	}
	if m := most.Load(); m > 3 {
		t.Errorf("%d nodes listed at once, at most 3 allowed", m)
	}
}

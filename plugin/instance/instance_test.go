package instance

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/config"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/logx"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/state"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/logbuf"
)

// flaky fails while down, counts its calls and records what it delivered.
type flaky struct {
	mu       sync.Mutex
	down     bool
	panicOne bool // the next call panics
	calls    int
	got      []string
	// block makes Deliver wait for its context; deadline is the last
	// call's, blocked is how many calls are waiting.
	block    bool
	blocked  int
	deadline time.Time
}

func (f *flaky) Batches(as []sink.Alert) [][]sink.Alert { return [][]sink.Alert{as} }

func (f *flaky) Deliver(ctx context.Context, as []sink.Alert) error {
	f.mu.Lock()
	f.calls++
	if f.panicOne {
		f.panicOne = false
		f.mu.Unlock()
		panic("sink bug")
	}
	f.deadline, _ = ctx.Deadline()
	if f.block {
		f.blocked++
		f.mu.Unlock()
		<-ctx.Done()
		f.set(func(f *flaky) { f.blocked-- })
		return ctx.Err()
	}
	defer f.mu.Unlock()
	if f.down {
		return errors.New("receiver down")
	}
	for _, a := range as {
		f.got = append(f.got, a.Key)
	}
	return nil
}

func (f *flaky) Close() error { return nil }

func (f *flaky) Fits(sink.Alert) bool { return true }

func (f *flaky) Encoding() sink.Encoding { return sink.Msgpack }

func (f *flaky) state() (calls int, got []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, slices.Clone(f.got)
}

func (f *flaky) set(fn func(*flaky)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

type getter map[string]string

func (g getter) Get(k string) string { return g[k] }

// newInstance builds an instance whose sink is s; keys configure it.
func newInstance(t testing.TB, s sink.Sink, keys ...string) (*Instance, *logbuf.Buffer) {
	return namedInstance(t, "test", s, keys...)
}

// namedInstance builds an instance called name whose sink is s.
func namedInstance(t testing.TB, name string, s sink.Sink, keys ...string) (*Instance, *logbuf.Buffer) {
	t.Helper()
	g := getter{}
	for i := 0; i+1 < len(keys); i += 2 {
		g[keys[i]] = keys[i+1]
	}
	cfg, err := config.Load(g)
	if err != nil {
		t.Fatal(err)
	}
	log := &logbuf.Buffer{}
	in, err := New(name, cfg, logx.NewTo(log, name))
	if err != nil {
		t.Fatal(err)
	}
	in.sink.Close()
	in.sink = s
	return in, log
}

func positives(t testing.TB) []byte {
	var bodies []any
	for _, name := range []string{"attach_user_v2", "attach_group_v3", "put_user_legacy_inline"} {
		bodies = append(bodies, corpus.Fixture(t, "aws.iam.quarantine_applied", "positive", name))
	}
	return fbchunk.FromValues(time.Unix(0, 0), bodies)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRetryThenDeliverOnce(t *testing.T) {
	f := &flaky{down: true}
	in, _ := newInstance(t, f)
	defer in.Close()
	chunk := positives(t)
	if r := in.Flush(chunk, "cloudtrail"); r != Retry {
		t.Fatalf("sink down: %v, want Retry", r)
	}
	f.set(func(f *flaky) { f.down = false })
	if r := in.Flush(chunk, "cloudtrail"); r != OK {
		t.Fatalf("sink up: %v", r)
	}
	if r := in.Flush(chunk, "cloudtrail"); r != OK {
		t.Fatalf("re-delivered: %v", r)
	}
	if _, got := f.state(); len(got) != 3 {
		t.Fatalf("delivered %v", got)
	}
	if in.Counters.Duplicates.Load() != 3 || in.Counters.Retries.Load() != 1 || in.Counters.Delivered.Load() != 3 {
		t.Fatal(in.Counters.Summary())
	}
}

func TestConcurrentFlushesDeliverOnce(t *testing.T) {
	f := &flaky{}
	in, _ := newInstance(t, f)
	defer in.Close()
	chunk := positives(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { in.Flush(chunk, "cloudtrail") })
	}
	wg.Wait()
	if _, got := f.state(); len(got) != 3 {
		t.Fatalf("delivered %d alerts, want 3", len(got))
	}
}

// With State_Dir the flush stores and returns OK; the sender delivers,
// also what a receiver that was down could not take, and the same chunk
// again (Fluent Bit re-delivering it, a re-read file) adds nothing.
func TestStoreThenSend(t *testing.T) {
	f := &flaky{down: true}
	dir := t.TempDir()
	in, _ := newInstance(t, f, "State_Dir", dir)
	chunk := positives(t)
	for range 3 {
		if r := in.Flush(chunk, "cloudtrail"); r != OK {
			t.Fatalf("flush with a store: %v", r)
		}
	}
	f.set(func(f *flaky) { f.down = false })
	waitFor(t, "the sender", func() bool { _, got := f.state(); return len(got) == 3 })
	if in.Counters.Queued.Load() != 3 || in.Counters.Duplicates.Load() != 6 {
		t.Fatal(in.Counters.Summary())
	}
	in.Close()

	// After a restart the delivered keys are still known.
	in2, _ := newInstance(t, f, "State_Dir", dir)
	defer in2.Close()
	in2.Flush(chunk, "cloudtrail")
	if _, got := f.state(); len(got) != 3 || in2.Counters.Duplicates.Load() != 3 {
		t.Fatalf("after a restart: delivered %v; %s", got, in2.Counters.Summary())
	}
}

// A receiver that is down is retried with backoff, not in a loop: over a
// second the sender tries a handful of times.
func TestNoHotLoopWhileDown(t *testing.T) {
	f := &flaky{down: true}
	in, _ := newInstance(t, f, "State_Dir", t.TempDir())
	in.Flush(positives(t), "cloudtrail")
	time.Sleep(time.Second)
	calls, _ := f.state()
	in.Close()
	if calls < 1 || calls > 8 {
		t.Fatalf("%d delivery attempts in a second against a receiver that is down", calls)
	}
}

// The store cannot record a delivery (the disk refuses writes): the sender
// sends nothing more until it can, the flush asks for a retry, and once
// the disk takes writes again the delivery is recorded and every alert was
// delivered once: the batch whose delivery could not be recorded is not
// sent again while the process lives.
func TestStoreWriteErrors(t *testing.T) {
	f := &flaky{}
	dir := t.TempDir()
	in, log := newInstance(t, f, "State_Dir", dir)
	db := filepath.Join(dir, state.FileName)
	immutable := func(on bool) {
		flag := map[bool]string{true: "+i", false: "-i"}[on]
		if out, err := exec.Command("chattr", flag, db).CombinedOutput(); err != nil {
			t.Fatalf("chattr %s (needs root on ext4, xfs or tmpfs): %v %s", flag, err, out)
		}
	}
	f.set(func(f *flaky) { f.down = true })
	if r := in.Flush(positives(t), "cloudtrail"); r != OK {
		t.Fatalf("flush: %v", r)
	}
	immutable(true)
	defer exec.Command("chattr", "-i", db).Run()
	f.set(func(f *flaky) { f.down = false })
	waitFor(t, "a delivery the store cannot record", func() bool { _, got := f.state(); return len(got) >= 3 })
	if r := in.Flush(fbchunk.FromValues(time.Unix(0, 0), []any{corpus.Fixture(t, "aws.iam.quarantine_removed", "positive", "detach_user_v2")}), "cloudtrail"); r != Retry {
		t.Fatalf("flush while the store refuses writes: %v, want Retry", r)
	}
	time.Sleep(time.Second)
	calls, _ := f.state()
	if calls > 8 {
		t.Fatalf("%d delivery attempts in a second while the store refuses writes", calls)
	}
	immutable(false)
	waitFor(t, "the recorded delivery", func() bool { n, _, _ := in.store.Pending(); return n == 0 })
	in.Close()
	_, got := f.state()
	if len(got) != 3 {
		t.Fatalf("delivered %v: the batch whose delivery was not recorded was sent again", got)
	}
	if !strings.Contains(log.String(), "operation not permitted") || !strings.Contains(log.String(), "which are not sent again meanwhile") {
		t.Errorf("the write error was not logged:\n%s", log)
	}
}

// A panic in the sender is logged, counted, and the sender starts again.
func TestSenderSurvivesAPanic(t *testing.T) {
	f := &flaky{panicOne: true}
	in, log := newInstance(t, f, "State_Dir", t.TempDir())
	defer in.Close()
	in.Flush(positives(t), "cloudtrail")
	waitFor(t, "delivery after the panic", func() bool { _, got := f.state(); return len(got) == 3 })
	if in.Counters.Panics.Load() != 1 || !strings.Contains(log.String(), "panic in the alert sender (bug, please report), restarting it: sink bug") {
		t.Fatalf("panics=%d\n%s", in.Counters.Panics.Load(), log)
	}
}

// Exit does not wait on a receiver longer than ExitBudget: with no
// delivery in flight, the one it tries gets a deadline within it, and
// what is not delivered stays stored.
func TestExitIsBounded(t *testing.T) {
	f := &flaky{down: true}
	dir := t.TempDir()
	in, log := newInstance(t, f, "State_Dir", dir, "Forward_Timeout", "1h")
	in.Flush(positives(t), "cloudtrail")
	waitFor(t, "a failed delivery", func() bool { calls, _ := f.state(); return calls > 0 })
	start := time.Now()
	in.Close()
	f.mu.Lock()
	deadline := f.deadline // the drain's: the sender had stopped
	f.mu.Unlock()
	// Close takes its own start a moment after ours.
	if deadline.IsZero() || deadline.After(start.Add(ExitBudget+100*time.Millisecond)) {
		t.Fatalf("the exit's delivery had deadline %v, want one within %v of %v", deadline, ExitBudget, start)
	}
	expectStored(t, dir, log.String(), 3)
}

// A delivery in flight when the exit starts (a receiver that takes the
// batch and never answers, Forward_Timeout 1h) is cut when the budget runs
// out, and its alerts stay stored.
func TestExitCutsADeliveryInFlight(t *testing.T) {
	f := &flaky{block: true}
	dir := t.TempDir()
	in, log := newInstance(t, f, "State_Dir", dir, "Forward_Timeout", "1h")
	in.Flush(positives(t), "cloudtrail")
	waitFor(t, "the sender's delivery in flight", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.blocked == 1
	})
	in.Close() // returns: the test would time out otherwise
	f.mu.Lock()
	blocked := f.blocked
	f.mu.Unlock()
	if blocked != 0 {
		t.Fatalf("%d deliveries still waiting after Close", blocked)
	}
	expectStored(t, dir, log.String(), 3)
}

func expectStored(t *testing.T, dir, log string, want int) {
	t.Helper()
	if !strings.Contains(log, fmt.Sprintf("%d alert(s) stay in", want)) {
		t.Fatalf("log:\n%s", log)
	}
	s, _, err := state.Open(state.Options{Dir: dir, MaxQueueBytes: 1 << 20, DedupMax: 10, DedupTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, _, _ := s.Pending(); n != want {
		t.Fatalf("%d alerts kept for the next start, want %d", n, want)
	}
}

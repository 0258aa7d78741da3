package instance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/state"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
)

// choosy is a receiver that refuses, as a whole (an HTTP 400), every
// batch that holds an alert of a refused event id, or every batch; it
// takes alerts up to max bytes (Fits), and keeps what it got.
type choosy struct {
	mu      sync.Mutex
	refuse  map[string]bool // event ids
	all     bool
	max     int
	calls   int
	got     []string // event ids
	docs    []map[string]any
	refusal string
}

func (c *choosy) Encoding() sink.Encoding { return sink.Msgpack }
func (c *choosy) Close() error            { return nil }
func (c *choosy) Batches(as []sink.Alert) [][]sink.Alert {
	limit := c.max
	if limit == 0 {
		limit = 1 << 30
	}
	return sink.Cut(as, limit, func(a sink.Alert) int { return len(a.Doc) })
}
func (c *choosy) Fits(a sink.Alert) bool { return c.max == 0 || len(a.Doc) <= c.max }

func (c *choosy) Deliver(_ context.Context, as []sink.Alert) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if len(as) == 1 && !c.Fits(as[0]) {
		return &sink.RefusedError{Final: true, Reason: fmt.Sprintf("%d bytes, too big", len(as[0].Doc))}
	}
	var docs []map[string]any
	for _, a := range as {
		v, err := value.FromMsgpack(a.Doc)
		if err != nil {
			return err
		}
		doc := v.(map[string]any)
		if c.all || c.refuse[doc["event_id"].(string)] {
			return &sink.RefusedError{Reason: "400 Bad Request: " + c.refusal}
		}
		docs = append(docs, doc)
	}
	for _, d := range docs {
		c.got = append(c.got, d["event_id"].(string))
	}
	c.docs = append(c.docs, docs...)
	return nil
}

func (c *choosy) state() (calls int, got []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls, append([]string(nil), c.got...)
}

// applied is one chunk of n quarantine events, with event ids prefix-i.
func applied(t testing.TB, prefix string, n int) []byte {
	base := corpus.Fixture(t, "aws.iam.quarantine_applied", "positive", "attach_user_v2")
	var bodies []any
	for i := range n {
		ev := map[string]any{}
		for k, v := range base {
			ev[k] = v
		}
		ev["eventID"] = fmt.Sprintf("%s-%d", prefix, i)
		bodies = append(bodies, ev)
	}
	return fbchunk.FromValues(time.Unix(0, 0), bodies)
}

// One alert the receiver refuses for good, among others it takes: the
// others are delivered at once, the refused one is set aside after
// poisonStrikes refusals, logged once with its key, counted, and kept in
// the store's dead letters; the queue is then empty.
func TestPoisonAlertIsSetAside(t *testing.T) {
	c := &choosy{refuse: map[string]bool{"p-2": true}, refusal: "mapper_parsing_exception"}
	dir := t.TempDir()
	in, log := newInstance(t, c, "State_Dir", dir)
	if r := in.Flush(applied(t, "p", 5), "cloudtrail"); r != OK {
		t.Fatalf("flush: %v", r)
	}
	waitFor(t, "the refused alert set aside", func() bool { return in.Counters.DeadLetter.Load() == 1 })
	if _, got := c.state(); len(got) != 4 || strings.Contains(strings.Join(got, ","), "p-2") {
		t.Fatalf("delivered %v", got)
	}
	if n, _, _ := in.store.Pending(); n != 0 {
		t.Fatalf("%d alerts still queued", n)
	}
	// More alerts go straight through.
	in.Flush(applied(t, "q", 2), "cloudtrail")
	waitFor(t, "later alerts", func() bool { _, got := c.state(); return len(got) == 6 })
	in.Close()
	if n := strings.Count(log.String(), "set aside alert aws.iam.quarantine_applied/p-2, which the receiver refuses for good: 400 Bad Request: mapper_parsing_exception"); n != 1 {
		t.Fatalf("logged %d times:\n%s", n, log)
	}
	if !strings.Contains(log.String(), " dead_letter=1 ") {
		t.Fatalf("exit line:\n%s", log)
	}
	s, _, err := state.Open(state.Options{Dir: dir, MaxQueueBytes: 1 << 20, DedupMax: 10, DedupTTL: time.Hour, DeadLetterTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var dead []state.Dead
	s.EachDeadLetter(func(d state.Dead) error { dead = append(dead, d); return nil })
	if len(dead) != 1 || dead[0].Key != "aws.iam.quarantine_applied/p-2" || !strings.Contains(dead[0].Reason, "mapper_parsing_exception") {
		t.Fatalf("dead letters %+v", dead)
	}
}

// A receiver that refuses everything (a closed index answers 400 to every
// alert) is down, not poisoned: nothing is set aside, the alerts wait,
// and once it takes alerts again they all arrive.
func TestRefusingEverythingSetsNothingAside(t *testing.T) {
	c := &choosy{all: true}
	in, _ := newInstance(t, c, "State_Dir", t.TempDir())
	defer in.Close()
	in.Flush(applied(t, "r", 3), "cloudtrail")
	waitFor(t, "several rounds", func() bool { calls, _ := c.state(); return calls >= 2*poisonStrikes })
	if n, _, _ := in.store.Pending(); n != 3 || in.Counters.DeadLetter.Load() != 0 {
		t.Fatalf("%d pending, %d set aside", n, in.Counters.DeadLetter.Load())
	}
	c.mu.Lock()
	c.all = false
	c.mu.Unlock()
	in.nudge()
	waitFor(t, "delivery once the receiver takes alerts", func() bool { _, got := c.state(); return len(got) == 3 })
}

// An alert too big for its receiver is sent without its original event,
// marked event_truncated; one too big even so is set aside at once,
// without a try.
func TestTooBigAlertIsCutThenSetAside(t *testing.T) {
	small := corpus.Fixture(t, "aws.iam.quarantine_applied", "positive", "attach_user_v2")
	big := map[string]any{}
	for k, v := range small {
		big[k] = v
	}
	big["eventID"] = "big-event"
	big["padding"] = strings.Repeat("x", 20000)
	huge := map[string]any{}
	for k, v := range small {
		huge[k] = v
	}
	huge["eventID"] = "huge-fields"
	// Fields of its own past what the receiver takes, even cut to their
	// bounds (a user agent to 4 KiB, an error message to 8 KiB): with an
	// error message, the quarantine is one that failed.
	huge["userAgent"] = strings.Repeat("y", 20000)
	huge["errorMessage"] = strings.Repeat("z", 20000)
	c := &choosy{max: 8000}
	in, log := newInstance(t, c, "State_Dir", t.TempDir())
	in.Flush(fbchunk.FromValues(time.Unix(0, 0), []any{small, big, huge}), "cloudtrail")
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if _, got := c.state(); len(got) == 2 && in.Counters.DeadLetter.Load() == 1 {
			break
		}
	}
	calls, _ := c.state()
	in.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.docs {
		cut := d["event_id"] == "big-event"
		if (d["event_truncated"] == true) != cut || (d["event"] == nil) != cut {
			t.Errorf("%s: event_truncated %v, event present %v", d["event_id"], d["event_truncated"], d["event"] != nil)
		}
	}
	if calls > 2 || !strings.Contains(log.String(), "set aside alert aws.iam.quarantine_attempt_failed/huge-fields") ||
		!strings.Contains(log.String(), "it is sent without its original event (event_truncated)") {
		t.Fatalf("%d calls\n%s", calls, log)
	}
}

// Without State_Dir a refused alert makes the flush ask for a retry until
// its strikes are up, while the others are delivered once; then it is
// dropped, logged and counted, and the chunk is done.
func TestPoisonAlertWithoutAStore(t *testing.T) {
	c := &choosy{refuse: map[string]bool{"n-1": true}}
	in, log := newInstance(t, c)
	defer in.Close()
	chunk := applied(t, "n", 3)
	var results []Result
	for range poisonStrikes {
		results = append(results, in.Flush(chunk, "cloudtrail"))
	}
	want := []Result{Retry, Retry, OK}
	if fmt.Sprint(results) != fmt.Sprint(want) {
		t.Fatalf("flush results %v, want %v", results, want)
	}
	if _, got := c.state(); len(got) != 2 || in.Counters.DeadLetter.Load() != 1 {
		t.Fatalf("delivered %v, dead_letter %d", got, in.Counters.DeadLetter.Load())
	}
	if r := in.Flush(chunk, "cloudtrail"); r != OK {
		t.Fatalf("the chunk again: %v", r)
	}
	if !strings.Contains(log.String(), "dropped alert aws.iam.quarantine_applied/n-1, which the receiver refuses for good") {
		t.Fatalf("log:\n%s", log)
	}
}

// A flush without State_Dir does not wait on its receiver past
// FlushBudget: it asks for a retry while the delivery goes on; the next
// flush waits for that delivery one more budget at most, and the ones
// after it not at all (at shutdown Fluent Bit retries a chunk again and
// again until its Grace is over); Close cuts the delivery.
func TestFlushWithoutAStoreIsBounded(t *testing.T) {
	f := &flaky{block: true}
	in, log := newInstance(t, f, "Forward_Timeout", "1h")
	if r := in.Flush(positives(t), "cloudtrail"); r != Retry {
		t.Fatalf("flush: %v", r)
	}
	f.mu.Lock()
	blocked := f.blocked
	f.mu.Unlock()
	if blocked != 1 {
		t.Fatalf("%d deliveries in flight after the flush returned, want the one it left", blocked)
	}
	for range 3 {
		if r := in.Flush(positives(t), "cloudtrail"); r != Retry {
			t.Fatalf("a retry: %v\n%s", r, log)
		}
	}
	if n := strings.Count(log.String(), "the receiver has not answered an earlier delivery yet"); n != 3 {
		t.Fatalf("%d retries turned back\n%s", n, log)
	}
	in.Close()
	f.mu.Lock()
	blocked = f.blocked
	f.mu.Unlock()
	if blocked != 0 || !strings.Contains(log.String(), "the receiver has not answered within 3s: asking Fluent Bit to retry the chunk") {
		t.Fatalf("%d deliveries still waiting after Close\n%s", blocked, log)
	}
}

// A delivery that outlives its flush's budget and then ends well: the
// retry of the chunk waits for it and finds its alerts delivered, so a
// slow receiver does not use up Fluent Bit's retries.
func TestSlowDeliveryServesTheRetry(t *testing.T) {
	g := &gate{release: make(chan struct{})}
	in, _ := newInstance(t, g, "Forward_Timeout", "1h")
	defer in.Close()
	chunk := positives(t)
	if r := in.Flush(chunk, "cloudtrail"); r != Retry {
		t.Fatalf("flush: %v", r)
	}
	retry := make(chan Result, 1)
	go func() { retry <- in.Flush(chunk, "cloudtrail") }()
	select {
	case r := <-retry:
		t.Fatalf("the retry did not wait for the delivery in flight: %v", r)
	case <-time.After(300 * time.Millisecond):
	}
	close(g.release) // the receiver answers
	if r := <-retry; r != OK || in.Counters.Delivered.Load() != 3 || in.Counters.Duplicates.Load() != 3 {
		t.Fatalf("the retry: %v; %s", r, in.Counters.Summary())
	}
}

// gate is a receiver that answers once released.
type gate struct{ release chan struct{} }

func (g *gate) Encoding() sink.Encoding                { return sink.Msgpack }
func (g *gate) Close() error                           { return nil }
func (g *gate) Fits(sink.Alert) bool                   { return true }
func (g *gate) Batches(as []sink.Alert) [][]sink.Alert { return [][]sink.Alert{as} }
func (g *gate) Deliver(ctx context.Context, _ []sink.Alert) error {
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// The sender waits at least what a receiver's Retry-After asks, up to a
// cap, and otherwise its backoff.
func TestRetryAfterIsHonoured(t *testing.T) {
	ra := &sink.RetryAfterError{Err: errors.New("429"), After: 40 * time.Second}
	for failures := 1; failures < 30; failures++ {
		if w := retryWait(failures, ra); w < 40*time.Second || w > backoffLimit+time.Millisecond {
			t.Fatalf("after %d failures with Retry-After 40s: wait %v", failures, w)
		}
		if w := retryWait(failures, errors.New("down")); w > backoffLimit+time.Millisecond {
			t.Fatalf("backoff %v", w)
		}
	}
	if w := retryWait(1, &sink.RetryAfterError{Err: errors.New("503"), After: 24 * time.Hour}); w != retryAfterLimit {
		t.Fatalf("a day's Retry-After: wait %v, want the cap %v", w, retryAfterLimit)
	}
}

// A chunk whose alerts are more than Queue_Max_Size is stored in parts:
// each retry of the chunk stores what the sender has made room for, the
// warning says how much was stored, and every alert arrives once.
func TestChunkBiggerThanTheQueue(t *testing.T) {
	c := &choosy{}
	in, log := newInstance(t, c, "State_Dir", t.TempDir(), "Queue_Max_Size", "20K")
	defer in.Close()
	chunk := applied(t, "big", 40) // about 3 KB stored each
	tries := 0
	for ; tries < 50; tries++ {
		if in.Flush(chunk, "cloudtrail") == OK {
			break
		}
		waitFor(t, "room", func() bool { n, _, _ := in.store.Pending(); return n == 0 })
	}
	waitFor(t, "every alert", func() bool { _, got := c.state(); return len(got) == 40 })
	_, got := c.state()
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	if len(seen) != 40 || tries < 2 {
		t.Fatalf("%d distinct of %d delivered after %d retries", len(seen), len(got), tries)
	}
	if !strings.Contains(log.String(), "of 40 alert(s): the state store's queue is full (Queue_Max_Size 20480") ||
		!strings.Contains(log.String(), "the rest is stored as the sender delivers what waits") {
		t.Fatalf("log:\n%s", log)
	}
}

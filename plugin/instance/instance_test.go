package instance

import (
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/config"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/logx"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
)

// flaky fails while down and records what it delivered.
type flaky struct {
	mu   sync.Mutex
	down bool
	got  []string
}

func (f *flaky) Deliver(as []sink.Alert) error {
	f.mu.Lock()
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

func (f *flaky) Encoding() sink.Encoding { return sink.Msgpack }

func newInstance(t testing.TB, s sink.Sink) *Instance {
	cfg, err := config.Load(getter{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := New("test", cfg, logx.NewTo(io.Discard, "test"))
	if err != nil {
		t.Fatal(err)
	}
	in.sink = s
	return in
}

type getter struct{}

func (getter) Get(string) string { return "" }

func positives(t *testing.T) []byte {
	var bodies []any
	for _, name := range []string{"attach_user_v2", "attach_group_v3", "put_user_legacy_inline"} {
		bodies = append(bodies, corpus.Fixture(t, "aws.iam.quarantine_applied", "positive", name))
	}
	return fbchunk.FromValues(time.Unix(0, 0), bodies)
}

func TestRetryThenDeliverOnce(t *testing.T) {
	f := &flaky{down: true}
	in := newInstance(t, f)
	chunk := positives(t)
	if r := in.Flush(chunk, "cloudtrail"); r != Retry {
		t.Fatalf("sink down: %v, want Retry", r)
	}
	f.down = false
	if r := in.Flush(chunk, "cloudtrail"); r != OK {
		t.Fatalf("sink up: %v", r)
	}
	if r := in.Flush(chunk, "cloudtrail"); r != OK {
		t.Fatalf("re-delivered: %v", r)
	}
	if len(f.got) != 3 {
		t.Fatalf("delivered %v", f.got)
	}
	if in.Counters.Duplicates.Load() != 3 || in.Counters.Retries.Load() != 1 || in.Counters.Delivered.Load() != 3 {
		t.Fatal(in.Counters.Summary())
	}
}

func TestConcurrentFlushesDeliverOnce(t *testing.T) {
	f := &flaky{}
	in := newInstance(t, f)
	chunk := positives(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { in.Flush(chunk, "cloudtrail") })
	}
	wg.Wait()
	if len(f.got) != 3 {
		t.Fatalf("delivered %d alerts, want 3", len(f.got))
	}
}

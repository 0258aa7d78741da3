package ship

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/logx"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink/forward"
)

// The fields `ship` adds to every record, beside the event's own (all
// camelCase in CloudTrail, so these cannot collide): where it was read.
const (
	FieldBucket = "s3_bucket"
	FieldKey    = "s3_key"
	FieldFile   = "source_file" // a local path, or "-" for standard input
)

// job is the unit whose completion is acted on: an SQS message (deleted
// when done), a listed object (remembered in --state), a local file. It is
// done when every object of it was read and every record sent from it
// acknowledged; failed when any of that did not happen.
type job struct {
	p       *pipeline
	objects int
	pending atomic.Int64 // objects still being read + records sent and not acknowledged
	failed  atomic.Bool
	done    chan struct{}
}

func (p *pipeline) newJob(objects int) *job {
	j := &job{p: p, objects: objects, done: make(chan struct{})}
	j.pending.Store(int64(objects))
	p.c.ObjectsInFlight.Add(int64(objects))
	if objects == 0 {
		close(j.done)
	}
	return j
}

func (j *job) hold(n int) { j.pending.Add(int64(n)) }

func (j *job) release(n int) {
	if n == 0 || j.pending.Add(-int64(n)) != 0 {
		return
	}
	j.p.c.ObjectsInFlight.Add(-int64(j.objects))
	if j.ok() {
		j.p.c.Objects.Add(int64(j.objects))
	}
	close(j.done)
}

// ok is meaningful once done is closed.
func (j *job) ok() bool { return !j.failed.Load() }

// object is one file to read.
type object struct {
	job         *job
	name        string // what log lines call it
	bucket, key string // an S3 object's; key alone: a local path
	local       bool
	open        func(ctx context.Context) (io.ReadCloser, error)
}

// batch is one forward message's records, all from one object: records'
// Docs are slices of arena, which is reused once the batch is
// acknowledged.
type batch struct {
	job     *job
	records []sink.Alert
	arena   []byte
	size    int // bytes of entries, as forward.Sink.Room counts them
	newest  time.Time
}

// What one object costs a worker while it is read: a block of text and
// the record being framed (at most maxRecord; a CloudTrail event is under
// 256 KB), the decompressor's window and input buffer. Never the object.
const (
	block     = 1 << 20
	maxRecord = 16 << 20
)

// pipeline reads objects on Workers goroutines into batches, and sends
// the batches on Connections forward connections, each waiting for its
// ack. Batches come from a fixed pool: when Fluent Bit stops
// acknowledging, senders hold their batches, the pool runs dry, readers
// stop, and the sources stop taking work (backpressure).
type pipeline struct {
	o      *Options
	log    *logx.Logger
	c      *counters
	room   int
	sinks  []*forward.Sink
	free   chan *batch
	sendq  chan *batch
	object chan *object

	warnMu   sync.Mutex
	lastWarn time.Time
}

func newPipeline(o *Options, log *logx.Logger, c *counters) (*pipeline, error) {
	p := &pipeline{o: o, log: log, c: c, object: make(chan *object), sendq: make(chan *batch, o.Connections)}
	for range o.Connections {
		s, err := forward.New(o.Forward)
		if err != nil {
			return nil, fmt.Errorf("--forward: %v", err)
		}
		p.sinks = append(p.sinks, s)
	}
	p.room = p.sinks[0].Room()
	n := poolSize(o)
	p.free = make(chan *batch, n)
	for range n {
		p.free <- &batch{}
	}
	return p, nil
}

// poolSize: one batch filling per worker, one queued and one in flight
// per connection.
func poolSize(o *Options) int { return o.Workers + 2*o.Connections }

// run reads until the object channel is closed (or readCtx ends), then
// sends what was read until done (or sendCtx ends).
func (p *pipeline) run(readCtx, sendCtx context.Context) {
	var readers, senders sync.WaitGroup
	for range p.o.Workers {
		readers.Go(func() { p.work(readCtx) })
	}
	for _, s := range p.sinks {
		senders.Go(func() { p.send(sendCtx, s) })
	}
	readers.Wait()
	close(p.sendq)
	senders.Wait()
	for _, s := range p.sinks {
		s.Close()
	}
}

// worker is one reader's reusable state.
type worker struct {
	p      *pipeline
	buf    []byte
	br     *bufio.Reader
	zr     gzip.Reader
	tc     value.Transcoder
	cur    *batch
	evTime time.Time
	badLog int
}

func (p *pipeline) work(ctx context.Context) {
	w := &worker{p: p, buf: make([]byte, 0, block+64<<10), br: bufio.NewReaderSize(nil, 64<<10)}
	w.tc.Top = func(k, v []byte) {
		if string(k) == "eventTime" {
			if t, err := time.Parse(time.RFC3339Nano, string(v)); err == nil {
				w.evTime = t
			}
		}
	}
	for ob := range p.object {
		var err error
		if ctx.Err() != nil {
			err = ctx.Err()
		} else {
			err = w.read(ctx, ob)
		}
		if err != nil {
			if ctx.Err() == nil {
				p.c.ObjectsFailed.Add(1)
				p.log.Errorf("%s: %v", ob.name, err)
			}
			ob.job.failed.Store(true)
			if b := w.cur; b != nil {
				// Never sent, never held: its records go with the object.
				w.cur = nil
				p.free <- b
			}
		}
		ob.job.release(1)
	}
}

// read streams one object into batches.
func (w *worker) read(ctx context.Context, ob *object) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error (please report it): %v", r)
		}
	}()
	rc, err := ob.open(ctx)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer rc.Close()
	cr := &countingReader{r: rc, c: &w.p.c.Bytes}
	w.br.Reset(cr)
	w.tc.Extra = 2
	if ob.local {
		w.tc.Extra = 1
	}
	var text io.Reader = w.br
	magic, _ := w.br.Peek(2)
	gz := bytes.Equal(magic, []byte{0x1f, 0x8b})
	if gz {
		if err := w.zr.Reset(w.br); err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		text = &w.zr
	}
	if err := w.split(ctx, text, gz, ob); err != nil {
		return err
	}
	return w.flush(ctx)
}

// split frames the text into events (detect.Splitter: a log file's
// Records one by one, or JSON lines) and adds each to the batch.
func (w *worker) split(ctx context.Context, src io.Reader, gz bool, ob *object) error {
	var s detect.Splitter
	buf := w.buf[:0]
	defer func() { w.buf = buf[:0] }()
	for eof := false; ; {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for {
			sp, ok, err := s.Next(buf, eof)
			if err != nil {
				return fmt.Errorf("JSON: %w", err)
			}
			if !ok {
				break
			}
			if err := w.add(ctx, ob, buf[sp.Start:sp.End]); err != nil {
				return err
			}
		}
		if eof {
			return nil
		}
		if k := s.Keep(); k > 0 {
			buf = buf[:copy(buf, buf[k:])]
			s.Shift(k)
		}
		if len(buf) > maxRecord {
			return fmt.Errorf("a record larger than %d MiB: not CloudTrail", maxRecord>>20)
		}
		if cap(buf)-len(buf) < block/2 {
			buf = append(buf[:cap(buf)], make([]byte, max(block, cap(buf)))...)[:len(buf)]
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF:
			eof = true
		case err != nil && gz:
			return fmt.Errorf("gzip: %w (the object is cut short or corrupt)", err)
		case err != nil:
			return err
		}
	}
}

// add transcodes one event into the current batch, with the object's
// fields; an event that is not JSON is skipped and counted.
func (w *worker) add(ctx context.Context, ob *object, text []byte) error {
	if w.cur == nil {
		if err := w.next(ctx, ob); err != nil {
			return err
		}
	}
	b := w.cur
	start := len(b.arena)
	w.evTime = time.Time{}
	arena, err := w.tc.Append(b.arena, text)
	if err != nil {
		w.p.c.BadEvents.Add(1)
		if w.badLog++; w.badLog <= 3 {
			w.p.log.Warnf("%s: event skipped: %v", ob.name, err)
		}
		return nil
	}
	if ob.local {
		arena = msgp.AppendString(msgp.AppendString(arena, FieldFile), ob.key)
	} else {
		arena = msgp.AppendString(msgp.AppendString(arena, FieldBucket), ob.bucket)
		arena = msgp.AppendString(msgp.AppendString(arena, FieldKey), ob.key)
	}
	t := w.evTime
	if t.IsZero() {
		t = time.Now()
	}
	entry := forward.EntryOverhead + len(arena) - start
	if len(b.records) > 0 && b.size+entry > w.p.room {
		// Full: this record opens the next batch.
		doc := append([]byte(nil), arena[start:]...)
		b.arena = arena[:start]
		if err := w.flush(ctx); err != nil {
			return err
		}
		if err := w.next(ctx, ob); err != nil {
			return err
		}
		b = w.cur
		start = len(b.arena)
		arena = append(b.arena, doc...)
	}
	b.arena = arena
	b.records = append(b.records, sink.Alert{Time: t, Doc: arena[start:len(arena):len(arena)]})
	b.size += entry
	if t.After(b.newest) {
		b.newest = t
	}
	return nil
}

// next takes a batch from the pool, waiting while all are in use.
func (w *worker) next(ctx context.Context, ob *object) error {
	select {
	case b := <-w.p.free:
		if cap(b.arena) == 0 {
			b.arena = make([]byte, 0, w.p.room+64<<10)
		}
		b.job, b.records, b.arena, b.size, b.newest = ob.job, b.records[:0], b.arena[:0], 0, time.Time{}
		w.cur = b
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush hands the current batch to the senders.
func (w *worker) flush(ctx context.Context) error {
	b := w.cur
	if b == nil {
		return nil
	}
	if len(b.records) == 0 {
		w.cur = nil
		w.p.free <- b
		return nil
	}
	b.job.hold(len(b.records))
	select {
	case w.p.sendq <- b:
		w.cur = nil
		return nil
	case <-ctx.Done():
		w.cur = nil
		b.job.failed.Store(true)
		b.job.release(len(b.records))
		w.p.free <- b
		return ctx.Err()
	}
}

// send delivers batches on one connection, each until acknowledged:
// a batch is never dropped, only abandoned when sendCtx ends (its job
// then fails, so its message is not deleted).
func (p *pipeline) send(ctx context.Context, s *forward.Sink) {
	for b := range p.sendq {
		p.deliver(ctx, s, b)
		p.free <- b
	}
}

func (p *pipeline) deliver(ctx context.Context, s *forward.Sink, b *batch) {
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := s.Deliver(ctx, b.records)
		if err == nil {
			p.c.Acks.Add(1)
			p.c.AckWaitNanos.Add(int64(time.Since(start)))
			p.c.Events.Add(int64(len(b.records)))
			p.c.shipped(b.newest)
			b.job.release(len(b.records))
			return
		}
		if ctx.Err() != nil {
			b.job.failed.Store(true)
			b.job.release(len(b.records))
			return
		}
		p.c.Retries.Add(1)
		p.warn("%v; sending again in %v (nothing is dropped: reading waits)", err, backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// warn logs delivery trouble at most every 10 seconds.
func (p *pipeline) warn(format string, a ...any) {
	p.warnMu.Lock()
	now := time.Now()
	if now.Sub(p.lastWarn) < 10*time.Second {
		p.warnMu.Unlock()
		return
	}
	p.lastWarn = now
	p.warnMu.Unlock()
	p.log.Warnf(format, a...)
}

type countingReader struct {
	r io.Reader
	c *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.c.Add(int64(n))
	return n, err
}

package scan

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
)

// What one file costs in memory: on a first read, the decompressor's
// window (its 32 KiB, written straight into the prefilter) and its input
// buffer; on a split read, a block of text and the record being framed
// (at most maxRecord; a CloudTrail event is under 256 KB). Never the file.
const (
	block     = 1 << 20
	maxRecord = 64 << 20
)

// ErrRecordTooLarge: a record bigger than maxRecord (no CloudTrail event
// is) is taken for a corrupt file rather than read into memory.
var ErrRecordTooLarge = fmt.Errorf("a record larger than %d MiB", maxRecord>>20)

// fileResult is what reading one file gave.
type fileResult struct {
	obj    source.Object
	obs    []detect.Observed
	stored int64 // bytes read as stored
	text   int64 // bytes of JSON text (or Parquet rows' strings)
	events int
	st     detect.JSONStats
	err    error
}

// reader reads files; it is shared by the workers.
type reader struct {
	det *detect.Detector
	// storedBytes counts the bytes read as stored, as they are read, for
	// the progress bar.
	storedBytes *atomic.Int64
	// Each worker's decompressor and input buffer, reused file after file.
	bufs, gzips sync.Pool
}

func newReader(det *detect.Detector, progress *atomic.Int64) *reader {
	r := &reader{det: det, storedBytes: progress}
	r.bufs.New = func() any { return bufio.NewReaderSize(nil, 64<<10) }
	return r
}

// read reads one object. With split false (a first read) the text is
// only split into records when the prefilter finds a pattern somewhere
// in it; with split true (a second read, watching keys) always.
//
// With w a StaticWatch (a second read), only the events it holds
// relevant are kept.
func (r *reader) read(ctx context.Context, obj source.Object, w detect.Watch, split bool) (res fileResult) {
	res.obj = obj
	defer func() {
		if p := recover(); p != nil {
			res.err = fmt.Errorf("internal error (please report it): %v", p)
		}
	}()
	if obj.Parquet() {
		res.err = r.readParquet(ctx, obj, w, &res)
		return res
	}
	for attempt := 0; ; attempt++ {
		again, err := r.readOnce(ctx, obj, w, split || attempt > 0, attempt > 0, &res)
		if !again || err != nil {
			res.err = err
			return res
		}
		// A pattern: read it again, split from the start.
		res.obs, res.st, res.events, res.text, res.stored = res.obs[:0], detect.JSONStats{}, 0, 0, 0
	}
}

func (r *reader) readOnce(ctx context.Context, obj source.Object, w detect.Watch, split, again bool, res *fileResult) (bool, error) {
	rc, err := obj.Open(ctx)
	if err != nil {
		return false, fmt.Errorf("open: %w", err)
	}
	defer rc.Close()
	counted := &countingReader{r: rc, n: &res.stored}
	if !again {
		counted.progress = r.storedBytes
	}
	br := r.bufs.Get().(*bufio.Reader)
	br.Reset(counted)
	defer r.bufs.Put(br)
	magic, _ := br.Peek(4)
	var text io.Reader = br
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, _ := r.gzips.Get().(*gzip.Reader)
		if zr == nil {
			zr = new(gzip.Reader)
		}
		if err := zr.Reset(br); err != nil {
			return false, fmt.Errorf("gzip: %w", err)
		}
		defer r.gzips.Put(zr)
		again, err := r.readJSON(ctx, zr, w, split, obj.Place.Time, res)
		if err != nil && !errors.Is(err, context.Canceled) && !strings.HasPrefix(err.Error(), "JSON: ") {
			err = gzipError(err)
		}
		return again, err
	case bytes.Equal(magic, []byte("PAR1")):
		return false, r.readParquet(ctx, obj, w, res)
	}
	return r.readJSON(ctx, text, w, split, obj.Place.Time, res)
}

// readJSON reads JSON text; again asks for a second read, split. A
// first read only looks: the decompressor writes its window straight
// into the prefilter (no copy of the text), and the first pattern found
// stops it, to read the file again and split it into records: that is
// for the rare file that holds a candidate.
func (r *reader) readJSON(ctx context.Context, text io.Reader, w detect.Watch, split bool, recordTime time.Time, res *fileResult) (again bool, err error) {
	var edge edge
	if split {
		return r.split(ctx, text, w, recordTime, res, &edge)
	}
	l := &looker{ctx: ctx, w: w, res: res, edge: &edge}
	_, err = io.Copy(l, text)
	if err == errHit {
		return true, nil
	}
	return false, err
}

var errHit = errors.New("a pattern")

// looker is the first read's writer.
type looker struct {
	ctx  context.Context
	w    detect.Watch
	res  *fileResult
	edge *edge
}

func (l *looker) Write(p []byte) (int, error) {
	if err := l.ctx.Err(); err != nil {
		return 0, err
	}
	l.res.text += int64(len(p))
	events, hit := l.edge.feed(p, l.w)
	l.res.events += events
	if hit {
		return 0, errHit
	}
	return len(p), nil
}

// split frames the text into records and observes the candidates.
func (r *reader) split(ctx context.Context, src io.Reader, w detect.Watch, recordTime time.Time, res *fileResult, edge *edge) (bool, error) {
	var s detect.Splitter
	buf := make([]byte, 0, block+64<<10)
	for eof := false; ; {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		for {
			sp, ok, err := s.Next(buf, eof)
			if err != nil {
				return false, fmt.Errorf("JSON: %w", err)
			}
			if !ok {
				break
			}
			before := len(res.obs)
			res.obs = r.det.ObserveJSON(buf[sp.Start:sp.End], sp.Element, w, recordTime, res.obs, &res.st)
			res.obs = relevant(w, res.obs, before)
		}
		if eof {
			return false, nil
		}
		if k := s.Keep(); k > 0 {
			buf = buf[:copy(buf, buf[k:])]
			s.Shift(k)
		}
		if len(buf) > maxRecord {
			return false, ErrRecordTooLarge
		}
		if cap(buf)-len(buf) < block/2 {
			buf = append(buf[:cap(buf)], make([]byte, max(block, cap(buf)))...)[:len(buf)]
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		blk := buf[len(buf) : len(buf)+n]
		buf = buf[:len(buf)+n]
		res.text += int64(n)
		events, _ := edge.feed(blk, nil)
		res.events += events
		switch {
		case err == io.EOF:
			eof = true
		case err != nil:
			return false, err
		}
	}
}

// edge carries the last bytes of the text read so far, so a pattern or
// an eventVersion key cut by a block boundary is still found, and found
// once.
type edge struct {
	tail [detect.Overlap]byte
	n    int
}

func (e *edge) feed(blk []byte, w detect.Watch) (events int, hit bool) {
	if len(blk) == 0 {
		return 0, false
	}
	var join [2 * detect.Overlap]byte
	seam := append(append(join[:0], e.tail[:e.n]...), blk[:min(len(blk), detect.Overlap)]...)
	// What lies wholly inside one side is counted there, not here.
	events = detect.CountEvents(seam) - detect.CountEvents(e.tail[:e.n]) - detect.CountEvents(blk[:min(len(blk), detect.Overlap)])
	events += detect.CountEvents(blk)
	hit = detect.HasCandidate(seam, w) || detect.HasCandidate(blk, w)
	e.keep(blk)
	return events, hit
}

func (e *edge) keep(blk []byte) {
	if len(blk) >= detect.Overlap {
		e.n = copy(e.tail[:], blk[len(blk)-detect.Overlap:])
		return
	}
	keep := min(e.n, detect.Overlap-len(blk))
	copy(e.tail[:], e.tail[e.n-keep:e.n])
	e.n = keep + copy(e.tail[keep:], blk)
}

type countingReader struct {
	r        io.Reader
	n        *int64
	progress *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	if c.progress != nil {
		c.progress.Add(int64(n))
	}
	return n, err
}

// gzipError names a corrupt gzip stream as such, rather than as bad JSON.
func gzipError(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("gzip: truncated (%w)", err)
	}
	return fmt.Errorf("gzip: %w", err)
}

// relevant drops the events after from that a second read's watch list
// holds no engine could act on.
func relevant(w detect.Watch, obs []detect.Observed, from int) []detect.Observed {
	sw, ok := w.(*detect.StaticWatch)
	if !ok {
		return obs
	}
	kept := obs[:from]
	for _, o := range obs[from:] {
		if sw.Relevant(o) {
			kept = append(kept, o)
		}
	}
	clear(obs[len(kept):])
	return kept
}

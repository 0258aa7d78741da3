package scan

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
)

// What one file costs in memory: a block of decompressed text, the file
// itself while it is under keepLimit (a file that turns out to hold a
// candidate is then split without reading it again), and the largest
// record being framed, at most maxRecord. CloudTrail's log files are a
// few MB at most and an event is under 256 KB.
const (
	block     = 1 << 20
	keepLimit = 8 << 20
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
	blocks      sync.Pool
}

func newReader(det *detect.Detector, progress *atomic.Int64) *reader {
	r := &reader{det: det, storedBytes: progress}
	r.blocks.New = func() any { b := make([]byte, block); return &b }
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
		// A pattern past keepLimit: read it again, split from the start.
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
	br := bufio.NewReaderSize(counted, 64<<10)
	magic, _ := br.Peek(4)
	var text io.Reader = br
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return false, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		text = &stageReader{r: zr, stage: "gzip"}
	case bytes.Equal(magic, []byte("PAR1")):
		return false, r.readParquet(ctx, obj, w, res)
	}
	return r.readJSON(ctx, text, w, split, obj.Place.Time, res)
}

// readJSON reads JSON text; again asks for a second read, split.
func (r *reader) readJSON(ctx context.Context, text io.Reader, w detect.Watch, split bool, recordTime time.Time, res *fileResult) (again bool, err error) {
	var edge edge
	if !split {
		// Held whole while under keepLimit, the text can be split without
		// reading it again when a pattern turns up.
		kept := make([]byte, 0, 64<<10)
		for {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			if len(kept) == cap(kept) {
				if cap(kept) >= keepLimit {
					break
				}
				kept = append(kept, 0)[:len(kept)]
			}
			n, err := text.Read(kept[len(kept):cap(kept)])
			blk := kept[len(kept) : len(kept)+n]
			kept = kept[:len(kept)+n]
			res.text += int64(n)
			events, hit := edge.feed(blk, w)
			res.events += events
			if hit {
				return r.split(ctx, bytes.NewReader(kept), text, w, recordTime, res, &edge, len(kept))
			}
			if err == io.EOF {
				return false, nil
			}
			if err != nil {
				return false, err
			}
		}
		// Too big to hold: look on, and read it again if needed.
		bp := r.blocks.Get().(*[]byte)
		defer r.blocks.Put(bp)
		for {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			n, err := io.ReadFull(text, *bp)
			res.text += int64(n)
			events, hit := edge.feed((*bp)[:n], w)
			res.events += events
			if hit {
				return true, nil
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return false, nil
			}
			if err != nil {
				return false, err
			}
		}
	}
	return r.split(ctx, nil, text, w, recordTime, res, &edge, 0)
}

// split frames the text (what head holds, then the rest of text) into
// records and observes the candidates. The first counted bytes were
// already counted, edge holding their end.
func (r *reader) split(ctx context.Context, head io.Reader, text io.Reader, w detect.Watch, recordTime time.Time, res *fileResult, edge *edge, counted int) (bool, error) {
	var s detect.Splitter
	src := text
	if head != nil {
		src = io.MultiReader(head, text)
	}
	buf := make([]byte, 0, block+64<<10)
	done := 0 // bytes of src read
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
		// Bytes held before were counted by the first look.
		if fresh := blk[max(0, min(n, counted-done)):]; len(fresh) > 0 {
			res.text += int64(len(fresh))
			events, _ := edge.feed(fresh, nil)
			res.events += events
		}
		done += n
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

// stageReader names where an error came from (a corrupt gzip stream
// rather than bad JSON).
type stageReader struct {
	r     io.Reader
	stage string
}

func (s *stageReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%s: truncated (%w)", s.stage, err)
		} else {
			err = fmt.Errorf("%s: %w", s.stage, err)
		}
	}
	return n, err
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

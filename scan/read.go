package scan

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
)

// A file of the layout is read once, whole, into memory (its text, as
// decompressed: a CloudTrail log file is a few MB), and the prefilter
// runs over that text with the watch list of the file's account as it is
// then. The text is held while the merge may still reach the file's
// events: when the watch list grows meanwhile (a key is exposed), only
// the prefilter runs again over the held text, for the records not
// decoded yet (see account.go). Files outside the layout, and any file
// too large to hold, are read streaming instead (index.go).
const (
	block     = 1 << 20
	maxRecord = 64 << 20
	// holdMax is the largest file (as stored) read whole into memory: at
	// CloudTrail's 8-15x compression, 64-120 MB of text.
	holdMax = 8 << 20
)

// ErrRecordTooLarge: a record bigger than maxRecord (no CloudTrail event
// is) is taken for a corrupt file rather than read into memory.
var ErrRecordTooLarge = fmt.Errorf("a record larger than %d MiB", maxRecord>>20)

// decoded is what reading one file gave.
type decoded struct {
	obj   source.Object
	text  []byte // the file's text, while held (layout files only)
	obs   []detect.Observed
	raw   [][]byte      // for each of obs, its record when only a watch list made it a candidate
	pos   []uint64      // for each of obs, where it is (see tagged.pos)
	file  int           // the object's place in the scan's sorted list
	seen  map[int]bool  // starts of the records of text decoded so far
	spans []detect.Span // the records of text, once framed
	// keys are where the text's "eventVersion" keys are, while held
	keys eventKeys
	// spanBuf is where logRecords guesses the text's records (spans may be it)
	spanBuf []detect.Span
	// guessed: spans are logRecords' guess, each to be checked before use
	guessed bool
	ver     uint64 // the watch list's version the prefilter last ran with
	stored  int64  // bytes read as stored
	size    int64  // bytes of text (or of Parquet rows' strings)
	events  int
	st      detect.JSONStats
	err     error
}

// reader reads files; it is shared by the workers.
type reader struct {
	det *detect.Detector
	// storedBytes counts the bytes read as stored, as they are read, for
	// the progress bar.
	storedBytes *atomic.Int64
	bufs        sync.Pool // *bufio.Reader
	gzips       sync.Pool // *gzip.Reader
	// texts keeps the buffers of released texts for the next files (a
	// sync.Pool loses them at every GC, and a new buffer of a few MB is a
	// few MB of memory cleared).
	texts chan []byte
	// framings keeps the slices released texts were framed in, likewise.
	framings chan framing
	// rowGroups bounds the Parquet row groups read at once.
	rowGroups chan struct{}
}

func newReader(det *detect.Detector, progress *atomic.Int64) *reader {
	r := &reader{det: det, storedBytes: progress, texts: make(chan []byte, 64), framings: make(chan framing, 64)}
	r.bufs.New = func() any { return bufio.NewReaderSize(nil, 64<<10) }
	return r
}

// opened is an object's text stream.
type opened struct {
	text    io.Reader
	gzipped bool
	size    int64 // of the text when it is stored as it is, else -1
	close   func()
}

// open opens obj (or reads the bytes already fetched) and gives its text:
// gzip is recognised by its magic number, whatever the name.
func (r *reader) open(ctx context.Context, obj source.Object, fetched []byte, stored *int64) (opened, error) {
	var rc io.ReadCloser
	if fetched != nil {
		rc = io.NopCloser(bytes.NewReader(fetched))
	} else {
		var err error
		if rc, err = obj.Open(ctx); err != nil {
			return opened{}, fmt.Errorf("open: %w", err)
		}
	}
	counted := &countingReader{r: rc, n: stored, progress: r.storedBytes}
	br := r.bufs.Get().(*bufio.Reader)
	br.Reset(counted)
	o := opened{text: br, size: obj.Size, close: func() { rc.Close(); br.Reset(nil); r.bufs.Put(br) }}
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		o.size = -1
		zr, _ := r.gzips.Get().(*gzip.Reader)
		if zr == nil {
			zr = new(gzip.Reader)
		}
		if err := zr.Reset(br); err != nil {
			o.close()
			return opened{}, gzipError(err)
		}
		o.text, o.gzipped = zr, true
		closeBr := o.close
		o.close = func() { closeBr(); r.gzips.Put(zr) }
	}
	return o, nil
}

// readAll reads a layout file's text whole, and where its events start.
// A file cut short or corrupt gives the text decoded before the damage,
// and the error.
func (r *reader) readAll(ctx context.Context, obj source.Object, fetched []byte, d *decoded) error {
	o, err := r.open(ctx, obj, fetched, &d.stored)
	if err != nil {
		return err
	}
	defer o.close()
	text := r.textBuf(obj.Size, o.size)
	defer func() { d.text = text; d.keys.finish(text) }()
	// The events are counted as the text comes, while it is in the
	// cache. CloudTrail's events are a kilobyte or more each.
	fr := r.framing(cap(text)>>10 + 16)
	d.keys, d.spanBuf = eventKeys{at: fr.at, stop: fr.stop}, fr.spans
	for {
		if len(text) == cap(text) {
			text = append(text, 0)[:len(text)]
		}
		n, err := o.text.Read(text[len(text):cap(text)])
		from := detect.NextFrom(len(text))
		text = text[:len(text)+n]
		d.keys.add(text, from)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if o.gzipped && !errors.Is(err, context.Canceled) {
				return gzipError(err)
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// textBuf is a buffer for a file's text: a released one, else a new one
// of the text's size when it is known (text, else -1), or of the size
// the file's stored size suggests. Sizes are rounded up to a whole MiB
// (a power of two below it), so a buffer released by one file fits the
// next of about its size: rounded to the byte, one in two did not, and
// was dropped for a new one, a few MB of memory cleared for each file.
func (r *reader) textBuf(stored, text int64) []byte {
	want := int(min(max(stored*12, 64<<10), 256<<20))
	if text >= 0 && text < 256<<20 {
		want = int(text) + 1
	}
	if want < 1<<20 {
		want = 1 << bits.Len(uint(want-1))
	} else {
		want = (want + 1<<20 - 1) &^ (1<<20 - 1)
	}
	select {
	case b := <-r.texts:
		if cap(b) >= want {
			return b[:0]
		}
	default:
	}
	// Too small a buffer would be grown by copying it, again and again.
	return make([]byte, 0, want)
}

// framing is the slices a held text is framed in: where its events
// start, where the record before each stops, and its records guessed.
// They go back with the text for the next file: made anew for each, they
// were a few MB of memory cleared a scan.
type framing struct {
	at, stop []int
	spans    []detect.Span
}

// framing gives a released text's slices, else new ones, the keys' with
// room for n events (logRecords sizes the spans, for the texts it frames).
func (r *reader) framing(n int) framing {
	var f framing
	select {
	case f = <-r.framings:
	default:
	}
	return framing{slices.Grow(f.at[:0], n), slices.Grow(f.stop[:0], n), f.spans[:0]}
}

// release gives a held text back for the next file.
func (r *reader) release(d *decoded) int {
	n := cap(d.text)
	if d.text != nil {
		select {
		case r.texts <- d.text[:0]:
		default:
		}
		select {
		case r.framings <- framing{d.keys.at, d.keys.stop, d.spanBuf}:
		default:
		}
	}
	d.text, d.seen, d.spans, d.spanBuf, d.guessed, d.keys = nil, nil, nil, nil, false, eventKeys{}
	return n
}

// readHeld reads a layout file whole and decodes the records the
// prefilter lets through with w, the watch list of its account.
func (r *reader) readHeld(ctx context.Context, obj source.Object, file int, fetched []byte, w detect.Watch) (d *decoded) {
	d = &decoded{obj: obj, file: file}
	defer func() {
		if p := recover(); p != nil {
			d.err = fmt.Errorf("internal error (please report it): %v", p)
		}
	}()
	d.err = r.readAll(ctx, obj, fetched, d)
	d.size = int64(len(d.text))
	d.events = len(d.keys.at)
	if errors.Is(d.err, context.Canceled) {
		return d
	}
	// Every record decoded before the damage (a cut or corrupt gzip) is
	// judged; the record the damage cut is not.
	if _, err := r.refilter(d, w); d.err == nil {
		d.err = err
	}
	if d.err == nil && d.seen == nil {
		d.err = notJSON(d.text)
	}
	d.events = max(d.events, d.st.Events)
	return d
}

// refilter runs the prefilter over a held text with w and decodes the
// records it lets through that were not decoded before; it returns how
// many events it added to d.obs.
func (r *reader) refilter(d *decoded, w detect.Watch) (int, error) {
	ver := w.Version()
	defer func() { d.ver = ver }()
	var f detect.Filter
	if !f.Reset(d.text, w) {
		return 0, nil
	}
	if d.seen == nil {
		d.seen = map[int]bool{}
	}
	before := len(d.obs)
	// A guess made when the text was read, or when the list grew before,
	// stands: the text has not changed.
	spans, ok := d.spans, d.guessed
	if !ok {
		spans, ok = logRecords(d.text, &d.keys, d.spanBuf)
	}
	if ok && r.candidates(d, spans, &f) {
		return len(d.obs) - before, nil
	}
	var s detect.Splitter
	for {
		sp, ok, err := s.Next(d.text, true)
		if err != nil {
			return len(d.obs) - before, fmt.Errorf("JSON: %w", err)
		}
		if !ok {
			return len(d.obs) - before, nil
		}
		if d.seen[sp.Start] {
			d.st.Records++
			continue
		}
		d.observe(r.det, sp, w, false)
	}
}

// A log file as AWS writes it, {"Records":[{"eventVersion":...},...]},
// is framed without the Splitter's pass over every byte: each event
// starts with {"eventVersion": (the key AWS writes first), so the
// records are the stretches between those, found where the count of
// events found their keys. Only the records the prefilter lets through
// are framed properly, to check the guess; a text where a stretch is not
// one whole object (another key order, a nested object that starts so)
// is framed the slow way.
var recordStart = []byte(`{"eventVersion":`)

// eventKeys are where a text's "eventVersion" keys start (EventStarts)
// and, for each that opens an object as AWS writes a record, where what
// comes before it ends, separators left out; else -1. Both are noted as
// the text is read, while it is in the cache: framing a log file then
// does not go back to the text at every record (a cache miss each).
type eventKeys struct {
	at   []int
	stop []int // one for each of at noted so far
}

// add notes the keys of text from from on, and the stops of those whose
// {"eventVersion": has been read whole.
func (k *eventKeys) add(text []byte, from int) {
	k.at = detect.EventStarts(text, from, k.at)
	k.mark(text, false)
}

// finish notes the stops of the keys left: the text is whole.
func (k *eventKeys) finish(text []byte) { k.mark(text, true) }

func (k *eventKeys) mark(text []byte, whole bool) {
	for i := len(k.stop); i < len(k.at); i++ {
		p := k.at[i] - 1
		if !whole && p+len(recordStart) > len(text) {
			return
		}
		stop := -1
		if p >= 0 && bytes.HasPrefix(text[p:], recordStart) {
			stop = trimSeparators(text, 0, p)
		}
		k.stop = append(k.stop, stop)
	}
}

// trimSeparators is where text[lo:end] ends without the separators that
// may stand between the records of a log file.
func trimSeparators(text []byte, lo, end int) int {
	for end > lo && separator(text[end-1]) {
		end--
	}
	return end
}

// separator: what may stand between the records of a log file.
func separator(c byte) bool { return c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// logRecords guesses the records of a log file's text from its keys, in
// dst's array; ok is false when the text is not one as AWS writes them.
func logRecords(text []byte, keys *eventKeys, dst []detect.Span) (spans []detect.Span, ok bool) {
	body := bytes.TrimSpace(text)
	off := len(text) - len(bytes.TrimLeft(text, " \t\r\n"))
	if !bytes.HasPrefix(body, []byte(`{"Records":[`)) || !bytes.HasSuffix(body, []byte("]}")) {
		return nil, false
	}
	end := off + len(body) - 2 // the array's ]
	i := off + len(`{"Records":[`)
	if i < end && !bytes.HasPrefix(text[i:], recordStart) {
		return nil, false
	}
	spans = slices.Grow(dst[:0], len(keys.at))
	for k := 0; i < end; {
		// The next record start: a key that opens an object, wholly
		// after this one's {"eventVersion": and before the array's end;
		// this record ends where the separators before it start.
		next, stop := end, -1
		for ; k < len(keys.stop); k++ {
			if at := keys.at[k] - 1; at >= i+len(recordStart) && at+len(recordStart) <= end && keys.stop[k] >= 0 {
				next, stop = at, keys.stop[k]
				break
			}
		}
		if stop < 0 {
			stop = trimSeparators(text, i, next)
		}
		spans = append(spans, detect.Span{Start: i, End: stop, Element: true})
		i = next
	}
	return spans, true
}

// candidates decodes the records of a log file's guessed spans the
// prefilter (f, reset over the text) lets through, checking each is one
// whole object; false (and nothing decoded) when one is not.
func (r *reader) candidates(d *decoded, spans []detect.Span, f *detect.Filter) bool {
	var hits []detect.Span
	for _, sp := range spans {
		if f.Candidate(sp.Start, sp.End) && !d.seen[sp.Start] {
			hits = append(hits, sp)
		}
	}
	for _, sp := range hits {
		if !whole(d.text, sp) {
			return false
		}
	}
	d.spans, d.guessed = spans, true
	for _, sp := range hits {
		d.observe(r.det, sp, nil, true)
	}
	return true
}

// whole reports whether text[sp] is one whole JSON object.
func whole(text []byte, sp detect.Span) bool {
	var s detect.Splitter
	got, ok, err := s.Next(text[sp.Start:sp.End], true)
	return err == nil && ok && got.Start == 0 && got.End == sp.End-sp.Start
}

// observe decodes one record of a held text if the prefilter lets it
// through with w, or, known, because it did already.
func (d *decoded) observe(det *detect.Detector, sp detect.Span, w detect.Watch, known bool) {
	c, n := d.st.Candidates, len(d.obs)
	rec := d.text[sp.Start:sp.End]
	if known {
		d.st.Records++
		d.obs = det.DecodeJSON(rec, sp.Element, d.obj.Place.Time, d.obs, &d.st)
	} else {
		d.obs = det.ObserveJSON(rec, sp.Element, w, d.obj.Place.Time, d.obs, &d.st)
	}
	if d.st.Candidates == c {
		return
	}
	d.seen[sp.Start] = true
	var keep []byte
	if !detect.HasCandidate(rec, nil) {
		keep = bytes.Clone(rec)
	}
	for i := range len(d.obs) - n {
		d.raw = append(d.raw, keep)
		d.pos = append(d.pos, position(d.file, sp.Start, i))
	}
}

// notJSON looks at the ends of a text the prefilter ruled out whole, so
// never framed: JSON text opens with { or [ and closes with } or ]. It
// costs nothing, and catches a file that is not JSON or was cut short.
func notJSON(text []byte) error {
	text = bytes.TrimLeft(text, " \t\r\n\xef\xbb\xbf")
	if len(text) == 0 {
		return nil
	}
	if c := text[0]; c != '{' && c != '[' {
		return fmt.Errorf("not JSON: unexpected %q", c)
	}
	text = bytes.TrimRight(text, " \t\r\n")
	if c := text[len(text)-1]; c != '}' && c != ']' {
		return fmt.Errorf("JSON: %w", detect.ErrTruncated)
	}
	return nil
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

// gzipError names a damaged gzip stream as such, once.
func gzipError(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("gzip: truncated (%w)", err)
	}
	if strings.HasPrefix(err.Error(), "gzip: ") {
		return err
	}
	return fmt.Errorf("gzip: %w", err)
}

// edge carries the last bytes of the text read so far, so an
// eventVersion key cut by a block boundary is still counted, once.
type edge struct {
	tail [detect.Overlap]byte
	n    int
}

func (e *edge) count(blk []byte) int {
	if len(blk) == 0 {
		return 0
	}
	var join [2 * detect.Overlap]byte
	head := blk[:min(len(blk), detect.Overlap)]
	seam := append(append(join[:0], e.tail[:e.n]...), head...)
	// What lies wholly inside one side is counted there, not here.
	events := detect.CountEvents(seam) - detect.CountEvents(e.tail[:e.n]) - detect.CountEvents(head) + detect.CountEvents(blk)
	if len(blk) >= detect.Overlap {
		e.n = copy(e.tail[:], blk[len(blk)-detect.Overlap:])
	} else {
		keep := min(e.n, detect.Overlap-len(blk))
		copy(e.tail[:], e.tail[e.n-keep:e.n])
		e.n = keep + copy(e.tail[keep:], blk)
	}
	return events
}

// position orders events of the same time and eventID: by file, then
// by where they are in it.
func position(file, off, sub int) uint64 {
	return uint64(file)<<40 | uint64(off)<<8 | uint64(min(sub, 255))
}

package scan

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
)

// Amazon Security Lake keeps CloudTrail as OCSF records in Parquet. A row
// is read as the prefilter reads any record: its text values, as they are
// stored, laid end to end; only a row holding a pattern is rebuilt into
// the nested record the OCSF reader takes.

const rowBatch = 1024

// readParquet reads a Parquet file's row groups in parallel (at most as
// many at once as the scan has workers): only their text columns go
// through the prefilter, page by page; a row it stops at is laid out and
// read again with the recorder; a row it then lets through whatever the
// watch list holds is read whole, rebuilt and observed; a row naming keys
// or users is kept aside, by its place in the file, for its account.
func (r *reader) readParquet(ctx context.Context, obj source.Object, x *index, d *decoded) error {
	ra, closer, err := obj.OpenAt(ctx)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer closer.Close()
	size := obj.Size
	if size < 0 {
		return fmt.Errorf("parquet: size unknown")
	}
	var stored atomic.Int64
	defer func() {
		d.stored = stored.Load()
		r.storedBytes.Add(d.stored)
	}()
	counted := &countingReaderAt{r: ra, n: &stored}
	f, err := parquet.OpenFile(counted, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return fmt.Errorf("parquet: %w", err)
	}
	schema := f.Schema()
	groups := f.RowGroups()
	parts := make([]decoded, len(groups))
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, rg := range groups {
		r.rowGroups <- struct{}{}
		parts[i].file = d.file<<8 | i // row groups apart
		wg.Go(func() {
			defer func() { <-r.rowGroups }()
			errs[i] = safely(func() error { return r.readRowGroup(ctx, rg, i, schema, obj, x, &parts[i]) })
		})
	}
	wg.Wait()
	for i := range parts {
		d.obs = append(d.obs, parts[i].obs...)
		d.events += parts[i].events
		d.size += parts[i].size
		d.st.Add(parts[i].st)
	}
	return errors.Join(errs...)
}

func (r *reader) readRowGroup(ctx context.Context, rg parquet.RowGroup, group int, schema *parquet.Schema, obj source.Object, x *index, d *decoded) error {
	t, err := readTexts(ctx, rg)
	if err != nil {
		return err
	}
	defer t.release()
	texts := t.rowTexts()
	d.size += t.size
	var rec recorder
	var now []int
	for i, text := range texts {
		d.events++
		d.st.Records++
		if text == nil {
			continue // no watch list could make it a candidate
		}
		cls := classify(text, &rec)
		if cls != none && cls != named && detect.HasCandidate(text, nil) {
			now = append(now, i)
			continue
		}
		if cls != none {
			ref := &rowRef{obj: obj, group: group, row: i}
			if err := x.keep(text, false, obj.Place, position(d.file, i, 0), obj.Place.Account, cls, &rec, ref); err != nil {
				return err
			}
		}
	}
	if len(now) == 0 {
		return nil
	}
	rows, err := readRows(rg, now)
	if err != nil {
		return err
	}
	for _, row := range rows {
		d.st.Candidates++
		d.obs = observeRow(r.det, schema, row, obj.Place, d.obs, &d.st)
	}
	return nil
}

// The prefilter reads a row as its text values laid end to end, each
// followed by a newline, in column order. Laying every row out cost more
// than twice decoding the pages, and most rows are no candidate for any
// watch list, so the prefilter runs over each page's values as they lie
// in it, with a watch list that holds everything: a row none of whose
// values it stops at is a candidate for no list and names no key or user
// (classify finds nothing in it). Only the rows it stops at are laid
// out, for classify and the index.
//
// That holds because what the prefilter looks for cannot span a value's
// end in a row's text (a newline follows every value, and no pattern
// holds one), and, with everything watched, its checks pass or fail on
// the bytes after a hit alone (a key id's 20, an escape's few; an IAM
// user's call passes whatever ARN is near it). In a page, the bytes after
// a value are the next value's, which can only add hits; after a page's
// last values there are none, so those are looked at again with room
// after them. TestLakeRowsMarked holds it to the rows laid out whole.

// everything is the watch list that holds every key and every user.
type everything struct{}

func (everything) Empty() bool           { return false }
func (everything) KeylessUsers() bool    { return true }
func (everything) Key([]byte) bool       { return true }
func (everything) User(_, _ []byte) bool { return true }
func (everything) Version() uint64       { return 0 }

func (everything) KeylessNames() ([][]byte, bool) { return nil, false }

// tailRoom is how many bytes after a page's values the prefilter's
// checks may read: its last values are looked at again with that room.
const tailRoom = 64

var room = bytes.Repeat([]byte{'\n'}, tailRoom)

// textPage is a page of a text column, held until its row group is read.
type textPage struct {
	page parquet.Page // nil when its values were copied out
	data []byte
	offs []uint32 // value i is data[offs[i]:offs[i+1]], or, with idx, dictionary value idx[i]
	idx  []int32
	rows []int32 // each value's row
}

func (p *textPage) value(i int) []byte {
	j := i
	if p.idx != nil {
		j = int(p.idx[i])
	}
	return p.data[p.offs[j]:p.offs[j+1]]
}

// texts is a row group's text columns and the rows the prefilter stopped
// at in them, with the buffers reading them takes, kept from one row
// group to the next.
type texts struct {
	pages []textPage
	mark  []bool
	size  int64   // of all rows' texts
	rows  []int32 // the pages' rows, carved out
	room  []byte
	lens  []int
	out   [][]byte
	arena []byte
}

var textsPool = sync.Pool{New: func() any { return new(texts) }}

// release gives the pages back and the buffers to the next row group:
// nothing read from t may be used after.
func (t *texts) release() {
	for _, p := range t.pages {
		if p.page != nil {
			parquet.Release(p.page)
		}
	}
	clear(t.pages)
	clear(t.out)
	t.pages, t.out = t.pages[:0], t.out[:0]
	textsPool.Put(t)
}

// newRows is room for a page's rows: from one buffer, grown by new ones
// (the pages hold the old), the last of which fits a row group in the end.
func (t *texts) newRows(n int) []int32 {
	if cap(t.rows)-len(t.rows) < n {
		t.rows = make([]int32, 0, max(n, 2*cap(t.rows), 1<<14))
	}
	r := t.rows[len(t.rows) : len(t.rows)+n : len(t.rows)+n]
	t.rows = t.rows[:len(t.rows)+n]
	return r
}

// readTexts reads a row group's text columns and marks the rows some
// watch list could make candidates.
func readTexts(ctx context.Context, rg parquet.RowGroup) (*texts, error) {
	t := textsPool.Get().(*texts)
	n := int(rg.NumRows())
	t.mark = slices.Grow(t.mark[:0], n)[:n]
	clear(t.mark)
	t.size, t.rows = 0, t.rows[:0]
	paths := rg.Schema().Columns()
	for _, cc := range rg.ColumnChunks() {
		if cc.Type().Kind() != parquet.ByteArray {
			continue
		}
		if err := ctx.Err(); err != nil {
			t.release()
			return nil, err
		}
		maxDef := -1 // unknown: values are read one by one
		if c := cc.Column(); c < len(paths) {
			if leaf, ok := rg.Schema().Lookup(paths[c]...); ok && leaf.MaxDefinitionLevel < 256 {
				maxDef = leaf.MaxDefinitionLevel
			}
		}
		if err := t.readColumn(cc, maxDef); err != nil {
			t.release()
			return nil, err
		}
	}
	return t, nil
}

func (t *texts) readColumn(cc parquet.ColumnChunk, maxDef int) error {
	pages := cc.Pages()
	defer pages.Close()
	row := -1
	var dict parquet.Dictionary
	var dictHits []bool
	for {
		p, err := pages.ReadPage()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("parquet: %w", err)
		}
		tp := textPage{page: p}
		if !t.inPlace(&tp, maxDef, &row) {
			row, err = tp.copied(p, row)
			parquet.Release(p)
			tp.page = nil
			if err != nil {
				return err
			}
		}
		t.pages = append(t.pages, tp)
		n := len(tp.rows)
		if n == 0 {
			continue
		}
		if tp.idx == nil {
			if tp.rows[0] >= 0 && int(tp.rows[n-1]) < len(t.mark) {
				t.size += int64(tp.offs[n]-tp.offs[0]) + int64(n)
			} else {
				for i, r := range tp.rows {
					if r >= 0 && int(r) < len(t.mark) {
						t.size += int64(tp.offs[i+1]-tp.offs[i]) + 1
					}
				}
			}
			t.hits(tp.data, tp.offs, func(i int) { t.markRow(tp.rows[i]) })
			continue
		}
		if d := p.Dictionary(); d != dict {
			dict = d
			dictHits = slices.Grow(dictHits[:0], len(tp.offs)-1)[:len(tp.offs)-1]
			clear(dictHits)
			t.hits(tp.data, tp.offs, func(i int) { dictHits[i] = true })
		}
		for k, j := range tp.idx {
			if r := tp.rows[k]; r >= 0 && int(r) < len(t.mark) {
				t.size += int64(tp.offs[j+1]-tp.offs[j]) + 1
				t.mark[r] = t.mark[r] || dictHits[j]
			}
		}
	}
}

func (t *texts) markRow(r int32) {
	if r >= 0 && int(r) < len(t.mark) {
		t.mark[r] = true
	}
}

// inPlace takes a page's values where they lie, a byte array page's or
// its dictionary's, when its levels account for them.
func (t *texts) inPlace(tp *textPage, maxDef int, row *int) bool {
	p := tp.page
	if maxDef < 0 {
		return false
	}
	v := p.Data()
	n := 0
	if d := p.Dictionary(); d != nil {
		dv := d.Page().Data()
		if v.Kind() != encoding.Int32 || dv.Kind() != encoding.ByteArray {
			return false
		}
		tp.data, tp.offs = dv.ByteArray()
		tp.idx = v.Int32()
		n = len(tp.idx)
		for _, j := range tp.idx {
			if j < 0 || int(j) >= len(tp.offs)-1 {
				return false
			}
		}
	} else {
		if v.Kind() != encoding.ByteArray {
			return false
		}
		tp.data, tp.offs = v.ByteArray()
		n = len(tp.offs) - 1
		if n < 0 || int(tp.offs[n]) > len(tp.data) {
			return false
		}
	}
	rep, def := p.RepetitionLevels(), p.DefinitionLevels()
	levels := max(len(rep), len(def))
	if rep != nil && len(rep) != levels || def != nil && len(def) != levels {
		return false
	}
	nonNull := levels
	if def != nil {
		nonNull = bytes.Count(def, []byte{byte(maxDef)})
	}
	if def == nil && rep == nil {
		nonNull = n
	}
	if nonNull != n {
		return false
	}
	tp.rows = t.newRows(n)
	if def == nil && rep == nil {
		for i := range tp.rows {
			tp.rows[i] = int32(*row + 1 + i)
		}
		*row += n
		return true
	}
	j := 0
	for k := range levels {
		if rep == nil || rep[k] == 0 {
			*row++
		}
		if def == nil || def[k] == byte(maxDef) {
			tp.rows[j] = int32(*row)
			j++
		}
	}
	return true
}

// copied reads a page's values one by one into a buffer of its own: a
// page whose values inPlace cannot take where they lie.
func (tp *textPage) copied(p parquet.Page, row int) (int, error) {
	tp.data, tp.offs, tp.idx, tp.rows = nil, []uint32{0}, nil, nil
	vals := make([]parquet.Value, rowBatch)
	vr := p.Values()
	for {
		n, err := vr.ReadValues(vals)
		for _, v := range vals[:n] {
			if v.RepetitionLevel() == 0 {
				row++
			}
			if !v.IsNull() {
				tp.data = append(tp.data, v.ByteArray()...)
				tp.offs = append(tp.offs, uint32(len(tp.data)))
				tp.rows = append(tp.rows, int32(row))
			}
		}
		if err == io.EOF {
			return row, nil
		}
		if err != nil {
			return row, fmt.Errorf("parquet: %w", err)
		}
	}
}

// hits calls fn with each value, of those data and offs hold, that the
// prefilter stops at with every key and user watched (a value may be
// called more than once).
func (t *texts) hits(data []byte, offs []uint32, fn func(i int)) {
	n := len(offs) - 1
	if n <= 0 {
		return
	}
	data = data[:offs[n]]
	// Most pages hold nothing: one pass over them tells.
	var f detect.Filter
	if f.Reset(data, everything{}) {
		for i := range n {
			if f.Candidate(int(offs[i]), int(offs[i+1])) {
				fn(i)
			}
		}
	}
	for i := n - 1; i >= 0 && int(offs[i+1])+tailRoom > len(data); i-- {
		t.room = append(append(t.room[:0], data[offs[i]:offs[i+1]]...), room...)
		if detect.HasCandidate(t.room, everything{}) {
			fn(i)
		}
	}
}

// rowTexts lays out the text of each marked row, its values end to end
// in column order, each followed by a newline, as the prefilter reads a
// row; the others are nil. They hold until t is released.
func (t *texts) rowTexts() [][]byte {
	n := len(t.mark)
	t.out = slices.Grow(t.out[:0], n)[:n]
	t.lens = slices.Grow(t.lens[:0], n)[:n]
	clear(t.lens)
	total := 0
	for _, p := range t.pages {
		for i, r := range p.rows {
			if r >= 0 && int(r) < n && t.mark[r] {
				k := len(p.value(i)) + 1
				t.lens[r] += k
				total += k
			}
		}
	}
	arena := slices.Grow(t.arena[:0], total)
	t.arena = arena
	for r, k := range t.lens {
		if t.mark[r] {
			t.out[r] = arena[len(arena) : len(arena) : len(arena)+k]
			arena = arena[:len(arena)+k]
		}
	}
	for _, p := range t.pages {
		for i, r := range p.rows {
			if r >= 0 && int(r) < n && t.mark[r] {
				t.out[r] = append(append(t.out[r], p.value(i)...), '\n')
			}
		}
	}
	return t.out
}

// readRows reads the rows of a row group at the given (ascending)
// indexes.
func readRows(rg parquet.RowGroup, at []int) ([]parquet.Row, error) {
	rr := rg.Rows()
	defer rr.Close()
	out := make([]parquet.Row, 0, len(at))
	buf := make([]parquet.Row, 1)
	for _, i := range at {
		if err := rr.SeekToRow(int64(i)); err != nil {
			return out, fmt.Errorf("parquet: %w", err)
		}
		if n, err := rr.ReadRows(buf); n != 1 {
			return out, fmt.Errorf("parquet: row %d: %w", i, cmp.Or(err, io.ErrUnexpectedEOF))
		}
		out = append(out, buf[0].Clone())
	}
	return out, nil
}

// rowRef is a Parquet row kept aside by where it is: a row that names a
// key or a user is read again, alone, if its account comes to watch
// them (assembling every such row as it is read would cost more than
// reading the file).
type rowRef struct {
	obj        source.Object
	group, row int
}

// readRef reads a kept row again.
func readRef(ctx context.Context, ref *rowRef) (parquet.Row, *parquet.Schema, error) {
	ra, closer, err := ref.obj.OpenAt(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer closer.Close()
	f, err := parquet.OpenFile(ra, ref.obj.Size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, nil, err
	}
	rows, err := readRows(f.RowGroups()[ref.group], []int{ref.row})
	if err != nil {
		return nil, nil, err
	}
	return rows[0], f.Schema(), nil
}

// observeRow rebuilds a row into the nested record the OCSF reader takes
// and observes its events.
func observeRow(det *detect.Detector, schema *parquet.Schema, row parquet.Row, place source.Place, dst []detect.Observed, st *detect.JSONStats) []detect.Observed {
	var rec any
	if err := schema.Reconstruct(&rec, row); err != nil {
		st.Undecodable++
		return dst
	}
	m, ok := plain(rec).(map[string]any)
	if !ok {
		st.Undecodable++
		return dst
	}
	before := len(dst)
	dst = det.ObserveBody(m, place.Time, dst)
	st.Events += len(dst) - before
	return dst
}

// plain turns what the Parquet library rebuilds into the values a
// decoder gives: strings for byte arrays, int64 and float64 for numbers,
// epoch milliseconds (OCSF's time) for timestamps.
func plain(v any) any {
	switch v := v.(type) {
	case nil, string, bool, int64, float64:
		return v
	case map[string]any:
		for k, e := range v {
			v[k] = plain(e)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = plain(e)
		}
		return v
	case []byte:
		return string(v)
	case int32:
		return int64(v)
	case int:
		return int64(v)
	case uint32:
		return int64(v)
	case uint64:
		return v
	case float32:
		return float64(v)
	case time.Time:
		return v.UnixMilli()
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return nil
		}
		return plain(rv.Elem().Interface())
	case reflect.Slice:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = plain(rv.Index(i).Interface())
		}
		return out
	case reflect.Map:
		out := make(map[string]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			out[fmt.Sprint(plain(it.Key().Interface()))] = plain(it.Value().Interface())
		}
		return out
	}
	return fmt.Sprint(v)
}

type countingReaderAt struct {
	r io.ReaderAt
	n *atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

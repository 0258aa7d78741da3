package scan

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
)

// Amazon Security Lake keeps CloudTrail as OCSF records in Parquet. A row
// is read as the prefilter reads any record: its text values, as they are
// stored, laid end to end; only a row holding a pattern is rebuilt into
// the nested record the OCSF reader takes.

const rowBatch = 1024

// readParquet reads a Parquet file's row groups in parallel (at most as
// many at once as the scan has workers): only their text columns, each
// row's values laid end to end, go through the prefilter with the
// recorder; a row it lets through whatever the watch list holds is read
// whole, rebuilt and observed; a row naming keys or users is kept aside,
// by its place in the file, for its account.
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
	texts, err := rowTexts(ctx, rg)
	if err != nil {
		return err
	}
	var rec recorder
	var now []int
	for i, text := range texts {
		d.events++
		d.st.Records++
		d.size += int64(len(text))
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

// rowTexts reads a row group's text columns only, page by page, and lays
// each row's text values end to end (in column order, as a row holds
// them): what the prefilter reads of a row, without assembling rows.
func rowTexts(ctx context.Context, rg parquet.RowGroup) ([][]byte, error) {
	texts := make([][]byte, rg.NumRows())
	vals := make([]parquet.Value, rowBatch)
	for _, cc := range rg.ColumnChunks() {
		if cc.Type().Kind() != parquet.ByteArray {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pages := cc.Pages()
		row := -1
		for {
			p, err := pages.ReadPage()
			if err == io.EOF {
				break
			}
			if err != nil {
				pages.Close()
				return nil, fmt.Errorf("parquet: %w", err)
			}
			vr := p.Values()
			for {
				n, err := vr.ReadValues(vals)
				for _, v := range vals[:n] {
					if v.RepetitionLevel() == 0 {
						row++
					}
					if !v.IsNull() && row >= 0 && row < len(texts) {
						texts[row] = append(append(texts[row], v.ByteArray()...), '\n')
					}
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					parquet.Release(p)
					pages.Close()
					return nil, fmt.Errorf("parquet: %w", err)
				}
			}
			parquet.Release(p)
		}
		pages.Close()
	}
	return texts, nil
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

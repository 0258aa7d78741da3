package scan

import (
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
// many at once as the scan has workers): each row's text values, laid end
// to end, go through the prefilter with the recorder; a row it lets
// through whatever the watch list holds is rebuilt and observed now, a
// row naming keys or users is kept aside (in memory) for its account.
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
			errs[i] = safely(func() error { return r.readRowGroup(ctx, rg, schema, obj, x, &parts[i]) })
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

func (r *reader) readRowGroup(ctx context.Context, rg parquet.RowGroup, schema *parquet.Schema, obj source.Object, x *index, d *decoded) error {
	rr := rg.Rows()
	defer rr.Close()
	rows := make([]parquet.Row, rowBatch)
	var text []byte
	var rec recorder
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n, err := rr.ReadRows(rows)
		for _, row := range rows[:n] {
			d.events++
			d.st.Records++
			text = text[:0]
			for _, v := range row {
				if v.Kind() == parquet.ByteArray {
					text = append(append(text, v.ByteArray()...), '\n')
				}
			}
			d.size += int64(len(text))
			cls := classify(text, &rec)
			if cls != none && cls != named && detect.HasCandidate(text, nil) {
				d.st.Candidates++
				d.obs = observeRow(r.det, schema, row, obj.Place, d.obs, &d.st)
				continue
			}
			if cls != none {
				if err := x.keep(text, false, obj.Place, position(d.file, d.events, 0), obj.Place.Account, cls, &rec, row.Clone(), schema); err != nil {
					return err
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("parquet: %w", err)
		}
	}
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

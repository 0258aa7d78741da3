package scan

import (
	"context"
	"fmt"
	"io"
	"reflect"
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

func (r *reader) readParquet(ctx context.Context, obj source.Object, w detect.Watch, res *fileResult) error {
	ra, closer, err := obj.OpenAt(ctx)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer closer.Close()
	size := obj.Size
	if size < 0 {
		return fmt.Errorf("parquet: size unknown")
	}
	counted := &countingReaderAt{r: ra, n: &res.stored}
	f, err := parquet.OpenFile(counted, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return fmt.Errorf("parquet: %w", err)
	}
	schema := f.Schema()
	rows := make([]parquet.Row, rowBatch)
	var text []byte
	for _, rg := range f.RowGroups() {
		if err := func() error {
			rr := rg.Rows()
			defer rr.Close()
			for {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				n, err := rr.ReadRows(rows)
				for _, row := range rows[:n] {
					res.events++
					res.st.Records++
					text = text[:0]
					for _, v := range row {
						if v.Kind() == parquet.ByteArray {
							text = append(append(text, v.ByteArray()...), '\n')
						}
					}
					res.text += int64(len(text))
					if !detect.HasCandidate(text, w) {
						continue
					}
					res.st.Candidates++
					var rec any
					if err := schema.Reconstruct(&rec, row); err != nil {
						res.st.Undecodable++
						continue
					}
					m, ok := plain(rec).(map[string]any)
					if !ok {
						res.st.Undecodable++
						continue
					}
					before := len(res.obs)
					res.obs = r.det.ObserveBody(m, obj.Place.Time, res.obs)
					res.st.Events += len(res.obs) - before
					res.obs = relevant(w, res.obs, before)
				}
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return fmt.Errorf("parquet: %w", err)
				}
			}
		}(); err != nil {
			r.storedBytes.Add(res.stored)
			return err
		}
	}
	r.storedBytes.Add(res.stored)
	return nil
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
	n *int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	atomic.AddInt64(c.n, int64(n))
	return n, err
}

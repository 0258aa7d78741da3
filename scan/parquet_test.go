package scan

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/ocsfmap"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

// The rows the prefilter stops at, column by column, are every row that
// classify, reading the row's text whole, finds anything in, and their
// texts are laid out as it reads them; the total text is the same. The
// records are every rule's examples and sequences and the corpus, as
// Security Lake writes them, in files written the ways a writer may:
// plain, in many small pages and row groups, dictionary-encoded, and in
// version 1 data pages.
func TestLakeRowsMarked(t *testing.T) {
	recs := lakeRecords(t)
	dir := t.TempDir()
	for name, opts := range map[string][]parquet.WriterOption{
		"plain":      nil,
		"small":      {parquet.Compression(&parquet.Zstd), parquet.MaxRowsPerRowGroup(97), parquet.PageBufferSize(512)},
		"dictionary": {parquet.DefaultEncodingFor(parquet.ByteArray, &parquet.RLEDictionary), parquet.MaxRowsPerRowGroup(300)},
		"v1":         {parquet.DataPageVersion(1), parquet.PageBufferSize(1024)},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name+".parquet")
			if err := archive.WriteParquetWith(p, recs, opts...); err != nil {
				t.Fatal(err)
			}
			f := openParquet(t, p)
			var found, marked, rows int
			for _, rg := range f.RowGroups() {
				want := layOut(t, rg)
				tx, err := readTexts(context.Background(), rg)
				if err != nil {
					t.Fatal(err)
				}
				got := tx.rowTexts()
				// The same, every page's values copied out one by one.
				cp := &texts{mark: make([]bool, rg.NumRows())}
				for _, cc := range rg.ColumnChunks() {
					if cc.Type().Kind() == parquet.ByteArray {
						if err := cp.readColumn(cc, -1); err != nil {
							t.Fatal(err)
						}
					}
				}
				gotCopied := cp.rowTexts()
				var size int64
				var rec recorder
				for i, text := range want {
					size += int64(len(text))
					rows++
					if !bytes.Equal(gotCopied[i], got[i]) || cp.mark[i] != tx.mark[i] {
						t.Errorf("row %d copied out: %q", i, gotCopied[i])
					}
					if got[i] != nil {
						marked++
						if !bytes.Equal(got[i], text) {
							t.Errorf("row %d laid out as\n%q\nnot\n%q", i, got[i], text)
						}
					}
					if classify(text, &rec) != none {
						found++
						if got[i] == nil {
							t.Errorf("row %d not marked: %q", i, text)
						}
					}
				}
				if tx.size != size || cp.size != size {
					t.Errorf("text of %d bytes, not %d", tx.size, size)
				}
				tx.release()
				cp.release()
			}
			// Neither side of the test is empty: rows are found, rows are
			// passed over.
			if rows != len(recs) || found == 0 || marked == rows {
				t.Errorf("%d rows of %d, %d found, %d marked", rows, len(recs), found, marked)
			}
		})
	}
}

// lakeRecords are the rules' examples and sequences' events and the
// corpus's, in OCSF, and rows made for the edges of a page: a short key
// id that ends its column's page (its 20 bytes run into the next columns
// of the row, not past the page's end) and a pattern hidden by an escape.
func lakeRecords(t *testing.T) []map[string]any {
	var events []map[string]any
	for _, r := range rules.Stateless() {
		for _, kind := range []string{"positive", "negative"} {
			for _, e := range corpus.Fixtures(t, r.ID, kind) {
				if e["eventName"] != nil {
					events = append(events, e)
				}
			}
		}
	}
	for _, rule := range sequence.Rules {
		for _, s := range sequence.Load(t, rule) {
			for _, st := range s.Steps {
				events = append(events, st.Events()...)
			}
		}
	}
	for _, e := range corpus.Panther(t) {
		if m, ok := e.(map[string]any); ok && m["eventVersion"] != nil {
			events = append(events, m)
		}
	}
	escaped, _ := sequence.Event("events/ec2_describe_instances_by_key")
	escaped["requestParameters"] = map[string]any{"note": `{"policy":"\u0051uarantine"}`}
	short, _ := sequence.Event("events/ec2_describe_instances_by_key")
	short["userIdentity"] = map[string]any{"type": "AssumedRole", "accountId": "111122223333", "accessKeyId": "AKIA12",
		"arn": "arn:aws:sts::111122223333:assumed-role/deployer/session"}
	events = append(events, escaped, short)
	var recs []map[string]any
	for i, e := range events {
		e["eventID"] = fmt.Sprint("e-", i)
		e["eventTime"] = time.Date(2026, 11, 20, 8, 0, i, 0, time.UTC).Format(time.RFC3339)
		if rec, err := ocsfmap.SecurityLakeV2(e); err == nil {
			recs = append(recs, rec)
		}
	}
	if len(recs) < 100 {
		t.Fatalf("%d records", len(recs))
	}
	return recs
}

func openParquet(t *testing.T, p string) *parquet.File {
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	f, err := parquet.OpenFile(fh, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// layOut is every row's text, value by value: what the prefilter reads of
// a row, made the plain way.
func layOut(t *testing.T, rg parquet.RowGroup) [][]byte {
	texts := make([][]byte, rg.NumRows())
	vals := make([]parquet.Value, 100)
	for _, cc := range rg.ColumnChunks() {
		if cc.Type().Kind() != parquet.ByteArray {
			continue
		}
		pages := cc.Pages()
		row := -1
		for {
			p, err := pages.ReadPage()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			vr := p.Values()
			for {
				n, err := vr.ReadValues(vals)
				for _, v := range vals[:n] {
					if v.RepetitionLevel() == 0 {
						row++
					}
					if !v.IsNull() {
						texts[row] = append(append(texts[row], v.ByteArray()...), '\n')
					}
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		pages.Close()
	}
	return texts
}

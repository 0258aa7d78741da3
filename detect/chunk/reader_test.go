package chunk_test

import (
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/chunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
)

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 123456789, time.UTC)

func TestTimestamps(t *testing.T) {
	body := map[string]any{"k": "v"}
	var b []byte
	b = fbchunk.AppendV2(b, t0, map[string]any{"m": int64(1)}, body)
	b = fbchunk.AppendLegacy(b, t0, body)
	b = fbchunk.AppendLegacy(b, int64(1700000000), body)
	b = fbchunk.AppendLegacy(b, 1700000000.25, body)
	b = msgp.AppendArrayHeader(b, 2) // float32 timestamp
	b = msgp.AppendFloat32(b, 2.5)
	b = msgp.AppendMapHeader(b, 0)
	want := []time.Time{t0, t0, time.Unix(1700000000, 0), time.Unix(1700000000, 250000000), time.Unix(2, 500000000)}
	var r chunk.Reader
	r.Reset(b)
	i := 0
	for r.Next() {
		if got := r.Record().Time; !got.Equal(want[i]) {
			t.Errorf("record %d: time %v, want %v", i, got, want[i])
		}
		i++
	}
	if i != len(want) || r.Skipped().Total() != 0 {
		t.Fatalf("read %d records, skipped %+v", i, r.Skipped())
	}
}

func TestMetaAndBodyPointIntoTheChunk(t *testing.T) {
	b := fbchunk.AppendV2(nil, t0, map[string]any{"m": "x"}, map[string]any{"k": "v"})
	var r chunk.Reader
	r.Reset(b)
	if !r.Next() {
		t.Fatal("no record")
	}
	rec := r.Record()
	if &rec.Raw[0] != &b[0] || &rec.Body[len(rec.Body)-1] != &b[len(b)-1] {
		t.Fatal("record slices do not alias the chunk")
	}
	if m, _, err := msgp.ReadMapHeaderBytes(rec.Meta); err != nil || m != 1 {
		t.Fatalf("meta: %d %v", m, err)
	}
}

func TestZeroAllocations(t *testing.T) {
	var b []byte
	for range 100 {
		b = fbchunk.AppendV2(b, t0, nil, map[string]any{"eventName": "GetObject", "n": int64(3)})
	}
	var r chunk.Reader
	allocs := testing.AllocsPerRun(50, func() {
		r.Reset(b)
		for r.Next() {
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per chunk", allocs)
	}
}

// FuzzReader: any bytes, no panic; every record returned is framed inside
// the chunk and has a map body.
func FuzzReader(f *testing.F) {
	body := map[string]any{"eventName": "AttachUserPolicy", "requestParameters": map[string]any{"policyArn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"}}
	f.Add(fbchunk.AppendV2(nil, t0, nil, body))
	f.Add(fbchunk.AppendLegacy(fbchunk.AppendGroupStart(nil), 1.5, body))
	f.Add(fbchunk.AppendLegacy(nil, int64(7), body)[:9])
	f.Add([]byte{0x92, 0xc1, 0x80})
	f.Add([]byte{0x92, 0xd7, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r chunk.Reader
		r.Reset(b)
		for r.Next() {
			rec := r.Record()
			if rec.Offset < 0 || rec.Offset+len(rec.Raw) > len(b) {
				t.Fatalf("record outside the chunk")
			}
			if msgp.NextType(rec.Body) != msgp.MapType {
				t.Fatalf("body is not a map")
			}
		}
	})
}

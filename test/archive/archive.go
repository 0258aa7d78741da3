// Package archive writes CloudTrail archives for tests and benchmarks:
// log files as AWS writes them, in the S3 layout
// (AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_
// <region>_<stamp>_<unique>.json.gz), and Security Lake Parquet files in
// theirs, written with the library the scan reads them with.
package archive

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// LogFile is where CloudTrail puts the log file of an account and region
// stamped at t (relative to the trail's prefix).
func LogFile(account, region string, t time.Time, unique string) string {
	t = t.UTC()
	return filepath.Join("AWSLogs", account, "CloudTrail", region, t.Format("2006/01/02"),
		fmt.Sprintf("%s_CloudTrail_%s_%s_%s.json.gz", account, region, t.Format("20060102T1504Z"), unique))
}

// Gzip compresses data as gzip (level 6, as AWS's are about).
func Gzip(data []byte) []byte {
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, 6)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// Records is the JSON of a log file holding events, each event's keys in
// the order CloudTrail writes them (eventVersion first: the scan frames
// AWS's files by it), any others after them in sorted order.
func Records(events []any) []byte {
	b := []byte(`{"Records":[`)
	for i, e := range events {
		if i > 0 {
			b = append(b, ',')
		}
		m, ok := e.(map[string]any)
		if !ok {
			b = value.AppendJSONValue(b, e)
			continue
		}
		b = append(b, '{')
		n := 0
		for _, k := range keyOrder(m) {
			if n > 0 {
				b = append(b, ',')
			}
			n++
			b = value.AppendJSONString(b, k)
			b = value.AppendJSONValue(append(b, ':'), m[k])
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// cloudTrailOrder is the order of a CloudTrail event's top-level keys in
// the log files AWS delivers.
var cloudTrailOrder = []string{"eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion",
	"sourceIPAddress", "userAgent", "errorCode", "errorMessage", "requestParameters", "responseElements",
	"additionalEventData", "requestID", "eventID", "readOnly", "resources", "eventType", "apiVersion",
	"managementEvent", "recipientAccountId", "serviceEventDetails", "sharedEventID", "vpcEndpointId",
	"eventCategory", "tlsDetails", "sessionCredentialFromConsole"}

func keyOrder(m map[string]any) []string {
	var keys []string
	for _, k := range cloudTrailOrder {
		if _, ok := m[k]; ok {
			keys = append(keys, k)
		}
	}
	known := len(keys)
	for k := range m {
		if !slices.Contains(cloudTrailOrder, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys[known:])
	return keys
}

// WriteLogFile writes events as a gzipped log file at root/LogFile(...)
// and returns its path.
func WriteLogFile(root, account, region string, t time.Time, unique string, events []any) (string, error) {
	p := filepath.Join(root, LogFile(account, region, t, unique))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, Gzip(Records(events)), 0o644)
}

// LakeFile is where Security Lake puts a CloudTrail management events
// file of an account and region for the day of t (source version 2).
func LakeFile(account, region string, t time.Time, unique string) string {
	return filepath.Join("aws", "CLOUD_TRAIL_MGMT", "2.0", "region="+region, "accountId="+account,
		"eventDay="+t.UTC().Format("20060102"), unique+".gz.parquet")
}

// WriteParquet writes OCSF records as one Parquet file, with a schema
// made from the records (every field optional; unmapped, as in Security
// Lake, a map of strings to strings).
func WriteParquet(path string, records []map[string]any) error {
	return WriteParquetWith(path, records, parquet.Compression(&parquet.Gzip))
}

// WriteParquetWith is WriteParquet with the writer's options: Security
// Lake writes ZSTD, in several row groups (parquet.MaxRowsPerRowGroup).
func WriteParquetWith(path string, records []map[string]any, opts ...parquet.WriterOption) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var fields shape
	for _, r := range records {
		fields.add(r)
	}
	schema := parquet.NewSchema("ocsf", fields.group())
	var b bytes.Buffer
	w := parquet.NewGenericWriter[map[string]any](&b, append([]parquet.WriterOption{schema}, opts...)...)
	rows := make([]map[string]any, len(records))
	for i, r := range records {
		rows[i] = fields.conform(r)
	}
	if _, err := w.Write(rows); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// shape is the union of the records' fields.
type shape struct {
	kind   string // "group", "list", "string", "int", "float", "bool"
	fields map[string]*shape
	elem   *shape
}

func (s *shape) add(v any) {
	switch v := v.(type) {
	case map[string]any:
		s.kind = "group"
		if s.fields == nil {
			s.fields = map[string]*shape{}
		}
		for k, e := range v {
			if e == nil {
				continue
			}
			if s.fields[k] == nil {
				s.fields[k] = &shape{}
			}
			s.fields[k].add(e)
		}
	case []any:
		s.kind = "list"
		if s.elem == nil {
			s.elem = &shape{}
		}
		for _, e := range v {
			s.elem.add(e)
		}
	case string:
		s.kind = "string"
	case int64, int:
		if s.kind != "float" && s.kind != "string" {
			s.kind = "int"
		}
	case float64:
		if s.kind != "string" {
			s.kind = "float"
		}
	case bool:
		s.kind = "bool"
	}
}

func (s *shape) node(name string) parquet.Node {
	if name == "unmapped" && s.kind == "group" {
		return parquet.Optional(parquet.Map(parquet.String(), parquet.Optional(parquet.String())))
	}
	switch s.kind {
	case "group":
		return parquet.Optional(s.group())
	case "list":
		if s.elem == nil || s.elem.kind == "" {
			return parquet.Optional(parquet.List(parquet.Optional(parquet.String())))
		}
		return parquet.Optional(parquet.List(s.elem.node("")))
	case "int":
		return parquet.Optional(parquet.Int(64))
	case "float":
		return parquet.Optional(parquet.Leaf(parquet.DoubleType))
	case "bool":
		return parquet.Optional(parquet.Leaf(parquet.BooleanType))
	}
	return parquet.Optional(parquet.String())
}

func (s *shape) group() parquet.Group {
	g := parquet.Group{}
	for _, k := range slices.Sorted(maps.Keys(s.fields)) {
		g[k] = s.fields[k].node(k)
	}
	return g
}

// conform gives a record the schema's types: numbers as the leaf wants
// them, unmapped values as text.
func (s *shape) conform(r map[string]any) map[string]any {
	out := map[string]any{}
	for k, f := range s.fields {
		if v, ok := r[k]; ok && v != nil {
			out[k] = f.value(k, v)
		}
	}
	return out
}

func (s *shape) value(name string, v any) any {
	switch s.kind {
	case "group":
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		if name == "unmapped" {
			out := map[string]any{}
			for k, e := range m {
				out[k] = fmt.Sprint(e)
			}
			return out
		}
		return s.conform(m)
	case "list":
		a, _ := v.([]any)
		out := make([]any, 0, len(a))
		for _, e := range a {
			out = append(out, s.elem.value("", e))
		}
		return out
	case "float":
		switch n := v.(type) {
		case int64:
			return float64(n)
		}
	case "string":
		if _, ok := v.(string); !ok {
			return string(value.ToJSON(v))
		}
	}
	return v
}

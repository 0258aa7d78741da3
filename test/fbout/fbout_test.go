package fbout

import "testing"

// Lines as Fluent Bit 4.2.8 and 5.1.1 print them (three flushes of one
// record each), with lines that are not the counter's around them.
func TestCountedReadsBothFormats(t *testing.T) {
	for name, c := range map[string]struct {
		out              string
		records, flushes int
	}{
		"4.2.8": {"1796565793.770558,1 (total = 1)\n1796565794.767150,1 (total = 2)\n1796565795.768968,1 (total = 3)\n", 3, 3},
		"5.1.1": {`{"ts":1796565787.767155,"serialized_events":1,"log_records":1,"total":1}
{"ts":1796565788.767151,"serialized_events":1,"log_records":1,"total":1}
{"ts":1796565789.767079,"serialized_events":1,"log_records":1,"total":1}
`, 3, 3},
		"4.x batches":  {"1796565793.770558,7 (total = 7)\n1796565794.767150,2 (total = 9)\n", 9, 2},
		"5.x batches":  {`{"ts":1.5,"serialized_events":7,"log_records":7,"total":7}` + "\n" + `{"ts":2.5,"serialized_events":2,"log_records":2,"total":2}`, 9, 2},
		"other output": {`{"rule":{"id":"aws.iam.quarantine_applied"},"total":3}` + "\nFluent Bit v5.1.1\n[2026/12/06] [ info] x (total = 4)\n1,2 (total = 2)\n", 2, 1},
		"nothing":      {"", 0, 0},
	} {
		if r, f := Counted(c.out); r != c.records || f != c.flushes {
			t.Errorf("%s: %d records in %d flushes, want %d in %d", name, r, f, c.records, c.flushes)
		}
	}
}

// Package fbout reads what a real Fluent Bit prints, for the tests that
// run one: its counter output changed format in 5.0, and both are read.
package fbout

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
)

// counter4 is a 4.x (and earlier) counter line: "<time>,<records> (total = <all so far>)".
var counter4 = regexp.MustCompile(`^\d+(?:\.\d+)?,(\d+) \(total = \d+\)$`)

// Counted sums the records Fluent Bit's counter output reports in out
// (its stdout), one line per flush: up to 4.x "<time>,<n> (total = <t>)",
// from 5.0 a JSON object {"ts":...,"serialized_events":n,"log_records":n,"total":n}
// (whose total is the flush's, not a running one). Lines of either kind
// count; other lines (an alert a stdout output prints, say) do not.
// flushes is how many counter lines there were.
func Counted(out string) (records, flushes int) {
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if m := counter4.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			records += n
			flushes++
			continue
		}
		var c struct {
			TS         *float64 `json:"ts"`
			LogRecords *int     `json:"log_records"`
		}
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &c) == nil && c.TS != nil && c.LogRecords != nil {
			records += *c.LogRecords
			flushes++
		}
	}
	return records, flushes
}

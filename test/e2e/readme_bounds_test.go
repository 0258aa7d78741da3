package e2e

import (
	"strconv"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
)

// The README's table of bounds is cloudtrail.Limits: the same values, in
// the same order, with the same bound and the same handling past it.
func TestREADMEBoundsTable(t *testing.T) {
	doc := readme(t)
	_, section, ok := strings.Cut(doc, "### Bounds on what a record may hold")
	if !ok {
		t.Fatal("no bounds section in the README")
	}
	var rows [][]string
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "## ") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if !strings.HasPrefix(line, "| ") || len(cells) != 4 || strings.TrimSpace(cells[0]) == "value" {
			continue
		}
		rows = append(rows, cells)
	}
	if len(rows) != len(cloudtrail.Limits) {
		t.Fatalf("the README's table has %d rows, cloudtrail.Limits %d", len(rows), len(cloudtrail.Limits))
	}
	for i, l := range cloudtrail.Limits {
		field := strings.ReplaceAll(strings.TrimSpace(rows[i][0]), "`", "")
		bound, _ := strconv.Atoi(rows[i][2])
		digest := strings.HasPrefix(strings.TrimSpace(rows[i][3]), "digest")
		if field != l.Field || bound != l.Max || digest != l.Digest {
			t.Errorf("row %d: %q bound %d digest %v; cloudtrail.Limits says %q %d %v", i+1, field, bound, digest, l.Field, l.Max, l.Digest)
		}
	}
}

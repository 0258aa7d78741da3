package idkey

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBounded(t *testing.T) {
	long := strings.Repeat("é", 40000) // 80,000 bytes
	cases := []struct {
		name, id string
		kept     bool
	}{
		{"short", "aws.iam.quarantine_applied/3d2f1f7a-0000-4b6e-9c1d-000000000001", true},
		{"at the bound", strings.Repeat("a", Max), true},
		{"one past", strings.Repeat("a", Max+1), false},
		{"long, multibyte", long, false},
		{"holds the marker", "x" + marker + "y", false},
		{"not UTF-8", "a\xffb", false},
	}
	seen := map[string]string{}
	for _, c := range cases {
		got := Bounded(c.id, Max)
		if (got == c.id) != c.kept {
			t.Errorf("%s: kept=%v, want %v", c.name, got == c.id, c.kept)
		}
		if len(got) > Max || !utf8.ValidString(got) {
			t.Errorf("%s: %d bytes, valid UTF-8 %v", c.name, len(got), utf8.ValidString(got))
		}
		if !c.kept && (!strings.Contains(got, marker) || got != Bounded(c.id, Max)) {
			t.Errorf("%s: %q is not a stable digest form", c.name, got)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("%s and %s bound to the same key", c.name, other)
		}
		seen[got] = c.name
	}
	// Two long identifiers that share their head stay apart.
	a, b := Bounded(long+"a", Max), Bounded(long+"b", Max)
	if a == b {
		t.Fatal("identifiers with one head bound to one key")
	}
	// A digest form fed back is digested again, not taken for its source.
	if Bounded(a, Max) == a {
		t.Fatal("a bounded identifier passed through as if it were its source")
	}
}

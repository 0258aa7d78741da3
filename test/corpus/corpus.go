// Package corpus loads the events tests and benchmarks run on: the shared
// Panther CloudTrail corpus (read in place) and the rules' own examples in
// test/fixtures.
package corpus

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// Panther returns the 475 events of ../shared/corpus/panther_cloudtrail_tests.jsonl,
// line N at index N-1.
func Panther(t testing.TB) []any {
	t.Helper()
	events := jsonLines(t, paths.Corpus("panther_cloudtrail_tests.jsonl"))
	if len(events) != 475 {
		t.Fatalf("corpus has %d events, want 475", len(events))
	}
	return events
}

// Sample returns conf/sample/cloudtrail.jsonl, the stream `make run` replays.
func Sample(t testing.TB) []any {
	t.Helper()
	return jsonLines(t, paths.Repo("conf", "sample", "cloudtrail.jsonl"))
}

func jsonLines(t testing.TB, path string) []any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vals, err := fbchunk.Lines(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return vals
}

// JSONFile decodes one JSON object.
func JSONFile(t testing.TB, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := value.FromJSON(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: not a JSON object", path)
	}
	return m
}

// Fixture is one example event of a rule: kind is positive or negative.
func Fixture(t testing.TB, rule, kind, name string) map[string]any {
	t.Helper()
	return JSONFile(t, paths.Repo("test", "fixtures", "rules", rule, kind, name+".json"))
}

// Fixtures are all example events of one kind of a rule, by file name.
func Fixtures(t testing.TB, rule, kind string) []map[string]any {
	t.Helper()
	files, _ := filepath.Glob(paths.Repo("test", "fixtures", "rules", rule, kind, "*.json"))
	slices.Sort(files)
	if len(files) == 0 {
		t.Fatalf("no %s examples for %s", kind, rule)
	}
	var out []map[string]any
	for _, f := range files {
		out = append(out, JSONFile(t, f))
	}
	return out
}

// Example is one example event: a rule's positive example (Rule set), or
// one of the events the lifecycle's examples are made of.
type Example struct {
	Rule, Name string
	Event      map[string]any
}

// Examples are the events of every rule's positive examples (the
// lifecycle rules' examples are sequences of other events, not events)
// and of test/fixtures/events, in a fixed order.
func Examples(t testing.TB) []Example {
	t.Helper()
	var out []Example
	files, _ := filepath.Glob(paths.Repo("test", "fixtures", "rules", "*", "positive", "*.json"))
	events, _ := filepath.Glob(paths.Repo("test", "fixtures", "events", "*.json"))
	slices.Sort(files)
	slices.Sort(events)
	for _, f := range append(files, events...) {
		ev := JSONFile(t, f)
		if _, sequence := ev["steps"]; sequence {
			continue
		}
		rule := ""
		if dir := filepath.Dir(filepath.Dir(f)); filepath.Base(filepath.Dir(dir)) == "rules" {
			rule = filepath.Base(dir)
		}
		out = append(out, Example{Rule: rule, Name: strings.TrimSuffix(filepath.Base(f), ".json"), Event: ev})
	}
	return out
}

package rules_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// fired runs every rule over the events in one JSON document.
func fired(t *testing.T, raw []byte) []string {
	t.Helper()
	v, err := value.FromJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	r := cloudtrail.Resolver{}
	r.Resolve(v.(map[string]any), func(e *cloudtrail.Event) {
		for _, rule := range rules.All() {
			if _, ok := rule.Match(e); ok {
				ids = append(ids, rule.ID)
			}
		}
	})
	return ids
}

// The examples are the tests: every rule has positives that fire it (and
// no other rule) and negatives that do not fire it.
func TestRuleExamples(t *testing.T) {
	for _, rule := range rules.All() {
		dir := paths.Repo("test", "fixtures", "rules", rule.ID)
		for _, kind := range []string{"positive", "negative"} {
			files, _ := filepath.Glob(filepath.Join(dir, kind, "*.json"))
			if len(files) < 3 {
				t.Fatalf("%s: only %d %s examples in %s", rule.ID, len(files), kind, dir)
			}
			for _, f := range files {
				t.Run(rule.ID+"/"+kind+"/"+filepath.Base(f), func(t *testing.T) {
					raw, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					got := fired(t, raw)
					if kind == "positive" {
						if !slices.Equal(got, []string{rule.ID}) {
							t.Fatalf("want exactly [%s], got %v", rule.ID, got)
						}
						if !containsNeedle(raw) {
							t.Fatal("positive example holds no needle: the prefilter would miss it")
						}
					} else if slices.Contains(got, rule.ID) {
						t.Fatalf("negative example fired %s", rule.ID)
					}
				})
			}
		}
	}
}

func containsNeedle(b []byte) bool {
	for _, n := range rules.Needles {
		if bytes.Contains(b, n) {
			return true
		}
	}
	return false
}

func TestRuleMetadata(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range rules.All() {
		if seen[r.ID] {
			t.Errorf("duplicate rule id %s", r.ID)
		}
		seen[r.ID] = true
		if r.Name == "" || r.Description == "" || r.Runbook == "" || len(r.MITRE) == 0 || len(r.References) == 0 {
			t.Errorf("%s: incomplete metadata", r.ID)
		}
		if r.Severity != "high" && r.Severity != "critical" {
			t.Errorf("%s: severity %q", r.ID, r.Severity)
		}
		if r.RiskScore < 1 || r.RiskScore > 100 {
			t.Errorf("%s: risk score %d", r.ID, r.RiskScore)
		}
	}
}

// The public tests of the quarantine rules give the verdict for raw
// CloudTrail events: any public rule's True is ours. OCSF-shaped events
// (Security Lake) are not resolved yet.
func TestPublicQuarantineRuleTests(t *testing.T) {
	manifest, err := os.ReadFile(paths.Corpus("quarantine_rule_tests", "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(manifest), []byte("\n"))
	checked := 0
	for _, line := range lines[1:] {
		col := bytes.Split(line, []byte("\t"))
		file, kind := string(col[0]), string(col[7])
		if bytes.Contains([]byte(kind), []byte("OCSF")) {
			continue
		}
		want := slices.Contains([]string{string(col[8]), string(col[9]), string(col[10]), string(col[11])}, "True")
		raw, err := os.ReadFile(paths.Corpus("quarantine_rule_tests", file))
		if err != nil {
			t.Fatal(err)
		}
		got := fired(t, raw)
		if want && !slices.Equal(got, []string{"aws.iam.quarantine_applied"}) {
			t.Errorf("%s: want quarantine_applied, got %v", file, got)
		}
		if !want && len(got) != 0 {
			t.Errorf("%s: want no alert, got %v", file, got)
		}
		checked++
	}
	if checked != 9 {
		t.Fatalf("checked %d raw CloudTrail tests, want 9", checked)
	}
}

// Each rule's runbook points at an anchor the README has.
func TestRunbooksExist(t *testing.T) {
	readme, err := os.ReadFile(paths.Repo("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules.All() {
		_, anchor, ok := bytes.Cut([]byte(r.Runbook), []byte("README.md#"))
		if !ok || !bytes.Contains(readme, []byte(`<a id="`+string(anchor)+`"></a>`)) {
			t.Errorf("%s: runbook %q has no anchor in README.md", r.ID, r.Runbook)
		}
		if !bytes.Contains(readme, []byte("`"+r.ID+"`")) {
			t.Errorf("%s is not in the README's rules table", r.ID)
		}
	}
}

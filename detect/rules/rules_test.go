package rules_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/ocsfmap"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// fired runs every rule over the events in one JSON document.
func fired(t *testing.T, raw []byte) []string {
	t.Helper()
	v, err := value.FromJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	return firedOn(v.(map[string]any))
}

func firedOn(body map[string]any) []string {
	var ids []string
	r := cloudtrail.Resolver{}
	r.Resolve(body, func(e *cloudtrail.Event) {
		for _, rule := range rules.Stateless() {
			if _, ok := rule.Match(e); ok {
				ids = append(ids, rule.ID)
			}
		}
	})
	return ids
}

// ocsfForms are the records Amazon Security Lake writes for a CloudTrail
// event: source version 2 (OCSF 1.1.0) and 1 (1.0.0-rc.2).
var ocsfForms = []struct {
	name    string
	convert func(map[string]any) (map[string]any, error)
}{{"ocsf-v2", ocsfmap.SecurityLakeV2}, {"ocsf-v1", ocsfmap.SecurityLakeV1}}

// The examples are the tests: every rule that decides from one event has
// positives that fire it (and no other such rule) and negatives that do not
// fire it. (The lifecycle's rules have sequences as examples, the tests of
// detect/lifecycle.)
func TestRuleExamples(t *testing.T) {
	for _, rule := range rules.Stateless() {
		dir := paths.Repo("test", "fixtures", "rules", rule.ID)
		for _, kind := range []string{"positive", "negative"} {
			files, _ := filepath.Glob(filepath.Join(dir, kind, "*.json"))
			if len(files) < 3 {
				t.Fatalf("%s: only %d %s examples in %s", rule.ID, len(files), kind, dir)
			}
			for _, f := range files {
				raw, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				check := func(t *testing.T, got []string, encoded []byte) {
					if kind == "positive" {
						if !slices.Equal(got, []string{rule.ID}) {
							t.Fatalf("want exactly [%s], got %v", rule.ID, got)
						}
						if !containsNeedle(encoded) {
							t.Fatal("positive example holds no needle: the prefilter would miss it")
						}
					} else if slices.Contains(got, rule.ID) {
						t.Fatalf("negative example fired %s", rule.ID)
					}
				}
				name := rule.ID + "/" + kind + "/" + filepath.Base(f)
				t.Run(name, func(t *testing.T) { check(t, fired(t, raw), raw) })
				// The same example as Security Lake stores it: same verdict.
				// (AWS Health events are not CloudTrail: Security Lake does
				// not carry them.)
				if !bytes.Contains(raw, []byte(`"eventName"`)) {
					continue
				}
				for _, form := range ocsfForms {
					t.Run(name+"/"+form.name, func(t *testing.T) {
						v, _ := value.FromJSON(raw)
						rec, err := form.convert(v.(map[string]any))
						if err != nil {
							t.Fatal(err)
						}
						js := value.ToJSON(rec)
						check(t, firedOn(rec), js)
					})
				}
			}
		}
	}
}

func containsNeedle(b []byte) bool {
	for _, n := range detect.Needles {
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
		if !slices.Contains([]string{"low", "medium", "high", "critical"}, r.Severity) {
			t.Errorf("%s: severity %q", r.ID, r.Severity)
		}
		if r.RiskScore < 1 || r.RiskScore > 100 {
			t.Errorf("%s: risk score %d", r.ID, r.RiskScore)
		}
	}
}

// The public tests of the quarantine rules. For raw CloudTrail events any
// public rule's True is ours. The four OCSF-shaped ones are Panther's own
// fragments of Security Lake records (p_log_type OCSF.ApiActivity or
// OCSF.Authentication; api.*, actor.user.uid as an ARN, request data as a
// JSON string, unmapped.recipientAccountId, as Security Lake v2 writes
// them, but no class_uid, metadata or time, and an AttachUserPolicy
// labelled Authentication where AWS's mapping has Account Change). No
// public rule in the manifest reads that shape, so the verdict is the
// owning Panther rule's declared ExpectedResult: True means
// quarantine_applied.
func TestPublicQuarantineRuleTests(t *testing.T) {
	manifest, err := os.ReadFile(paths.Corpus("quarantine_rule_tests", "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(manifest), []byte("\n"))
	raw, ocsf := 0, 0
	for _, line := range lines[1:] {
		col := strings.Split(string(line), "\t")
		file, expected, kind := col[0], col[6], col[7]
		isOCSF := strings.Contains(kind, "OCSF")
		want := slices.Contains(col[8:12], "True")
		if isOCSF {
			want = expected == "True"
		}
		body, err := os.ReadFile(paths.Corpus("quarantine_rule_tests", file))
		if err != nil {
			t.Fatal(err)
		}
		got := fired(t, body)
		if want && !slices.Equal(got, []string{"aws.iam.quarantine_applied"}) {
			t.Errorf("%s: want quarantine_applied, got %v", file, got)
		}
		if !want && len(got) != 0 {
			t.Errorf("%s: want no alert, got %v", file, got)
		}
		if isOCSF {
			v, _ := value.FromJSON(body)
			var shapes []cloudtrail.Shape
			(&cloudtrail.Resolver{}).Resolve(v.(map[string]any), func(e *cloudtrail.Event) { shapes = append(shapes, e.Shape) })
			if !slices.Equal(shapes, []cloudtrail.Shape{cloudtrail.ShapeOCSF}) {
				t.Errorf("%s: read as %v, want one ocsf event", file, shapes)
			}
			if want && !containsNeedle(body) {
				t.Errorf("%s: no needle: the prefilter would miss it", file)
			}
			ocsf++
		} else {
			raw++
		}
	}
	if raw != 9 || ocsf != 4 {
		t.Fatalf("checked %d raw CloudTrail and %d OCSF tests, want 9 and 4", raw, ocsf)
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
		row := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(r.ID) + "` \\|.*$").Find(readme)
		if row == nil {
			t.Errorf("%s is not in the README's rules table", r.ID)
			continue
		}
		cells := strings.Split(string(row), " | ")
		if len(cells) < 6 || cells[2] != r.Severity || cells[3] != strconv.Itoa(r.RiskScore) {
			t.Errorf("%s: the README's row says %q, the rule severity %s risk %d", r.ID, row, r.Severity, r.RiskScore)
			continue
		}
		for _, m := range r.MITRE {
			if !strings.Contains(cells[4], m.TacticID+" / "+m.TechniqueID) {
				t.Errorf("%s: the README's ATT&CK cell %q lacks %s / %s", r.ID, cells[4], m.TacticID, m.TechniqueID)
			}
		}
	}
}
